"""The kernel's ``ip=`` option, read by stage1 to reach the launcher — pure.

Oak's stage1 talks to the launcher over vsock and needs no network. On hosts
without vhost-vsock our launcher is reached over QEMU's user network (a TCP
guest forward), so stage1 configures the interface the command line names,
exactly as systemd-network-generator will configure it again once the
image's systemd runs. Format (``Documentation/admin-guide/nfs/nfsroot.rst``)::

    ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>

Only static configuration is supported (``autoconf`` ``off``/``none`` or
empty); anything else is an :class:`IpConfigError`. Missing fields are
empty; a missing netmask means ``255.255.255.0``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from hats.errors import HatsError


class IpConfigError(HatsError):
    """The ``ip=`` option cannot be applied by stage1."""


@dataclass(frozen=True)
class IpConfig:
    address: str
    prefix_length: int
    gateway: str
    device: str

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefix_length}"


def find_ip_option(kernel_args: list[str]) -> str | None:
    """The value of the last ``ip=`` argument, or ``None``."""
    value: str | None = None
    for arg in kernel_args:
        if arg.startswith("ip="):
            value = arg[3:]
    return value


def parse_ip_option(value: str) -> IpConfig:
    """Parse a static ``ip=`` value (see the module docstring)."""
    fields = value.split(":")
    fields += [""] * (7 - len(fields))
    client, _server, gateway, netmask, _hostname, device, autoconf = fields[:7]
    if autoconf not in ("", "off", "none"):
        raise IpConfigError(f"ip={value}: only static configuration is supported, not {autoconf}")
    try:
        address = ipaddress.IPv4Address(client)
    except ValueError:
        raise IpConfigError(f"ip={value}: {client!r} is not an IPv4 address") from None
    try:
        network = ipaddress.IPv4Network(f"0.0.0.0/{netmask or '255.255.255.0'}")
    except ValueError:
        raise IpConfigError(f"ip={value}: {netmask!r} is not a netmask") from None
    if gateway:
        try:
            ipaddress.IPv4Address(gateway)
        except ValueError:
            raise IpConfigError(f"ip={value}: {gateway!r} is not an IPv4 address") from None
    return IpConfig(
        address=str(address), prefix_length=network.prefixlen, gateway=gateway, device=device
    )


def choose_device(wanted: str, present: list[str]) -> str:
    """The interface to configure: ``wanted`` if present, else the first non-loopback one.

    The kernel names the NIC ``eth0``; the command line names it the way udev
    will (``enp0s1``) once the image runs, so the name usually is not there yet.
    """
    if wanted and wanted in present:
        return wanted
    candidates = sorted(name for name in present if name != "lo")
    if not candidates:
        raise IpConfigError("no network interface (is the virtio-net driver loaded?)")
    return candidates[0]
