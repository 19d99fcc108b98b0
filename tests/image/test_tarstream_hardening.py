"""The tar reader against hostile archives: absurd numbers, PAX abuse, header floods.

Issue "[hardening]" items 2 and 4. Each test builds the archive by hand (the
header layout is the ustar/GNU one, see :mod:`hats.archive.tarformat`), reads
it with :class:`TarReader` and expects one-line :class:`TarFormatError`
naming the source, the member and the byte offset of its header.
"""

from __future__ import annotations

import contextlib
import io
import signal
import tarfile
import time
from collections.abc import Iterator

import pytest
from image_support import NUMERIC_FIELDS

from hats.archive import tarformat as tf
from hats.archive import tarstream
from hats.archive.tarformat import Member, TarFormatError
from hats.archive.tarstream import TarReader


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging) when the body runs longer than ``seconds``."""

    def expired(signum: int, frame: object) -> None:
        raise AssertionError(f"took more than {seconds} s (the reader hangs)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def fix_checksum(block: bytearray) -> bytes:
    block[148:156] = b"        "
    block[148:156] = b"%06o\x00 " % tf.checksum(bytes(block))
    return bytes(block)


def header(
    name: str = "f", type_: bytes = tf.REGTYPE, data_size: int = 0, **fields: bytes
) -> bytes:
    """A GNU header block; ``fields`` overwrite raw field bytes (e.g. ``mtime=b"..."``)."""
    block = bytearray(tf.encode_member(Member(name=name, size=data_size))[-512:])
    block[156:157] = type_
    for field, raw in fields.items():
        start, length = NUMERIC_FIELDS[field]
        assert len(raw) == length
        block[start : start + length] = raw
    return fix_checksum(block)


def base256(value: int, length: int) -> bytes:
    """GNU base-256: 0x80 then the big-endian value, or 0xFF and two's complement."""
    if value >= 0:
        return bytes([0x80]) + value.to_bytes(length - 1, "big")
    return bytes([0xFF]) + (256 ** (length - 1) + value).to_bytes(length - 1, "big")


def record(key: str, value: str) -> bytes:
    """One PAX record ``"<len> key=value\\n"`` (the length counts itself)."""
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def extended(data: bytes, type_: bytes = tf.XHDTYPE) -> bytes:
    block = header("././@PaxHeader", type_, len(data))
    return block + data + bytes(-len(data) % 512)


def member(name: str = "f", data: bytes = b"", **fields: bytes) -> bytes:
    return header(name, tf.REGTYPE, len(data), **fields) + data + bytes(-len(data) % 512)


END = bytes(1024)


def read_all(raw: bytes, source: str = "hostile.tar") -> list[Member]:
    reader = TarReader(io.BytesIO(raw), source)
    out = []
    with deadline(5):
        for item in reader:
            b"".join(reader.chunks())
            out.append(item)
    return out


def expect_error(raw: bytes, *fragments: str) -> str:
    with pytest.raises(TarFormatError) as err:
        read_all(raw)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("hostile.tar: ")
    for fragment in fragments:
        assert fragment in message, message
    return message


# Item 2: negative or absurd numbers -------------------------------------------------


def test_pax_size_minus_one_is_an_error_not_a_hang() -> None:
    raw = extended(record("size", "-1")) + member("x") + END
    expect_error(raw, "'x'", "PAX size '-1'", "(at byte 1024)")


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "infinity", "NaN"])
def test_pax_mtime_must_be_finite(value: str) -> None:
    raw = member("a") + extended(record("mtime", value)) + member("x") + END
    expect_error(raw, "'x'", "PAX mtime", "(at byte 1536)")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("mtime", "1e300"),
        ("mtime", "-99999999999"),
        ("mtime", "1" * 65),
        ("atime", "nan"),
        ("ctime", "1e40"),
        ("mtime", "abc"),
        ("size", "abc"),
        ("size", "1" * 21),
        ("size", str(2**41)),
        ("size", "+5"),
        ("uid", "-1"),
        ("uid", str(2**32)),
        ("gid", "1.5"),
        ("gid", ""),
    ],
)
def test_bad_pax_numbers_are_errors(key: str, value: str) -> None:
    raw = extended(record(key, value)) + member("x") + END
    expect_error(raw, "'x'", f"PAX {key}", "(at byte 1024)")


@pytest.mark.parametrize(
    ("field", "length", "value"),
    [
        ("mtime", 12, 2**80),
        ("mtime", 12, -(2**80)),
        ("mtime", 12, 2**33),
        ("size", 12, 2**80),
        ("size", 12, -1),
        ("uid", 8, 2**40),
        ("uid", 8, -1),
        ("gid", 8, 2**32 - 1),
        ("mode", 8, 2**40),
        ("mode", 8, -1),
        ("devmajor", 8, 2**50),
        ("devminor", 8, -5),
    ],
)
def test_absurd_base256_header_numbers_are_errors(field: str, length: int, value: int) -> None:
    raw = member("a", b"1") + member("name", **{field: base256(value, length)}) + END
    message = expect_error(raw, "(at byte 1024)")
    if field != "size" or value >= 0:  # a negative size fails before the name is known
        assert "'name'" in message and field in message


def test_octal_minus_sign_is_out_of_range() -> None:
    raw = member("x", uid=b"-000001\x00") + END
    expect_error(raw, "'x'", "uid -1 is out of range")


def test_largest_accepted_values_still_read() -> None:
    """The ranges are the documented ones, inclusive (values from tarformat's docstring)."""
    raw = (
        extended(record("mtime", str(2**33 - 1)) + record("uid", str(2**32 - 2)))
        + member("x", gid=base256(2**32 - 2, 8), devmajor=b"7777777\x00")
        + member("y", mtime=base256(-(2**33), 12))
        + END
    )
    x, y = read_all(raw)
    assert (x.mtime, x.uid, x.gid, x.devmajor) == (2**33 - 1, 2**32 - 2, 2**32 - 2, 2**21 - 1)
    assert y.mtime == -(2**33)


def test_fractional_mtime_as_tarfile_writes_it_is_accepted() -> None:
    info = tarfile.TarInfo("f")
    info.mtime = 0.00001  # type: ignore[assignment]  # tarfile writes "1e-05"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info)
    (got,) = read_all(buf.getvalue())
    assert got.mtime == 0.00001


# PAX record framing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"2 " * 200_000 + b"=x\n",  # was quadratic: each record re-scanned the rest
        b"9" * 5000 + b" path=x\n",  # was a ValueError traceback (int digit limit)
        b"30 path=x\n",  # length beyond the data
        b"10 path=x\nX",  # the record does not end with a newline
        b"9 pathx\n",  # no '='
        b"6 =ab\n",  # empty key
        b"x path=y\n",  # no length
    ],
)
def test_malformed_pax_records_are_errors(data: bytes) -> None:
    raw = extended(data) + member("x") + END
    start = time.perf_counter()
    expect_error(raw, "malformed PAX record", "(at byte 0)")
    assert time.perf_counter() - start < 1


def test_nul_padding_after_the_last_record_is_ignored() -> None:
    raw = extended(record("path", "long/name") + bytes(40)) + member("x") + END
    assert [m.name for m in read_all(raw)] == ["long/name"]


# Item 4: bounded extended headers -------------------------------------------------------


def test_global_headers_are_bounded_in_total() -> None:
    """The issue's 100 x 1 MiB global headers: the second one is past the 1 MiB total."""
    one = extended(record("comment", "x" * ((1 << 20) - 20)), tf.XGLTYPE)
    assert len(one) <= (1 << 20) + 512 + 512
    raw = one * 100 + member("x") + END
    expect_error(raw, "PAX global header", "too large", f"(at byte {len(one)})")


def test_global_header_keys_are_bounded() -> None:
    records = b"".join(record(f"k{i}", "v") for i in range(600))
    raw = extended(records, tf.XGLTYPE) + member("a") + extended(records, tf.XGLTYPE) + END
    expect_error(raw, "PAX global header", f"more than {tarstream.MAX_PAX_KEYS} PAX records")


def test_local_keys_are_bounded() -> None:
    records = b"".join(record(f"k{i}", "v") for i in range(tarstream.MAX_PAX_KEYS + 1))
    expect_error(extended(records) + member("x") + END, "more than 1024 PAX records")


def test_extended_data_before_one_member_is_bounded() -> None:
    half = extended(record("comment", "x" * (600 << 10)))
    expect_error(half + half + member("x") + END, "too large", f"(at byte {len(half)})")


def test_extended_header_count_before_one_member_is_bounded() -> None:
    raw = extended(b"") * (tarstream.MAX_EXTENDED_HEADERS + 1) + member("x") + END
    expect_error(raw, f"more than {tarstream.MAX_EXTENDED_HEADERS} extended headers")


def test_global_headers_apply_once_not_per_member() -> None:
    """The issue's many keys over many members: members cost the same whatever the globals.

    Measured against the same archive without the 1000 global keys, so the
    bound does not depend on the machine's speed (it was 12 times slower).
    """
    keys = b"".join(record(f"key{i}", "v" * 8) for i in range(1000))
    one = extended(record("mtime", "5.5")) + member("x")

    def timed(globals_: bytes) -> float:
        raw = extended(globals_ + record("uname", "g"), tf.XGLTYPE) + one * 4000 + END
        start = time.perf_counter()
        members = read_all(raw)
        elapsed = time.perf_counter() - start
        assert len(members) == 4000
        assert all(m.uname == "g" and m.mtime == 5.5 for m in members)
        return elapsed

    plain = min(timed(b"") for _ in range(2))
    heavy = min(timed(keys) for _ in range(2))
    assert heavy < 3 * plain + 0.05, f"{heavy:.2f} s with the globals, {plain:.2f} s without"


def test_global_fields_follow_tarfile_precedence() -> None:
    """A local header carries the globals (tarfile copies them into it): its path wins."""
    raw = (
        extended(record("path", "global") + record("uid", "7"), tf.XGLTYPE)
        + extended(record("gid", "3"))
        + header("././@LongLink", tf.GNUTYPE_LONGNAME, 5)
        + b"long\x00".ljust(512, b"\x00")
        + member("short")
        + END
    )
    with tarfile.open(fileobj=io.BytesIO(raw)) as reference:
        (info,) = reference.getmembers()
    (got,) = read_all(raw)
    assert (got.name, got.uid, got.gid) == (info.name, info.uid, info.gid) == ("global", 7, 3)
