"""Virtual-bridge networking for the insecure guest: a TAP device on a host bridge.

The reference launcher's ``virtual_bridge`` mode (``upstream-facts.md`` F7)
gives the CVM a routable address on an existing bridge. QEMU opens a TAP
device ``tap<R>`` and runs the reference's ifup script on it (``$1`` is the
tap), which joins it to the bridge:

1. ``ip link set dev TAP promisc on``
2. ``ip address replace 0.0.0.0 dev TAP``
3. ``ip link set dev TAP master BRIDGE``
4. ``ip link set dev TAP up``

The NIC is the reference's ``virtio-net-pci`` on that tap with MAC
``d6:ef:77:16:a5:XX``; the guest is configured from the kernel command line
``ip=CVM_IP::GATEWAY:255.255.255.0::enp0s1:off`` (:func:`ip_option`), so its
address is part of the attested command line. The tap disappears when QEMU
closes it (QEMU creates it non-persistent).

Without vsock the guest reaches the launcher over the bridge: the launcher
listens on TCP ``GATEWAY:PORT`` (or a wildcard address, port ``PORT``) and
the guest's ``--launcher-addr`` is ``http://GATEWAY:PORT``
(:func:`guest_launcher_addr`). A unix socket or another host address is
refused: the guest could not reach it.

Everything is pure except :func:`check_host` and :func:`write_ifup_script`
(the thin runner's two steps before QEMU starts). The randomness (tap number,
MAC byte) is a :class:`TapDraw`, drawn by the caller (:func:`draw_tap`), so
tests pin it. The refusals of a config without bridge, IP or gateway are the
reference's texts.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hats.errors import HatsError
from hats.fsio import write_bytes_atomic
from hats.transport import AddressError, parse_address

#: The reference's refusals (F7), word for word.
NO_BRIDGE = "virtual_bridge must be provided for a VM with routable IP."
NO_IP = "An IP address must be provided for a VM with routable IP."
NO_GATEWAY = "A gateway address must be provided for a VM with routable IP."

NETMASK = "255.255.255.0"
#: The interface name the command line gives (udev's name for the NIC at PCI 00:01.0).
GUEST_INTERFACE = "enp0s1"
MAC_PREFIX = "d6:ef:77:16:a5"
TAP_RANGE = 10000
NET_DEVICE = "virtio-net-pci,disable-legacy=on,iommu_platform=true,netdev=netdev,romfile="
TUN = Path("/dev/net/tun")
SYS_NET = Path("/sys/class/net")
_IFNAMSIZ = 15


class BridgeError(HatsError):
    """The virtual bridge cannot be used as configured."""


@dataclass(frozen=True)
class VirtualBridge:
    """``network_config.virtual_bridge``: the host bridge, the guest's address, the gateway."""

    device: str
    cvm_ip: str
    gateway: str


@dataclass(frozen=True)
class TapDraw:
    """The randomness of one launch: the tap number ``R`` and the MAC's last byte."""

    tap: int
    mac_byte: int


@dataclass(frozen=True)
class TapNic:
    """The guest's NIC on a tap: what the QEMU command line is made of."""

    tap: str
    mac: str
    script: Path
    ip: str
    """The kernel's ``ip=`` value."""
    launcher_addr: str
    """The guest's ``--launcher-addr`` (``http://GATEWAY:PORT``)."""

    def qemu_args(self) -> list[str]:
        """``-netdev tap,…`` and the reference's device string (``netdev=`` twice, last wins)."""
        return [
            "-netdev",
            f"tap,id={self.tap},ifname={self.tap},script={_escape(str(self.script))}",
            "-device",
            f"{NET_DEVICE},netdev={self.tap},mac={self.mac}",
        ]


def draw_tap(randbelow: Callable[[int], int]) -> TapDraw:
    """A :class:`TapDraw` from ``randbelow(n)`` (uniform in [0, n)), e.g. ``secrets.randbelow``."""
    return TapDraw(tap=randbelow(TAP_RANGE), mac_byte=randbelow(256))


def tap_name(draw: TapDraw) -> str:
    return f"tap{draw.tap}"


def mac_address(draw: TapDraw) -> str:
    return f"{MAC_PREFIX}:{draw.mac_byte:02x}"


def _interface_name(name: str, what: str) -> str:
    """``name`` if it is a valid Linux interface name, else :class:`BridgeError`."""
    if not 0 < len(name) <= _IFNAMSIZ or name in (".", "..") or not name.isprintable():
        raise BridgeError(f"{what} {name!r}: not an interface name (1 to 15 characters)")
    if any(char in name for char in "/: \t"):
        raise BridgeError(f"{what} {name!r}: not an interface name (no '/', ':' or spaces)")
    return name


def _ipv4(value: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise BridgeError(f"virtual_bridge {what} {value!r}: not an IPv4 address") from None


def virtual_bridge(device: str, cvm_ip: str, gateway: str) -> VirtualBridge:
    """The checked :class:`VirtualBridge`; the reference's texts when a field is missing.

    Ours on top of the reference: the bridge must be an interface name, both
    addresses IPv4, different, and in the same /24 (the reference's netmask),
    else the guest could not reach the gateway.
    """
    if not device:
        raise BridgeError(NO_BRIDGE)
    if not cvm_ip:
        raise BridgeError(NO_IP)
    if not gateway:
        raise BridgeError(NO_GATEWAY)
    _interface_name(device, "virtual_bridge_device")
    guest, gw = _ipv4(cvm_ip, "cvm_ip_addr"), _ipv4(gateway, "cvm_gateway_addr")
    if guest == gw:
        raise BridgeError(f"virtual_bridge: cvm_ip_addr and cvm_gateway_addr are both {guest}")
    network = ipaddress.IPv4Network(f"{gw}/{NETMASK}", strict=False)
    if ipaddress.IPv4Address(guest) not in network:
        raise BridgeError(
            f"virtual_bridge: cvm_ip_addr {guest} is not in the gateway's network {network}"
        )
    return VirtualBridge(device=device, cvm_ip=guest, gateway=gw)


def ip_option(bridge: VirtualBridge) -> str:
    """The kernel's ``ip=`` value: ``CVM_IP::GATEWAY:255.255.255.0::enp0s1:off`` (F7)."""
    return f"{bridge.cvm_ip}::{bridge.gateway}:{NETMASK}::{GUEST_INTERFACE}:off"


def ifup_steps(bridge: str, tap: str) -> list[list[str]]:
    """The reference's ifup script as commands, ``$1`` replaced by ``tap``."""
    return [
        ["ip", "link", "set", "dev", tap, "promisc", "on"],
        ["ip", "address", "replace", "0.0.0.0", "dev", tap],
        ["ip", "link", "set", "dev", tap, "master", bridge],
        ["ip", "link", "set", "dev", tap, "up"],
    ]


def ifup_script(bridge: str) -> str:
    """The reference's ifup script (QEMU runs it with the tap name as ``$1``)."""
    lines = [" ".join(step) for step in ifup_steps(_interface_name(bridge, "bridge"), "$1")]
    return "#!/bin/sh\n" + "".join(f"{line}\n" for line in lines)


def guest_launcher_addr(listen_address: str, bridge: VirtualBridge) -> str:
    """The guest's ``--launcher-addr`` for a launcher listening on ``listen_address``.

    The launcher must listen on TCP on the gateway address, or on a wildcard
    address (``0.0.0.0``, ``::``); the guest then dials ``http://GATEWAY:PORT``.
    """
    try:
        address = parse_address(listen_address)
    except AddressError as exc:
        raise BridgeError(f"virtual_bridge: {exc}") from None
    advice = f"listen on the gateway (--listen {bridge.gateway}:PORT)"
    if address.kind != "tcp":
        raise BridgeError(
            f"virtual_bridge: the launcher listens on {listen_address}, which the guest cannot"
            f" reach over the bridge; {advice}"
        )
    host = address.host.strip("[]")
    if host not in (bridge.gateway, "0.0.0.0", "::"):
        raise BridgeError(
            f"virtual_bridge: the launcher listens on {host}, not on the gateway"
            f" {bridge.gateway} the guest is given; {advice}"
        )
    return f"http://{bridge.gateway}:{address.port}"


def tap_nic(bridge: VirtualBridge, draw: TapDraw, script: Path, listen_address: str) -> TapNic:
    """The guest's NIC for ``bridge`` (pure)."""
    return TapNic(
        tap=tap_name(draw),
        mac=mac_address(draw),
        script=script,
        ip=ip_option(bridge),
        launcher_addr=guest_launcher_addr(listen_address, bridge),
    )


def check_host(
    bridge: VirtualBridge,
    *,
    sys_net: Path = SYS_NET,
    tun: Path = TUN,
    euid: int | None = None,
) -> None:
    """What QEMU's tap needs on this host, each missing part one :class:`BridgeError`."""
    if not (sys_net / bridge.device).exists():
        raise BridgeError(
            f"virtual_bridge_device {bridge.device}: no such interface here"
            f" (create it: ip link add {bridge.device} type bridge)"
        )
    if not (sys_net / bridge.device / "bridge").is_dir():
        raise BridgeError(f"virtual_bridge_device {bridge.device}: not a bridge")
    if not tun.exists():
        raise BridgeError(f"{tun} does not exist (load the tun module: modprobe tun)")
    if (os.geteuid() if euid is None else euid) != 0:
        raise BridgeError(
            "virtual_bridge: creating a tap and joining it to a bridge needs root"
            " (CAP_NET_ADMIN), as the reference launcher"
        )


def write_ifup_script(directory: Path, bridge: str) -> Path:
    """Write :func:`ifup_script` to ``directory/qemu-ifup`` (0700, atomically); its path."""
    path = directory / "qemu-ifup"
    write_bytes_atomic(path, ifup_script(bridge).encode(), mode=stat.S_IRWXU)
    return path


def _escape(value: str) -> str:
    return value.replace(",", ",,")
