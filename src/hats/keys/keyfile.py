"""``tvs_public_keys.txt``: check, parse and format (pure functions on bytes).

Format: one line per TVS, ``<index>:<hex>``, LF line endings, where ``<index>``
is a single digit (the TVS's position in the launcher's ``--tvs_addresses``)
and ``<hex>`` is a 65-byte uncompressed SEC1 P-256 point (``04 || X || Y``).
The reference orchestrator uses the *line order* as the TVS order; the index
only routes messages to a TVS channel.

:func:`check_key_file` is stricter than the reference parser. It reports, with
line numbers, everything that makes the reference fail (exit, panic, or a
failure later during the first attestation) and a few things it accepts but a
careful user does not want:

* **CRLF line endings are a problem.** The reference strips a ``\\r`` before
  ``\\n`` and would accept them, but the documented format is LF and the file
  is baked into a measured image, where a stray ``\\r`` changes the image hash
  for no reason.
* **A duplicated public key is a problem** (the reference accepts it): two
  "TVSes" with one key defeat the point of splitting trust.
* Index gaps and duplicates are problems: the indices must be exactly
  ``0..n-1`` for ``n`` lines, in any order (the reference accepts any order).
* A missing trailing newline is fine; upper-case hex is fine (the reference
  accepts both; :func:`format_key_file` writes the canonical form).
* A line that is not ASCII is reported once and not checked further.
* A file larger than :data:`MAX_FILE_BYTES` (16 KiB) is one problem and is
  not checked further.

Messages never contain key material: no hex of the keys is ever echoed
(a 64-hex-digit value in a key file may well be a private key pasted by
mistake), only single offending characters, lengths and line numbers.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from hats.errors import HatsError
from hats.keys.keygen import insecure_key_label
from hats.protocol.p256 import PointFault, decode_point

MAX_KEYS = 10
"""The reference reads the index as one character, so at most 10 TVSes (0-9)."""

MAX_FILE_BYTES = 16 * 1024
"""A larger key file is one problem, not checked line by line (ten keys take 1330 bytes;
every line costs a curve check, so a huge file would take seconds per megabyte)."""

_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_FORMAT_HINT = "expected '<index>:<hex key>'"


@dataclass(frozen=True)
class TvsKey:
    """One TVS public key from a key file."""

    index: int
    """The TVS index (0-9): its position in the launcher's ``--tvs_addresses``."""
    public_key: bytes
    """The 65-byte uncompressed SEC1 P-256 point."""
    line: int
    """1-based line number in the file."""


@dataclass(frozen=True)
class KeyProblem:
    """One reason a key file is wrong; ``line`` is 1-based or None for the whole file."""

    line: int | None
    message: str

    def __str__(self) -> str:
        return self.message if self.line is None else f"line {self.line}: {self.message}"


class KeyFileError(HatsError):
    """A key file (or a list of keys to write as one) is wrong."""

    def __init__(self, message: str, problems: Sequence[KeyProblem] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[KeyProblem, ...] = tuple(problems)


def public_key_problem(key: bytes) -> str | None:
    """Why ``key`` is not a 65-byte uncompressed P-256 point, or None if it is.

    The check is :func:`hats.protocol.p256.decode_point`'s; the words are the key file's.
    """
    fault = decode_point(key)
    if fault is PointFault.LENGTH:
        size = len(key)
        if size == 33 and key[0] in (2, 3):
            return (
                "compressed key (33 bytes): the 65-byte uncompressed form (04 || X || Y) "
                "is required"
            )
        if size == 32:
            return (
                "key is 32 bytes, expected 65: this looks like a private key, "
                "which must never be in this file"
            )
        if size == 64:
            return "key is 64 bytes, expected 65: missing the leading 04 byte?"
        unit = "byte" if size == 1 else "bytes"
        return f"key is {size} {unit}, expected 65 (uncompressed P-256 point 04 || X || Y)"
    if fault is PointFault.PREFIX:
        return f"key starts with byte 0x{key[0]:02x}, expected 0x04 (uncompressed point)"
    if fault is PointFault.NOT_ON_CURVE:
        return "key is not a point on the P-256 curve"
    return None


def _check_hex_key(text: str, column: int) -> tuple[list[str], bytes | None]:
    """Check the key part of a line, which starts at 1-based ``column``.

    Returns the problems and the decoded key (None unless the key is usable).
    Whitespace and a ``0x`` prefix are reported and then skipped, so that one
    run reports everything else about the key too.
    """
    if not text:
        return ["missing key after ':'"], None
    body = text.strip()
    if not body:
        return ["only whitespace after ':' (missing key)"], None
    problems: list[str] = []
    start = column + len(text) - len(text.lstrip())
    if text[0].isspace():
        problems.append("whitespace before the key")
    if text[-1].isspace():
        problems.append("whitespace after the key")
    if any(c.isspace() for c in body):
        problems.append("whitespace inside the key")
    if body[:2] in ("0x", "0X"):
        problems.append("'0x' prefix before the key is not allowed")
        body = body[2:]
        start += 2
    for offset, char in enumerate(body):
        if char not in _HEX and not char.isspace():
            problems.append(f"non-hex character {char!r} in the key at column {start + offset}")
            return problems, None
    digits = "".join(c for c in body if not c.isspace())
    if not digits:
        problems.append("missing key after '0x'")
        return problems, None
    if len(digits) % 2:
        problems.append(f"odd number of hex digits in the key ({len(digits)})")
        return problems, None
    key = bytes.fromhex(digits)
    problem = public_key_problem(key)
    if problem is not None:
        problems.append(problem)
        return problems, None
    return problems, (None if problems else key)


def _check_line(raw: bytes, lineno: int) -> tuple[list[KeyProblem], int | None, bytes | None]:
    """Check one line (without its ``\\n``): problems, index (if valid), key (if valid)."""
    problems: list[KeyProblem] = []

    def problem(message: str) -> None:
        problems.append(KeyProblem(lineno, message))

    if raw.endswith(b"\r"):
        problem("CRLF line ending: the format uses LF ('\\n') only")
        raw = raw[:-1]
    if not raw:
        problem("empty line (the reference orchestrator panics on it)")
        return problems, None, None
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem(f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
        return problems, None, None
    if not line.isascii():
        offset, char = next((i, c) for i, c in enumerate(line) if not c.isascii())
        if lineno == 1 and offset == 0 and char == "\ufeff":
            problem("UTF-8 byte order mark at the start of the file")
        else:
            problem(f"non-ASCII character U+{ord(char):04X} at column {offset + 1}")
        return problems, None, None
    if line.isspace():
        problem("blank line (only whitespace)")
        return problems, None, None
    if len(line) < 2:
        problem(f"line too short: {_FORMAT_HINT}")
        return problems, None, None
    if ":" not in line:
        if all(c in _HEX for c in line):
            problem(f"missing '<index>:' before the key: {_FORMAT_HINT}")
        elif line[0] in _DIGITS:
            problem(f"expected ':' after the index, found {line[1]!r}")
        else:
            problem(f"no ':' in the line: {_FORMAT_HINT}")
        return problems, None, None

    index: int | None = None
    first, second = line[0], line[1]
    if first == ":":
        problem("missing index before ':'")
    elif first not in _DIGITS:
        problem(f"index must be a single digit 0-9, found {first!r}")
    elif second == ":":
        index = int(first)
    elif second in _DIGITS:
        run = "".join(itertools.takewhile(lambda c: c in _DIGITS, line))
        shown = run if len(run) <= 4 else run[:4] + "..."
        problem(
            f"index {shown} has more than one digit: the reference reads only the first "
            f"character, so indices are 0-9 (at most {MAX_KEYS} TVSes)"
        )
    else:
        problem(f"expected ':' after the index, found {second!r}")

    head, _, key_text = line.partition(":")
    hex_problems, key = _check_hex_key(key_text, len(head) + 2)
    problems.extend(KeyProblem(lineno, message) for message in hex_problems)
    return problems, index, key


def _split_lines(data: bytes) -> list[bytes]:
    """Lines without their ``\\n``; a final newline does not start another line."""
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def _check(data: bytes, reject_test_keys: bool) -> tuple[list[KeyProblem], list[TvsKey]]:
    if len(data) > MAX_FILE_BYTES:
        message = f"{len(data)} bytes: too large for a key file (at most {MAX_FILE_BYTES} bytes)"
        return [KeyProblem(None, message)], []
    problems: list[KeyProblem] = []
    keys: list[TvsKey] = []
    indexed: list[tuple[int, int]] = []  # (line, index) for lines with a valid index
    key_lines: dict[bytes, int] = {}
    tvs_lines: list[int] = []  # non-empty lines: each one is a TVS for the reference

    for lineno, raw in enumerate(_split_lines(data), start=1):
        line_problems, index, key = _check_line(raw, lineno)
        problems.extend(line_problems)
        if raw not in (b"", b"\r"):
            tvs_lines.append(lineno)
        if index is not None:
            indexed.append((lineno, index))
        if key is not None:
            first = key_lines.setdefault(key, lineno)
            if first != lineno:
                problems.append(KeyProblem(lineno, f"same public key as line {first}"))
            label = insecure_key_label(key) if reject_test_keys else None
            if label is not None:
                problems.append(
                    KeyProblem(lineno, f"{label}: its private key is public (--allow-test-keys)")
                )
        if index is not None and key is not None and not line_problems:
            keys.append(TvsKey(index=index, public_key=key, line=lineno))

    count = len(tvs_lines)
    if count == 0:
        problems.append(KeyProblem(None, "no keys: the file must list at least one TVS key"))
    if count > MAX_KEYS:
        problems.append(
            KeyProblem(
                tvs_lines[MAX_KEYS],
                f"too many keys ({count}): at most {MAX_KEYS} TVSes are supported (indices 0-9)",
            )
        )
    present = {index for _, index in indexed}
    missing = [i for i in range(min(count, MAX_KEYS)) if i not in present]
    first_line: dict[int, int] = {}
    for lineno, index in indexed:
        if index in first_line:
            problems.append(
                KeyProblem(lineno, f"index {index} already used on line {first_line[index]}")
            )
            continue
        first_line[index] = lineno
        if index >= count:
            gap = f" (missing: {', '.join(map(str, missing))})" if missing else ""
            problems.append(
                KeyProblem(
                    lineno,
                    f"index {index} is out of range: with {count} key line"
                    f"{'s' if count != 1 else ''} the indices must be 0..{count - 1}{gap}",
                )
            )

    problems.sort(key=lambda p: (p.line is None, p.line or 0))
    return problems, keys


def check_key_file(data: bytes, *, reject_test_keys: bool = False) -> list[KeyProblem]:
    """Every reason ``data`` is not a good ``tvs_public_keys.txt``, sorted by line.

    An empty list means the file is fine. File-level problems (no keys at all)
    have ``line=None`` and come last. See the module docstring for how this is
    stricter than the reference parser (CRLF and duplicate keys are problems).
    With ``reject_test_keys``, keys whose private key is public knowledge (the
    reference's test keys 1·G, 2·G, 3·G and its heartbeat test key) are
    problems too.
    """
    return _check(data, reject_test_keys)[0]


def parse_key_file(data: bytes, source: str) -> list[TvsKey]:
    """The keys of a good key file, in line order (the reference's TVS order).

    Raises :class:`KeyFileError` with a one-line message
    ``"{source}:{line}: {message}"`` naming the first problem, followed by
    ``"(and N more problems)"`` when there are more; all problems are in its
    ``problems`` attribute.
    """
    problems, keys = _check(data, False)
    if problems:
        first = problems[0]
        where = source if first.line is None else f"{source}:{first.line}"
        message = f"{where}: {first.message}"
        if len(problems) > 1:
            more = len(problems) - 1
            message += f" (and {more} more problem{'s' if more != 1 else ''})"
        raise KeyFileError(message, problems)
    return keys


def decode_public_key_hex(text: str) -> bytes:
    """Decode one public key given as hex (as in a key file line, after the ':').

    Raises :class:`KeyFileError` listing what is wrong (without echoing the key).
    """
    problems, key = _check_hex_key(text, 1)
    if key is None:
        raise KeyFileError("; ".join(problems))
    return key


def format_key_file(keys: Sequence[bytes]) -> bytes:
    """The canonical key file for ``keys`` in order: ``0:<hex>\\n1:<hex>\\n…``.

    Lower-case hex, LF line endings, a final newline: the reference's format,
    byte for byte. Raises :class:`KeyFileError` (``"key N: …"``, N counting from
    1) if the result would not pass :func:`check_key_file`: bad or duplicated
    keys, no keys, or more than ten.
    """
    data = b"".join(f"{i}:{bytes(key).hex()}\n".encode("ascii") for i, key in enumerate(keys))
    if len(keys) > MAX_KEYS:
        raise KeyFileError(f"too many keys ({len(keys)}): at most {MAX_KEYS} TVSes are supported")
    problems = check_key_file(data)
    if problems:
        first = problems[0]
        where = "" if first.line is None else f"key {first.line}: "
        message = first.message.replace("same public key as line", "same public key as key")
        raise KeyFileError(f"{where}{message}", problems)
    return data


# --- the reference orchestrator's reading (upstream-facts F6) --------------------------------


@dataclass(frozen=True)
class ReferenceReading:
    """How the reference orchestrator reads a key file (upstream-facts F6).

    ``keys``: what it runs with, in line order (empty when it fails);
    ``error``: why it fails start-up (one line), or None; ``quirks``: what it
    accepts silently but probably not as the author meant (duplicated keys or
    indices, a separator other than ``:``), each ``line N: …``.
    """

    keys: tuple[TvsKey, ...]
    error: str | None
    quirks: tuple[str, ...]

    def summary(self) -> str:
        """One line: how the reference would treat the file."""
        if self.error is not None:
            return f"the reference orchestrator fails on this file ({self.error})"
        routes = ", ".join(f"line {k.line} -> tvs_addresses[{k.index}]" for k in self.keys)
        text = f"the reference orchestrator runs this file: {routes}"
        if self.quirks:
            text += "; but " + "; ".join(self.quirks)
        return text


def read_like_reference(data: bytes) -> ReferenceReading:
    """Read ``data`` with the reference orchestrator's rules (upstream-facts F6).

    For each line (split on ``\\n``, a final newline ending the last one; a
    ``\\r`` before the ``\\n`` dropped): the first character is the TVS index
    (a digit 0-9, any order, repeats allowed), the second is skipped, the rest
    is the hex of the public key. So a longer index, an empty line or a bad key
    fails start-up; duplicates and ``\\r\\n`` do not. We also require the key to
    be a valid P-256 point (the reference would fail at the first attestation
    instead). A file over :data:`MAX_FILE_BYTES` is refused as by
    :func:`check_key_file`.
    """
    if len(data) > MAX_FILE_BYTES:
        return ReferenceReading((), f"{len(data)} bytes: too large for a key file", ())
    keys: list[TvsKey] = []
    quirks: list[str] = []
    seen_keys: dict[bytes, int] = {}
    seen_index: dict[int, int] = {}
    lines = _split_lines(data)
    if not lines:
        return ReferenceReading((), "no keys", ())
    for lineno, raw in enumerate(lines, start=1):
        raw = raw.removesuffix(b"\r")
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            return ReferenceReading((), f"line {lineno}: not ASCII", ())
        if not line or line[0] not in _DIGITS:
            if not line:
                return ReferenceReading((), f"line {lineno}: empty line", ())
            return ReferenceReading((), f"line {lineno}: the index {line[0]!r} is not a digit", ())
        hex_problems, key = _check_hex_key(line[2:], 3)
        if key is None:
            reason = hex_problems[0] if hex_problems else "not a key"
            return ReferenceReading((), f"line {lineno}: {reason}", ())
        index = int(line[0])
        if line[1] != ":":
            quirks.append(f"line {lineno}: the character after the index is {line[1]!r}, not ':'")
        if key in seen_keys:
            quirks.append(f"line {lineno}: same public key as line {seen_keys[key]}")
        seen_keys.setdefault(key, lineno)
        if index in seen_index:
            quirks.append(
                f"line {lineno}: index {index} already used on line {seen_index[index]}"
                f" (both talk to tvs_addresses[{index}])"
            )
        seen_index.setdefault(index, lineno)
        keys.append(TvsKey(index=index, public_key=key, line=lineno))
    return ReferenceReading(tuple(keys), None, tuple(quirks))


def parse_key_file_as_reference(data: bytes, source: str) -> tuple[list[TvsKey], str | None]:
    """The keys the reference orchestrator would run with, and one warning line (or None).

    Raises :class:`KeyFileError` (``"{source}: …"``) where the reference fails start-up.
    The warning names what the reference would silently accept (duplicates, a
    separator other than ``:``). Never contains key material.
    """
    reading = read_like_reference(data)
    if reading.error is not None:
        where, sep, rest = reading.error.partition(": ")
        if sep and where.startswith("line ") and where[5:].isdigit():
            raise KeyFileError(f"{source}:{where[5:]}: {rest}")
        raise KeyFileError(f"{source}: {reading.error}")
    warning = None
    if reading.quirks:
        warning = f"{source}: accepted as the reference orchestrator would, but " + "; ".join(
            reading.quirks
        )
    return list(reading.keys), warning
