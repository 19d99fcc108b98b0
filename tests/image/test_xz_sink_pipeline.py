"""The reference compressor's pipeline (issue 16 item 5): same bytes, work off its thread."""

from __future__ import annotations

import hashlib
import io
import lzma
import tarfile
import threading
from pathlib import Path

from hats.archive.compress import SINK_CHUNK, SINK_QUEUE_DEPTH, XzSink
from hats.archive.tarstream import TarWriter
from hats.image.compose import compose
from hats.image.layers import ArchiveLayer


def test_sink_output_is_liblzma_preset_6_crc64_and_hands_off_big_pieces() -> None:
    # tar-like writes: 512-byte headers, a 5 MiB member, a tail
    pieces = [b"h" * 512, bytes(range(256)) * (5 * 4096), b"t" * 512, b"\0" * 10240]
    data = b"".join(pieces)
    out, tar_out = io.BytesIO(), io.BytesIO()
    seen: list[int] = []
    sink = XzSink(out, tar_out, seen.append)
    for piece in pieces:
        sink.write(piece)
    sink.close()
    # the reference: xz -T1 -6, i.e. liblzma's single-threaded encoder, CRC64
    expected = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6)
    assert out.getvalue() == expected
    assert sink.xz_sha256.hexdigest() == hashlib.sha256(expected).hexdigest()
    assert sink.xz_size == len(expected)
    assert tar_out.getvalue() == data
    assert sink.tar_sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    assert sink.tar_size == sum(seen) == len(data)
    stats = sink.stats
    assert stats.tar_bytes == len(data)
    # batched: no hand-off below SINK_CHUNK except the last one
    assert stats.chunks == len(seen) <= len(data) // SINK_CHUNK + 1
    assert stats.first_input is not None and stats.finished is not None
    assert stats.finished >= stats.first_input and stats.cpu > 0


def test_plan_pass_without_digests_sees_the_same_tree(tmp_path: Path) -> None:
    base = tmp_path / "base.tar"
    with tarfile.open(base, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, body in (("bin/sh", b"#!/bin/busybox\n"), ("etc/x", b"x" * 3000)):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    layers = [ArchiveLayer("base", base)]
    sizes = []
    trees = []
    for digests in (True, False):
        writer = TarWriter(lambda _data: None)
        trees.append(compose(layers, writer, digests=digests))
        sizes.append(writer.offset)
    full, planned = trees
    assert sizes[0] == sizes[1] == base.stat().st_size
    assert full.member_count == planned.member_count
    assert sorted(full.entries) == sorted(planned.entries)
    assert full.entries["etc/x"].sha256 == hashlib.sha256(b"x" * 3000).hexdigest()
    assert planned.entries["etc/x"].sha256 is None
    assert planned.entries["bin/sh"].head == full.entries["bin/sh"].head == b"#!/bin/busybox\n"


def test_abort_drops_queued_chunks_instead_of_compressing_them() -> None:
    # A stop (SIGTERM, an error elsewhere) must be prompt: the worker finishes at
    # most the chunk in hand; what is queued behind it is dropped, and no flush.
    gate = threading.Event()

    def held(_size: int) -> None:
        gate.wait(30)

    sink = XzSink(io.BytesIO(), progress=held)
    for _ in range(1 + SINK_QUEUE_DEPTH):  # one in the worker's hands, the queue full
        sink.write(bytes(SINK_CHUNK))
    stopper = threading.Thread(target=sink.abort)
    stopper.start()
    gate.set()
    stopper.join(30)
    assert not stopper.is_alive()
    assert sink.stats.chunks <= 1  # 0 when the stop came before it looked
