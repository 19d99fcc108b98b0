"""Streaming tar reader and GNU tar writer (constant memory).

The reader applies Python ``tarfile``'s interpretation of GNU long names,
PAX extended and global headers and old-style directories, because the
reference builder read its inputs with ``tarfile``; the writer emits the
byte layout of :mod:`hats.archive.tarformat`.

Rules of the reader (each violation raises :class:`TarFormatError`, one line
naming the source, the member where known, and the byte offset of the header
at fault):

- the archive ends at the first all-zero header block, or at end of input on
  a header boundary (as ``tarfile``);
- a bad checksum, a truncated header or truncated member data is an error
  (``tarfile`` would silently stop after the first member);
- sparse members, unknown member types, and non-regular members that carry
  data are rejected: the reference would write a broken archive for them;
- names containing NUL are rejected;
- every numeric field, from the header or from a PAX record, must be in the
  range :func:`hats.archive.tarformat.field_problem` states (``tarfile`` takes
  anything: a PAX ``size=-1`` used to hang this reader). PAX ``size``,
  ``uid`` and ``gid`` must be 1 to 20 ASCII digits; PAX ``mtime``, ``atime``
  and ``ctime`` a finite decimal number of at most 64 characters (``tarfile``
  turns a malformed number into 0 instead);
- PAX records must be well formed (``"<length> <key>=<value>\\n"``, length
  of 1 to 20 digits, at least 5, within the header), as the ``tarfile`` of
  Python 3.12+ requires; NUL bytes after the last record are ignored.

Limits (an archive past one is rejected with a clear error; no Debian base
comes near them — a member's extended headers there are a long name or a
PAX header with a path, times and a few xattrs):

- :data:`MAX_EXTENDED_SIZE` = 1 MiB: data of the extended headers (GNU long
  name/link, PAX local headers) in front of one member, in total;
- :data:`MAX_EXTENDED_HEADERS` = 16: extended headers in front of one member
  (a real archive has at most 3);
- :data:`MAX_PAX_KEYS` = 1024: PAX records in front of one member, and
  PAX records in all the global headers of one archive, each;
- :data:`MAX_GLOBAL_SIZE` = 1 MiB: data of all PAX global headers of one
  archive; :data:`MAX_GLOBAL_HEADERS` = 1024 of them (``git archive``
  writes one).

A global header is parsed and checked once, when it is read; only the fields
the reader uses (``path``, ``linkpath``, ``uname``, ``gname``, ``size``,
``uid``, ``gid``, ``mtime``, ``hdrcharset``, ``GNU.sparse.*``) are kept and
applied to each later member, so a member costs the same whatever the globals.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from typing import Protocol

from hats.archive import tarformat as tf
from hats.archive.tarformat import Member, TarFormatError

MAX_EXTENDED_SIZE = 1 << 20
MAX_EXTENDED_HEADERS = 16
MAX_PAX_KEYS = 1024
MAX_GLOBAL_SIZE = 1 << 20
MAX_GLOBAL_HEADERS = 1024
CHUNK = 1 << 20

_EXTENDED_TYPES = (tf.GNUTYPE_LONGNAME, tf.GNUTYPE_LONGLINK, tf.XHDTYPE, tf.SOLARIS_XHDTYPE)
_PAX_LENGTH = re.compile(rb"([0-9]{1,20}) ")
_PAX_INT = re.compile(r"[0-9]{1,20}")
_PAX_TIME_MAX_CHARS = 64
_PAX_NAME_FIELDS = ("path", "linkpath", "uname", "gname")
_PAX_INT_FIELDS = ("size", "uid", "gid")
_PAX_TIME_FIELDS = ("mtime", "atime", "ctime")
# The PAX keys the reader uses; all others are checked, then dropped.
_PAX_USED = frozenset((*_PAX_NAME_FIELDS, *_PAX_INT_FIELDS, *_PAX_TIME_FIELDS, "hdrcharset"))


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def _pax_decode(raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding, "strict")
    except UnicodeDecodeError:
        return raw.decode(tf.ENCODING, tf.ERRORS)


def _show(value: str, limit: int = 80) -> str:
    """``repr`` of a hostile string for a one-line message, shortened."""
    if len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} characters)"
    return repr(value)


def parse_pax_records(
    buf: bytes, into: dict[str, str], *, max_keys: int = MAX_PAX_KEYS, already: int = 0
) -> int:
    """Parse PAX ``"<len> <key>=<value>\\n"`` records into ``into``; return their number.

    ``hdrcharset`` already in ``into`` (from the global headers) applies
    unless the buffer sets its own. Values are not checked here (see
    :func:`check_pax_value`). Raises :class:`TarFormatError` (without source
    or offset: the caller adds them) for a malformed record or more than
    ``max_keys`` records, counting ``already`` (the records of earlier headers).
    """
    records: list[tuple[str, bytes]] = []
    pos = 0
    size = len(buf)
    while pos < size and buf[pos] != 0:
        match = _PAX_LENGTH.match(buf, pos)
        if match is None:
            raise TarFormatError(f"malformed PAX record at byte {pos} of the header data")
        length = int(match.group(1))
        end = pos + length
        if length < 5 or end > size or buf[end - 1] != 0x0A:
            raise TarFormatError(f"malformed PAX record at byte {pos} of the header data")
        keyword, equals, value = buf[match.end() : end - 1].partition(b"=")
        if not keyword or not equals:
            raise TarFormatError(f"malformed PAX record at byte {pos} of the header data")
        if already + len(records) >= max_keys:
            raise TarFormatError(f"more than {max_keys} PAX records")
        records.append((_pax_decode(keyword, "utf-8"), value))
        pos = end
    for key, value in records:
        if key == "hdrcharset":
            into["hdrcharset"] = value.decode("utf-8", "replace")
            break
    value_encoding = tf.ENCODING if into.get("hdrcharset") == "BINARY" else "utf-8"
    for key, value in records:
        encoding = value_encoding if key in _PAX_NAME_FIELDS else "utf-8"
        into[key] = _pax_decode(value, encoding)
    return len(records)


def check_pax_value(key: str, value: str) -> None:
    """Raise :class:`TarFormatError` when a numeric PAX ``value`` is malformed or out of range."""
    if key in _PAX_INT_FIELDS:
        if _PAX_INT.fullmatch(value) is None:
            raise TarFormatError(f"PAX {key} {_show(value)} is not a decimal number")
        problem = tf.number_problem(key, int(value))
    elif key in _PAX_TIME_FIELDS:
        try:
            if len(value) > _PAX_TIME_MAX_CHARS:
                raise ValueError
            number = float(value)
        except ValueError:
            raise TarFormatError(f"PAX {key} {_show(value)} is not a number") from None
        if not math.isfinite(number):
            raise TarFormatError(f"PAX {key} {_show(value)} is not a finite number")
        problem = tf.number_problem("mtime", number)
        if problem is not None:
            problem = problem.replace("mtime", key, 1)
    else:
        return
    if problem is not None:
        raise TarFormatError(f"PAX {problem}")


def _used(pax: dict[str, str]) -> dict[str, str]:
    """The PAX fields the reader applies or checks, sparse markers included."""
    return {k: v for k, v in pax.items() if k in _PAX_USED or k.startswith("GNU.sparse.")}


def apply_pax(member: Member, pax: dict[str, str]) -> None:
    """Apply PAX fields to a member, as ``tarfile`` does.

    Numbers are checked with :func:`check_pax_value` (``atime`` and ``ctime``
    are checked, not applied); a bad one raises :class:`TarFormatError`.
    """
    if any(key.startswith("GNU.sparse.") for key in pax):
        raise TarFormatError("sparse members are not supported")
    for key, value in pax.items():
        if key in _PAX_NAME_FIELDS:
            if key == "path":
                member.name = value.rstrip("/")
                member.raw_name = value
            elif key == "linkpath":
                member.linkname = value
            elif key == "uname":
                member.uname = value
            else:
                member.gname = value
        elif key in _PAX_TIME_FIELDS:
            check_pax_value(key, value)
            if key == "mtime":
                member.mtime = float(value)
        elif key in _PAX_INT_FIELDS:
            check_pax_value(key, value)
            setattr(member, key, int(value))


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
        # Only the used fields of the global headers (see the module docstring).
        self._global_pax: dict[str, str] = {}
        self._global_size = 0
        self._global_headers = 0
        self._global_keys = 0

    def _fail(self, message: str, at: int | None = None) -> TarFormatError:
        offset = self.offset if at is None else at
        return TarFormatError(f"{self.source}: {message} (at byte {offset})")

    def _read_exact(self, size: int, what: str) -> bytes:
        parts: list[bytes] = []
        want = size
        while want > 0:
            chunk = self._stream.read(min(want, CHUNK))
            if not chunk:
                raise self._fail(f"truncated archive: {what} ends early")
            parts.append(chunk)
            want -= len(chunk)
        data = b"".join(parts)
        self.offset += size
        return data

    def _skip_rest(self) -> None:
        while self._remaining > 0:
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
        data = self._read_exact(size, f"data of {_show(name)}")
        self._remaining -= size
        return data

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The rest of the current member's data, in chunks."""
        size = max(size, 1)
        while self._remaining > 0:
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

    def _read_meta(self, header: tf.RawHeader, budget: int, what: str, at: int) -> bytes:
        if header.size > budget:
            raise self._fail(
                f"{what} of {header.size} bytes is too large ({budget} bytes left of the limit)",
                at,
            )
        data = self._read_exact(header.size, "extended header")
        pad = -header.size % tf.BLOCK
        if pad:
            self._read_exact(pad, "extended header padding")
        return data

    def _read_global(self, header: tf.RawHeader, at: int) -> None:
        self._global_headers += 1
        if self._global_headers > MAX_GLOBAL_HEADERS:
            raise self._fail(f"more than {MAX_GLOBAL_HEADERS} PAX global headers", at)
        data = self._read_meta(header, MAX_GLOBAL_SIZE - self._global_size, "PAX global header", at)
        self._global_size += header.size
        records: dict[str, str] = {"hdrcharset": self._global_pax.get("hdrcharset", "")}
        try:
            self._global_keys += parse_pax_records(data, records, already=self._global_keys)
        except TarFormatError as exc:
            raise self._fail(f"PAX global header: {exc}", at) from None
        if not records["hdrcharset"]:
            del records["hdrcharset"]
        try:
            for key, value in records.items():
                check_pax_value(key, value)
        except TarFormatError as exc:
            raise self._fail(f"PAX global header: {exc}", at) from None
        self._global_pax.update(_used(records))

    def __iter__(self) -> Iterator[Member]:
        return self

    def __next__(self) -> Member:
        self._skip_rest()
        self._current = None
        # Meta headers (long names, PAX) apply to the next real member; as in
        # tarfile, the one read first is applied last.
        pending: list[tuple[bytes, object]] = []
        extended_size = 0
        keys = 0
        first = self.offset
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
            if header.type in _EXTENDED_TYPES:
                if len(pending) >= MAX_EXTENDED_HEADERS:
                    raise self._fail(
                        f"more than {MAX_EXTENDED_HEADERS} extended headers before one member",
                        first,
                    )
                data = self._read_meta(
                    header,
                    MAX_EXTENDED_SIZE - extended_size,
                    "extended header",
                    start,
                )
                extended_size += header.size
                if header.type in (tf.GNUTYPE_LONGNAME, tf.GNUTYPE_LONGLINK):
                    pending.append((header.type, tf.decode_str(data)))
                    continue
                local: dict[str, str] = {}
                if "hdrcharset" in self._global_pax:
                    local["hdrcharset"] = self._global_pax["hdrcharset"]
                try:
                    keys += parse_pax_records(data, local, already=keys)
                except TarFormatError as exc:
                    raise self._fail(f"PAX header: {exc}", start) from None
                # As tarfile: a local header carries the globals too.
                pending.append((tf.XHDTYPE, {**self._global_pax, **_used(local)}))
            elif header.type == tf.XGLTYPE:
                self._read_global(header, start)
            elif header.type == tf.GNUTYPE_SPARSE:
                raise self._fail(f"sparse member {_show(header.name)} is not supported", start)
            elif header.type not in tf.MEMBER_TYPES:
                raise self._fail(
                    f"member {_show(header.name)} has unsupported type {header.type!r}", start
                )
            else:
                return self._start_member(header, pending, start)

    def _start_member(
        self, header: tf.RawHeader, pending: list[tuple[bytes, object]], start: int
    ) -> Member:
        try:
            member = self._member(header, pending)
        except TarFormatError as exc:
            raise self._fail(f"member {_show(header.name)}: {exc}", start) from None
        problem = tf.field_problem(member)
        if problem is not None:
            raise self._fail(f"member {_show(member.name)}: {problem}", start)
        if not member.is_regular and member.size:
            raise self._fail(
                f"{member.kind} {_show(member.name)} carries {member.size} bytes", start
            )
        if "\x00" in member.name or "\x00" in member.linkname:
            raise self._fail(f"member name {_show(member.name)} contains NUL", start)
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
            raw_name=header.raw_name,
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
                member.raw_name = value
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
