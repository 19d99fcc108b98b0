"""A file tree held in memory, written as a cpio (initramfs) or a tar (container rootfs).

Paths are relative, ``/``-separated, without ``.`` or ``..`` components.
Adding a path adds its missing parent directories (mode 0755). Adding the
same path twice is allowed only with identical contents (two sources agreeing
on a shared library, say); anything else is a :class:`TreeError`.
Output is sorted by path, so a tree's archive depends only on its contents.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

from hats.archive.tarformat import DIRTYPE, REGTYPE, SYMTYPE, Member
from hats.archive.tarstream import TarWriter
from hats.reproducible import EPOCH
from hats.vm.cpio import CpioWriter, Writable

Kind = Literal["file", "dir", "symlink"]
DIR_MODE = 0o755
TREE_MTIME = EPOCH


class TreeError(ValueError):
    """Two different entries were given for one path, or a path is malformed."""


@dataclass(frozen=True)
class Entry:
    kind: Kind
    mode: int = 0o644
    data: bytes = b""  # a file's contents or a symbolic link's target


@dataclass(frozen=True)
class Device:
    """A device node for an archive (``mode`` includes ``S_IFCHR``/``S_IFBLK``)."""

    path: str
    mode: int
    major: int
    minor: int


def normalise(path: str) -> str:
    parts = [part for part in PurePosixPath(path.lstrip("/")).parts if part != "."]
    if not parts or ".." in parts:
        raise TreeError(f"{path!r}: not a relative path inside the tree")
    return "/".join(parts)


class Tree:
    """Paths → entries; see the module rules."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    def __contains__(self, path: str) -> bool:
        return normalise(path) in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: str) -> Entry | None:
        return self._entries.get(normalise(path))

    def items(self) -> Iterator[tuple[str, Entry]]:
        yield from sorted(self._entries.items())

    def size(self) -> int:
        return sum(len(entry.data) for entry in self._entries.values() if entry.kind == "file")

    def _put(self, path: str, entry: Entry) -> None:
        name = normalise(path)
        parent = PurePosixPath(name).parent
        while str(parent) != ".":
            existing = self._entries.get(str(parent))
            if existing is None:
                self._entries[str(parent)] = Entry("dir", DIR_MODE)
            elif existing.kind != "dir":
                raise TreeError(f"{name}: parent {parent} is not a directory")
            parent = parent.parent
        old = self._entries.get(name)
        if old is not None and old != entry:
            if old.kind == entry.kind == "dir":
                self._entries[name] = entry
                return
            raise TreeError(f"{name}: added twice with different contents")
        self._entries[name] = entry

    def directory(self, path: str, mode: int = DIR_MODE) -> None:
        self._put(path, Entry("dir", mode & 0o7777))

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._put(path, Entry("file", mode & 0o7777, data))

    def symlink(self, path: str, target: str) -> None:
        self._put(path, Entry("symlink", 0o777, target.encode("utf-8")))

    def merge(self, other: Tree, prefix: str = "") -> None:
        """Add every entry of ``other`` (below ``prefix`` when given)."""
        for name, entry in other.items():
            self._put(f"{prefix}/{name}" if prefix else name, entry)

    def add_directory_from_disk(self, source: Path, prefix: str) -> None:
        """Copy a directory tree from disk (files, directories, symlinks) below ``prefix``."""
        for path in sorted(source.rglob("*")):
            relative = path.relative_to(source).as_posix()
            name = f"{prefix}/{relative}"
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                self.symlink(name, str(path.readlink()))
            elif stat.S_ISDIR(info.st_mode):
                self.directory(name, info.st_mode)
            elif stat.S_ISREG(info.st_mode):
                self.file(name, path.read_bytes(), info.st_mode)

    def write_cpio(self, out: Writable, *, devices: Sequence[Device] = ()) -> None:
        """The tree as a newc archive, with ``devices`` added after their parent directory."""
        writer = CpioWriter(out)
        pending = {normalise(device.path): device for device in devices}
        for name, entry in self.items():
            if entry.kind == "dir":
                writer.directory(name, entry.mode)
            elif entry.kind == "file":
                writer.file(name, entry.data, entry.mode)
            else:
                writer.symlink(name, entry.data.decode("utf-8"))
            for path in sorted(p for p in pending if PurePosixPath(p).parent.as_posix() == name):
                device = pending.pop(path)
                writer.device(path, device.mode, device.major, device.minor)
        if pending:
            raise TreeError(f"device nodes without a parent directory: {sorted(pending)}")
        writer.close()

    def write_tar(self, out: BinaryIO, prefix: str = "") -> None:
        """The tree as a GNU tar (owner 0:0, mtime :data:`TREE_MTIME`), below ``prefix``."""
        writer = TarWriter(out.write)
        if prefix:
            writer.add(Member(name=prefix, type=DIRTYPE, mode=DIR_MODE, mtime=TREE_MTIME))
        for name, entry in self.items():
            full = f"{prefix}/{name}" if prefix else name
            if entry.kind == "dir":
                writer.add(Member(name=full, type=DIRTYPE, mode=entry.mode, mtime=TREE_MTIME))
            elif entry.kind == "symlink":
                writer.add(
                    Member(
                        name=full,
                        type=SYMTYPE,
                        mode=0o777,
                        mtime=TREE_MTIME,
                        linkname=entry.data.decode("utf-8"),
                    )
                )
            else:
                member = Member(
                    name=full, type=REGTYPE, mode=entry.mode, size=len(entry.data), mtime=TREE_MTIME
                )
                writer.add(member, iter((entry.data,)))
        writer.close()
