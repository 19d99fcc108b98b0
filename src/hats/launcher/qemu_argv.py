"""The reference launcher's QEMU command line, as a pure function (upstream-facts F7).

:func:`qemu_argv` maps a ``LauncherConfig``, the system bundle's three QEMU
files, the launcher's vsock port and the injected randomness to the argv the
reference HATs launcher (``Qemu::Create``) spawns. Nothing here starts a
process, opens a file or draws a random number: the caller passes a
:class:`Draw` (``draw(secrets.randbelow)`` in the CLI), so tests pin it.

The rules, in argv order (F7, system-image §3.5 and §5.3):

1. ``argv[0]`` is ``cvm_config.vmm_binary`` (the reference spawns the binary
   with an argv whose first word is the binary again; its logged command,
   :attr:`QemuCommand.command`, therefore names the binary twice), then
   ``-enable-kvm -cpu host -m MEM -smp N -nodefaults -nographic -no-reboot``,
   ``MEM = "<ram_size_kb>K"``, ``N = num_cpus``.
2. ``CVMTYPE_DEFAULT``: ``-machine microvm,acpi=on,pcie=on``. ``CVMTYPE_SEVSNP``:
   ``-machine q35,acpi=on,memory-backend=ram1,confidential-guest-support=sev0``
   (``microvm,acpi=on,pcie=on,memory-backend=ram1,confidential-guest-support=sev0``
   with ``--qemu_use_microvm``; the flag changes nothing for the default
   type), then the ``memory-backend-memfd`` and ``sev-snp-guest`` objects.
3. Network: SLIRP (inbound_only, inbound_and_outbound) forwards
   ``127.0.0.1:<host_enclave_app_proxy_port>`` to ``10.0.2.15:8080``, plus the
   ``guestfwd`` to ``nc 127.0.0.1 <workload_service_port>`` only when that
   port is given (the reference launcher never gives it). virtual_bridge: a
   TAP ``tap<R>`` whose ifup script (:func:`hats.vm.bridge.ifup_script`; the reference
   writes it to ``mkstemp("/tmp/qemu-if-XXXXXX")``) joins the bridge, and the
   reference's device string with ``netdev=`` twice and MAC
   ``d6:ef:77:16:a5:<XX>``. A missing bridge, IP or gateway is refused with
   the reference's texts (:data:`NO_BRIDGE`, :data:`NO_IP`, :data:`NO_GATEWAY`).
4. ``-device vhost-vsock-pci,guest-cid=CID,rombar=0``: ``virtio_guest_cid`` if
   the config sets it, else the drawn CID (uniform in [1024, 1000000)).
5. ``-bios STAGE0 -kernel KERNEL -initrd INITRD -append CMDLINE``; CMDLINE is
   ``"debug "`` when ``debug_telnet_port`` is set, then ``" console=ttyS0
   panic=-1 brd.rd_nr=1 brd.rd_size=<ramdrive_size_kb> brd.max_part=1 "``,
   ``ip=<IPCFG>`` and ``" quiet -- --launcher-addr=vsock://2:<VPORT>"``; so it
   starts with a space, or with ``"debug  console"`` (two spaces). Ours, not
   F7: ``kernel_args`` (``--guest-kernel-arg``, opt-in) go before the ``" -- "``
   (:func:`hats.vm.kernelargs.insert_kernel_args`); with none (the default)
   the string is F7's exactly.
6. ``-serial stdio``, or ``-serial telnet:localhost:<PORT>,server``.

Not in F7, so ours (no reference text exists for them): the random tap number
``R`` is drawn in [0, 10000) and the MAC byte ``XX`` is written as two
lowercase hex digits; a config without ``network_config``, an empty
``vmm_binary`` or an unknown ``cvm_type`` is refused with a one-line
:class:`QemuArgvError` of our own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hats.errors import HatsError
from hats.pb.pcit.client import launcher_config_pb2
from hats.vm.bridge import (
    NET_DEVICE,
    NO_BRIDGE,
    NO_GATEWAY,
    NO_IP,
    TAP_RANGE,
    BridgeError,
    TapDraw,
    ifup_script,
    mac_address,
    tap_name,
)
from hats.vm.kernelargs import insert_kernel_args

CID_RANGE = (1024, 1000000)
#: What the reference's script path looks like (its mkstemp template).
SCRIPT_TEMPLATE = "/tmp/qemu-if-XXXXXX"

_GUEST_IP = "10.0.2.15"
_MASK_IFACE = "255.255.255.0::enp0s1:off"


class QemuArgvError(HatsError):
    """A launcher config the reference QEMU command line cannot be built from."""


@dataclass(frozen=True)
class BundlePaths:
    """Where the system bundle's QEMU files are (extracted) on the host."""

    stage0: str
    kernel: str
    initrd: str


@dataclass(frozen=True)
class Draw:
    """The randomness of one launch: CID (used only without ``virtio_guest_cid``), tap, MAC."""

    cid: int
    tap: int
    mac_byte: int


def draw(randbelow: Callable[[int], int]) -> Draw:
    """A :class:`Draw` from ``randbelow(n)`` (uniform in [0, n)), e.g. ``secrets.randbelow``."""
    low, high = CID_RANGE
    return Draw(cid=low + randbelow(high - low), tap=randbelow(TAP_RANGE), mac_byte=randbelow(256))


@dataclass(frozen=True)
class QemuCommand:
    """The spawned argv (``argv[0]`` is the binary) and, for virtual_bridge, the ifup script."""

    argv: tuple[str, ...]
    script: str | None = None

    @property
    def binary(self) -> str:
        return self.argv[0]

    @property
    def command(self) -> str:
        """The reference's logged form: the binary, then the argv (binary again), spaced."""
        return " ".join((self.binary, *self.argv))


def qemu_argv(
    config: launcher_config_pb2.LauncherConfig,
    bundle: BundlePaths,
    *,
    launcher_vsock_port: int,
    randomness: Draw,
    use_microvm: bool = False,
    workload_service_port: int | None = None,
    script_path: str = SCRIPT_TEMPLATE,
    kernel_args: Sequence[str] = (),
) -> QemuCommand:
    """The reference argv for ``config`` (see the module docstring for the rules)."""
    cvm = config.cvm_config
    if not cvm.vmm_binary:
        raise QemuArgvError("cvm_config.vmm_binary is empty: no QEMU binary to run")
    memory = f"{cvm.ram_size_kb}K"
    argv = [cvm.vmm_binary, "-enable-kvm", "-cpu", "host", "-m", memory, "-smp"]
    argv += [str(cvm.num_cpus), "-nodefaults", "-nographic", "-no-reboot"]
    argv += _machine(cvm.cvm_type, memory, use_microvm)
    network, ip_config, script = _network(cvm, randomness, workload_service_port, script_path)
    argv += network
    cid = cvm.virtio_guest_cid if cvm.HasField("virtio_guest_cid") else randomness.cid
    argv += ["-device", f"vhost-vsock-pci,guest-cid={cid},rombar=0"]
    cmdline = (
        ("debug " if cvm.debug_telnet_port else "")
        + f" console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size={cvm.ramdrive_size_kb}"
        + f" brd.max_part=1 ip={ip_config}"
        + f" quiet -- --launcher-addr=vsock://2:{launcher_vsock_port}"
    )
    cmdline = insert_kernel_args(cmdline, kernel_args)
    argv += ["-bios", bundle.stage0, "-kernel", bundle.kernel, "-initrd", bundle.initrd]
    argv += ["-append", cmdline, "-serial"]
    telnet = cvm.debug_telnet_port
    argv.append(f"telnet:localhost:{telnet},server" if telnet else "stdio")
    return QemuCommand(tuple(argv), script)


def _machine(cvm_type: int, memory: str, use_microvm: bool) -> list[str]:
    if cvm_type == launcher_config_pb2.CVMTYPE_DEFAULT:
        return ["-machine", "microvm,acpi=on,pcie=on"]
    if cvm_type != launcher_config_pb2.CVMTYPE_SEVSNP:
        raise QemuArgvError(f"cvm_config.cvm_type {cvm_type} is neither DEFAULT nor SEVSNP")
    base = "microvm,acpi=on,pcie=on" if use_microvm else "q35,acpi=on"
    return [
        "-machine",
        f"{base},memory-backend=ram1,confidential-guest-support=sev0",
        "-object",
        f"memory-backend-memfd,id=ram1,size={memory},share=true,reserve=false",
        "-object",
        "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,id-auth=1",
    ]


def _network(
    cvm: launcher_config_pb2.CvmConfig,
    randomness: Draw,
    workload_service_port: int | None,
    script_path: str,
) -> tuple[list[str], str, str | None]:
    """The network words, the kernel ``ip=`` value and the ifup script (bridge only)."""
    mode = cvm.network_config.WhichOneof("network_mode")
    if mode in ("inbound_only", "inbound_and_outbound"):
        net = cvm.network_config
        port = (
            net.inbound_only if mode == "inbound_only" else net.inbound_and_outbound
        ).host_enclave_app_proxy_port
        netdev = f"user,id=netdev,hostfwd=tcp:127.0.0.1:{port}-{_GUEST_IP}:8080"
        if workload_service_port is not None:
            netdev += f",guestfwd=tcp:10.0.2.100:8080-cmd:nc 127.0.0.1 {workload_service_port}"
        gateway = "" if mode == "inbound_only" else "10.0.2.2"
        words = ["-netdev", netdev, "-device", NET_DEVICE]
        return words, f"{_GUEST_IP}::{gateway}:{_MASK_IFACE}", None
    if mode == "virtual_bridge":
        bridge = cvm.network_config.virtual_bridge
        if not bridge.virtual_bridge_device:
            raise QemuArgvError(NO_BRIDGE)
        if not bridge.cvm_ip_addr:
            raise QemuArgvError(NO_IP)
        if not bridge.cvm_gateway_addr:
            raise QemuArgvError(NO_GATEWAY)
        tap_draw = TapDraw(tap=randomness.tap, mac_byte=randomness.mac_byte)
        tap, mac = tap_name(tap_draw), mac_address(tap_draw)
        try:
            script = ifup_script(bridge.virtual_bridge_device)
        except BridgeError as exc:  # the name goes into a shell script: never unchecked
            raise QemuArgvError(str(exc)) from None
        words = [
            "-netdev",
            f"tap,id={tap},ifname={tap},script={script_path}",
            "-device",
            f"{NET_DEVICE},netdev={tap},mac={mac}",
        ]
        ip_config = f"{bridge.cvm_ip_addr}::{bridge.cvm_gateway_addr}:{_MASK_IFACE}"
        return words, ip_config, script
    raise QemuArgvError(
        "cvm_config.network_config is not set (inbound_only, inbound_and_outbound"
        " or virtual_bridge)"
    )
