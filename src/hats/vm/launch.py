"""What ``hats launcher serve --vmm qemu`` adds to the launcher: boot the guest against it.

:func:`boot` resolves the guest's kernel and initramfs (:mod:`hats.vm.assets`),
the accelerator (``auto``: KVM when a probe guest really boots, else TCG —
and says which), the launcher's address as seen from the host (the relay's
target), and starts QEMU (:class:`hats.vm.machine.Machine`). The launcher
keeps serving while the guest runs and powers it off (ACPI button, then
kill) when it is stopped.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hats.pb.pcit.client import launcher_config_pb2
from hats.transport import parse_address
from hats.vm.assets import ensure_guest_assets
from hats.vm.bridge import (
    TapNic,
    VirtualBridge,
    check_host,
    draw_tap,
    guest_launcher_addr,
    tap_nic,
    virtual_bridge,
    write_ifup_script,
)
from hats.vm.machine import Machine
from hats.vm.qemu import (
    QEMU,
    VHOST_VSOCK,
    QemuError,
    VmConfig,
    check_stage0_qemu,
    choose_accel,
    random_cid,
)

Say = Callable[[str], None]


@dataclass(frozen=True)
class VmOptions:
    accel: str = "auto"
    kernel: Path | None = None
    initrd: Path | None = None
    console_log: Path | None = None
    ram_size_kb: int = 2 * 1024 * 1024
    num_cpus: int = 2
    ramdrive_size_kb: int = 1536 * 1024
    network_mode: str = "inbound_only"
    host_proxy_port: int | None = None
    debug: bool = False
    cache_dir: Path | None = None
    qemu: str = QEMU
    stage0: Path | None = None
    """Oak's ``stage0_bin``, booted with ``-bios`` (needs QEMU >= 8)."""
    keep_workdir: bool = False
    """Keep the VM's ``/tmp/hats-vm-*`` directory (QMP socket, default console log) at exit."""
    bridge: VirtualBridge | None = None
    """``virtual_bridge``: a tap on this bridge (:mod:`hats.vm.bridge`) instead of SLIRP."""
    kernel_args: tuple[str, ...] = ()
    """``--guest-kernel-arg``: extra kernel arguments before the command line's ``--``
    (:mod:`hats.vm.kernelargs`; the line is then not the reference's)."""
    command: Callable[[HostSide], list[str]] | None = None
    """Reference mode (:mod:`hats.launcher.reference`): the QEMU argv, made from what
    :func:`boot` resolved, replaces our command line (``stage0`` must be set too)."""


@dataclass(frozen=True)
class HostSide:
    """What :func:`boot` resolved for a reference-mode argv (:attr:`VmOptions.command`)."""

    accel: str
    kernel: Path
    initrd: Path
    launcher_address: str
    """The launcher's bound listen address."""
    console_log: Path
    qmp_socket: Path
    work: Path
    """The VM's private directory (removed at the end unless kept)."""


def accel_line(accel: str, reason: str, reference: bool) -> str:
    """The accelerator line said at boot; in reference mode TCG says what it replaced."""
    line = f"vm: accelerator {accel} ({reason})"
    if reference and accel == "tcg":
        line += ": the reference argv runs with -accel tcg -cpu max in place of -enable-kvm"
        line += " -cpu host"
    return line


def options_from_config(
    config: launcher_config_pb2.LauncherConfig | None, **given: object
) -> VmOptions:
    """:class:`VmOptions` from a ``LauncherConfig``'s ``cvm_config``, then the ``given`` values.

    Rules: ``num_cpus``, ``ram_size_kb``, ``ramdrive_size_kb`` and
    ``vmm_binary`` are taken when non-zero; ``inbound_only`` and
    ``inbound_and_outbound`` set the network mode and the host proxy port;
    ``virtual_bridge`` sets the bridge (refused with the reference's texts when
    a field is missing); ``CVMTYPE_SEVSNP`` is the launcher's reference mode
    (:mod:`hats.launcher.reference`). ``given`` values that are not ``None`` win.
    """
    values: dict[str, object] = {}
    if config is not None and config.HasField("cvm_config"):
        cvm = config.cvm_config
        if cvm.num_cpus:
            values["num_cpus"] = cvm.num_cpus
        if cvm.ram_size_kb:
            values["ram_size_kb"] = cvm.ram_size_kb
        if cvm.ramdrive_size_kb:
            values["ramdrive_size_kb"] = cvm.ramdrive_size_kb
        if cvm.vmm_binary:
            values["qemu"] = cvm.vmm_binary
        mode = cvm.network_config.WhichOneof("network_mode")
        if mode == "virtual_bridge":
            net = cvm.network_config.virtual_bridge
            values["network_mode"] = mode
            values["bridge"] = virtual_bridge(
                net.virtual_bridge_device, net.cvm_ip_addr, net.cvm_gateway_addr
            )
        elif mode is not None:
            values["network_mode"] = mode
            port = getattr(cvm.network_config, mode).host_enclave_app_proxy_port
            if port:
                values["host_proxy_port"] = port
    values.update({key: value for key, value in given.items() if value is not None})
    return VmOptions(**values)  # type: ignore[arg-type]


def relay_target(listen_address: str) -> str:
    """The host address the guest-forward relay connects to (TCP or unix only)."""
    address = parse_address(listen_address)
    if address.kind == "vsock":
        raise QemuError(
            "--vmm qemu: the launcher must listen on TCP or a unix socket "
            "(the guest reaches it through QEMU's user network)"
        )
    if address.kind == "tcp" and address.host in ("0.0.0.0", "::", "[::]"):
        return f"127.0.0.1:{address.port}"
    return address.grpc_target()


def check_listen(options: VmOptions, listen_address: str | None) -> None:
    """Refuse (one line) a launcher address the guest cannot reach, before anything starts.

    SLIRP: TCP or unix (:func:`relay_target`). ``virtual_bridge``: TCP on the
    gateway or a wildcard address (:func:`hats.vm.bridge.guest_launcher_addr`);
    the default private unix socket (``listen_address`` ``None``) is refused.
    """
    if options.bridge is None:
        if listen_address is not None:
            relay_target(listen_address)
        return
    guest_launcher_addr(listen_address or "unix:(private socket)", options.bridge)


def _bridge_nic(options: VmOptions, listen_address: str, say: Say, work: Path) -> TapNic:
    """Check the host, write the reference's ifup script into ``work``; the guest's NIC."""
    assert options.bridge is not None
    check_host(options.bridge)
    script = write_ifup_script(work, options.bridge.device)
    nic = tap_nic(options.bridge, draw_tap(secrets.randbelow), script, listen_address)
    say(
        f"vm: network: {nic.tap} (MAC {nic.mac}) on bridge {options.bridge.device}, guest"
        f" ip={nic.ip}, launcher {nic.launcher_addr} over the bridge (no vsock)"
    )
    return nic


def boot(options: VmOptions, listen_address: str, say: Say, work: Path | None = None) -> Machine:
    """Start the guest; the running :class:`Machine`.

    ``work``: the VM's directory (QMP socket, default console log, the bridge's
    ifup script) [default: a new ``/tmp/hats-vm-*``, the caller's to remove].
    """
    if options.bridge is not None:
        check_listen(options, listen_address)
        target = listen_address  # unused: the guest dials the launcher over the bridge
    else:
        target = relay_target(listen_address) if options.command is None else ""
    if options.kernel is not None and options.initrd is not None:
        kernel, initrd = options.kernel, options.initrd
    else:
        assets = ensure_guest_assets(cache_dir=options.cache_dir, progress=say)
        kernel = options.kernel or assets.kernel
        initrd = options.initrd or assets.initrd
    if options.stage0 is not None:
        major, minor = check_stage0_qemu(options.qemu)
        say(f"vm: firmware: Oak stage0 {options.stage0} (QEMU {major}.{minor})")
    accel, reason = choose_accel(options.accel, kernel, qemu=options.qemu)
    say(accel_line(accel, reason, reference=options.command is not None))
    console = options.console_log
    if work is None:
        work = Path(tempfile.mkdtemp(prefix="hats-vm-"))
    if console is None:
        console = work / "console.log"
    nic = _bridge_nic(options, listen_address, say, work) if options.bridge is not None else None
    config = VmConfig(
        kernel=kernel,
        initrd=initrd,
        launcher_target=target,
        console_log=console,
        qmp_socket=work / "qmp.sock",
        accel=accel,
        ram_size_kb=options.ram_size_kb,
        num_cpus=options.num_cpus,
        ramdrive_size_kb=options.ramdrive_size_kb,
        network_mode=options.network_mode,
        host_proxy_port=options.host_proxy_port,
        vsock_cid=random_cid() if VHOST_VSOCK.exists() else None,
        debug=options.debug,
        qemu=options.qemu,
        bios=options.stage0,
        nic=nic,
        kernel_args=options.kernel_args,
    )
    argv = None
    if options.command is not None:
        host = HostSide(accel, kernel, initrd, listen_address, console, config.qmp_socket, work)
        argv = options.command(host)
    machine = Machine(config, argv)
    machine.start()
    say(f"vm: started (console log {console})")
    return machine


def serve_with_vm(
    options: VmOptions,
    listen_address: str,
    stop: threading.Event,
    say: Say,
    poweroff_timeout: float = 120.0,
) -> int | None:
    """Boot the guest, wait until it exits or ``stop`` is set, then power it off.

    Returns QEMU's exit status (``None`` if it had to be killed). The VM's
    ``/tmp/hats-vm-*`` directory is removed at the end unless
    ``options.keep_workdir`` (then its path is said).
    """
    work = Path(tempfile.mkdtemp(prefix="hats-vm-"))
    try:
        return _serve(options, listen_address, stop, say, poweroff_timeout, work)
    finally:
        if options.keep_workdir:
            say(f"vm: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _serve(
    options: VmOptions,
    listen_address: str,
    stop: threading.Event,
    say: Say,
    poweroff_timeout: float,
    work: Path,
) -> int | None:
    machine = boot(options, listen_address, say, work)
    try:
        while not stop.wait(0.5):
            status = machine.wait(0)
            if status is not None:
                say(f"vm: QEMU exited with status {status}")
                return status
        if machine.acpi_unusable():
            say("vm: the guest has no ACPI (no power button): stopping QEMU (QMP quit)")
            if machine.quit():
                say("vm: stopped (QMP quit)")
                return machine.wait(0)
        say("vm: pressing the power button")
        if machine.power_off(poweroff_timeout):
            say("vm: powered off")
            return machine.wait(0)
        say(f"vm: killed (no clean power-off within {poweroff_timeout:.0f} s)")
        return None
    finally:
        machine.kill()
