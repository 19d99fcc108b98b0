"""Fuzzing the archive readers: tar headers, PAX records, compressed input, bombs.

Entry points (the ones hostile bytes reach):

- :class:`hats.archive.tarstream.TarReader` over bytes (stage1, the
  orchestrator's bundle, ``hats image`` all read tars with it);
- ``hats image inspect``'s path, :func:`hats.image.cli.load_tree`: format
  detection, threaded decompression (xz, gzip, zstd, bzip2), the reader and
  the effective tree;
- the orchestrator's :func:`hats.orchestrator.bundle.unpack_bundle`.

Every input may only fail with a HatsError, within a second and a bounded
Python memory peak (:func:`fuzz_support.check_hostile`); decompression bombs
must stay far below their output size.
"""

from __future__ import annotations

import bz2
import io
import lzma
import math
import os
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zstandard
from fuzz_support import check_hostile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from image_support import NUMERIC_FIELDS

from hats.archive import tarformat as tf
from hats.archive.tarstream import TarReader
from hats.demo.sample_bundle import sample_bundle_bytes
from hats.image.cli import load_tree
from hats.orchestrator.bundle import unpack_bundle


def fuzz(examples: int) -> settings:
    """Bounded examples, no per-example deadline (check_hostile times each input)."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# Seeds -------------------------------------------------------------------------------


def _tar(fmt: int, **options: object) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt, **options) as tar:  # type: ignore[call-overload]
        directory = tarfile.TarInfo("etc")
        directory.type = tarfile.DIRTYPE
        directory.mode = 0o755
        tar.addfile(directory)
        data = b"hello world\n" * 50
        info = tarfile.TarInfo("etc/" + "long-name-" * 12)
        info.size = len(data)
        info.mtime = 1234567890.5  # type: ignore[assignment]  # a PAX mtime in PAX format
        info.uname = "üser"
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("etc/link")
        link.type = tarfile.SYMTYPE
        link.linkname = "../" + "target-" * 20
        tar.addfile(link)
        device = tarfile.TarInfo("dev/null")
        device.type = tarfile.CHRTYPE
        device.devmajor, device.devminor = 1, 3
        tar.addfile(device)
        small = tarfile.TarInfo("etc/hostname")
        small.size = 5
        tar.addfile(small, io.BytesIO(b"hats\n"))
    return buffer.getvalue()


GNU = _tar(tarfile.GNU_FORMAT)
PAX = _tar(tarfile.PAX_FORMAT, pax_headers={"comment": "global", "uid": "0"})
SEEDS = [GNU, PAX]


def header_offsets(raw: bytes) -> list[int]:
    """Offsets of the header blocks of a valid archive (walking the size fields)."""
    offsets = []
    pos = 0
    while pos + 512 <= len(raw) and not tf.is_zero_block(raw[pos : pos + 512]):
        offsets.append(pos)
        size = tf.parse_number(raw[pos + 124 : pos + 136])
        pos += 512 + size + (-size % 512)
    return offsets


def sane(member: tf.Member) -> bool:
    """The documented ranges (tarformat's docstring) of an accepted member's numbers."""
    return (
        0 <= member.size <= 2**40
        and math.isfinite(member.mtime)
        and -(2**33) <= member.mtime < 2**33
        and 0 <= member.uid <= 2**32 - 2
        and 0 <= member.gid <= 2**32 - 2
        and all(0 <= n < 2**21 for n in (member.mode, member.devmajor, member.devminor))
    )


def read_everything(raw: bytes) -> int:
    """Read every member and its data; what is accepted must have sane numbers."""
    reader = TarReader(io.BytesIO(raw), "fuzz.tar")
    count = 0
    for member in reader:
        assert sane(member), member
        size = sum(len(chunk) for chunk in reader.chunks(4096))
        assert size == (member.size if member.is_regular else 0)
        count += 1
    return count


def test_seeds_are_valid() -> None:
    assert read_everything(GNU) == read_everything(PAX) == 5
    assert len(header_offsets(PAX)) > len(header_offsets(GNU)) > 5


# Byte mutations ------------------------------------------------------------------------

mutations = st.lists(
    st.tuples(st.integers(0, 1 << 16), st.binary(min_size=1, max_size=16), st.booleans()),
    min_size=1,
    max_size=6,
)


def mutate(raw: bytes, edits: list[tuple[int, bytes, bool]]) -> bytes:
    data = bytearray(raw)
    for where, value, flip in edits:
        pos = where % len(data)
        if flip:
            data[pos] ^= 1 << (value[0] % 8)
        else:
            data[pos : pos + len(value)] = value
    return bytes(data)


def fix_checksums(raw: bytes, offsets: list[int]) -> bytes:
    data = bytearray(raw)
    for pos in offsets:
        block = data[pos : pos + 512]
        block[148:156] = b"        "
        block[148:156] = b"%06o\x00 " % tf.checksum(bytes(block))
        data[pos : pos + 512] = block
    return bytes(data)


@fuzz(150)
@given(st.sampled_from(SEEDS), mutations, st.booleans())
def test_mutated_tars(seed: bytes, edits: list[tuple[int, bytes, bool]], fix: bool) -> None:
    data = mutate(seed, edits)
    if fix:  # let the mutation reach the field checks instead of the checksum check
        data = fix_checksums(data, header_offsets(seed))
    check_hostile(lambda: read_everything(data))


# Absurd numbers in every numeric header field ----------------------------------------


def base256(value: int, length: int) -> bytes:
    if value >= 0:
        return bytes([0x80]) + (value % 256 ** (length - 1)).to_bytes(length - 1, "big")
    value = max(value, -(256 ** (length - 1)))
    return bytes([0xFF]) + (256 ** (length - 1) + value).to_bytes(length - 1, "big")


@st.composite
def absurd_field(draw: st.DrawFn, length: int) -> bytes:
    kind = draw(st.sampled_from(["base256", "octal", "text", "raw"]))
    if kind == "base256":
        value = draw(
            st.sampled_from([2**80, -(2**80), -1, 2**33, 2**40 + 1, 2**63, -(2**63)])
            | st.integers(-(2**90), 2**90)
        )
        return base256(value, length)
    if kind == "octal":
        text = draw(st.sampled_from(["-1", "-0000001", "0o777", "+17", "7" * length, "1_0"]))
    elif kind == "text":
        text = draw(st.sampled_from(["inf", "nan", "abc", " ", "9", "8", "1e9", "٣"]))
    else:
        return draw(st.binary(min_size=length, max_size=length))
    raw = text.encode()[:length]
    return raw + b"\x00" * (length - len(raw))


@st.composite
def field_edits(draw: st.DrawFn, seed: bytes) -> bytes:
    offsets = header_offsets(seed)
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.sampled_from(offsets))
        start, length = NUMERIC_FIELDS[draw(st.sampled_from(sorted(NUMERIC_FIELDS)))]
        data[pos + start : pos + start + length] = draw(absurd_field(length))
    return fix_checksums(bytes(data), offsets)


@fuzz(150)
@given(st.sampled_from(SEEDS).flatmap(field_edits))
def test_absurd_header_numbers(data: bytes) -> None:
    check_hostile(lambda: read_everything(data))


# Absurd PAX values and records --------------------------------------------------------

PAX_KEYS = [
    "size",
    "mtime",
    "uid",
    "gid",
    "atime",
    "ctime",
    "path",
    "linkpath",
    "uname",
    "gname",
    "hdrcharset",
    "GNU.sparse.size",
    "comment",
]
ABSURD_VALUES = [
    "-1",
    "inf",
    "-inf",
    "nan",
    "NaN",
    "1e308",
    "1e999",
    str(2**80),
    str(2**64),
    str(2**33),
    "99999999999999999999999",
    "1" * 5000,
    "-0",
    "0x10",
    "+5",
    " 5",
    "",
    "abc",
    "1.5.5",
    "٣",
    "BINARY",
    "\x00",
    "a\x00b",
    "../../etc/passwd",
    "/" * 300,
]


def pax_record(key: bytes, value: bytes, skew: int = 0) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(max(length + skew, 0)).encode() + body


def extended(data: bytes, type_: bytes) -> bytes:
    block = bytearray(tf.encode_member(tf.Member(name="././@PaxHeader", size=len(data))))
    block[156:157] = type_
    return fix_checksums(bytes(block), [0]) + data + bytes(-len(data) % 512)


@st.composite
def pax_archives(draw: st.DrawFn) -> bytes:
    records = []
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from(PAX_KEYS) | st.text(max_size=8)).encode("utf-8", "replace")
        value = draw(st.sampled_from(ABSURD_VALUES) | st.text(max_size=20)).encode(
            "utf-8", "surrogateescape"
        )
        skew = draw(st.sampled_from([0, 0, 0, -1, 1, -100, 10**6]))
        records.append(pax_record(key, value, skew))
    data = b"".join(records)
    if draw(st.booleans()):
        data = data + bytes(draw(st.integers(0, 40)))
    type_ = draw(st.sampled_from([tf.XHDTYPE, tf.XGLTYPE, tf.SOLARIS_XHDTYPE]))
    where = draw(st.sampled_from(header_offsets(GNU)))
    return GNU[:where] + extended(data, type_) + GNU[where:]


@fuzz(200)
@given(pax_archives())
def test_absurd_pax_values(data: bytes) -> None:
    check_hostile(lambda: read_everything(data))


# Compressed input through `hats image inspect`'s path ---------------------------------


def compressors() -> dict[str, Callable[[bytes], bytes]]:
    return {
        "xz": lambda data: lzma.compress(data, format=lzma.FORMAT_XZ, preset=1),
        "gz": lambda data: zlib.compress(data, wbits=31),
        "bz2": lambda data: bz2.compress(data),
        "zst": lambda data: zstandard.ZstdCompressor().compress(data),
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-archive")


def inspect(path: Path) -> int:
    return len(load_tree(path).entries)


@fuzz(80)
@given(
    st.sampled_from(sorted(compressors())),
    st.sampled_from(SEEDS),
    mutations,
    st.integers(0, 100),
)
def test_mutated_compressed_input(
    workdir: Path, fmt: str, seed: bytes, edits: list[tuple[int, bytes, bool]], cut: int
) -> None:
    packed = compressors()[fmt](seed)
    data = mutate(packed, edits)
    if cut:
        data = data[: len(data) * cut // 100]
    path = workdir / f"input.{fmt}"
    path.write_bytes(data)
    check_hostile(lambda: inspect(path))


def test_clean_compressed_seeds_are_read(workdir: Path) -> None:
    for fmt, pack in compressors().items():
        path = workdir / f"clean.{fmt}"
        path.write_bytes(pack(PAX) + pack(GNU[:0]))
        assert inspect(path) == 5  # the members tarfile lists


# Decompression bombs ------------------------------------------------------------------

#: Zero bytes in each bomb: gzip's ratio is at most about 1:1000, so its bomb
#: must be larger for one 128 KiB read of input to hold more than the bound.
BOMB_SIZES = {"xz": 96 << 20, "bz2": 96 << 20, "zst": 96 << 20, "gz": 144 << 20}
BOMB_PEAK = 32 << 20


def bomb_chunks(size: int) -> Iterator[bytes]:
    """A tar with one member of ``size`` zero bytes, 1 MiB at a time."""
    yield tf.encode_member(tf.Member(name="zeros", size=size))
    zeros = bytes(1 << 20)
    for _ in range(size >> 20):
        yield zeros
    yield tf.end_of_archive(512 + size)


def write_bomb(path: Path, fmt: str) -> None:
    encoder: lzma.LZMACompressor | bz2.BZ2Compressor | zlib._Compress
    size = BOMB_SIZES[fmt]
    if fmt == "zst":
        zstd = zstandard.ZstdCompressor(level=3).compressobj()
        with path.open("wb") as out:
            for chunk in bomb_chunks(size):
                out.write(zstd.compress(chunk))
            out.write(zstd.flush())
        return
    if fmt == "xz":
        encoder = lzma.LZMACompressor(preset=0)
    elif fmt == "bz2":
        encoder = bz2.BZ2Compressor(9)
    else:
        encoder = zlib.compressobj(9, wbits=31)
    with path.open("wb") as out:
        for chunk in bomb_chunks(size):
            out.write(encoder.compress(chunk))
        out.write(encoder.flush())


@pytest.mark.parametrize("fmt", ["xz", "bz2", "gz", "zst"])
def test_decompression_bomb_memory_stays_bounded(workdir: Path, fmt: str) -> None:
    """The issue's bombs: a few KB of bzip2 or xz claiming gigabytes.

    The old reader decompressed each 128 KiB of input at once: all of it here.
    """
    path = workdir / f"bomb.tar.{fmt}"
    write_bomb(path, fmt)
    assert path.stat().st_size < BOMB_SIZES[fmt] // 700
    outcome = check_hostile(lambda: inspect(path), max_seconds=10, max_peak_bytes=BOMB_PEAK)
    assert outcome.error is None and outcome.value == 1


# The orchestrator's bundle reader ------------------------------------------------------

BUNDLE = sample_bundle_bytes()


def _unpack(workdir: Path, data: bytes) -> int:
    target = Path(tempfile.mkdtemp(dir=workdir)) / "bundle"
    try:
        unpack_bundle(data, target, uid=None, gid=None, ipc_socket_path="/run/ipc")
        return 1
    finally:
        for root, dirs, _files in os.walk(target.parent, followlinks=False):
            for name in dirs:
                path = os.path.join(root, name)
                if not os.path.islink(path):
                    os.chmod(path, stat.S_IRWXU)
        shutil.rmtree(target.parent, ignore_errors=True)


@fuzz(60)
@given(mutations, st.booleans())
def test_mutated_bundles(workdir: Path, edits: list[tuple[int, bytes, bool]], fix: bool) -> None:
    data = mutate(BUNDLE, edits)
    if fix:
        data = fix_checksums(data, header_offsets(BUNDLE))
    check_hostile(lambda: _unpack(workdir, data))


@fuzz(60)
@given(field_edits(BUNDLE))
def test_bundles_with_absurd_numbers(workdir: Path, data: bytes) -> None:
    check_hostile(lambda: _unpack(workdir, data))
