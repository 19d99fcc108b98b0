"""Compose layers into one archive stream and its effective tree.

The thin loop between the pure rules (:mod:`~hats.image.merge`,
:mod:`~hats.image.tree`) and the streams: every member of every layer goes
through :class:`~hats.image.merge.DepsMerge`, is written by a
:class:`~hats.archive.tarstream.TarWriter` and applied to an
:class:`~hats.image.tree.EffectiveTree`, while file data is streamed once
and hashed on the way.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Iterator

from hats.archive.tarformat import Member
from hats.archive.tarstream import TarReader, TarWriter
from hats.image.layers import Layer, members_of
from hats.image.merge import DepsMerge
from hats.image.tree import EffectiveTree, normalize

HEAD_SIZE = 128
KEEP_LIMIT = 64 * 1024
_KEEP_DIRS = ("etc/systemd/system/", "usr/lib/systemd/system/", "lib/systemd/system/")


def keeps_data(path: str | None, size: int) -> bool:
    """Whether the tree keeps a file's whole data (units and the key file)."""
    if path is None or size > KEEP_LIMIT:
        return False
    return path == "hats/tvs_public_keys.txt" or (
        path.startswith(_KEEP_DIRS) and path.endswith(".service")
    )


class _Tap:
    """Pass chunks through while hashing them (when ``digest``) and keeping the first bytes."""

    def __init__(self, keep_all: bool, digest: bool = True) -> None:
        self.sha = hashlib.sha256() if digest else None
        self.head = b""
        self._keep_all = keep_all
        self._kept: list[bytes] = []

    def run(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if self.sha is not None:
                self.sha.update(chunk)
            if len(self.head) < HEAD_SIZE:
                self.head = (self.head + chunk)[:HEAD_SIZE]
            if self._keep_all:
                self._kept.append(chunk)
            yield chunk

    @property
    def data(self) -> bytes | None:
        return b"".join(self._kept) if self._keep_all else None


def apply_member(
    tree: EffectiveTree,
    member: Member,
    layer: str,
    chunks: Iterable[bytes] | None,
    writer: TarWriter | None,
    digests: bool = True,
) -> None:
    """Write one member (when ``writer``) and apply it to ``tree``.

    With a writer the tree sees the name as written (the writer's spelling,
    not the input's: ``raw_name`` dropped), since stage1 sorts directories by it.
    Without ``digests`` files get no SHA-256 in the tree (the lint needs none).
    """
    if writer is not None and member.raw_name is not None:
        member = dataclasses.replace(member, raw_name=None)
    if not member.is_regular:
        if writer is not None:
            writer.add(member)
        tree.add(member, layer)
        return
    tap = _Tap(keeps_data(normalize(member.name), member.size), digests)
    stream = tap.run(chunks if chunks is not None else ())
    if writer is not None:
        writer.add(member, stream)
    else:
        for _ in stream:
            pass
    sha = tap.sha.hexdigest() if tap.sha is not None else None
    tree.add(member, layer, sha, tap.head, tap.data)


def compose(
    layers: Iterable[Layer],
    writer: TarWriter,
    on_layer: Callable[[str], None] | None = None,
    digests: bool = True,
) -> EffectiveTree:
    """Write the merged archive of ``layers`` and return its effective tree.

    ``digests=False`` leaves the files' SHA-256 out of the tree: the build's
    plan pass, which only lints and measures, saves hashing the whole image.
    """
    merge = DepsMerge()
    tree = EffectiveTree()
    for layer in layers:
        if on_layer is not None:
            on_layer(layer.name)
        for member, chunks in members_of(layer):
            *parents, final = merge.add(member)
            for parent in parents:
                apply_member(tree, parent, layer.name, None, writer, digests)
            apply_member(tree, final, layer.name, chunks, writer, digests)
    writer.close()
    return tree


def read_tree(reader: TarReader) -> EffectiveTree:
    """The effective tree of an existing archive (entries labelled ``#<member index>``)."""
    tree = EffectiveTree()
    for index, member in enumerate(reader):
        apply_member(tree, member, f"#{index}", reader.chunks(), None)
    return tree
