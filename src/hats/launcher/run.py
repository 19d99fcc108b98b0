"""The lifecycle of ``hats launcher serve``: from its settings to a clean stop.

:func:`serve` is the whole command behind the click options
(:mod:`hats.launcher.cli`). The order:

1. the config (``--launcher_config_path``, else ``./launcher_config.txtpb`` when
   no image is given); with ``--vmm qemu`` and ``CVMTYPE_SEVSNP`` the hardware
   is checked first (:func:`hats.launcher.reference.check_sevsnp`: one line
   naming what is missing), then the VCEK (:func:`tee_certificate`);
2. the TVS channels' settings, the stderr log handler, the shared-listener
   warning (:func:`warn_if_shared`);
3. with ``--vmm qemu``, the guest (:func:`guest_plan`): the system bundle's
   ``stage0_bin``, ``kernel_bin`` and ``initrd.cpio.xz`` unless flags give
   them; reference or insecure mode, vsock or the guest network
   (:mod:`hats.launcher.reference`); each decision is said in one line right
   after ``listening on``, and with ``--guest-kernel-arg`` (checked first:
   :mod:`hats.vm.kernelargs`) that the guest's kernel command line is not the
   reference's, so the policy must be made for it;
4. the services on one gRPC server (:func:`run`): ``listening on ADDR`` on
   stdout; SIGINT/SIGTERM set ``stop``, SIGUSR1 prints the metrics; the guest
   runs in a thread (:class:`Guest`) that sets ``stop`` when QEMU is gone. At
   stop the guest is powered off while the services (its logs) still run, then
   the server stops, the metrics file is written, the signal handlers are put
   back and ``stopped`` is said; a guest's boot failure is raised last (one
   line, exit 1);
5. the temporary files (extracted bundle members, the private socket
   directory) are removed whatever happened.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click
import grpc

from hats.cliopts import log_to_stderr
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
    write_metrics_file,
)
from hats.pb.oak.attestation.v1 import evidence_pb2
from hats.pb.pcit.client import launcher_config_pb2, launcher_pb2
from hats.streamlimits import StreamLimits
from hats.transport import parse_address

if TYPE_CHECKING:  # hats.vm and the reference mode are imported only with --vmm qemu
    from hats.launcher.reference import ReferencePlan
    from hats.vm.bridge import VirtualBridge
    from hats.vm.launch import HostSide, VmOptions

_print_lock = threading.Lock()
Say = Callable[..., None]

#: The system bundle's QEMU files (suffixes) and the :class:`VmOptions` field each fills.
BUNDLE_GUEST_FILES = (
    ("stage0_bin", "stage0"),
    ("kernel_bin", "kernel"),
    ("initrd.cpio.xz", "initrd"),
)
SEV_DEVICE = Path("/dev/sev")


def say(line: str, err: bool = False) -> None:
    """One line on stdout (or stderr), flushed; lines from threads never interleave."""
    with _print_lock:
        click.echo(line, err=err)
        (sys.stderr if err else sys.stdout).flush()


@dataclass(frozen=True)
class ServeSettings:
    """The options of ``hats launcher serve`` (see its ``--help``)."""

    launcher_config_path: Path | None = None
    tvs_addresses: str = ""
    tvs_authentication_key: str = ""
    private_key_wrapping_keys: str = ""
    use_tls: bool = False
    tls_root_certs: Path | None = None
    tvs_access_token: str = ""
    listen: str | None = None
    limits: StreamLimits = PROXY_LIMITS
    system_image: Path | None = None
    system_bundle: Path | None = None
    bundle: Path | None = None
    evidence_out: Path | None = None
    logs_file: Path | None = None
    metrics_file: Path | None = None
    vmm: str = "none"
    accel: str = "auto"
    console_log: Path | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    vm_cpus: int | None = None
    vm_memory_kb: int | None = None
    tee_certificate: Path | None = None
    vcek_cache: Path | None = None
    chip_id: str | None = None
    tcb: str | None = None
    keep_vm_dir: bool = False
    stage0: Path | None = None
    guest_kernel_args: tuple[str, ...] = ()
    """``--guest-kernel-arg``: kernel arguments added before the guest command line's ``--``."""


def is_sevsnp(config: launcher_config_pb2.LauncherConfig | None) -> bool:
    return config is not None and config.cvm_config.cvm_type == launcher_config_pb2.CVMTYPE_SEVSNP


def serve(settings: ServeSettings) -> None:
    """``hats launcher serve`` (see the module docstring for the order)."""
    config = None
    if settings.launcher_config_path is not None:
        config = load_launcher_config(settings.launcher_config_path)
    elif (
        DEFAULT_CONFIG_PATH.is_file()
        and settings.system_image is None
        and settings.system_bundle is None
    ):
        config = load_launcher_config(DEFAULT_CONFIG_PATH)
    if settings.vmm == "qemu" and is_sevsnp(config):
        from hats.launcher.reference import check_sevsnp
        from hats.vm.qemu import KVM

        check_sevsnp(sev=SEV_DEVICE.exists(), kvm=KVM.exists(), accel=settings.accel)
    vcek = tee_certificate(
        config, settings.tee_certificate, settings.vcek_cache, settings.chip_id, settings.tcb
    )
    metadata = build_metadata(
        settings.tvs_authentication_key, settings.private_key_wrapping_keys, vcek
    )
    credentials = _credentials(settings)
    addresses = split_tvs_addresses(settings.tvs_addresses)
    log_to_stderr("hats.launcher", "hats launcher")  # refused or timed-out streams
    if settings.listen is not None:
        warn_if_shared(settings.listen)
    vm = _vm_options(settings, config) if settings.vmm == "qemu" else None
    images = resolve_images(
        config,
        system_image=settings.system_image,
        system_bundle=settings.system_bundle,
        container_bundle=settings.bundle,
        also_extract=()
        if vm is None
        else [suffix for suffix, name in BUNDLE_GUEST_FILES if getattr(vm, name) is None],
    )
    if vm is not None and images.system_image is None:
        images.cleanup()
        raise LauncherFlagError(
            "--vmm qemu: no system image to boot; give --system-image, --system-bundle or a"
            " --launcher_config_path with hats_system_bundle"
        )
    private_dir = None
    try:
        listen = settings.listen
        start_lines: list[str] = []
        if vm is not None:
            vm = _bundle_guest_files(images, vm)
            vm, listen, start_lines = guest_plan(config, vm, images, settings, listen)
        if listen is None:
            private_dir = Path(tempfile.mkdtemp(prefix="hats-launcher-"))  # mode 0700
            listen = f"unix:{private_dir / 'launcher.sock'}"
        logs = JsonLinesFile(settings.logs_file) if settings.logs_file is not None else None
        try:
            run(
                listen,
                images,
                metadata,
                addresses,
                credentials,
                settings.evidence_out,
                Telemetry(logs, settings.metrics_file),
                vm,
                settings.limits,
                start_lines,
            )
        finally:
            if logs is not None:
                logs.close()
    finally:
        images.cleanup()
        if private_dir is not None:
            shutil.rmtree(private_dir, ignore_errors=True)


def _credentials(settings: ServeSettings) -> grpc.ChannelCredentials | None:
    root_certificates = None
    if settings.tls_root_certs is not None:
        if not settings.use_tls:
            raise LauncherFlagError("--tls_root_certs needs --use_tls")
        try:
            root_certificates = settings.tls_root_certs.read_bytes()
        except OSError as exc:
            raise LauncherFlagError(
                f"{settings.tls_root_certs}: cannot read: {exc.strerror}"
            ) from None
    return tvs_channel_credentials(
        settings.use_tls, root_certificates, settings.tvs_access_token or None
    )


def _vm_options(
    settings: ServeSettings, config: launcher_config_pb2.LauncherConfig | None
) -> VmOptions:
    from hats.vm.kernelargs import check_kernel_args
    from hats.vm.launch import options_from_config, relay_target

    if settings.listen is not None and parse_address(settings.listen).kind != "vsock":
        relay_target(settings.listen)  # the guest reaches the launcher over TCP or unix only
    return options_from_config(
        config,
        accel=settings.accel,
        console_log=settings.console_log,
        kernel=settings.kernel,
        initrd=settings.initrd,
        num_cpus=settings.vm_cpus,
        ram_size_kb=settings.vm_memory_kb,
        keep_workdir=settings.keep_vm_dir or None,
        stage0=settings.stage0,
        kernel_args=check_kernel_args(settings.guest_kernel_args) or None,
    )


def bundle_guest_fields(members: dict[str, str], vm: VmOptions) -> dict[str, str]:
    """``{suffix: VmOptions field}`` of the bundle's QEMU files to use: those it has and no
    flag gave (pure)."""
    return {
        suffix: name
        for suffix, name in BUNDLE_GUEST_FILES
        if suffix in members and getattr(vm, name) is None
    }


def _bundle_guest_files(images: LauncherImages, vm: VmOptions) -> VmOptions:
    """``vm`` with the system bundle's stage0, kernel and initrd that no flag overrides
    (extracted with the system image, in the same pass: :func:`resolve_images`)."""
    if images.system_bundle is None:
        return vm
    wanted = bundle_guest_fields(images.system_bundle.members, vm)
    given = {name: images.system_bundle.files[suffix] for suffix, name in wanted.items()}
    return replace(vm, **given) if given else vm  # type: ignore[arg-type]


def guest_plan(
    config: launcher_config_pb2.LauncherConfig | None,
    vm: VmOptions,
    images: LauncherImages,
    settings: ServeSettings,
    listen: str | None,
) -> tuple[VmOptions, str | None, list[str]]:
    """Reference or insecure mode for the guest: the options, the listen address, the lines
    to say at start (:mod:`hats.launcher.reference` makes the decisions)."""
    from hats.launcher import qemu_argv, reference
    from hats.vm.kernelargs import kernel_args_line
    from hats.vm.launch import check_listen, relay_target
    from hats.vm.qemu import LAUNCHER_GUEST_ADDR, VHOST_VSOCK, kernel_cmdline

    sevsnp = is_sevsnp(config)
    source = None
    if settings.stage0 is not None:
        source = f"--stage0 {settings.stage0}"
    elif vm.stage0 is not None and images.system_bundle is not None:
        source = f"stage0_bin of {images.system_bundle.source}"
    mode = reference.choose_mode(stage0_source=source, sevsnp=sevsnp)
    cmdline_lines = [kernel_args_line(vm.kernel_args)] if vm.kernel_args else []
    if not mode.reference:
        check_listen(vm, listen)  # TCP or unix; virtual_bridge: TCP on the gateway
        if vm.kernel_args and vm.bridge is None:  # the line within the kernel's limit, now
            # (on a bridge the launcher's address is known at boot, which checks it again)
            kernel_cmdline(
                launcher_addr=LAUNCHER_GUEST_ADDR,
                ramdrive_size_kb=vm.ramdrive_size_kb,
                network_mode=vm.network_mode,
                debug=vm.debug,
                kernel_args=vm.kernel_args,
            )
        return vm, listen, [mode.line, *cmdline_lines]
    vhost_vsock = VHOST_VSOCK.exists()
    port = 1024 + secrets.randbelow(65536 - 1024)
    if vhost_vsock:
        listen = reference.vsock_listen(listen, port)
        port = parse_address(listen).port
    transport = reference.choose_transport(
        vhost_vsock=vhost_vsock, network_mode=vm.network_mode, vsock_port=port
    )
    if vm.bridge is not None and not transport.vsock:
        from hats.vm.bridge import guest_launcher_addr

        guest_launcher_addr(listen or "unix:(private socket)", vm.bridge)  # reachable?
    elif listen is not None and not transport.vsock:
        relay_target(listen)  # e.g. --listen vsock://… without /dev/vhost-vsock
    plan = reference.ReferencePlan(
        config=reference.reference_config(
            config,
            qemu=vm.qemu,
            ram_size_kb=vm.ram_size_kb,
            num_cpus=vm.num_cpus,
            ramdrive_size_kb=vm.ramdrive_size_kb,
            network_mode=vm.network_mode,
            host_proxy_port=vm.host_proxy_port,
        ),
        stage0=str(vm.stage0),
        transport=transport,
        randomness=qemu_argv.draw(secrets.randbelow),
        kernel_args=vm.kernel_args,
    )
    plan.command("kernel", "initrd")  # the -append string within the kernel's limit, now
    if sevsnp:
        vm = replace(vm, accel="kvm")
    # The reference argv's own ifup script joins the tap to the bridge (boot's is not used).
    command = ReferenceArgv(plan, bridge=vm.bridge)
    lines = [mode.line, transport.line, *cmdline_lines]
    return replace(vm, command=command, bridge=None), listen, lines


class ReferenceArgv:
    """The reference argv of a plan, completed at boot with what the guest thread resolved."""

    def __init__(
        self,
        plan: ReferencePlan,
        python: str = sys.executable,
        bridge: VirtualBridge | None = None,
    ) -> None:
        self.plan = plan
        self.python = python
        self.bridge = bridge

    def __call__(self, host: HostSide) -> list[str]:
        from hats.launcher.reference import HostPlumbing, adapt_argv
        from hats.vm.launch import relay_target
        from hats.vm.qemu import LAUNCHER_GUEST_ADDR, relay_command

        script = host.work / "qemu-if"
        command = self.plan.command(str(host.kernel), str(host.initrd), script_path=str(script))
        if command.script is not None:
            script.write_text(command.script)
            script.chmod(0o700)
        relay = ""
        launcher_addr = LAUNCHER_GUEST_ADDR
        if self.bridge is not None:
            from hats.vm.bridge import guest_launcher_addr

            launcher_addr = guest_launcher_addr(host.launcher_address, self.bridge)
        elif not self.plan.transport.vsock:
            relay = relay_command(self.python, relay_target(host.launcher_address))
        plumbing = HostPlumbing(
            accel=host.accel,
            vsock=self.plan.transport.vsock,
            relay_command=relay,
            launcher_addr=launcher_addr,
            console_log=str(host.console_log),
            qmp_socket=str(host.qmp_socket),
        )
        return adapt_argv(command.argv, plumbing)


def tee_certificate(
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
    if not is_sevsnp(config):
        if tee_certificate is not None or vcek_cache is not None:
            say(
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


def warn_if_shared(listen: str) -> None:
    """Say on stderr when other users may reach a launcher listening on ``listen``."""
    kind = parse_address(listen).kind
    if kind == "tcp":
        say(
            f"hats launcher: WARNING: listening on TCP {listen}: any local user (and "
            "anyone on its network) can fetch the orchestrator's TVS authentication "
            "key; without --listen the launcher uses a private unix socket",
            err=True,
        )
    elif kind == "vsock":
        say(
            f"hats launcher: warning: listening on {listen}: with vsock loopback any "
            "local user can fetch the orchestrator's TVS authentication key",
            err=True,
        )


class Telemetry:
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
                    say(f"hats launcher: metrics file: {exc}", err=True)
                self._failing = True
                return
            self._failing = False

    def print_metrics(self) -> None:
        for line in format_metrics(self.store.snapshot()):
            say(line)


def run(
    listen: str,
    images: LauncherImages,
    metadata: launcher_pb2.FetchOrchestratorMetadataResponse,
    addresses: list[str],
    credentials: grpc.ChannelCredentials | None,
    evidence_out: Path | None,
    telemetry: Telemetry,
    vm: VmOptions | None = None,
    limits: StreamLimits = PROXY_LIMITS,
    start_lines: list[str] | None = None,
) -> None:
    """Serve until a stop signal or the guest's end (module docstring, step 4)."""

    def on_evidence(evidence: evidence_pb2.Evidence) -> None:
        data = evidence.SerializeToString()
        if evidence_out is None:
            say(f"received attestation evidence ({len(data)} bytes)")
            return
        try:
            write_bytes_atomic(evidence_out, data)
        except HatsError as exc:
            say(f"hats launcher: cannot save the evidence: {exc}", err=True)
            return
        say(f"received attestation evidence ({len(data)} bytes), saved to {evidence_out}")

    oak = OakLauncher(
        images.system_image,
        images.container_bundle,
        on_evidence=on_evidence,
        on_app_ready=lambda: say("app ready"),
    )
    channels = make_tvs_channels(addresses, credentials)
    hats = HatsLauncherService(metadata, channels, limits)
    logs = LogsService(say, telemetry.logs, on_error=lambda line: say(line, err=True))
    metrics = MetricsService(telemetry.store, on_update=telemetry.save_metrics)
    if images.system_image is None:
        say("hats launcher: no system image configured", err=True)
    if images.container_bundle is None:
        say("hats launcher: no container bundle configured", err=True)

    stop = threading.Event()
    show_metrics = threading.Event()
    previous = _install_signals(stop, show_metrics)
    guest: Guest | None = None
    try:
        server, address = start_server(listen, oak=oak, hats=hats, logs=logs, metrics=metrics)
        try:
            say(f"listening on {address}")
            for line in start_lines or ():
                say(line)
            if vm is not None:
                guest = Guest(vm, str(address), stop)
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
    say("stopped")
    if guest is not None and guest.error is not None:
        raise guest.error


def _install_signals(
    stop: threading.Event, show_metrics: threading.Event
) -> dict[signal.Signals, signal._HANDLER]:
    """SIGINT/SIGTERM set ``stop``, SIGUSR1 sets ``show_metrics``; the previous handlers."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGUSR1:
            show_metrics.set()
        else:
            stop.set()

    return {
        sig: signal.signal(sig, on_signal)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
    }


class Guest:
    """The guest, booted in a thread that sets ``stop`` when QEMU is gone.

    A failure to boot (no kernel, no QEMU, …) stops the launcher and is
    raised by :func:`run` once the services are down: one line, exit 1.
    """

    def __init__(
        self,
        vm: VmOptions,
        address: str,
        stop: threading.Event,
        serve_with_vm: Callable[..., object] | None = None,
    ) -> None:
        if serve_with_vm is None:
            from hats.vm.launch import serve_with_vm as default

            serve_with_vm = default
        self._serve_with_vm: Callable[..., object] = serve_with_vm
        self.error: HatsError | None = None
        self.thread = threading.Thread(
            target=self._run, args=(vm, address, stop), name="vm", daemon=True
        )
        self.thread.start()

    def _run(self, vm: VmOptions, address: str, stop: threading.Event) -> None:
        try:
            self._serve_with_vm(vm, address, stop, say)
        except HatsError as exc:
            self.error = exc
        finally:
            stop.set()
