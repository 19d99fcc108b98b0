"""Multi-block xz: byte-identical to the real ``xz -T2 --block-size=B -6``, readable everywhere."""

from __future__ import annotations

import lzma
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xz_testdata import needs_xz, noise, text, xz_cli

from hats.archive import xzformat as xf
from hats.archive.compress import open_decompressed
from hats.archive.tarstream import TarReader
from hats.archive.xzparallel import (
    MAX_BLOCK_SIZE,
    MIN_BLOCK_SIZE,
    XzOptionError,
    check_block_size,
    compress_block,
    parse_size,
    xz_multiblock,
)
from hats.image.compose import read_tree

KiB, MiB = 1 << 10, 1 << 20


# (block size, input) pairs: empty, one byte, smaller than a block, exact multiples,
# one byte more, compressible and incompressible data, a block size that is no power of two.
CASES = [
    (64 * KiB, b""),
    (64 * KiB, b"a"),
    (64 * KiB, text(1000)),
    (64 * KiB, text(64 * KiB)),
    (64 * KiB, text(2 * 64 * KiB)),
    (64 * KiB, text(2 * 64 * KiB + 1)),
    (64 * KiB, noise(3 * 64 * KiB + 12345)),
    (100_000, text(350_000, seed=3)),
    (100_000, noise(200_000) + text(150_000)),
    (1 * MiB, b""),
    (1 * MiB, text(300_000, seed=4)),
    (1 * MiB, text(2 * MiB, seed=5)),
    (1 * MiB, text(MiB, seed=6) + noise(MiB // 2) + b"x"),
]


@needs_xz
@pytest.mark.parametrize(("block_size", "data"), CASES, ids=[f"{b}-{len(d)}" for b, d in CASES])
def test_equals_xz_cli(block_size: int, data: bytes) -> None:
    ours = xz_multiblock(data, block_size, jobs=2)
    assert ours == xz_cli(data, block_size)
    assert lzma.decompress(ours) == data


@needs_xz
def test_thread_count_changes_nothing() -> None:
    data = text(5 * 64 * KiB + 7, seed=9)
    outputs = {xz_multiblock(data, 64 * KiB, jobs=jobs) for jobs in (1, 2, 4)}
    outputs.add(xz_cli(data, 64 * KiB, threads=4))
    assert len(outputs) == 1


@needs_xz
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    block_size=st.integers(min_value=1, max_value=6000),
    data=st.binary(max_size=4000) | st.builds(text, st.integers(0, 20_000), st.integers(0, 9)),
)
def test_small_blocks_equal_xz_cli(block_size: int, data: bytes) -> None:
    # Below --xz-block-size's minimum, but the format rules are the same.
    if len(data) > 12 * block_size:
        data = data[: 12 * block_size]
    assert xz_multiblock(data, block_size, jobs=2) == xz_cli(data, block_size)


@needs_xz
@pytest.mark.slow
def test_incompressible_block_falls_back_like_xz() -> None:
    """24 MiB of noise in one block: LZMA2 exceeds liblzma's bound, xz stores it uncompressed."""
    size = 24 * MiB
    data = noise(size + 100, seed=size)
    ours = xz_multiblock(data, size, jobs=2)
    assert ours == xz_cli(data, size)
    header = ours[12 : 12 + (ours[12] + 1) * 4]
    assert header[-5] == 0  # properties byte: the 4 KiB dictionary of uncompressed chunks


def test_fallback_block_structure() -> None:
    """A block whose LZMA2 data would not fit the bound is written as uncompressed chunks."""
    data = noise(150_000)
    block_size = 200_000
    check = struct.pack("<Q", 0x1234)
    too_big = bytes(xf.block_buffer_bound(block_size))
    block = xf.mt_block(block_size, data, too_big, check, 8 * MiB)
    lzma2 = xf.uncompressed_lzma2(data)
    assert len(lzma2) == xf.lzma2_bound(len(data))
    parsed = xf.parse_block(block.data)
    assert parsed.uncompressed_size == len(data)
    assert parsed.unpadded_size == xf.block_header_size(len(lzma2), len(data)) + len(lzma2) + 8
    assert block.data[(block.data[0] + 1) * 4 - 5] == xf.lzma2_dict_props(4096) == 0
    decoder = lzma.LZMADecompressor(
        format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 4096}]
    )
    assert decoder.decompress(lzma2) == data


def test_outputs_are_read_by_lzma_our_reader_and_stage1s_way(tmp_path: Path) -> None:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for i in range(40):
            payload = text(9000 + i, seed=i)
            info = tarfile.TarInfo(f"./etc/file{i}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    tar_bytes = buf.getvalue()
    image = tmp_path / "image.tar.xz"
    image.write_bytes(xz_multiblock(tar_bytes, 64 * KiB, jobs=2))
    assert lzma.decompress(image.read_bytes()) == tar_bytes
    # The guest stage1 feeds launcher chunks to one LZMADecompressor, bounded output.
    decoder = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    got = bytearray()
    raw = image.read_bytes()
    for start in range(0, len(raw), 3000):
        got += decoder.decompress(raw[start : start + 3000], 1 << 12)
        while not decoder.needs_input and not decoder.eof:
            got += decoder.decompress(b"", 1 << 12)
    assert decoder.eof and bytes(got) == tar_bytes
    with open_decompressed(image) as stream:
        tree = read_tree(TarReader(stream, str(image)))
    assert "etc/file39" in tree.entries and tree.member_count == 40


# -- the container, piece by piece -------------------------------------------


@given(st.integers(min_value=0, max_value=(1 << 63) - 1))
def test_vli_round_trip(value: int) -> None:
    encoded = xf.encode_vli(value)
    assert xf.decode_vli(encoded + b"\xff", 0) == (value, len(encoded))
    assert len(encoded) == max(1, (value.bit_length() + 6) // 7)


def test_vli_rejects_bad_forms() -> None:
    for bad in (b"\x80\x00", b"\x80", b"\xff" * 9 + b"\x01"):
        with pytest.raises(xf.XzFormatError):
            xf.decode_vli(bad, 0)


def test_dictionary_properties_and_bounds() -> None:
    assert xf.lzma2_dict_props(8 * MiB) == 0x16
    assert xf.lzma2_dict_props(1) == xf.lzma2_dict_props(4096) == 0
    assert xf.lzma2_dict_props(6 * MiB) == 21
    assert xf.lzma2_dict_props(6 * MiB + 1) == 22
    assert xf.lzma2_bound(0) == 1 and xf.lzma2_bound(65536) == 65540
    assert xf.lzma2_bound(65537) == 65537 + 7
    assert xf.HEADERS_BOUND == 92
    # the reserved header sizes xz 5.4.1 writes
    assert xf.block_header_size(xf.block_buffer_bound(64 * KiB), 64 * KiB) == 16
    assert xf.block_header_size(xf.block_buffer_bound(8 * MiB), 8 * MiB) == 20


def test_empty_stream_is_xz_s() -> None:
    assembler = xf.StreamAssembler()
    empty = assembler.start() + assembler.finish()
    assert empty == lzma.compress(b"", format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64)
    assert len(empty) == 32


def test_parse_block_detects_any_corruption() -> None:
    for size in range(5000, 5100):  # one whose data needs padding
        block = compress_block(text(size), 64 * KiB)
        header_size = (block.data[0] + 1) * 4
        compressed = block.unpadded_size - header_size - 8
        padding = range(header_size + compressed, len(block.data) - 8)
        if padding:
            break
    assert xf.parse_block(block.data) == block
    positions = [*range(header_size), *padding]
    for pos in positions:
        damaged = bytearray(block.data)
        damaged[pos] ^= 0x01
        with pytest.raises(xf.XzFormatError):
            xf.parse_block(bytes(damaged))
    for cut in (0, 1, header_size, len(block.data) - 1):
        with pytest.raises(xf.XzFormatError):
            xf.parse_block(block.data[:cut])


def test_block_header_as_xz_writes_it() -> None:
    # `printf a | xz -T2 --block-size=64KiB -6`: sizes 5 and 1, reserved 16 bytes, CRC32
    header = xf.block_header(16, 5, 1, 0x16)
    assert header == bytes.fromhex("03c005012101160000000000126f941a")
    assert header[-4:] == struct.pack("<I", zlib.crc32(header[:-4]))


def test_split_single_block_rejects_other_streams() -> None:
    two_blocks = xz_multiblock(text(3000), 1000)
    for bad in (b"", b"not xz at all, really not", two_blocks, lzma.compress(b"x")[:-1]):
        with pytest.raises(xf.XzFormatError):
            xf.split_single_block(bad)
    crc32 = lzma.compress(b"abc", format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    with pytest.raises(xf.XzFormatError):
        xf.split_single_block(crc32)


# -- options ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text_value", "size"),
    [("8MiB", 8 * MiB), ("8M", 8 * MiB), ("512KiB", 512 * KiB), ("1g", 1 << 30), ("65536", 65536)],
)
def test_parse_size(text_value: str, size: int) -> None:
    assert parse_size(text_value, "--x") == size


@pytest.mark.parametrize("bad", ["", "8XB", "-1", "1.5MiB", "MiB", "8 MiB extra"])
def test_parse_size_rejects(bad: str) -> None:
    with pytest.raises(XzOptionError, match=r"--x: .* is not a size like 8MiB"):
        parse_size(bad, "--x")


def test_block_size_limits() -> None:
    assert check_block_size(MIN_BLOCK_SIZE) == MIN_BLOCK_SIZE
    assert check_block_size(MAX_BLOCK_SIZE) == MAX_BLOCK_SIZE
    for bad in (0, 1, MIN_BLOCK_SIZE - 1, MAX_BLOCK_SIZE + 1):
        with pytest.raises(XzOptionError, match=r"outside 64KiB\.\.256MiB \(recommended: 8MiB\)"):
            check_block_size(bad)
