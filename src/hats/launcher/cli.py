"""``hats launcher serve``: the host side of a HATs CVM, without QEMU.

The flags keep the reference launcher's spellings (``--launcher_config_path``,
``--tvs_addresses``, ``--tvs_authentication_key``, ``--private_key_wrapping_keys``,
``--use_tls``, ``--tvs_access_token``); the rest are ours. When ready it prints
``listening on ADDR`` on stdout; SIGINT/SIGTERM stop it cleanly. Key material
and the access token are never printed.

Who may reach the launcher: ``FetchOrchestratorMetadata`` hands out the
orchestrator's TVS authentication key to whoever calls it, and every service
here is meant for the guest. So without ``--listen`` the launcher listens on
``unix:<private dir>/launcher.sock``, the directory made 0700 (removed at
exit) and the socket 0600: only the launcher's user and root can connect. A
TCP listener (even on 127.0.0.1: every local user can connect) gets a
warning on stderr; so does one on vsock (a guest or, with vsock loopback,
any local process can connect). Never put the launcher on a shared network.

OTLP: log records are printed as ``<unit>: <body>`` (the reference's
console lines) and, with ``--logs-file``, appended as JSON lines; metrics are
kept (latest value per series), written to ``--metrics-file`` after every
export and at exit, and printed on SIGUSR1. ``hats launcher metrics FILE``
pretty-prints a metrics file.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click
import grpc

from hats.cliopts import log_to_stderr, stream_limit_options
from hats.errors import HatsError
from hats.fsio import write_bytes_atomic
from hats.launcher.config import (
    DEFAULT_CONFIG_PATH,
    LauncherImages,
    load_launcher_config,
    resolve_images,
)
from hats.launcher.server import start_server
from hats.launcher.services import (
    PROXY_LIMITS,
    HatsLauncherService,
    LauncherFlagError,
    LogsService,
    MetricsService,
    OakLauncher,
    build_metadata,
    make_tvs_channels,
    split_tvs_addresses,
    tvs_channel_credentials,
)
from hats.launcher.telemetry import (
    JsonLinesFile,
    MetricsStore,
    TelemetryFileError,
    format_metrics,
    read_metrics_file,
    write_metrics_file,
)
from hats.pb.oak.attestation.v1 import evidence_pb2
from hats.pb.pcit.client import launcher_config_pb2, launcher_pb2
from hats.streamlimits import StreamLimits
from hats.transport import parse_address

if TYPE_CHECKING:
    from hats.vm.launch import VmOptions

_print_lock = threading.Lock()


def _say(line: str, err: bool = False) -> None:
    with _print_lock:
        click.echo(line, err=err)
        (sys.stderr if err else sys.stdout).flush()


@click.group("launcher")
def launcher_group() -> None:
    """The host side of a HATs CVM: Oak Launcher, LauncherService, OTLP logs and metrics."""


_FILE = click.Path(dir_okay=False, path_type=Path)
_REFERENCE = " (reference flag)."


#: The line ``--help`` ends with: which flags are the reference's.
FLAG_RULE = (
    "Flags with underscores are the reference launcher's (same spelling, same meaning; each"
    " also takes hyphens); flags with hyphens only are ours."
)


@launcher_group.command("serve", epilog=FLAG_RULE)
@click.option(
    "--launcher_config_path",
    "--launcher-config-path",
    "launcher_config_path",
    type=_FILE,
    default=None,
    help="pcit.client.LauncherConfig text proto [default: ./launcher_config.txtpb if present]"
    " (reference flag).",
)
@click.option(
    "--tvs_addresses",
    "--tvs-addresses",
    "tvs_addresses",
    default="",
    help="Comma list of TVS gRPC targets; index = tvs_id [default: none]" + _REFERENCE,
)
@click.option(
    "--tvs_authentication_key",
    "--tvs-authentication-key",
    "tvs_authentication_key",
    default="",
    envvar="HATS_TVS_AUTHENTICATION_KEY",
    show_envvar=True,
    help="The orchestrator's P-256 private key (hex) handed out by FetchOrchestratorMetadata"
    " [default: none]" + _REFERENCE,
)
@click.option(
    "--private_key_wrapping_keys",
    "--private-key-wrapping-keys",
    "private_key_wrapping_keys",
    default="",
    envvar="HATS_PRIVATE_KEY_WRAPPING_KEYS",
    show_envvar=True,
    help="Comma list of hex keys: the first is primary, the rest active [default: none]"
    + _REFERENCE,
)
@click.option(
    "--use_tls",
    "--use-tls",
    "use_tls",
    is_flag=True,
    help="Connect to the TVSs with TLS" + _REFERENCE,
)
@click.option(
    "--tls_root_certs",
    "--tls-root-certs",
    "tls_root_certs",
    type=_FILE,
    default=None,
    help="PEM root certificates for --use_tls [default: gRPC's roots]" + _REFERENCE,
)
@click.option(
    "--tvs_access_token",
    "--tvs-access-token",
    "tvs_access_token",
    default="",
    envvar="HATS_TVS_ACCESS_TOKEN",
    show_envvar=True,
    help="OAuth bearer token for the TVSs (needs --use_tls) [default: none]" + _REFERENCE,
)
@click.option(
    "--listen",
    default=None,
    help="HOST:PORT (port 0 = any), unix:PATH or vsock://CID:PORT (explicit port) "
    "[default: a unix socket in a new private directory].",
)
@click.option(
    "--system-image",
    "--system_image",
    "system_image",
    type=_FILE,
    help="The system image (.tar.xz) [default: the config's hats_system_bundle].",
)
@click.option(
    "--system-bundle",
    "system_bundle",
    type=_FILE,
    help="A HATs system bundle tar (its system.tar.xz is served).",
)
@click.option("--bundle", "bundle", type=_FILE, help="The container (runc) bundle tar.")
@click.option(
    "--evidence-out",
    "evidence_out",
    type=_FILE,
    help="Save the evidence received (binary oak.attestation.v1.Evidence).",
)
@click.option(
    "--logs-file",
    "logs_file",
    type=_FILE,
    help="Append every OTLP log record received as a JSON line to this file.",
)
@click.option(
    "--metrics-file",
    "metrics_file",
    type=_FILE,
    help="Keep the latest OTLP metric values in this JSON file (rewritten after each "
    "export; SIGUSR1 prints them).",
)
@click.option(
    "--vmm",
    type=click.Choice(["none", "qemu"]),
    default="none",
    show_default=True,
    help="qemu: boot the system image in a QEMU guest (insecure mode) against this launcher.",
)
@click.option(
    "--accel",
    type=click.Choice(["auto", "kvm", "tcg"]),
    default="auto",
    show_default=True,
    help="With --vmm qemu: auto = KVM when a probe guest really boots, else TCG.",
)
@click.option(
    "--console-log",
    type=_FILE,
    help="With --vmm qemu: the guest's serial console log [default: in the VM's temporary"
    " directory, removed at exit].",
)
@click.option(
    "--keep-vm-dir",
    is_flag=True,
    help="With --vmm qemu: keep the VM's /tmp/hats-vm-* directory (console log, QMP socket).",
)
@click.option(
    "--kernel", type=_FILE, help="With --vmm qemu: kernel [default: Debian's cloud kernel]."
)
@click.option(
    "--tee-certificate",
    type=_FILE,
    help="SEV-SNP: the VCEK (DER or PEM) handed out as tee_certificate, unchanged.",
)
@click.option(
    "--vcek-cache",
    type=click.Path(file_okay=False, path_type=Path),
    help="SEV-SNP: a VCEK cache in AMD KDS layout (vcek/v1/<Product>/<hwid>/<query>).",
)
@click.option("--chip-id", help="With --vcek-cache: the host's chip id (hex).")
@click.option(
    "--tcb", help="With --vcek-cache: the reported TCB, bl/tee/snp/ucode[ (Turin: fmc/…)]."
)
@click.option("--initrd", type=_FILE, help="With --vmm qemu: initramfs [default: hats stage1's].")
@click.option(
    "--stage0",
    type=_FILE,
    help="With --vmm qemu: Oak's stage0_bin, booted with -bios (QEMU >= 8) [default: the"
    " system bundle's stage0_bin, if it has one; else no stage0, a simulated root].",
)
@click.option("--vm-cpus", type=click.IntRange(1, 64), help="With --vmm qemu: vCPUs [default: 2].")
@click.option(
    "--vm-memory-kb", type=click.IntRange(min=262144), help="With --vmm qemu: RAM [default: 2 GiB]."
)
@stream_limit_options(
    PROXY_LIMITS, what="VerifyReport stream", session_help=" (the TVS call included)"
)
def serve_command(
    launcher_config_path: Path | None,
    tvs_addresses: str,
    tvs_authentication_key: str,
    private_key_wrapping_keys: str,
    use_tls: bool,
    tls_root_certs: Path | None,
    tvs_access_token: str,
    listen: str | None,
    limits: StreamLimits,
    system_image: Path | None,
    system_bundle: Path | None,
    bundle: Path | None,
    evidence_out: Path | None,
    logs_file: Path | None,
    metrics_file: Path | None,
    vmm: str,
    accel: str,
    console_log: Path | None,
    kernel: Path | None,
    initrd: Path | None,
    vm_cpus: int | None,
    vm_memory_kb: int | None,
    tee_certificate: Path | None = None,
    vcek_cache: Path | None = None,
    chip_id: str | None = None,
    tcb: str | None = None,
    keep_vm_dir: bool = False,
    stage0: Path | None = None,
) -> None:
    """Serve the launcher's gRPC services until SIGINT/SIGTERM.

    With --vmm qemu it also boots the guest (hats.vm) and stops when
    QEMU exits; on SIGINT/SIGTERM it first powers the guest off (ACPI power
    button, then kill after two minutes).

    \b
    Examples:
      HATS_TVS_AUTHENTICATION_KEY=HEX hats launcher serve --tvs_addresses unix:/tmp/tvs.sock \\
          --system-image image.tar.xz --bundle bundle.tar --vmm qemu --console-log console.log
      hats launcher serve --launcher_config_path launcher_config.txtpb --listen 127.0.0.1:8080
    """
    vm_only = [
        name
        for name, given in (
            ("--console-log", console_log is not None),
            ("--kernel", kernel is not None),
            ("--initrd", initrd is not None),
            ("--vm-cpus", vm_cpus is not None),
            ("--vm-memory-kb", vm_memory_kb is not None),
            ("--keep-vm-dir", keep_vm_dir),
            ("--stage0", stage0 is not None),
        )
        if given
    ]
    if vm_only and vmm != "qemu":
        raise click.UsageError(f"{', '.join(vm_only)} need --vmm qemu (there is no VM to apply to)")
    config = None
    if launcher_config_path is not None:
        config = load_launcher_config(launcher_config_path)
    elif DEFAULT_CONFIG_PATH.is_file() and system_image is None and system_bundle is None:
        config = load_launcher_config(DEFAULT_CONFIG_PATH)

    vcek = _tee_certificate(config, tee_certificate, vcek_cache, chip_id, tcb)
    metadata = build_metadata(tvs_authentication_key, private_key_wrapping_keys, vcek)
    root_certificates = None
    if tls_root_certs is not None:
        if not use_tls:
            raise LauncherFlagError("--tls_root_certs needs --use_tls")
        try:
            root_certificates = tls_root_certs.read_bytes()
        except OSError as exc:
            raise LauncherFlagError(f"{tls_root_certs}: cannot read: {exc.strerror}") from None
    credentials = tvs_channel_credentials(use_tls, root_certificates, tvs_access_token or None)
    addresses = split_tvs_addresses(tvs_addresses)
    log_to_stderr("hats.launcher", "hats launcher")  # refused or timed-out streams
    if listen is not None:
        _warn_if_shared(listen)

    vm = None
    if vmm == "qemu":
        from hats.vm.launch import options_from_config, relay_target

        if listen is not None:
            relay_target(listen)  # the guest reaches the launcher over TCP or unix only
        vm = options_from_config(
            config,
            accel=accel,
            console_log=console_log,
            kernel=kernel,
            initrd=initrd,
            num_cpus=vm_cpus,
            ram_size_kb=vm_memory_kb,
            keep_workdir=keep_vm_dir or None,
            stage0=stage0,
        )
    images = resolve_images(
        config, system_image=system_image, system_bundle=system_bundle, container_bundle=bundle
    )
    if vm is not None and images.system_image is None:
        images.cleanup()
        raise LauncherFlagError(
            "--vmm qemu: no system image to boot; give --system-image, --system-bundle or a"
            " --launcher_config_path with hats_system_bundle"
        )
    private_dir = None
    firmware = None
    try:
        bundle_stage0 = images.system_bundle is not None and (
            "stage0_bin" in images.system_bundle.members
        )
        if vm is not None and vm.stage0 is None and bundle_stage0:  # the bundle's stage0 boots
            from dataclasses import replace

            from hats.launcher.config import open_system_bundle

            assert images.system_bundle is not None
            firmware = open_system_bundle(images.system_bundle.source, ("stage0_bin",))
            vm = replace(vm, stage0=firmware.files["stage0_bin"])
        if listen is None:
            private_dir = Path(tempfile.mkdtemp(prefix="hats-launcher-"))  # mode 0700
            listen = f"unix:{private_dir / 'launcher.sock'}"
        logs = JsonLinesFile(logs_file) if logs_file is not None else None
        try:
            _run(
                listen,
                images,
                metadata,
                addresses,
                credentials,
                evidence_out,
                _Telemetry(logs, metrics_file),
                vm,
                limits,
            )
        finally:
            if logs is not None:
                logs.close()
    finally:
        images.cleanup()
        if firmware is not None:
            firmware.cleanup()
        if private_dir is not None:
            shutil.rmtree(private_dir, ignore_errors=True)


def _tee_certificate(
    config: launcher_config_pb2.LauncherConfig | None,
    tee_certificate: Path | None,
    vcek_cache: Path | None,
    chip_id: str | None,
    tcb: str | None,
) -> bytes:
    """The VCEK for ``FetchOrchestratorMetadata`` (upstream-facts F5): a SEV-SNP launch
    needs one (from --tee-certificate or --vcek-cache); other CVM types send none."""
    from hats.launcher.vcek import VcekError, find_in_cache, read_vcek_file

    if tee_certificate is not None and vcek_cache is not None:
        raise VcekError("--tee-certificate and --vcek-cache are mutually exclusive")
    if vcek_cache is None and (chip_id is not None or tcb is not None):
        raise VcekError("--chip-id and --tcb need --vcek-cache")
    sevsnp = config is not None and config.cvm_config.cvm_type == launcher_config_pb2.CVMTYPE_SEVSNP
    if not sevsnp:
        if tee_certificate is not None or vcek_cache is not None:
            _say(
                "hats launcher: warning: the VCEK is not handed out: cvm_type is not"
                " CVMTYPE_SEVSNP (as the reference, tee_certificate stays empty)",
                err=True,
            )
        return b""
    if tee_certificate is not None:
        return read_vcek_file(tee_certificate)
    if vcek_cache is not None:
        return find_in_cache(vcek_cache, product=None, chip_id=chip_id, tcb=tcb)
    raise VcekError(
        "cvm_type CVMTYPE_SEVSNP: no VCEK for tee_certificate; give --tee-certificate FILE"
        " or --vcek-cache DIR"
    )


def _warn_if_shared(listen: str) -> None:
    """Say on stderr when other users may reach a launcher listening on ``listen``."""
    kind = parse_address(listen).kind
    if kind == "tcp":
        _say(
            f"hats launcher: WARNING: listening on TCP {listen}: any local user (and "
            "anyone on its network) can fetch the orchestrator's TVS authentication "
            "key; without --listen the launcher uses a private unix socket",
            err=True,
        )
    elif kind == "vsock":
        _say(
            f"hats launcher: warning: listening on {listen}: with vsock loopback any "
            "local user can fetch the orchestrator's TVS authentication key",
            err=True,
        )


class _Telemetry:
    """The OTLP sinks of one ``serve``: the logs file and the metrics file."""

    def __init__(self, logs: JsonLinesFile | None, metrics_file: Path | None) -> None:
        self.logs = logs
        self.metrics_file = metrics_file
        self.store = MetricsStore()
        self._lock = threading.Lock()
        self._failing = False

    def save_metrics(self, store: MetricsStore) -> None:
        """Rewrite the metrics file (an error is said once until a write works)."""
        if self.metrics_file is None:
            return
        with self._lock:
            try:
                write_metrics_file(self.metrics_file, store.snapshot())
            except TelemetryFileError as exc:
                if not self._failing:
                    _say(f"hats launcher: metrics file: {exc}", err=True)
                self._failing = True
                return
            self._failing = False

    def print_metrics(self) -> None:
        for line in format_metrics(self.store.snapshot()):
            _say(line)


def _run(
    listen: str,
    images: LauncherImages,
    metadata: launcher_pb2.FetchOrchestratorMetadataResponse,
    addresses: list[str],
    credentials: grpc.ChannelCredentials | None,
    evidence_out: Path | None,
    telemetry: _Telemetry,
    vm: VmOptions | None = None,
    limits: StreamLimits = PROXY_LIMITS,
) -> None:
    def on_evidence(evidence: evidence_pb2.Evidence) -> None:
        data = evidence.SerializeToString()
        if evidence_out is None:
            _say(f"received attestation evidence ({len(data)} bytes)")
            return
        try:
            write_bytes_atomic(evidence_out, data)
        except HatsError as exc:
            _say(f"hats launcher: cannot save the evidence: {exc}", err=True)
            return
        _say(f"received attestation evidence ({len(data)} bytes), saved to {evidence_out}")

    oak = OakLauncher(
        images.system_image,
        images.container_bundle,
        on_evidence=on_evidence,
        on_app_ready=lambda: _say("app ready"),
    )
    channels = make_tvs_channels(addresses, credentials)
    hats = HatsLauncherService(metadata, channels, limits)
    logs = LogsService(_say, telemetry.logs, on_error=lambda line: _say(line, err=True))
    metrics = MetricsService(telemetry.store, on_update=telemetry.save_metrics)
    if images.system_image is None:
        _say("hats launcher: no system image configured", err=True)
    if images.container_bundle is None:
        _say("hats launcher: no container bundle configured", err=True)

    stop = threading.Event()
    show_metrics = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGUSR1:
            show_metrics.set()
        else:
            stop.set()

    previous = {
        sig: signal.signal(sig, on_signal)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
    }
    guest: _Guest | None = None
    try:
        server, address = start_server(listen, oak=oak, hats=hats, logs=logs, metrics=metrics)
        try:
            _say(f"listening on {address}")
            if vm is not None:
                guest = _Guest(vm, str(address), stop)
            while not stop.wait(0.2):
                if show_metrics.is_set():
                    show_metrics.clear()
                    telemetry.print_metrics()
            if guest is not None:
                # Power the guest off while the services (logs!) still run.
                guest.thread.join()
        finally:
            server.stop(grace=1.0).wait()
            for channel in channels.values():
                channel.close()
            telemetry.save_metrics(telemetry.store)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _say("stopped")
    if guest is not None and guest.error is not None:
        raise guest.error


class _Guest:
    """The guest, booted in a thread that sets ``stop`` when QEMU is gone.

    A failure to boot (no kernel, no QEMU, …) stops the launcher and is
    raised by :func:`_run` once the services are down: one line, exit 1.
    """

    def __init__(self, vm: VmOptions, address: str, stop: threading.Event) -> None:
        self.error: HatsError | None = None
        self.thread = threading.Thread(
            target=self._run, args=(vm, address, stop), name="vm", daemon=True
        )
        self.thread.start()

    def _run(self, vm: VmOptions, address: str, stop: threading.Event) -> None:
        from hats.vm.launch import serve_with_vm

        try:
            serve_with_vm(vm, address, stop, _say)
        except HatsError as exc:
            self.error = exc
        finally:
            stop.set()


@launcher_group.group("vcek-cache")
def vcek_cache_group() -> None:
    """A VCEK cache in AMD KDS layout, filled offline (for --vcek-cache)."""


@vcek_cache_group.command("add")
@click.argument("cache", type=click.Path(file_okay=False, path_type=Path))
@click.argument("vcek", nargs=-1, required=True, type=_FILE)
def vcek_cache_add(cache: Path, vcek: tuple[Path, ...]) -> None:
    """Store each VCEK certificate in CACHE under vcek/v1/<Product>/<hwid>/<TCB query>.

    \b
    Example:
      hats launcher vcek-cache add ~/.cache/vcek vcek_genoa.crt
    """
    from hats.launcher.vcek import add_to_cache

    for path in vcek:
        _say(f"{path} -> {add_to_cache(cache, path)}")


@launcher_group.command("metrics")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def metrics_command(path: Path) -> None:
    """Print the metrics file written by serve --metrics-file, one series a line.

    \b
    Example:
      hats launcher metrics cvm-metrics.json
    """
    for line in format_metrics(read_metrics_file(path)):
        click.echo(line)


#: Where the dry run says the bundle's files are (the reference extracts them to a temp dir).
BUNDLE_DIR = "BUNDLE_DIR"


@launcher_group.command("qemu-command", epilog=FLAG_RULE)
@click.option(
    "--launcher_config_path",
    "--launcher-config-path",
    "launcher_config_path",
    type=_FILE,
    default=str(DEFAULT_CONFIG_PATH),
    show_default=True,
    help="pcit.client.LauncherConfig text proto, e.g. examples/launcher/inbound_only.txtpb"
    + _REFERENCE,
)
@click.option(
    "--cid",
    type=click.IntRange(3, 2**32 - 2),
    default=None,
    help="Guest CID when the config has no virtio_guest_cid, e.g. --cid 38291 [default: random"
    " in [1024, 1000000), as the reference].",
)
@click.option(
    "--launcher-vsock-port",
    type=click.IntRange(1, 2**32 - 1),
    default=None,
    help="The launcher's vsock port in --launcher-addr, e.g. --launcher-vsock-port 41337"
    " [default: random in [1024, 65536); the reference's changes each run].",
)
@click.option(
    "--qemu_use_microvm",
    "--qemu-use-microvm",
    "qemu_use_microvm",
    is_flag=True,
    help="SEV-SNP: microvm instead of q35, e.g. --qemu_use_microvm" + _REFERENCE,
)
@click.option(
    "--json", "as_json", is_flag=True, help='One JSON document: {"argv", "command", "script"}.'
)
def qemu_command(
    launcher_config_path: Path,
    cid: int | None,
    launcher_vsock_port: int | None,
    qemu_use_microvm: bool,
    as_json: bool,
) -> None:
    """Print the reference launcher's QEMU argv for a config, one word a line; start nothing.

    A dry run to diff against a running reference launcher's command. The
    bundle's files are shown as BUNDLE_DIR/stage0_bin, BUNDLE_DIR/kernel_bin and
    BUNDLE_DIR/initrd.cpio.xz (the reference extracts them to a temporary
    directory); a virtual_bridge script as /tmp/qemu-if-XXXXXX. The tap number
    and MAC byte are random, as in the reference.

    \b
    Example:
      hats launcher qemu-command --launcher_config_path examples/launcher/inbound_only.txtpb \\
          --cid 38291 --launcher-vsock-port 41337 --json
    """
    import json
    import secrets
    from dataclasses import replace

    from hats.launcher import qemu_argv

    config = load_launcher_config(launcher_config_path)
    randomness = qemu_argv.draw(secrets.randbelow)
    if cid is not None:
        randomness = replace(randomness, cid=cid)
    if launcher_vsock_port is None:
        launcher_vsock_port = 1024 + secrets.randbelow(65536 - 1024)
    bundle = qemu_argv.BundlePaths(
        stage0=f"{BUNDLE_DIR}/stage0_bin",
        kernel=f"{BUNDLE_DIR}/kernel_bin",
        initrd=f"{BUNDLE_DIR}/initrd.cpio.xz",
    )
    command = qemu_argv.qemu_argv(
        config,
        bundle,
        launcher_vsock_port=launcher_vsock_port,
        randomness=randomness,
        use_microvm=qemu_use_microvm,
    )
    if as_json:
        document = {"argv": list(command.argv), "command": command.command}
        click.echo(json.dumps({**document, "script": command.script}, indent=2))
        return
    for word in command.argv:
        click.echo(word)
