"""Re-pack mmdebstrap's tarball the way Oak packs its base image.

Oak runs ``tar --sort=name --mtime='2000-01-01Z' --numeric-owner -C root -cf
base-image.tar .``. The equivalent here, done in Python so that it does not
depend on the mmdebstrap mode or on the host's tar:

* names ``./`` and ``./<path>`` (directories with a trailing ``/``), ``./``
  first, in GNU tar ``--sort=name`` order: depth first, the entries of each
  directory sorted bytewise (i.e. sorted by the tuple of path components);
* GNU format (Python :mod:`tarfile`), numeric uid/gid kept, user and group
  names empty, every mtime 946684800, no pax headers (so no xattrs: stage1's
  unpacker ignores them anyway);
* hard links: the first name of a link group (in output order) carries the
  data, the others are hard-link entries pointing at it;
* the contents of :data:`~hats.base.recipe.OUTPUT_EMPTY_DIRS` are dropped.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from hats.base.recipe import SOURCE_DATE_EPOCH

_SUPPORTED = {
    tarfile.REGTYPE,
    tarfile.AREGTYPE,
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.FIFOTYPE,
}


class TarNormaliseError(Exception):
    """The input tarball has something the normaliser cannot represent."""


def relpath(name: str) -> str:
    """``./etc/hosts``, ``/etc/hosts``, ``etc/hosts/`` → ``etc/hosts``; root → ``""``."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise TarNormaliseError(f"{name}: path with '..'")
    return "/".join(parts)


def sort_key(rel: str) -> tuple[bytes, ...]:
    """GNU tar ``--sort=name`` order for a relative path ('' is the root)."""
    if not rel:
        return ()
    return tuple(p.encode("utf-8", "surrogateescape") for p in rel.split("/"))


def out_name(rel: str) -> str:
    """The stored name: ``.`` for the root (tarfile adds the ``/``), else ``./rel``."""
    return "./" + rel if rel else "."


def _dropped(rel: str, empty_dirs: Iterable[str]) -> bool:
    return any(rel.startswith(d + "/") for d in empty_dirs)


class _HashingWriter:
    """A write-only file wrapper that hashes what goes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self._raw.write(data)

    def tell(self) -> int:
        return self._raw.tell()

    def flush(self) -> None:
        self._raw.flush()


@dataclass(frozen=True)
class NormaliseResult:
    sha256: str
    size: int
    entries: int


def normalise(
    src: Path,
    dst: BinaryIO,
    *,
    empty_dirs: Iterable[str] = (),
    progress: Callable[[str], None] | None = None,
) -> NormaliseResult:
    """Read the tarball ``src`` and write its normalised form to ``dst``."""
    empty = tuple(empty_dirs)
    writer = _HashingWriter(dst)
    with tarfile.open(src, "r:") as tin:
        members: dict[str, tarfile.TarInfo] = {}
        for member in tin:
            rel = relpath(member.name)
            if member.type not in _SUPPORTED:
                raise TarNormaliseError(f"{member.name}: unsupported entry type {member.type!r}")
            if _dropped(rel, empty):
                continue
            # A later entry for the same path replaces the earlier one (as on extraction).
            members[rel] = member
        if "" not in members:
            root = tarfile.TarInfo(".")
            root.type = tarfile.DIRTYPE
            root.mode = 0o755
            members[""] = root

        # Hard-link groups: the first name in output order carries the data.
        groups: dict[str, list[str]] = {}
        for rel, member in members.items():
            if member.type == tarfile.LNKTYPE:
                target = relpath(member.linkname)
                while target in members and members[target].type == tarfile.LNKTYPE:
                    target = relpath(members[target].linkname)
                if target not in members or not members[target].isreg():
                    raise TarNormaliseError(f"{member.name}: hard link to non-file {target}")
                groups.setdefault(target, [target]).append(rel)
        first_of: dict[str, str] = {}
        data_of: dict[str, tarfile.TarInfo] = {}
        for target, names in groups.items():
            first = min(names, key=sort_key)
            data_of[first] = members[target]
            for name in names:
                first_of[name] = first

        order = sorted(members, key=sort_key)
        if progress is not None:
            progress(f"writing {len(order)} entries")
        sink = cast(BinaryIO, writer)
        with tarfile.open(fileobj=sink, mode="w", format=tarfile.GNU_FORMAT) as tout:
            for rel in order:
                member = members[rel]
                info = tarfile.TarInfo(out_name(rel))
                info.uid = member.uid
                info.gid = member.gid
                info.uname = ""
                info.gname = ""
                info.mtime = SOURCE_DATE_EPOCH
                info.mode = member.mode & 0o7777
                data_from: tarfile.TarInfo | None = None
                if rel in first_of:
                    data = data_of[first_of[rel]]
                    info.mode = data.mode & 0o7777
                    info.uid = data.uid
                    info.gid = data.gid
                    if first_of[rel] == rel:
                        info.type = tarfile.REGTYPE
                        data_from = data
                    else:
                        info.type = tarfile.LNKTYPE
                        info.linkname = out_name(first_of[rel])
                elif member.isreg():
                    info.type = tarfile.REGTYPE
                    data_from = member
                else:
                    info.type = member.type
                    info.linkname = member.linkname if member.issym() else ""
                    info.devmajor = member.devmajor
                    info.devminor = member.devminor
                if data_from is not None:
                    info.size = data_from.size
                    handle = tin.extractfile(data_from)
                    if handle is None:  # pragma: no cover - regular files always have data
                        raise TarNormaliseError(f"{data_from.name}: no data")
                    with handle:
                        tout.addfile(info, handle)
                else:
                    tout.addfile(info)
    return NormaliseResult(writer.digest.hexdigest(), writer.size, len(order))
