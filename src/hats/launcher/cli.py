"""``hats launcher``: option parsing for ``serve``, ``qemu-command``, ``metrics``, ``vcek-cache``.

The flags of ``serve`` keep the reference launcher's spellings
(``--launcher_config_path``, ``--tvs_addresses``, ``--tvs_authentication_key``,
``--private_key_wrapping_keys``, ``--use_tls``, ``--tvs_access_token``); the
rest are ours. ``serve`` checks which flags go together and makes one call to
:func:`hats.launcher.run.serve`, which owns the lifecycle (config, guest,
services, signals, telemetry, shutdown) and who may reach the listener. When
ready it prints ``listening on ADDR`` on stdout; SIGINT/SIGTERM stop it
cleanly. Key material and the access token are never printed.

OTLP: log records are printed as ``<unit>: <body>`` (the reference's
console lines) and, with ``--logs-file``, appended as JSON lines; metrics are
kept (latest value per series), written to ``--metrics-file`` after every
export and at exit, and printed on SIGUSR1. ``hats launcher metrics FILE``
pretty-prints a metrics file.
"""

from __future__ import annotations

from pathlib import Path

import click

from hats.cliopts import stream_limit_options
from hats.launcher.config import DEFAULT_CONFIG_PATH, load_launcher_config
from hats.launcher.services import PROXY_LIMITS
from hats.launcher.telemetry import format_metrics, read_metrics_file
from hats.streamlimits import StreamLimits


@click.group("launcher")
def launcher_group() -> None:
    """The host side of a HATs CVM: Oak Launcher, LauncherService, OTLP logs and metrics."""


_FILE = click.Path(dir_okay=False, path_type=Path)
_REFERENCE = " (reference flag)."
_GUEST_KERNEL_ARG_HELP = (
    "Add ARG to the guest's kernel command line, before the ' -- ' of stage1's flags"
    " (repeatable; e.g. ipv6.disable=1). Opt-in: the line is then not the reference's."
)


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
    help="qemu: boot the system image in a QEMU guest against this launcher: the reference"
    " launcher's QEMU command line with a stage0 or a SEV-SNP config, else our insecure boot.",
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
    help="With --vmm qemu: Oak's stage0_bin, booted with -bios (QEMU >= 8) in reference mode"
    " [default: the system bundle's stage0_bin, if it has one; else no stage0: the insecure"
    " boot, a simulated root].",
)
@click.option("--vm-cpus", type=click.IntRange(1, 64), help="With --vmm qemu: vCPUs [default: 2].")
@click.option(
    "--guest-kernel-arg",
    "guest_kernel_args",
    multiple=True,
    metavar="ARG",
    help=_GUEST_KERNEL_ARG_HELP + " With --vmm qemu; the appraisal policy must be made for the"
    " resulting command line (stage1 records it, stage0 measures it).",
)
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
    guest_kernel_args: tuple[str, ...] = (),
) -> None:
    """Serve the launcher's gRPC services until SIGINT/SIGTERM.

    With --vmm qemu it also boots the guest (hats.vm) and stops when
    QEMU exits; on SIGINT/SIGTERM it first powers the guest off (ACPI power
    button, then kill after two minutes). With a stage0 (--stage0 or the
    system bundle's) or a SEV-SNP config it runs the reference launcher's
    QEMU command line (reference mode), else our insecure boot; it says which
    in one line, and what it changed for this host (TCG, no vsock).

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
            ("--guest-kernel-arg", bool(guest_kernel_args)),
        )
        if given
    ]
    if vm_only and vmm != "qemu":
        raise click.UsageError(f"{', '.join(vm_only)} need --vmm qemu (there is no VM to apply to)")
    from hats.launcher.run import ServeSettings, serve

    serve(
        ServeSettings(
            launcher_config_path=launcher_config_path,
            tvs_addresses=tvs_addresses,
            tvs_authentication_key=tvs_authentication_key,
            private_key_wrapping_keys=private_key_wrapping_keys,
            use_tls=use_tls,
            tls_root_certs=tls_root_certs,
            tvs_access_token=tvs_access_token,
            listen=listen,
            limits=limits,
            system_image=system_image,
            system_bundle=system_bundle,
            bundle=bundle,
            evidence_out=evidence_out,
            logs_file=logs_file,
            metrics_file=metrics_file,
            vmm=vmm,
            accel=accel,
            console_log=console_log,
            kernel=kernel,
            initrd=initrd,
            vm_cpus=vm_cpus,
            vm_memory_kb=vm_memory_kb,
            tee_certificate=tee_certificate,
            vcek_cache=vcek_cache,
            chip_id=chip_id,
            tcb=tcb,
            keep_vm_dir=keep_vm_dir,
            stage0=stage0,
            guest_kernel_args=tuple(guest_kernel_args),
        )
    )


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
        click.echo(f"{path} -> {add_to_cache(cache, path)}")


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
@click.option(
    "--guest-kernel-arg",
    "guest_kernel_args",
    multiple=True,
    metavar="ARG",
    help=_GUEST_KERNEL_ARG_HELP,
)
def qemu_command(
    launcher_config_path: Path,
    cid: int | None,
    launcher_vsock_port: int | None,
    qemu_use_microvm: bool,
    as_json: bool,
    guest_kernel_args: tuple[str, ...] = (),
) -> None:
    """Print the reference launcher's QEMU argv for a config, one word a line; start nothing.

    A dry run to diff against a running reference launcher's command. The
    bundle's files are shown as BUNDLE_DIR/stage0_bin, BUNDLE_DIR/kernel_bin and
    BUNDLE_DIR/initrd.cpio.xz (the reference extracts them to a temporary
    directory); a virtual_bridge script as /tmp/qemu-if-XXXXXX. The tap number
    and MAC byte are random, as in the reference. With --guest-kernel-arg the
    -append string is not the reference's (said on stderr).

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
        kernel_args=guest_kernel_args,
    )
    if guest_kernel_args:
        from hats.vm.kernelargs import kernel_args_line

        click.echo(kernel_args_line(guest_kernel_args, prefix="hats launcher: "), err=True)
    if as_json:
        document = {"argv": list(command.argv), "command": command.command}
        click.echo(json.dumps({**document, "script": command.script}, indent=2))
        return
    for word in command.argv:
        click.echo(word)
