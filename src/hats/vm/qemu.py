"""QEMU for the insecure (non-SEV) guest: the command line (pure) and the accelerator probe.

Command line (reference order, ``system-image.md`` §5.3, with these
differences for a host without SEV-SNP, vhost-vsock or working KVM)::

    qemu-system-x86_64 (-enable-kvm -cpu host | -accel tcg -cpu max)
      -m <ram>K -smp <cpus> -nodefaults -nographic -no-reboot
      -machine q35 | -machine microvm,acpi=on,pcie=on -bios <stage0_bin>
      -netdev user,id=netdev[,hostfwd=tcp:127.0.0.1:<proxy>-10.0.2.15:8080]
              ,guestfwd=tcp:10.0.2.100:8080-cmd:<python> -m hats.vm.relay <launcher>
      -device virtio-net-pci,disable-legacy=on,iommu_platform=true,netdev=netdev,romfile=
      [-device vhost-vsock-pci,guest-cid=<cid>,rombar=0]      (only with /dev/vhost-vsock)
      -kernel <kernel> -initrd <initrd> -append <cmdline>
      -serial file:<console log> -qmp unix:<socket>,server=on,wait=off

* without stage0, ``q35``, not ``microvm,acpi=on,pcie=on``: with QEMU's own
  firmware Debian's kernel finds no PCI configuration space on microvm's PCIe
  host (checked: "PCI: Fatal: No config space access function found") and
  then has no network. Under stage0 the reference's microvm works (the kernel
  finds the PCIe host through stage0's ACPI tables, and the ACPI power button
  works), while on q35 stage0's FADT has no PM1a event block and the kernel
  cannot enable ACPI (no power button) (:func:`machine_type`);
* ``-bios <stage0_bin>`` when given (real Oak stage0, which needs QEMU >= 8
  under TCG: :func:`check_stage0_qemu`): stage0 measures the kernel, setup
  data, initrd, command line, ACPI tables and E820 map and hands its DICE data
  to stage1 (``upstream-facts.md`` F11). Without it QEMU's own firmware loads
  the kernel and stage1 simulates stage0's DICE layer;
* ``virtual_bridge`` (:mod:`hats.vm.bridge`): ``-netdev tap,id=tap<R>,ifname=tap<R>,
  script=<the reference's ifup script>`` and the reference's device string with
  ``netdev=tap<R>,mac=d6:ef:77:16:a5:<XX>`` replace the user network; the
  guest's ``ip=`` is ``CVM_IP::GATEWAY:255.255.255.0::enp0s1:off`` and it
  reaches the launcher over the bridge at ``http://GATEWAY:PORT`` (no relay);
* otherwise the launcher is reached through SLIRP's guest forward to ``10.0.2.100:8080``
  (Oak's own launcher does the same): the relay command connects each guest
  connection to the launcher's TCP or unix address. With vhost-vsock the
  ``vsock://2:<port>`` form of the reference can be used instead;
* the kernel command line keeps the reference form (§3.5) with the launcher
  address after ``--``; ``--guest-kernel-arg`` (opt-in, :mod:`hats.vm.kernelargs`)
  adds kernel arguments before the ``--``.

Commas in option values are doubled, QEMU's escape.
"""

from __future__ import annotations

import os
import random
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hats.errors import HatsError
from hats.toolrun import failure, last_line, run
from hats.vm.bridge import TapNic
from hats.vm.kernelargs import insert_kernel_args

QEMU = "qemu-system-x86_64"
GUEST_ADDRESS = "10.0.2.15"
LAUNCHER_GUEST_HOST = "10.0.2.100"
LAUNCHER_GUEST_PORT = 8080
LAUNCHER_GUEST_ADDR = f"http://{LAUNCHER_GUEST_HOST}:{LAUNCHER_GUEST_PORT}"
VHOST_VSOCK = Path("/dev/vhost-vsock")
KVM = Path("/dev/kvm")
ACCELERATORS = ("auto", "kvm", "tcg")

#: ``ip=`` by SLIRP network mode (§3.5; ``virtual_bridge``'s comes from :mod:`hats.vm.bridge`).
IP_CONFIG = {
    "inbound_only": f"{GUEST_ADDRESS}:::255.255.255.0::enp0s1:off",
    "inbound_and_outbound": f"{GUEST_ADDRESS}::10.0.2.2:255.255.255.0::enp0s1:off",
}


class QemuError(HatsError):
    """QEMU cannot be started or stopped as asked."""


def escape(value: str) -> str:
    """A value for a QEMU ``key=value,…`` option (commas doubled)."""
    return value.replace(",", ",,")


def kernel_cmdline(
    *,
    launcher_addr: str,
    ramdrive_size_kb: int,
    network_mode: str = "inbound_only",
    debug: bool = False,
    ip_config: str | None = None,
    kernel_args: Sequence[str] = (),
) -> str:
    """The reference's ``-append`` string (§3.5): leading space, ``--`` then stage1's flag.

    ``ip_config`` (the ``ip=`` value) is required for ``virtual_bridge`` and
    taken from :data:`IP_CONFIG` for the SLIRP modes. ``kernel_args``
    (``--guest-kernel-arg``, opt-in: then the line is not the reference's) go
    before the ``--`` (:func:`hats.vm.kernelargs.insert_kernel_args`).
    """
    if network_mode == "virtual_bridge":
        if ip_config is None:
            raise QemuError("network mode 'virtual_bridge': no ip= value given")
    elif network_mode in IP_CONFIG:
        ip_config = IP_CONFIG[network_mode]
    else:
        modes = sorted([*IP_CONFIG, "virtual_bridge"])
        raise QemuError(f"network mode {network_mode!r}: expected one of {modes}")
    prefix = "debug " if debug else ""
    line = (
        f"{prefix} console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size={ramdrive_size_kb}"
        f" brd.max_part=1 ip={ip_config} quiet -- --launcher-addr={launcher_addr}"
    )
    return insert_kernel_args(line, kernel_args)


@dataclass(frozen=True)
class VmConfig:
    """What the QEMU command line is made of."""

    kernel: Path
    initrd: Path
    launcher_target: str  # where the relay connects: "HOST:PORT" or "unix:PATH"
    console_log: Path
    qmp_socket: Path
    accel: str = "tcg"  # "kvm" or "tcg" (resolve "auto" first)
    ram_size_kb: int = 2 * 1024 * 1024
    num_cpus: int = 2
    ramdrive_size_kb: int = 1536 * 1024
    network_mode: str = "inbound_only"
    host_proxy_port: int | None = None
    vsock_cid: int | None = None
    debug: bool = False
    qemu: str = QEMU
    python: str = field(default_factory=lambda: sys.executable)
    bios: Path | None = None
    machine: str = ""
    """QEMU's ``-machine`` [default: :func:`machine_type` of ``bios``]."""
    nic: TapNic | None = None
    """``virtual_bridge``: the guest's NIC on a tap (then ``launcher_target`` is unused)."""
    kernel_args: tuple[str, ...] = ()
    """Extra kernel arguments before the ``--`` (``--guest-kernel-arg``; not the reference's)."""

    @property
    def cmdline(self) -> str:
        if self.nic is not None:
            return kernel_cmdline(
                launcher_addr=self.nic.launcher_addr,
                ramdrive_size_kb=self.ramdrive_size_kb,
                network_mode="virtual_bridge",
                debug=self.debug,
                ip_config=self.nic.ip,
                kernel_args=self.kernel_args,
            )
        return kernel_cmdline(
            launcher_addr=LAUNCHER_GUEST_ADDR,
            ramdrive_size_kb=self.ramdrive_size_kb,
            network_mode=self.network_mode,
            debug=self.debug,
            kernel_args=self.kernel_args,
        )


def machine_type(bios: Path | None) -> str:
    """``microvm,acpi=on,pcie=on`` (the reference's) under stage0, else ``q35``.

    Under stage0 Debian's kernel finds microvm's PCIe host through stage0's ACPI
    tables and ACPI works (the power button too); on q35 stage0's FADT has no
    PM1a event block, so the kernel cannot enable ACPI. Without stage0
    (SeaBIOS) microvm's PCIe host has no config space access for the kernel.
    """
    return "microvm,acpi=on,pcie=on" if bios is not None else "q35"


def relay_command(python: str, target: str) -> str:
    """The guest-forward command: one relay process per guest connection."""
    return " ".join(shlex.quote(part) for part in (python, "-m", "hats.vm.relay", target))


def qemu_argv(config: VmConfig) -> list[str]:
    """The QEMU command line for ``config`` (see the module docstring)."""
    if config.accel == "kvm":
        accel = ["-enable-kvm", "-cpu", "host"]
    elif config.accel == "tcg":
        accel = ["-accel", "tcg", "-cpu", "max"]
    else:
        raise QemuError(f"accelerator {config.accel!r}: expected kvm or tcg")
    argv = [
        config.qemu,
        *accel,
        "-m",
        f"{config.ram_size_kb}K",
        "-smp",
        str(config.num_cpus),
        "-nodefaults",
        "-nographic",
        "-no-reboot",
        "-machine",
        config.machine or machine_type(config.bios),
        *(["-bios", str(config.bios)] if config.bios is not None else []),
        *network_args(config),
    ]
    if config.vsock_cid is not None:
        argv += ["-device", f"vhost-vsock-pci,guest-cid={config.vsock_cid},rombar=0"]
    argv += [
        "-kernel",
        str(config.kernel),
        "-initrd",
        str(config.initrd),
        "-append",
        config.cmdline,
        "-serial",
        f"file:{escape(str(config.console_log))}",
        "-qmp",
        f"unix:{escape(str(config.qmp_socket))},server=on,wait=off",
    ]
    return argv


def network_args(config: VmConfig) -> list[str]:
    """The NIC: on a tap joined to a bridge (``config.nic``), else SLIRP with the relay."""
    if config.nic is not None:
        return config.nic.qemu_args()
    netdev = "user,id=netdev"
    if config.host_proxy_port is not None:
        netdev += f",hostfwd=tcp:127.0.0.1:{config.host_proxy_port}-{GUEST_ADDRESS}:8080"
    relay = relay_command(config.python, config.launcher_target)
    netdev += f",guestfwd=tcp:{LAUNCHER_GUEST_HOST}:{LAUNCHER_GUEST_PORT}-cmd:{escape(relay)}"
    device = "virtio-net-pci,disable-legacy=on,iommu_platform=true,netdev=netdev,romfile="
    return ["-netdev", netdev, "-device", device]


def bare_argv(
    kernel: Path,
    accel: str,
    *,
    initrd: Path | None = None,
    qemu: str = QEMU,
    memory: str = "2G",
    serial: str = "null",
) -> list[str]:
    """A kernel-only guest (no network, no launcher): the KVM probe and the bench's floor."""
    accel_args = (
        ["-enable-kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg", "-cpu", "max"]
    )
    argv = [qemu, *accel_args, "-m", memory, "-smp", "2", "-machine", "q35"]
    argv += ["-nodefaults", "-nographic", "-no-reboot", "-kernel", str(kernel)]
    if initrd is not None:
        argv += ["-initrd", str(initrd)]
    return [*argv, "-append", "console=ttyS0 panic=-1 quiet", "-serial", serial]


STAGE0_MIN_QEMU = 8
"""QEMU 7.2's TCG has no x2APIC: stage0 reads LAPIC version 0 and panics (F11)."""


def parse_qemu_version(text: str) -> tuple[int, int] | None:
    """(major, minor) from ``qemu-system-x86_64 --version``'s first line."""
    match = re.search(r"QEMU emulator version (\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def check_stage0_qemu(qemu: str = QEMU) -> tuple[int, int]:
    """QEMU's version; :class:`QemuError` saying what to do when it cannot run stage0."""
    probe = f"{qemu} --version"
    result = run([qemu, "--version"], tool=probe, error=QemuError, timeout=10, check=False)
    version = parse_qemu_version(result.text)
    if version is None:
        if result.returncode != 0:
            raise failure(probe, result.returncode, last_line(result.stderr), error=QemuError)
        raise QemuError(f"{probe}: no 'QEMU emulator version' line")
    if version[0] < STAGE0_MIN_QEMU:
        raise QemuError(
            f"--stage0: {qemu} is QEMU {version[0]}.{version[1]}, stage0 needs QEMU >="
            f" {STAGE0_MIN_QEMU} (TCG x2APIC); run scripts/setup.sh (on bookworm it installs"
            " qemu-system-x86 from bookworm-backports)"
        )
    return version


def random_cid() -> int:
    """A guest CID as the reference picks one: uniform in [1024, 1000000)."""
    return random.randrange(1024, 1_000_000)


def probe_kvm(kernel: Path, *, qemu: str = QEMU, timeout: float = 10.0) -> tuple[bool, str]:
    """Whether KVM really runs a guest here: boot ``kernel`` until it prints its banner.

    ``/dev/kvm`` existing is not enough (on some hosts ``-cpu host`` fails
    with "failed to set MSR", or the guest hangs): the probe starts QEMU with
    KVM and the kernel alone and waits for ``Linux version`` on the serial
    console. Returns (works, reason). Not :func:`hats.toolrun.run`: QEMU is
    killed once the banner shows, it does not run to completion.
    """
    if not KVM.exists():
        return False, "/dev/kvm does not exist"
    if not os.access(KVM, os.R_OK | os.W_OK):
        return False, "/dev/kvm is not accessible"
    argv = bare_argv(kernel, "kvm", qemu=qemu, memory="256M", serial="stdio")
    try:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except OSError as exc:
        return False, f"{qemu}: {exc.strerror}"
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    output = b""
    deadline = time.monotonic() + timeout
    exited = False
    try:
        while time.monotonic() < deadline:
            chunk = process.stdout.read() or b""
            output += chunk
            if b"Linux version" in output:
                return True, "the KVM probe guest booted"
            if process.poll() is not None and not chunk:
                exited = True
                break
            time.sleep(0.1)
    finally:
        process.kill()
        process.wait()
    if not exited:
        return False, f"KVM does not work here (a probe guest did not boot within {timeout:.0f} s)"
    lines = [
        line.strip()
        for line in output.decode("utf-8", "replace").splitlines()
        if line.strip().isprintable() and len(line.strip()) > 3
    ]
    detail = lines[-1] if lines else f"QEMU exited with status {process.returncode}"
    return False, f"KVM does not work here ({shorten_words(detail, 120)})"


def shorten_words(text: str, width: int) -> str:
    """``text`` cut at a word boundary to at most ``width`` characters, "…" marking the cut."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    if " " in cut and not text[width - 1].isspace():
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "…"


def choose_accel(requested: str, kernel: Path, *, qemu: str = QEMU) -> tuple[str, str]:
    """Resolve ``auto|kvm|tcg`` to ``kvm`` or ``tcg``, with the reason."""
    if requested not in ACCELERATORS:
        raise QemuError(f"--accel {requested}: expected one of {', '.join(ACCELERATORS)}")
    if requested == "tcg":
        return "tcg", "software emulation requested"
    works, reason = probe_kvm(kernel, qemu=qemu)
    if works:
        return "kvm", reason
    if requested == "kvm":
        raise QemuError(f"--accel kvm: {reason}")
    return "tcg", f"{reason}; using software emulation (TCG)"
