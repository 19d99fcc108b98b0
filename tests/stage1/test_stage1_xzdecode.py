"""hats.archive.xzdecode: the streaming, parallel .xz decoder stage1 uses.

Expected values come from liblzma itself (``lzma.decompress``) and from
``xz``; the multi-block images from our encoder (hats.archive.xzparallel,
bytes equal to ``xz -T2 --block-size``) and from ``xz`` itself.
"""

from __future__ import annotations

import io
import lzma
import os
import struct
import subprocess
import threading
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hats.archive import xzdecode, xzformat
from hats.archive.xzdecode import XzDecodeError, XzDecoder, XzSplitter
from hats.archive.xzparallel import ParallelXzSink

BLOCK = 4096


def multi_block(data: bytes, block_size: int = BLOCK) -> bytes:
    out = io.BytesIO()
    sink = ParallelXzSink(out, block_size, jobs=1)
    sink.write(data)
    sink.close()
    return out.getvalue()


DATA = b"".join(b"line %d of the tar stream\n" % i for i in range(3000)) + os.urandom(9000)
MULTI = multi_block(DATA)
SINGLE = lzma.compress(DATA, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64)
XZ_T2 = subprocess.run(
    ["xz", "-T2", "--block-size=8192", "-6", "-c", "--check=crc32"],
    input=DATA,
    capture_output=True,
    check=True,
).stdout


def decode_in_pieces(image: bytes, feed_size: int, workers: int = 2) -> bytes:
    return xzdecode.decompress(image, workers, feed_size=feed_size)


def test_our_multi_block_image_is_decoded_in_parallel_blocks() -> None:
    assert lzma.decompress(MULTI) == DATA  # the fixture is what it says
    with XzDecoder(2) as decoder:
        out = b"".join(decoder.feed(MULTI)) + b"".join(decoder.finish())
        assert decoder.mode == "parallel"
        assert decoder.blocks == -(-len(DATA) // BLOCK)
    assert out == DATA


def test_xz_t2_crc32_image_is_decoded_in_parallel_blocks() -> None:
    with XzDecoder(2) as decoder:
        out = b"".join(decoder.feed(XZ_T2)) + b"".join(decoder.finish())
        assert decoder.mode == "parallel"
        assert decoder.blocks == -(-len(DATA) // 8192)
    assert out == DATA


def test_single_block_reference_image_uses_one_streaming_decoder() -> None:
    with XzDecoder(2) as decoder:
        pieces = list(decoder.feed(SINGLE)) + list(decoder.finish())
        assert decoder.mode == "sequential"
        assert decoder.blocks == 0
    assert b"".join(pieces) == DATA
    assert max(map(len, pieces)) <= xzdecode.PIECE


def test_sequential_output_comes_in_bounded_pieces() -> None:
    """A 64 MiB bomb in a few KiB: never handed out in one piece."""
    bomb = lzma.compress(bytes(64 << 20), preset=0)
    with XzDecoder(1) as decoder:
        sizes = [len(piece) for piece in decoder.feed(bomb)]
        sizes += [len(piece) for piece in decoder.finish()]
    assert sum(sizes) == 64 << 20
    assert max(sizes) == xzdecode.PIECE


def test_empty_stream() -> None:
    assert decode_in_pieces(lzma.compress(b""), 5) == b""


def test_blocks_are_decoded_on_worker_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    names: set[str] = set()
    real = xzdecode.decode_block

    def spy(task: xzdecode.BlockTask, memlimit: int = xzdecode.MEMLIMIT) -> bytes:
        names.add(threading.current_thread().name)
        return real(task, memlimit)

    monkeypatch.setattr(xzdecode, "decode_block", spy)
    assert decode_in_pieces(MULTI, len(MULTI)) == DATA
    assert names and all(name.startswith("xz-block") for name in names)


@pytest.mark.parametrize("workers", [1, 3])
def test_blocks_in_flight_are_bounded(workers: int) -> None:
    seen: list[int] = []
    with XzDecoder(workers) as decoder:
        for _ in decoder.feed(MULTI):
            seen.append(len(decoder._flight))
        seen.append(len(decoder._flight))
        list(decoder.finish())
    assert max(seen) <= 2 * workers


def test_in_flight_bytes_bound_holds_one_block_at_least() -> None:
    with XzDecoder(4, in_flight_bytes=1) as decoder:
        for _ in decoder.feed(MULTI):
            assert len(decoder._flight) <= 1
        assert len(decoder._flight) <= 1
        out = b"".join(decoder.finish())
    assert len(out) <= len(DATA)


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=20000), st.integers(1, 3), st.integers(1, 5000))
def test_random_data_equals_lzma_decompress(data: bytes, workers: int, feed: int) -> None:
    for image in (multi_block(data, 2048), lzma.compress(data)):
        assert decode_in_pieces(image, feed, workers) == lzma.decompress(image) == data


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["multi", "single", "xz"]), st.integers(0, 1 << 30), st.integers(1, 9000))
def test_any_truncation_is_an_error(which: str, cut: int, feed: int) -> None:
    image = {"multi": MULTI, "single": SINGLE, "xz": XZ_T2}[which]
    cut %= len(image)
    with pytest.raises(XzDecodeError):
        decode_in_pieces(image[:cut], feed)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["multi", "single", "xz"]), st.integers(0, 1 << 30), st.integers(0, 7))
def test_any_bit_flip_is_an_error(which: str, where: int, bit: int) -> None:
    image = bytearray({"multi": MULTI, "single": SINGLE, "xz": XZ_T2}[which])
    where %= len(image)
    image[where] ^= 1 << bit
    with pytest.raises(XzDecodeError):
        decode_in_pieces(bytes(image), 3000)


@pytest.mark.parametrize("image", [MULTI, SINGLE], ids=["multi", "single"])
@pytest.mark.parametrize("extra", [b"\x00\x00\x00\x00", b"x", lzma.compress(b"second stream")])
def test_nothing_may_follow_the_stream(image: bytes, extra: bytes) -> None:
    with pytest.raises(XzDecodeError, match=r"after the end|index"):
        decode_in_pieces(image + extra, 4096)


def test_a_later_block_without_sizes_is_refused() -> None:
    blocks = [task for task in XzSplitter().feed(MULTI) if isinstance(task, xzdecode.BlockTask)]
    second_at = blocks[1].offset
    # A valid header (CRC32 good) for block 2 that records neither size.
    body = bytes((2, 0x00, xzformat.LZMA2_ID, 1, 0x16, 0, 0, 0))
    header = body + struct.pack("<I", zlib.crc32(body))
    hostile = MULTI[:second_at] + header + MULTI[second_at + len(header) :]
    with pytest.raises(XzDecodeError, match=r"block 2 at byte \d+: its header does not record"):
        decode_in_pieces(hostile, len(hostile))


def test_a_block_claiming_too_much_is_refused() -> None:
    size = xzdecode.MAX_BLOCK_UNCOMPRESSED + 1
    body = bytearray((0, 0xC0)) + xzformat.encode_vli(100) + xzformat.encode_vli(size)
    body += bytes((xzformat.LZMA2_ID, 1, 0x16))
    body += bytes(-(len(body) + 4) % 4)
    body[0] = (len(body) + 4) // 4 - 1
    header = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
    image = xzformat.stream_header() + header + bytes(200)
    with pytest.raises(XzDecodeError, match=r"block 1 at byte 12: claims \d+ bytes"):
        decode_in_pieces(image, 64)


def test_a_huge_dictionary_is_refused() -> None:
    """A 1.5 GiB dictionary: over the 128 MiB memory limit, refused before allocating."""
    filters = [{"id": lzma.FILTER_LZMA2, "dict_size": 1536 << 20, "preset": 0}]
    image = lzma.compress(b"x" * 1000, format=lzma.FORMAT_XZ, filters=filters)
    with pytest.raises(XzDecodeError, match=r"[Mm]emory"):
        decode_in_pieces(image, 4096)


def test_not_xz_is_refused() -> None:
    with pytest.raises(XzDecodeError, match="bad magic at byte 0"):
        decode_in_pieces(b"ustar" + bytes(100), 10)
