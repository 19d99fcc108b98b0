"""Addresses of the launcher and the agents' servers, as gRPC targets.

Pure. The forms accepted (spec wire-protocol §1, system-image §3.5):

- ``vsock://CID:PORT`` (also with a trailing ``/``, as stage1 formats it, and
  ``vsock://:PORT`` or ``vsock://PORT`` meaning CID 2, the host) → gRPC
  ``vsock:CID:PORT``;
- ``http://HOST:PORT`` or plain ``HOST:PORT`` (IPv6 in brackets) → TCP
  ``HOST:PORT``;
- ``unix:/abs/path``, ``unix:///abs/path`` or ``unix:relative`` → a unix
  socket (``unix:PATH``), used by tests and the local demo.

Anything else raises :class:`AddressError` naming the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hats.errors import HatsError

VMADDR_CID_HOST = 2
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class AddressError(HatsError):
    """An address that is not vsock://, http://, host:port or unix:."""


@dataclass(frozen=True)
class Address:
    """A parsed address: ``kind`` is ``vsock``, ``tcp`` or ``unix``."""

    kind: str
    host: str = ""
    port: int = 0
    cid: int = 0
    path: str = ""

    def grpc_target(self) -> str:
        """The target string for ``grpc.insecure_channel``/``add_insecure_port``."""
        if self.kind == "vsock":
            return f"vsock:{self.cid}:{self.port}"
        if self.kind == "unix":
            return f"unix:{self.path}"
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        if self.kind == "vsock":
            return f"vsock://{self.cid}:{self.port}"
        if self.kind == "unix":
            return f"unix:{self.path}"
        return f"{self.host}:{self.port}"


def _port(text: str, original: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 0xFFFFFFFF:
        raise AddressError(f"{original!r}: port {text!r} is not a number")
    return int(text)


def parse_address(text: str) -> Address:
    """Parse a launcher/server address (see the module docstring)."""
    value = text.strip()
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise AddressError(f"{text!r}: unix: needs a socket path")
        return Address(kind="unix", path=path)
    if value.startswith("vsock://"):
        authority = value[len("vsock://") :].rstrip("/")
        if "/" in authority or not authority:
            raise AddressError(f"{text!r}: expected vsock://CID:PORT")
        cid_text, _, port_text = authority.rpartition(":")
        cid = VMADDR_CID_HOST if cid_text == "" else _port(cid_text, text)
        return Address(kind="vsock", cid=cid, port=_port(port_text, text))
    for scheme in ("http://", "https://"):
        if value.startswith(scheme):
            value = value[len(scheme) :].rstrip("/")
            break
    match = _HOST_PORT.match(value)
    if not match:
        raise AddressError(
            f"{text!r}: expected vsock://CID:PORT, http://HOST:PORT, HOST:PORT or unix:PATH"
        )
    port = int(match.group(2))
    if port > 65535:
        raise AddressError(f"{text!r}: TCP port {port} is out of range")
    return Address(kind="tcp", host=match.group(1), port=port)
