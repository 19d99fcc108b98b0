"""Tar header bytes: the exact encoding rules_pkg's ``pkg_tar`` produces.

Sans-I/O: functions from header fields to bytes and back, nothing else.

The reference (rules_pkg 1.0.1 ``build_tar``) writes with Python's
``tarfile`` in GNU format, so these are the rules reproduced here (facts of
the format, checked against CPython's ``tarfile`` in the tests):

- a header block is 512 bytes: name(100) mode(8) uid(8) gid(8) size(12)
  mtime(12) chksum(8) type(1) linkname(100) magic+version(8) = ``"ustar  \\0"``
  uname(32) gname(32) devmajor(8) devminor(8) and 167 NUL bytes;
- numbers are zero-padded octal with ``digits - 1`` digits and a trailing NUL;
  a value that does not fit is written base-256 (first byte 0x80, or 0xFF
  for negative numbers) — GNU's extension; the mode is masked with 0o7777;
- devmajor/devminor are written only for character and block devices, NUL
  filled otherwise;
- the checksum is the unsigned byte sum with the checksum field taken as
  spaces, written as six octal digits, NUL, and the space that was there;
- a name longer than 100 bytes (UTF-8, surrogateescape) is preceded by a
  ``././@LongLink`` header of type ``L`` whose data is the name plus NUL;
  likewise a long link target with type ``K``; the main header keeps the
  first 100 bytes;
- directory names end with ``/``;
- the archive ends with two zero blocks and is padded to a multiple of the
  10240-byte record.

Reading follows ``tarfile``'s rules for the same reason: the reference read
its inputs with it. Where ``tarfile`` would silently stop or produce a
broken archive (bad checksum after the first member, unknown member types,
sparse files), :class:`TarFormatError` is raised instead.

Numeric fields read from an archive (header fields or PAX values) must lie in
these ranges (:func:`field_problem`; ``tarfile`` accepts anything, which
hangs or crashes later readers): ``size`` 0..2**40 (1 TiB, :data:`MAX_SIZE`);
``mtime`` (and PAX ``atime``/``ctime``) a finite number in
-2**33..2**33 - 1 (about years 1697..2242: what an 11-digit octal field holds,
mirrored; every ``time_t``/nanosecond clock holds it); ``uid``/``gid``
0..2**32 - 2 (``uid_t``; 2**32 - 1 means "unchanged" to ``chown``);
``mode``, ``devmajor`` and ``devminor`` 0..2**21 - 1 (what their 7-digit
octal fields hold; Linux device numbers are smaller).
"""

from __future__ import annotations

import dataclasses
import math

from hats.errors import HatsError
from hats.reproducible import EPOCH

BLOCK = 512
RECORD = 20 * BLOCK
GNU_MAGIC = b"ustar  \x00"
PORTABLE_MTIME = EPOCH  # 2000-01-01T00:00:00Z, rules_pkg's "portable" mtime

ENCODING = "utf-8"
ERRORS = "surrogateescape"

REGTYPE = b"0"
AREGTYPE = b"\x00"
LNKTYPE = b"1"
SYMTYPE = b"2"
CHRTYPE = b"3"
BLKTYPE = b"4"
DIRTYPE = b"5"
FIFOTYPE = b"6"
CONTTYPE = b"7"
GNUTYPE_LONGNAME = b"L"
GNUTYPE_LONGLINK = b"K"
GNUTYPE_SPARSE = b"S"
XHDTYPE = b"x"
XGLTYPE = b"g"
SOLARIS_XHDTYPE = b"X"

REGULAR_TYPES = (REGTYPE, AREGTYPE, CONTTYPE)
MEMBER_TYPES = (*REGULAR_TYPES, LNKTYPE, SYMTYPE, CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE)
TYPE_NAMES = {
    REGTYPE: "file",
    AREGTYPE: "file",
    CONTTYPE: "file",
    LNKTYPE: "hardlink",
    SYMTYPE: "symlink",
    CHRTYPE: "chardev",
    BLKTYPE: "blockdev",
    DIRTYPE: "dir",
    FIFOTYPE: "fifo",
}

_NAME_LEN = 100

#: Largest member data size accepted on reading (1 TiB).
MAX_SIZE = 1 << 40
#: Accepted modification times (and PAX access/change times), in seconds.
MIN_TIME = -(1 << 33)
MAX_TIME = (1 << 33) - 1
#: Largest uid/gid accepted on reading.
MAX_ID = (1 << 32) - 2
#: Largest mode and device number accepted on reading (a 7-digit octal field).
MAX_SMALL = (1 << 21) - 1
#: Inclusive range of each numeric member field on reading.
FIELD_RANGES: dict[str, tuple[int, int]] = {
    "size": (0, MAX_SIZE),
    "mtime": (MIN_TIME, MAX_TIME),
    "uid": (0, MAX_ID),
    "gid": (0, MAX_ID),
    "mode": (0, MAX_SMALL),
    "devmajor": (0, MAX_SMALL),
    "devminor": (0, MAX_SMALL),
}


class TarFormatError(HatsError):
    """A tar header or archive structure is invalid."""


@dataclasses.dataclass
class Member:
    """One archive member, with the fields as Python's ``tarfile`` holds them.

    ``name`` of a directory has no trailing slash (as after reading);
    :func:`encode_member` adds it. ``mtime`` may be a float when it came from
    a PAX header; it is truncated to an integer when written.
    """

    name: str
    type: bytes = REGTYPE
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: int | float = 0
    linkname: str = ""
    uname: str = ""
    gname: str = ""
    devmajor: int = 0
    devminor: int = 0
    raw_name: str | None = dataclasses.field(default=None, compare=False, repr=False)
    """The name as the archive spells it (a directory's trailing ``/`` kept), when read;
    ``None`` for a member we make (:func:`path_bytes` then gives what the writer writes)."""

    @property
    def is_regular(self) -> bool:
        return self.type in REGULAR_TYPES

    @property
    def is_dir(self) -> bool:
        return self.type == DIRTYPE

    @property
    def kind(self) -> str:
        return TYPE_NAMES.get(self.type, "unknown")


def path_bytes(member: Member) -> bytes:
    """The member's path as raw bytes, as tar-rs's ``Entry::path_bytes`` sees them.

    The spelling read from the archive (``raw_name``), else the name the writer
    writes (a directory gets its trailing ``/``). tar-rs 0.4.44 sorts directory
    entries by these bytes (upstream-facts F4).
    """
    raw = member.raw_name
    if raw is None:
        raw = member.name + "/" if member.is_dir and not member.name.endswith("/") else member.name
    return raw.encode(ENCODING, ERRORS)


def number_problem(field: str, value: int | float) -> str | None:
    """Why ``value`` is not acceptable for ``field`` (see :data:`FIELD_RANGES`), or None."""
    low, high = FIELD_RANGES[field]
    if isinstance(value, float) and not math.isfinite(value):
        return f"{field} {value} is not a finite number"
    if not low <= value <= high:
        magnitude = abs(int(value))
        shown = (
            str(value) if magnitude < 10**30 else f"{'-' * (value < 0)}~2**{magnitude.bit_length()}"
        )
        return f"{field} {shown} is out of range {low}..{high}"
    return None


def field_problem(member: Member) -> str | None:
    """The first numeric field of ``member`` out of its range, as a message, or None."""
    for field in FIELD_RANGES:
        problem = number_problem(field, getattr(member, field))
        if problem is not None:
            return problem
    return None


def encode_str(value: str) -> bytes:
    return value.encode(ENCODING, ERRORS)


def decode_str(raw: bytes) -> str:
    """NUL-terminated field → str (everything after the first NUL is ignored)."""
    end = raw.find(b"\x00")
    if end != -1:
        raw = raw[:end]
    return raw.decode(ENCODING, ERRORS)


def _str_field(value: str, length: int) -> bytes:
    raw = encode_str(value)
    return raw[:length] + b"\x00" * (length - len(raw[:length]))


def number_field(value: int | float, digits: int, gnu: bool = True) -> bytes:
    """Encode a number field of ``digits`` bytes (octal, or GNU base-256)."""
    n = int(value)
    if 0 <= n < 8 ** (digits - 1):
        return b"%0*o\x00" % (digits - 1, n)
    if gnu and -(256 ** (digits - 1)) <= n < 256 ** (digits - 1):
        if n >= 0:
            lead = 0o200
        else:
            lead = 0o377
            n = 256**digits + n
        return bytes([lead]) + n.to_bytes(digits, "big")[1:]
    raise TarFormatError(f"value {n} does not fit in a {digits}-byte tar number field")


def parse_number(raw: bytes) -> int:
    """Decode a number field (octal text, or base-256 when the high bit is set)."""
    if raw[0] in (0o200, 0o377):
        n = int.from_bytes(raw[1:], "big")
        if raw[0] == 0o377:
            n = -(256 ** (len(raw) - 1) - n)
        return n
    end = raw.find(b"\x00")
    text = raw[:end] if end != -1 else raw
    try:
        return int(text.decode("ascii").strip() or "0", 8)
    except (UnicodeDecodeError, ValueError):
        raise TarFormatError(f"invalid tar header: number field {raw!r} is not octal") from None


def checksum(block: bytes) -> int:
    """The unsigned header checksum, with the checksum field taken as spaces."""
    return 256 + sum(block[:148]) + sum(block[156:512])


def signed_checksum(block: bytes) -> int:
    """The checksum some old tars (Sun, NeXT) computed with signed chars."""
    high = sum(1 for b in block[:148] if b > 127) + sum(1 for b in block[156:512] if b > 127)
    return checksum(block) - 256 * high


def _header_block(
    *,
    name: str,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int | float,
    type_: bytes,
    linkname: str,
    uname: str,
    gname: str,
    devmajor: int,
    devminor: int,
    gnu_numbers: bool,
) -> bytes:
    if type_ in (CHRTYPE, BLKTYPE):
        dev = number_field(devmajor, 8, gnu_numbers) + number_field(devminor, 8, gnu_numbers)
    else:
        dev = b"\x00" * 16
    block = b"".join(
        (
            _str_field(name, 100),
            number_field(mode & 0o7777, 8, gnu_numbers),
            number_field(uid, 8, gnu_numbers),
            number_field(gid, 8, gnu_numbers),
            number_field(size, 12, gnu_numbers),
            number_field(mtime, 12, gnu_numbers),
            b"        ",
            type_,
            _str_field(linkname, 100),
            GNU_MAGIC,
            _str_field(uname, 32),
            _str_field(gname, 32),
            dev,
        )
    )
    block = block + b"\x00" * (BLOCK - len(block))
    chksum = checksum(block)
    return block[:148] + b"%06o\x00" % chksum + block[155:]


def _long_header(value: str, type_: bytes) -> bytes:
    payload = encode_str(value) + b"\x00"
    header = _header_block(
        name="././@LongLink",
        mode=0,
        uid=0,
        gid=0,
        size=len(payload),
        mtime=0,
        type_=type_,
        linkname="",
        uname="",
        gname="",
        devmajor=0,
        devminor=0,
        gnu_numbers=False,
    )
    return header + payload + b"\x00" * (-len(payload) % BLOCK)


def encode_member(member: Member) -> bytes:
    """The GNU-format header block(s) for ``member`` (without its data)."""
    name = member.name
    if member.type == DIRTYPE and not name.endswith("/"):
        name += "/"
    out = b""
    if len(encode_str(member.linkname)) > _NAME_LEN:
        out += _long_header(member.linkname, GNUTYPE_LONGLINK)
    if len(encode_str(name)) > _NAME_LEN:
        out += _long_header(name, GNUTYPE_LONGNAME)
    return out + _header_block(
        name=name,
        mode=member.mode,
        uid=member.uid,
        gid=member.gid,
        size=member.size,
        mtime=member.mtime,
        type_=member.type,
        linkname=member.linkname,
        uname=member.uname,
        gname=member.gname,
        devmajor=member.devmajor,
        devminor=member.devminor,
        gnu_numbers=True,
    )


def padding(size: int) -> bytes:
    """NUL bytes that complete a member's data to a whole block."""
    return b"\x00" * (-size % BLOCK)


def end_of_archive(offset: int) -> bytes:
    """Two zero blocks, then zeros up to the next 10240-byte record boundary."""
    total = offset + 2 * BLOCK
    return b"\x00" * (2 * BLOCK + (-total % RECORD))


@dataclasses.dataclass
class RawHeader:
    """A decoded 512-byte header block, before long-name/PAX processing."""

    name: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    type: bytes
    linkname: str
    uname: str
    gname: str
    devmajor: int
    devminor: int
    prefix: str
    raw_name: str = ""
    """The name with the prefix joined as for ``name``, before a directory's ``/`` is dropped."""


def is_zero_block(block: bytes) -> bool:
    return block.count(0) == BLOCK


def decode_header(block: bytes) -> RawHeader:
    """Decode one header block, verifying its checksum (tarfile's rules)."""
    if len(block) != BLOCK:
        raise TarFormatError("invalid tar header: truncated")
    stored = parse_number(block[148:156])
    if stored != checksum(block) and stored != signed_checksum(block):
        raise TarFormatError("invalid tar header: bad checksum")
    header = RawHeader(
        name=decode_str(block[0:100]),
        mode=parse_number(block[100:108]),
        uid=parse_number(block[108:116]),
        gid=parse_number(block[116:124]),
        size=parse_number(block[124:136]),
        mtime=parse_number(block[136:148]),
        type=block[156:157],
        linkname=decode_str(block[157:257]),
        uname=decode_str(block[265:297]),
        gname=decode_str(block[297:329]),
        devmajor=parse_number(block[329:337]),
        devminor=parse_number(block[337:345]),
        prefix=decode_str(block[345:500]),
    )
    if header.size < 0:
        raise TarFormatError("negative member size")
    if header.type == AREGTYPE and header.name.endswith("/"):
        header.type = DIRTYPE
    header.raw_name = header.name
    if header.type == DIRTYPE:
        header.name = header.name.rstrip("/")
    if header.prefix and header.type not in (GNUTYPE_LONGNAME, GNUTYPE_LONGLINK, GNUTYPE_SPARSE):
        header.name = header.prefix + "/" + header.name
        header.raw_name = header.prefix + "/" + header.raw_name
    return header
