"""Helpers for the stage1 tests: build archives, read back what was unpacked,
and compare it with the image builder's prediction (``EffectiveTree``)."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from hats.archive import tarformat as tf
from hats.archive.tarformat import Member
from hats.archive.tarstream import TarReader, TarWriter
from hats.image.compose import read_tree
from hats.image.tree import EffectiveTree, Entry
from hats.stage1.rootpath import Root

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
NODE_KINDS = ("fifo", "chardev", "blockdev")


@dataclass
class Spec:
    """One archive member for :func:`archive`."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    mtime: int = 946684800
    link: str = ""
    uid: int = 0
    device: tuple[int, int] = (0, 0)


TYPES = {
    "file": tf.REGTYPE,
    "dir": tf.DIRTYPE,
    "symlink": tf.SYMTYPE,
    "hardlink": tf.LNKTYPE,
    "fifo": tf.FIFOTYPE,
    "chardev": tf.CHRTYPE,
    "blockdev": tf.BLKTYPE,
}


def archive(*specs: Spec) -> bytes:
    """A GNU tar (our writer: long names as ``././@LongLink``) of ``specs`` in order."""
    out = io.BytesIO()
    writer = TarWriter(out.write)
    for spec in specs:
        member = Member(
            name=spec.name,
            type=TYPES[spec.kind],
            mode=spec.mode,
            mtime=spec.mtime,
            uid=spec.uid,
            linkname=spec.link,
            size=len(spec.data) if spec.kind == "file" else 0,
            devmajor=spec.device[0],
            devminor=spec.device[1],
        )
        writer.add(member, iter([spec.data]) if spec.kind == "file" else None)
    writer.close()
    return out.getvalue()


def tree_of(data: bytes) -> EffectiveTree:
    return read_tree(TarReader(io.BytesIO(data), "test archive"))


@dataclass(frozen=True)
class Seen:
    """One path as found on disk (or as predicted)."""

    kind: str
    mode: int
    sha256: str | None = None
    link: str = ""


def on_disk(root: Path, path: str) -> Seen | None:
    """What ``path`` names inside ``root`` (symlinks in parents followed inside root)."""
    with Root(str(root)) as base:  # closes the directory it remembers
        try:
            parts = base.resolve(path.split("/"), follow_final=False, strict=True)
        except OSError:
            return None
        host = base.host(parts)
    info = os.lstat(host)
    if stat.S_ISLNK(info.st_mode):
        return Seen("symlink", 0o777, None, os.readlink(host))
    if stat.S_ISDIR(info.st_mode):
        return Seen("dir", stat.S_IMODE(info.st_mode))
    if stat.S_ISREG(info.st_mode):
        digest = hashlib.sha256(Path(host).read_bytes()).hexdigest()
        return Seen("file", stat.S_IMODE(info.st_mode), digest)
    kinds = {stat.S_IFIFO: "fifo", stat.S_IFCHR: "chardev", stat.S_IFBLK: "blockdev"}
    return Seen(kinds.get(stat.S_IFMT(info.st_mode), "other"), stat.S_IMODE(info.st_mode))


def predicted(entry: Entry, *, mknod: bool = False) -> Seen:
    """What stage1 leaves for a winning tree entry.

    Devices and FIFOs are empty regular files for tar-rs 0.4.40 (``mknod`` off).
    """
    kind = entry.kind
    if kind == "hardlink":
        kind = "file"
    if kind in NODE_KINDS and not mknod:
        return Seen("file", entry.mode, EMPTY_SHA256)
    if kind == "symlink":
        return Seen("symlink", 0o777, None, entry.linkname)
    if kind == "file":
        return Seen("file", entry.mode, entry.sha256 or EMPTY_SHA256)
    return Seen(kind, entry.mode)


def mismatches(
    tree: EffectiveTree, root: Path, *, mknod: bool = False, hardlink_modes: bool = True
) -> list[tuple[str, Seen, Seen | None]]:
    """Tree entries whose path on disk is not what the tree predicts.

    ``hardlink_modes=False`` skips the mode of hard links: the tree gives a hard
    link its own header's mode, while on disk it shares its target's inode.
    """
    out: list[tuple[str, Seen, Seen | None]] = []
    for path, entry in sorted(tree.entries.items()):
        want = predicted(entry, mknod=mknod)
        got = on_disk(root, path)
        if not hardlink_modes and entry.kind == "hardlink" and got is not None:
            want = Seen(want.kind, got.mode, want.sha256, want.link)
        if got != want:
            out.append((path, want, got))
    return out


def snapshot(root: Path, *, mtimes: bool = False) -> dict[str, tuple[object, ...]]:
    """Every path under ``root`` (not following symlinks): type, mode & 0o777,
    content digest, link target, for files the hard-link group size (and, with
    ``mtimes``, their mtime)."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            host = os.path.join(dirpath, name)
            rel = os.path.relpath(host, root)
            info = os.lstat(host)
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("symlink", os.readlink(host))
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = ("dir", stat.S_IMODE(info.st_mode) & 0o777)
            elif not stat.S_ISREG(info.st_mode):
                out[rel] = ("node", stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode) & 0o777)
            else:
                digest = hashlib.sha256(Path(host).read_bytes()).hexdigest()
                out[rel] = ("file", stat.S_IMODE(info.st_mode) & 0o777, digest, info.st_nlink)
                if mtimes:
                    out[rel] += (int(info.st_mtime),)
    return out
