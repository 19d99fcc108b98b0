"""Deterministic ``newc`` cpio archives: the format Linux unpacks as an initramfs.

Rules (``Documentation/driver-api/early-userspace/buffer-format.rst``):

* each entry is a 110-byte ASCII header (magic ``070701``, thirteen 8-digit
  hexadecimal fields), the NUL-terminated name, padding to a multiple of 4,
  the data, padding to a multiple of 4;
* the archive ends with the entry ``TRAILER!!!``;
* a symbolic link's data is its target; directories have no data.

Determinism: the writer sets inode numbers itself (1, 2, 3, … in the order
entries are added), uid/gid 0, mtime as given (default 0), device numbers 0,
``nlink`` 2 for directories and 1 otherwise. Callers add entries in a fixed
order (:class:`CpioWriter` does not sort), parents before children.
"""

from __future__ import annotations

import stat
from typing import Protocol

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
HEADER_LENGTH = 110


class Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


class CpioError(ValueError):
    """An entry cannot be represented in a newc archive."""


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def header(
    *,
    ino: int,
    mode: int,
    nlink: int,
    mtime: int,
    filesize: int,
    name: str,
    rdevmajor: int = 0,
    rdevminor: int = 0,
) -> bytes:
    """One entry's header, name and the padding after the name."""
    raw_name = name.encode("utf-8") + b"\0"
    fields = (
        ino,
        mode,
        0,  # uid
        0,  # gid
        nlink,
        mtime,
        filesize,
        0,  # devmajor
        0,  # devminor
        rdevmajor,
        rdevminor,
        len(raw_name),
        0,  # check (only for the crc format)
    )
    for value in fields:
        if not 0 <= value <= 0xFFFFFFFF:
            raise CpioError(f"{name}: value {value} does not fit a newc header field")
    text = MAGIC + b"".join(b"%08X" % value for value in fields)
    return text + raw_name + _pad(HEADER_LENGTH + len(raw_name))


class CpioWriter:
    """Writes a newc archive to a binary stream, entry by entry."""

    def __init__(self, out: Writable, *, mtime: int = 0) -> None:
        self._out = out
        self._mtime = mtime
        self._ino = 0
        self._names: set[str] = set()
        self.closed = False

    def _entry(
        self, name: str, mode: int, data: bytes, nlink: int = 1, rdev: tuple[int, int] = (0, 0)
    ) -> None:
        if self.closed:
            raise CpioError("archive already closed")
        name = name.strip("/") or "."
        if name in self._names:
            raise CpioError(f"{name}: added twice")
        self._names.add(name)
        self._ino += 1
        self._out.write(
            header(
                ino=self._ino,
                mode=mode,
                nlink=nlink,
                mtime=self._mtime,
                filesize=len(data),
                name=name,
                rdevmajor=rdev[0],
                rdevminor=rdev[1],
            )
        )
        self._out.write(data)
        self._out.write(_pad(len(data)))

    def directory(self, name: str, mode: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | (mode & 0o7777), b"", nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | (mode & 0o7777), data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode("utf-8"))

    def device(self, name: str, mode: int, major: int, minor: int) -> None:
        """A character or block device node (``mode`` includes the file type)."""
        if not (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)):
            raise CpioError(f"{name}: mode {mode:o} is not a device")
        self._entry(name, mode, b"", rdev=(major, minor))

    def close(self) -> None:
        """Write the trailer (the stream itself stays open)."""
        if self.closed:
            return
        self._ino += 1
        self._out.write(header(ino=0, mode=0, nlink=1, mtime=0, filesize=0, name=TRAILER))
        self.closed = True
