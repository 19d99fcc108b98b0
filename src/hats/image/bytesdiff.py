"""Why two images differ in bytes when their effective trees are equal.

``hats image diff`` compares what stage1 unpacks; two images with different
digests are still different images (a different ``system_image_sha256``).
This module reads each image once (:func:`read_image`: the effective tree,
the digests of the file and of the tar, the members' headers, the tail after
the last member, and the xz container's layout) and :func:`explain` names
what differs, most specific first:

- the compressed container: format, xz check, number of streams, blocks and
  their uncompressed sizes (``--xz-block-size``), stream padding; with the
  same layout and the same tar, the encoder itself (liblzma version, preset);
- the tar: member count (entries stage1 overwrites), member order, ownership
  (stage1 ignores it), mode bits stage1 drops, name spelling (``./``
  prefix), header format (GNU, PAX, ustar), data of overwritten members, and
  the padding after the last member (end-of-archive blocks and the record
  padding to 10240 bytes).

Pure except :func:`read_image` and :func:`xz_layout`, which read a file.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hats.archive import tarformat as tf
from hats.archive.compress import detect_format, open_decompressed
from hats.archive.tarformat import Member
from hats.archive.tarstream import Readable, TarReader
from hats.archive.xzformat import FOOTER_MAGIC, STREAM_MAGIC, XzFormatError, decode_vli
from hats.hashing import file_sha256_sized
from hats.image.compose import apply_member
from hats.image.tree import EffectiveTree

_CHECKS = {0: "none", 1: "CRC32", 4: "CRC64", 10: "SHA-256"}


@dataclass(frozen=True)
class XzLayout:
    """The container of an ``.xz`` file, from its index (the last stream's)."""

    check: str
    blocks: tuple[int, ...]  # uncompressed size of each block
    streams: int  # 1, or more when bytes precede the last stream
    stream_padding: int
    sized_headers: bool  # block headers record the sizes (liblzma's multi-threaded encoder)


@dataclass(frozen=True)
class MemberFacts:
    name: str  # as spelled in the archive
    kind: str
    mode: int
    uid: int
    gid: int
    uname: str
    gname: str
    mtime: int | float
    linkname: str
    size: int
    data_sha256: str


@dataclass
class ImageFacts:
    path: Path
    sha256: str
    size: int
    format: str
    tar_sha256: str
    tar_size: int
    tail: int  # bytes after the last member (end-of-archive blocks and record padding)
    members: list[MemberFacts] = field(default_factory=list)
    xz: XzLayout | None = None


class _Counting:
    """A readable that hashes and counts what passes through it."""

    def __init__(self, inner: Readable) -> None:
        self._inner = inner
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._inner.read(size)
        self.sha.update(data)
        self.size += len(data)
        return data


def xz_layout(path: Path) -> XzLayout | None:
    """The layout of an ``.xz`` file's last stream; None when it cannot be read."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            padding = 0
            while end >= 4:
                handle.seek(end - 4)
                if handle.read(4) != b"\0\0\0\0":
                    break
                end -= 4
                padding += 4
            if end < 24:
                return None
            handle.seek(end - 12)
            footer = handle.read(12)
            if footer[10:12] != FOOTER_MAGIC:
                return None
            index_size = (struct.unpack("<I", footer[4:8])[0] + 1) * 4
            check = _CHECKS.get(footer[9] & 0x0F, f"type {footer[9] & 0x0F}")
            handle.seek(end - 12 - index_size)
            index = handle.read(index_size)
            count, pos = decode_vli(index, 1)
            blocks: list[int] = []
            stored = 0
            for _ in range(count):
                unpadded, pos = decode_vli(index, pos)
                uncompressed, pos = decode_vli(index, pos)
                blocks.append(uncompressed)
                stored += (unpadded + 3) & ~3
            start = end - 12 - index_size - stored - 12
            handle.seek(max(start, 0))
            streams = 1 if start == 0 and handle.read(6) == STREAM_MAGIC else 2
            handle.seek(max(start, 0) + 12)
            flags = handle.read(2)[1:]
            sized = bool(blocks) and len(flags) == 1 and flags[0] & 0xC0 == 0xC0
    except (OSError, XzFormatError, struct.error, IndexError):
        return None
    return XzLayout(check, tuple(blocks), streams, padding, sized)


def _hashed(chunks: Iterator[bytes], sha: Any) -> Iterator[bytes]:
    for chunk in chunks:
        sha.update(chunk)
        yield chunk


def read_image(path: Path) -> tuple[EffectiveTree, ImageFacts]:
    """The effective tree of ``path`` and the facts :func:`explain` compares, in one read."""
    fmt = detect_format(path)
    tree = EffectiveTree()
    members: list[MemberFacts] = []
    with open_decompressed(path) as stream:
        counting = _Counting(stream)
        reader = TarReader(counting, str(path))
        end = 0
        for index, member in enumerate(reader):
            sha = hashlib.sha256()
            chunks = _hashed(reader.chunks(), sha) if member.is_regular else None
            apply_member(tree, member, f"#{index}", chunks, None)
            members.append(_facts(member, sha.hexdigest() if member.is_regular else ""))
            end = reader.offset + (-member.size % tf.BLOCK if member.is_regular else 0)
        while counting.read(1 << 20):
            pass
    sha256, size = file_sha256_sized(path)
    facts = ImageFacts(
        path=path,
        sha256=sha256,
        size=size,
        format=fmt,
        tar_sha256=counting.sha.hexdigest(),
        tar_size=counting.size,
        tail=counting.size - end,
        members=members,
        xz=xz_layout(path) if fmt == "xz" else None,
    )
    return tree, facts


def _facts(member: Member, data_sha256: str) -> MemberFacts:
    return MemberFacts(
        name=member.raw_name if member.raw_name is not None else member.name,
        kind=member.kind,
        mode=member.mode,
        uid=member.uid,
        gid=member.gid,
        uname=member.uname,
        gname=member.gname,
        mtime=member.mtime,
        linkname=member.linkname,
        size=member.size,
        data_sha256=data_sha256,
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _explain_container(a: ImageFacts, b: ImageFacts) -> list[str]:
    if a.format != b.format:
        return [f"compression: {a.format} vs {b.format}"]
    out: list[str] = []
    if a.xz is not None and b.xz is not None:
        if a.xz.check != b.xz.check:
            out.append(f"xz integrity check: {a.xz.check} vs {b.xz.check}")
        if a.xz.streams != b.xz.streams:
            out.append(f"xz streams: {a.xz.streams} vs {b.xz.streams}")
        if a.xz.blocks != b.xz.blocks:
            sizes = []
            for layout in (a.xz, b.xz):
                if len(layout.blocks) == 1:
                    sizes.append("1 block (single-block, the reference xz -T1)")
                else:
                    sizes.append(
                        f"{len(layout.blocks)} blocks of {max(layout.blocks)} bytes "
                        "(multi-block, --xz-block-size)"
                    )
            out.append(f"compression layout: {sizes[0]} vs {sizes[1]}")
        if a.xz.blocks == b.xz.blocks and a.xz.sized_headers != b.xz.sized_headers:
            kinds = [
                "with sizes (multi-threaded xz, --xz-block-size)"
                if layout.sized_headers
                else "without sizes (the reference xz -T1)"
                for layout in (a.xz, b.xz)
            ]
            out.append(f"compression layout: xz block headers {kinds[0]} vs {kinds[1]}")
        if a.xz.stream_padding != b.xz.stream_padding:
            out.append(f"xz stream padding: {a.xz.stream_padding} vs {b.xz.stream_padding} bytes")
    if not out:
        out.append(
            "the compressed bytes: same tar and container layout, another encoder "
            "(liblzma version, preset or filters)"
        )
    return out


def _explain_tar(a: ImageFacts, b: ImageFacts) -> list[str]:
    out: list[str] = []
    ma, mb = a.members, b.members
    if len(ma) != len(mb):
        out.append(
            f"tar members: {len(ma)} vs {len(mb)} (entries that later ones overwrite, "
            "or parent directories, are listed in one and not the other)"
        )
    pairs = list(zip(ma, mb, strict=False))
    if len(ma) == len(mb) and [m.name for m in ma] != [m.name for m in mb]:
        if sorted(m.name for m in ma) == sorted(m.name for m in mb):
            out.append("tar member order differs (the same names in another order)")
        else:
            renamed = sum(1 for x, y in pairs if x.name != y.name)
            out.append(
                f"tar member names are spelled differently ({_count(renamed, 'member')}, "
                "e.g. a ./ prefix)"
            )
    same_names = [(x, y) for x, y in pairs if x.name == y.name]
    checks = (
        (
            "ownership (uid, gid, owner names; stage1 ignores it)",
            lambda x, y: (x.uid, x.gid, x.uname, x.gname) != (y.uid, y.gid, y.uname, y.gname),
        ),
        (
            "mode bits stage1 drops (setuid, setgid, sticky)",
            lambda x, y: x.mode != y.mode and x.mode & 0o777 == y.mode & 0o777,
        ),
        ("data of overwritten members", lambda x, y: x.data_sha256 != y.data_sha256),
    )
    for what, differs in checks:
        n = sum(1 for x, y in same_names if differs(x, y))
        if n:
            out.append(f"{what}: {_count(n, 'member')}")
    if a.tail != b.tail:
        out.append(
            f"tar padding after the last member: {a.tail} vs {b.tail} bytes "
            "(end-of-archive blocks and record padding)"
        )
    if not out:
        out.append(
            "tar header encoding (GNU, PAX or ustar headers, long-name records) with the "
            "same members"
        )
    return out


def explain(a: ImageFacts, b: ImageFacts) -> list[str]:
    """Why ``a`` and ``b`` differ in bytes (empty when their files are identical)."""
    if a.sha256 == b.sha256:
        return []
    if a.tar_sha256 == b.tar_sha256:
        return ["the tar is identical; " + reason for reason in _explain_container(a, b)]
    out = _explain_tar(a, b)
    if a.format != b.format or (
        a.xz is not None
        and b.xz is not None
        and (a.xz.blocks and b.xz.blocks)
        and (len(a.xz.blocks) == 1) != (len(b.xz.blocks) == 1)
    ):
        out.extend(_explain_container(a, b))
    return out
