"""Streaming tar reader and GNU tar writer (constant memory).

The reader applies Python ``tarfile``'s interpretation of GNU long names,
PAX extended and global headers and old-style directories, because the
reference builder read its inputs with ``tarfile``; the writer emits the
byte layout of :mod:`hats.image.tarformat`.

Rules of the reader (each violation raises :class:`TarFormatError` naming the
source and byte offset):

- the archive ends at the first all-zero header block, or at end of input on
  a header boundary (as ``tarfile``);
- a bad checksum, a truncated header or truncated member data is an error
  (``tarfile`` would silently stop after the first member);
- sparse members, unknown member types, and non-regular members that carry
  data are rejected: the reference would write a broken archive for them;
- names containing NUL are rejected; GNU long names and PAX records are
  limited to 1 MiB each.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Protocol

from hats.image import tarformat as tf
from hats.image.tarformat import Member, TarFormatError

MAX_META_SIZE = 1 << 20
CHUNK = 1 << 20

_PAX_RECORD = re.compile(rb"(\d+) ([^=]+)=")
_PAX_CHARSET = re.compile(rb"\d+ hdrcharset=([^\n]+)\n")
_PAX_NAME_FIELDS = ("path", "linkpath", "uname", "gname")


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def _pax_decode(raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding, "strict")
    except UnicodeDecodeError:
        return raw.decode(tf.ENCODING, tf.ERRORS)


def parse_pax_records(buf: bytes, into: dict[str, str]) -> None:
    """Parse PAX ``"<len> <key>=<value>\\n"`` records into ``into``."""
    match = _PAX_CHARSET.search(buf)
    if match is not None:
        into["hdrcharset"] = match.group(1).decode("utf-8", "replace")
    value_encoding = tf.ENCODING if into.get("hdrcharset") == "BINARY" else "utf-8"
    pos = 0
    while True:
        match = _PAX_RECORD.match(buf, pos)
        if not match:
            break
        length = int(match.group(1))
        if length == 0:
            raise TarFormatError("invalid PAX record of length 0")
        keyword = _pax_decode(match.group(2), "utf-8")
        value_raw = buf[match.end(2) + 1 : match.start(1) + length - 1]
        encoding = value_encoding if keyword in _PAX_NAME_FIELDS else "utf-8"
        into[keyword] = _pax_decode(value_raw, encoding)
        pos += length


def apply_pax(member: Member, pax: dict[str, str]) -> None:
    """Apply PAX fields to a member, as ``tarfile`` does (bad numbers → 0)."""
    if any(key.startswith("GNU.sparse.") for key in pax):
        raise TarFormatError("sparse members are not supported")
    for key, value in pax.items():
        if key in ("path", "linkpath", "uname", "gname"):
            if key == "path":
                member.name = value.rstrip("/")
            elif key == "linkpath":
                member.linkname = value
            elif key == "uname":
                member.uname = value
            else:
                member.gname = value
        elif key == "mtime":
            try:
                member.mtime = float(value)
            except ValueError:
                member.mtime = 0
        elif key in ("uid", "gid", "size"):
            try:
                number = int(value)
            except ValueError:
                number = 0
            setattr(member, key, number)


class TarReader:
    """Iterate over the members of a tar stream; read each member's data in turn.

    Data of a member that the caller does not read is skipped when the next
    member is requested.
    """

    def __init__(self, stream: Readable, source: str) -> None:
        self._stream = stream
        self.source = source
        self.offset = 0
        self._remaining = 0
        self._pad = 0
        self._current: Member | None = None
        self._global_pax: dict[str, str] = {}

    def _fail(self, message: str) -> TarFormatError:
        return TarFormatError(f"{self.source}: {message} (at byte {self.offset})")

    def _read_exact(self, size: int, what: str) -> bytes:
        parts: list[bytes] = []
        want = size
        while want:
            chunk = self._stream.read(want)
            if not chunk:
                raise self._fail(f"truncated archive: {what} ends early")
            parts.append(chunk)
            want -= len(chunk)
        data = b"".join(parts)
        self.offset += size
        return data

    def _skip_rest(self) -> None:
        while self._remaining:
            self.read(min(self._remaining, CHUNK))
        if self._pad:
            self._read_exact(self._pad, "member padding")
            self._pad = 0

    def read(self, size: int = CHUNK) -> bytes:
        """Read up to ``size`` bytes of the current member's data."""
        size = min(size, self._remaining)
        if size <= 0:
            return b""
        name = self._current.name if self._current else "?"
        data = self._read_exact(size, f"data of {name!r}")
        self._remaining -= size
        return data

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The rest of the current member's data, in chunks."""
        while self._remaining:
            yield self.read(size)

    def _read_block(self) -> bytes | None:
        parts: list[bytes] = []
        got = 0
        while got < tf.BLOCK:
            chunk = self._stream.read(tf.BLOCK - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        block = b"".join(parts)
        if not block:
            return None
        if len(block) != tf.BLOCK:
            raise self._fail("truncated archive: partial header block")
        self.offset += tf.BLOCK
        return block

    def _read_meta(self, header: tf.RawHeader) -> bytes:
        if header.size > MAX_META_SIZE:
            raise self._fail(f"extended header of {header.size} bytes is too large")
        data = self._read_exact(header.size, "extended header")
        pad = -header.size % tf.BLOCK
        if pad:
            self._read_exact(pad, "extended header padding")
        return data

    def __iter__(self) -> Iterator[Member]:
        return self

    def __next__(self) -> Member:
        self._skip_rest()
        self._current = None
        # Meta headers (long names, PAX) apply to the next real member; as in
        # tarfile, the one read first is applied last.
        pending: list[tuple[bytes, object]] = []
        while True:
            start = self.offset
            block = self._read_block()
            if block is None or tf.is_zero_block(block):
                if pending:
                    raise self._fail("extended header not followed by a member")
                raise StopIteration
            try:
                header = tf.decode_header(block)
            except TarFormatError as exc:
                self.offset = start
                raise self._fail(str(exc)) from None
            if header.type in (tf.GNUTYPE_LONGNAME, tf.GNUTYPE_LONGLINK):
                pending.append((header.type, tf.decode_str(self._read_meta(header))))
            elif header.type in (tf.XHDTYPE, tf.SOLARIS_XHDTYPE):
                local = dict(self._global_pax)
                parse_pax_records(self._read_meta(header), local)
                pending.append((tf.XHDTYPE, local))
            elif header.type == tf.XGLTYPE:
                parse_pax_records(self._read_meta(header), self._global_pax)
            elif header.type == tf.GNUTYPE_SPARSE:
                raise self._fail(f"sparse member {header.name!r} is not supported")
            elif header.type not in tf.MEMBER_TYPES:
                raise self._fail(f"member {header.name!r} has unsupported type {header.type!r}")
            else:
                member = self._member(header, pending)
                if not member.is_regular and member.size:
                    raise self._fail(f"{member.kind} {member.name!r} carries {member.size} bytes")
                if "\x00" in member.name or "\x00" in member.linkname:
                    raise self._fail(f"member name {member.name!r} contains NUL")
                self._current = member
                self._remaining = member.size if member.is_regular else 0
                self._pad = -self._remaining % tf.BLOCK
                return member

    def _member(self, header: tf.RawHeader, pending: list[tuple[bytes, object]]) -> Member:
        member = Member(
            name=header.name,
            type=header.type,
            mode=header.mode,
            uid=header.uid,
            gid=header.gid,
            size=header.size,
            mtime=header.mtime,
            linkname=header.linkname,
            uname=header.uname,
            gname=header.gname,
            devmajor=header.devmajor,
            devminor=header.devminor,
        )
        apply_pax(member, self._global_pax)
        if member.is_dir:
            member.name = member.name.rstrip("/")
        for kind, value in reversed(pending):
            if kind == tf.XHDTYPE:
                assert isinstance(value, dict)
                apply_pax(member, value)
            elif kind == tf.GNUTYPE_LONGNAME:
                assert isinstance(value, str)
                member.name = value
                if member.is_dir:
                    member.name = member.name.removesuffix("/")
            else:
                assert isinstance(value, str)
                member.linkname = value
        return member


class TarWriter:
    """Write GNU-format members to a byte sink; counts the bytes written."""

    def __init__(self, sink: Callable[[bytes], object]) -> None:
        self._sink = sink
        self.offset = 0

    def _emit(self, data: bytes) -> None:
        if data:
            self._sink(data)
            self.offset += len(data)

    def add(self, member: Member, chunks: Iterator[bytes] | None = None) -> None:
        """Write ``member``'s header(s), then its data from ``chunks``.

        A regular member must be given exactly ``member.size`` bytes.
        """
        self._emit(tf.encode_member(member))
        if not member.is_regular:
            return
        written = 0
        if chunks is not None:
            for chunk in chunks:
                written += len(chunk)
                self._emit(chunk)
        if written != member.size:
            raise TarFormatError(
                f"{member.name!r}: got {written} bytes of data, header says {member.size}"
            )
        self._emit(tf.padding(member.size))

    def close(self) -> None:
        """Write the end-of-archive blocks and record padding."""
        self._emit(tf.end_of_archive(self.offset))
