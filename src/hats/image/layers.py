"""The layers of a HATs image and the members each one contributes.

Reference order (``H:client/system_image/BUILD``; spec system-image §1.1):

1. ``base`` — the base root filesystem, every member re-emitted;
2. ``admin_bin`` — ``/usr/bin/{oak_containers_agent, oak_containers_syslogd,
   orchestrator_main}``, mode **0755** (executables are forced to 0755);
3. ``interface`` — the empty ``/etc/systemd/network/10-enp0s1.network``, 0555;
4. ``services`` — ``/etc/systemd/system/{oak-orchestrator,oak-syslogd}.service``, 0555;
5. ``tvs_public_keys`` — ``/hats/tvs_public_keys.txt``, 0555;

then this project's additions, which the reference does not have: the
``hats-agents`` layer (the Python site directory of our own agents, when
they are the image's binaries) and the user's extra layers, in the order
given. Every added file has uid/gid 0, empty owner names and mtime
946684800, and its parent directories are created with mode 0755.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hats.archive import tarformat as tf
from hats.archive.compress import InputError, detect_format, open_decompressed, sniff_format
from hats.archive.tarformat import Member
from hats.archive.tarstream import CHUNK, TarReader
from hats.errors import HatsError
from hats.image.merge import SubTar, SubTarFile

BINARY_MODE = 0o755
DATA_MODE = 0o555


class LayerError(HatsError):
    """A layer source or destination is not acceptable."""


@dataclass(frozen=True)
class Content:
    """The bytes of one added file: in memory or in a file on disk."""

    data: bytes | None = None
    path: Path | None = None

    @classmethod
    def of_file(cls, path: Path) -> Content:
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        return cls(path=path)

    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        assert self.path is not None
        return self.path.stat().st_size

    def chunks(self, size: int) -> Iterator[bytes]:
        if self.data is not None:
            yield self.data
            return
        assert self.path is not None
        left = size
        with self.path.open("rb") as handle:
            while left:
                data = handle.read(min(CHUNK, left))
                if not data:
                    raise InputError(f"{self.path}: file changed while it was read")
                left -= len(data)
                yield data

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


@dataclass(frozen=True)
class LayerFile:
    """A file, directory or symlink of a :class:`FilesLayer`."""

    dest: str
    mode: int
    content: Content | None = None
    type: bytes = tf.REGTYPE
    linkname: str = ""


@dataclass(frozen=True)
class FilesLayer:
    """A ``pkg_tar`` of sources (see :class:`hats.image.merge.SubTar`)."""

    name: str
    files: tuple[LayerFile, ...]


@dataclass(frozen=True)
class ArchiveLayer:
    """A tar (plain or compressed) or a directory, merged member by member."""

    name: str
    path: Path
    mtime: int = tf.PORTABLE_MTIME  # for directories: the mtime every entry gets


Layer = FilesLayer | ArchiveLayer
Chunks = Iterator[bytes]


def check_dest(dest: str, where: str) -> str:
    """Validate a destination path and return it without the leading ``/``."""
    if not dest.startswith("/"):
        raise LayerError(f"{where}: destination {dest!r} must be an absolute path")
    parts = dest.strip("/").split("/")
    if any(p in ("", ".", "..") for p in parts) or "\x00" in dest:
        raise LayerError(f"{where}: destination {dest!r} is not a clean path")
    return "/".join(parts)


def hats_layers(
    *,
    orchestrator: Content,
    agent: Content,
    syslogd: Content,
    orchestrator_unit: Content,
    syslogd_unit: Content,
    tvs_keys: Content,
) -> list[FilesLayer]:
    """The four reference HATs layers after the base, in order."""
    return [
        FilesLayer(
            "admin_bin",
            (
                LayerFile("usr/bin/oak_containers_agent", BINARY_MODE, agent),
                LayerFile("usr/bin/oak_containers_syslogd", BINARY_MODE, syslogd),
                LayerFile("usr/bin/orchestrator_main", BINARY_MODE, orchestrator),
            ),
        ),
        FilesLayer(
            "interface",
            (LayerFile("etc/systemd/network/10-enp0s1.network", DATA_MODE, Content(data=b"")),),
        ),
        FilesLayer(
            "services",
            (
                LayerFile(
                    "etc/systemd/system/oak-orchestrator.service", DATA_MODE, orchestrator_unit
                ),
                LayerFile("etc/systemd/system/oak-syslogd.service", DATA_MODE, syslogd_unit),
            ),
        ),
        FilesLayer(
            "tvs_public_keys",
            (LayerFile("hats/tvs_public_keys.txt", DATA_MODE, tvs_keys),),
        ),
    ]


def _default_mode(st: os.stat_result) -> int:
    return 0o755 if st.st_mode & 0o111 else 0o644


def user_layer(name: str, source: Path, dest: str, mode: int | None) -> Layer:
    """An extra layer: a file, a directory or a tar (merged at ``/``).

    A file goes to ``dest`` (or ``dest/<name>`` when ``dest`` ends with
    ``/``); a directory's contents go under ``dest``. Modes: ``mode`` when
    given, else 0755 for executables and directories and 0644 for the rest.
    """
    where = f"layer {name}"
    try:
        st = source.lstat()
    except FileNotFoundError:
        raise InputError(f"{source}: no such file or directory ({where})") from None
    if stat.S_ISDIR(st.st_mode):
        base = check_dest(dest, where) if dest.strip("/") else ""
        return FilesLayer(name, tuple(_directory_files(source, base, mode)))
    if not stat.S_ISREG(st.st_mode):
        raise LayerError(f"{source}: not a regular file or directory ({where})")
    with source.open("rb") as handle:
        fmt = sniff_format(handle.read(tf.BLOCK))
    if fmt is not None and dest.rstrip("/") == "":
        return ArchiveLayer(name, source)
    if dest.endswith("/"):
        dest = dest + source.name
    target = check_dest(dest, where)
    file_mode = mode if mode is not None else _default_mode(st)
    return FilesLayer(name, (LayerFile(target, file_mode, Content(path=source)),))


def _directory_files(root: Path, base: str, mode: int | None) -> Iterator[LayerFile]:
    prefix = base + "/" if base else ""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        rel_prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        for entry in sorted(dirnames + filenames):
            full = Path(dirpath, entry)
            st = full.lstat()
            dest = prefix + rel_prefix + entry
            if stat.S_ISLNK(st.st_mode):
                yield LayerFile(dest, 0o777, type=tf.SYMTYPE, linkname=os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                yield LayerFile(dest, 0o755, type=tf.DIRTYPE)
            elif stat.S_ISREG(st.st_mode):
                file_mode = mode if mode is not None else _default_mode(st)
                yield LayerFile(dest, file_mode, Content(path=full))
            else:
                raise LayerError(f"{full}: only files, directories and symlinks can be added")


def members_of(layer: Layer) -> Iterator[tuple[Member, Chunks | None]]:
    """The members a layer contributes, in order, each with its data."""
    if isinstance(layer, FilesLayer):
        sub = SubTar()
        by_dest = {f.dest: f for f in layer.files}
        sources = [
            SubTarFile(f.dest, f.mode, f.content.size() if f.content else 0, f.type, f.linkname)
            for f in layer.files
        ]
        for member, src in sub.members(sources):
            if src is not None and member.is_regular:
                content = by_dest[src.dest].content
                assert content is not None
                yield member, content.chunks(member.size)
            else:
                yield member, None
        return
    if detect_format(layer.path) == "dir":
        yield from directory_members(layer.path, layer.mtime)
        return
    with open_decompressed(layer.path) as stream:
        reader = TarReader(stream, str(layer.path))
        for member in reader:
            yield member, reader.chunks()


def directory_members(root: Path, mtime: int) -> Iterator[tuple[Member, Chunks | None]]:
    """A directory as ``tar --sort=name --numeric-owner --mtime=@MTIME -C root .``.

    Names start with ``./``; each directory's entries are sorted by name and
    visited depth first; hard links after the first become link members;
    sockets are skipped (tar cannot store them).
    """
    seen: dict[tuple[int, int], str] = {}

    def visit(path: Path, name: str) -> Iterator[tuple[Member, Chunks | None]]:
        st = path.lstat()
        member = Member(
            name=name, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid, mtime=mtime
        )
        if stat.S_ISDIR(st.st_mode):
            member.type = tf.DIRTYPE
            member.name = name.rstrip("/") or "."
            yield member, None
            for child in sorted(os.listdir(path), key=os.fsencode):
                yield from visit(path / child, f"{member.name}/{child}")
            return
        if stat.S_ISSOCK(st.st_mode):
            return
        if st.st_nlink > 1 and not stat.S_ISLNK(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in seen:
                member.type, member.linkname = tf.LNKTYPE, seen[key]
                yield member, None
                return
            seen[key] = name
        if stat.S_ISLNK(st.st_mode):
            member.type, member.linkname = tf.SYMTYPE, os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            member.type, member.size = tf.REGTYPE, st.st_size
            yield member, Content(path=path).chunks(st.st_size)
            return
        elif stat.S_ISFIFO(st.st_mode):
            member.type = tf.FIFOTYPE
        else:
            member.type = tf.CHRTYPE if stat.S_ISCHR(st.st_mode) else tf.BLKTYPE
            member.devmajor, member.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        yield member, None

    yield from visit(root, "./")
