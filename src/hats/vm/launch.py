"""What ``hats launcher serve --vmm qemu`` adds to the launcher: boot the guest against it.

:func:`boot` resolves the guest's kernel and initramfs (:mod:`hats.vm.assets`),
the accelerator (``auto``: KVM when a probe guest really boots, else TCG —
and says which), the launcher's address as seen from the host (the relay's
target), and starts QEMU (:class:`hats.vm.machine.Machine`). The launcher
keeps serving while the guest runs and powers it off (ACPI button, then
kill) when it is stopped.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hats.transport import parse_address
from hats.vm.assets import ensure_guest_assets
from hats.vm.machine import Machine
from hats.vm.qemu import VHOST_VSOCK, QemuError, VmConfig, choose_accel, random_cid

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


def boot(options: VmOptions, listen_address: str, say: Say) -> Machine:
    """Start the guest; the running :class:`Machine`."""
    target = relay_target(listen_address)
    if options.kernel is not None and options.initrd is not None:
        kernel, initrd = options.kernel, options.initrd
    else:
        assets = ensure_guest_assets(cache_dir=options.cache_dir, progress=say)
        kernel = options.kernel or assets.kernel
        initrd = options.initrd or assets.initrd
    accel, reason = choose_accel(options.accel, kernel)
    say(f"vm: accelerator {accel} ({reason})")
    console = options.console_log
    work = Path(tempfile.mkdtemp(prefix="hats-vm-"))
    if console is None:
        console = work / "console.log"
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
    )
    machine = Machine(config)
    machine.start()
    say(f"vm: started (console log {console})")
    return machine
