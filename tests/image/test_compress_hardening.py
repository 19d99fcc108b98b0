"""Decompression against hostile input: bombs, huge dictionaries, corrupt streams.

Issue "[hardening]" item 3. The decompression-bomb memory peaks through the
public entry points are measured in ``tests/fuzz/test_fuzz_archive.py``;
here the rules of :mod:`hats.archive.compress` are checked directly.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from pathlib import Path

import pytest
import zstandard

from hats.archive import compress
from hats.archive.compress import InputError, open_decompressed
from hats.stage1.errors import Stage1Error
from hats.stage1.pipeline import ImagePipeline

ZEROS = 48 << 20


def compressed_zeros(fmt: str, size: int = ZEROS) -> bytes:
    chunk = bytes(1 << 20)
    if fmt == "xz":
        encoder: lzma.LZMACompressor | bz2.BZ2Compressor | zlib._Compress = lzma.LZMACompressor(
            preset=0
        )
    elif fmt == "bz2":
        encoder = bz2.BZ2Compressor(9)
    elif fmt == "gz":
        encoder = zlib.compressobj(9, wbits=31)
    else:
        zstd = zstandard.ZstdCompressor(level=3).compressobj()
        return b"".join(zstd.compress(chunk) for _ in range(size >> 20)) + zstd.flush()
    return b"".join(encoder.compress(chunk) for _ in range(size >> 20)) + encoder.flush()


@pytest.mark.parametrize(("fmt", "bound"), [("xz", 1), ("bz2", 1), ("gz", 1), ("zst", 2)])
def test_feed_yields_bounded_pieces_whatever_the_ratio(fmt: str, bound: int) -> None:
    """The issue's 3 KB .tar.bz2 became one 4.25 GB piece: now no piece exceeds 1 (2) MiB."""
    data = compressed_zeros(fmt)
    assert len(data) < ZEROS // 200  # the input is a bomb
    decoder = compress._Decompressor(fmt)
    total = 0
    largest = 0
    for piece in decoder.feed(data):
        total += len(piece)
        largest = max(largest, len(piece))
    assert total == ZEROS
    assert decoder.finished()
    assert largest <= bound << 20


@pytest.mark.parametrize("fmt", ["xz", "bz2", "gz", "zst"])
def test_concatenated_streams_in_any_chunking(fmt: str) -> None:
    first = compressed_zeros(fmt, 2 << 20)
    second = {
        "xz": lzma.compress(b"tail", format=lzma.FORMAT_XZ),
        "bz2": bz2.compress(b"tail"),
        "gz": zlib.compress(b"tail", wbits=31),
        "zst": zstandard.ZstdCompressor().compress(b"tail"),
    }[fmt]
    data = first + second
    for step in (1, 7, 4096, len(data)):
        decoder = compress._Decompressor(fmt)
        out = b"".join(
            piece
            for pos in range(0, len(data), step)
            for piece in decoder.feed(data[pos : pos + step])
        )
        assert out == bytes(2 << 20) + b"tail"
        assert decoder.finished()


def test_xz_stream_padding_between_streams_is_skipped() -> None:
    """xz stream padding (NUL bytes, .xz format §2.2) may separate concatenated streams."""
    data = lzma.compress(b"one") + bytes(8) + lzma.compress(b"two") + bytes(4)
    decoder = compress._Decompressor("xz")
    assert b"".join(decoder.feed(data)) == b"onetwo"
    assert decoder.finished()


def huge_dictionary_xz() -> bytes:
    """A valid .xz whose block header claims a 1 GiB LZMA2 dictionary (props byte 36).

    Layout (xz file format 1.0.4): 12-byte stream header, then the block
    header: size byte, flags, filter ID 0x21, props size 1, dictionary byte,
    padding, CRC32 of the header.
    """
    raw = bytearray(lzma.compress(b"hello" * 100, format=lzma.FORMAT_XZ, preset=6))
    size = (raw[12] + 1) * 4
    assert raw[14:16] == b"\x21\x01"  # one LZMA2 filter, no optional sizes
    raw[16] = 36  # dictionary (2 | 0) << (36 // 2 + 11) = 1 GiB
    raw[12 + size - 4 : 12 + size] = struct.pack("<I", zlib.crc32(raw[12 : 12 + size - 4]))
    return bytes(raw)


def test_xz_with_a_huge_dictionary_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "base.tar.xz"
    path.write_bytes(huge_dictionary_xz())
    with (
        pytest.raises(InputError, match=r"base\.tar\.xz: corrupt xz data") as err,
        open_decompressed(path) as stream,
    ):
        stream.read()
    assert "\n" not in str(err.value)


def zstd_frame(window_descriptor: int) -> bytes:
    """A zstd frame (RFC 8878): magic, descriptor 0 (no content size), window, one raw block."""
    block_header = (5 << 3 | 1).to_bytes(3, "little")  # last block, raw, 5 bytes
    return b"\x28\xb5\x2f\xfd\x00" + bytes([window_descriptor]) + block_header + b"hello"


@pytest.mark.parametrize(("descriptor", "ok"), [(0x88, True), (0x90, False), (0xA0, False)])
def test_zstd_window_above_128_mib_is_refused(tmp_path: Path, descriptor: int, ok: bool) -> None:
    """Window = 2 ** (10 + exponent): 0x88 is 128 MiB (the limit), 0x90 256 MiB, 0xA0 1 GiB."""
    path = tmp_path / "base.tar.zst"
    path.write_bytes(zstd_frame(descriptor))
    if ok:
        with open_decompressed(path) as stream:
            assert stream.read() == b"hello"
        return
    with pytest.raises(InputError, match="corrupt zst data"), open_decompressed(path) as stream:
        stream.read()


def _guest_pipeline(image: bytes, tmp_path: Path) -> None:
    with ImagePipeline(tmp_path, workers=1) as pipeline:
        pipeline.feed(image)
        pipeline.finish()


def test_guest_refuses_a_huge_dictionary(tmp_path: Path) -> None:
    with pytest.raises(Stage1Error, match=r"system image: \.xz: .*[Mm]emory"):
        _guest_pipeline(huge_dictionary_xz(), tmp_path)


def test_guest_corrupt_xz_is_a_stage1_error(tmp_path: Path) -> None:
    good = lzma.compress(b"data" * 1000, format=lzma.FORMAT_XZ)
    bad = good[:40] + bytes(b ^ 0xFF for b in good[40:60]) + good[60:]
    with pytest.raises(Stage1Error, match=r"system image: \.xz: "):
        _guest_pipeline(bad, tmp_path)
