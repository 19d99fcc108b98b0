"""The JSON share documents of XOR and Shamir sharing: format and strict parsing.

A share travels as the UTF-8 bytes of a JSON document (spec wire-protocol §5),
written exactly as the reference's serde_json compact serializer writes its
share structs: no whitespace, fields in declaration order, byte strings as
arrays of decimal integers 0-255 (not base64, not hex)::

    XOR     {"value":[b0,b1,…]}                 ([] for an empty secret)
    Shamir  {"value":[b0,b1,…],"index":x}       (value = minimal big-endian bytes
                                                 of f(x) mod P, [0] for zero)

Parsing accepts every document the reference writes (and the field order and
JSON whitespace serde_json accepts), and rejects everything else with a typed
:class:`~hats.protocol.secret_sharing.ShareFormatError` where the reference
would panic or go on with garbage:

* not UTF-8 → :class:`ShareNotUtf8Error`; not JSON (including ``NaN`` and
  ``Infinity``, which Python's parser would accept) → :class:`ShareNotJsonError`;
* → :class:`MalformedShareError`: not a JSON object (serde also took an array
  of the fields in order); a missing or duplicated field; an unknown field
  (the reference ignores them, so a Shamir share given to XOR recovery went
  unnoticed); a value element that is not an integer 0-255 (floats, ``-0``
  and booleans included); for Shamir, a value that is empty, has a leading
  zero byte, or is not below the prime ``P``, and an index that is not an
  integer in ``[1, P)`` (index 0 would be the secret itself).

Messages name the problem and never the content: no values, no field names
other than the expected ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hats.protocol.secret_sharing import (
    MalformedShareError,
    ShareFormatError,
    ShareNotJsonError,
    ShareNotUtf8Error,
)

SHAMIR_PRIME = int(
    "C90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B23"
    "5A2359C4AFBC9EB7987F1C9AB37E42599188C4B7DC6269B830D80897F57A5F71",
    16,
)
"""The 512-bit prime ``P`` of the Shamir field (the reference's "ssc-512")."""

_PRIME_BYTES = (SHAMIR_PRIME.bit_length() + 7) // 8
_MAX_INT_DIGITS = len(str(SHAMIR_PRIME))
_XOR_FIELDS = ("value",)
_SHAMIR_FIELDS = ("value", "index")


@dataclass(frozen=True, repr=False)
class XorShare:
    """One XOR share: a byte string as long as the secret."""

    value: bytes

    def __repr__(self) -> str:
        return f"XorShare(value=<{len(self.value)} bytes>)"


@dataclass(frozen=True, repr=False)
class ShamirShare:
    """One Shamir share: the point ``(index, f(index) mod P)`` of the polynomial.

    Raises :class:`ValueError` (a programming error) unless ``1 <= index < P``
    and ``0 <= value < P``.
    """

    index: int
    value: int

    def __post_init__(self) -> None:
        if not 1 <= self.index < SHAMIR_PRIME:
            raise ValueError("Shamir share index must be in [1, P)")
        if not 0 <= self.value < SHAMIR_PRIME:
            raise ValueError("Shamir share value must be in [0, P)")

    def __repr__(self) -> str:
        return f"ShamirShare(index={self.index}, value=<hidden>)"


def format_xor_share(share: XorShare) -> bytes:
    """The share document of ``share``: ``{"value":[…]}``, byte for byte as serde_json."""
    return b'{"value":[' + _int_list(share.value) + b"]}"


def format_shamir_share(share: ShamirShare) -> bytes:
    """The share document of ``share``: ``{"value":[…],"index":x}``, as serde_json.

    The value is the minimal big-endian encoding of the field element (``[0]``
    for zero), the index a JSON number.
    """
    value = share.value.to_bytes(max(1, (share.value.bit_length() + 7) // 8), "big")
    return b'{"value":[' + _int_list(value) + b'],"index":' + str(share.index).encode() + b"}"


def parse_xor_share(data: bytes, position: int | None = None) -> XorShare:
    """Parse an XOR share document: an object with exactly the field ``value``.

    ``position`` (1-based) only goes into error messages. Raises a
    :class:`ShareFormatError` subclass for anything but a well-formed share.
    """
    fields = _load_object(data, position)
    if "index" in fields:
        raise MalformedShareError(
            'unknown field "index" (a Shamir share? XOR shares have only "value")', position
        )
    _check_fields(fields, _XOR_FIELDS, position)
    return XorShare(_byte_array(fields["value"], position))


def parse_shamir_share(data: bytes, position: int | None = None) -> ShamirShare:
    """Parse a Shamir share document: an object with exactly ``value`` and ``index``.

    The value must be the minimal big-endian encoding of an integer below
    ``P`` (``[0]`` for zero), the index an integer in ``[1, P)``; the fields
    may come in any order. ``position`` (1-based) only goes into error
    messages. Raises a :class:`ShareFormatError` subclass otherwise.
    """
    fields = _load_object(data, position)
    _check_fields(fields, _SHAMIR_FIELDS, position)
    value = _byte_array(fields["value"], position)
    if not value:
        raise MalformedShareError('"value" is empty (zero is written as one 0 byte)', position)
    if len(value) > 1 and value[0] == 0:
        raise MalformedShareError('"value" has a leading zero byte (not minimal)', position)
    number = int.from_bytes(value, "big") if len(value) <= _PRIME_BYTES else SHAMIR_PRIME
    if number >= SHAMIR_PRIME:
        raise MalformedShareError('"value" is not below the field prime P', position)
    index = fields["index"]
    if type(index) is not int:
        raise MalformedShareError('"index" is not an integer', position)
    if index < 1:
        raise MalformedShareError('"index" is 0 (that point would be the secret itself)', position)
    if index >= SHAMIR_PRIME:
        raise MalformedShareError('"index" is not below the field prime P', position)
    return ShamirShare(index=index, value=number)


def _int_list(data: bytes) -> bytes:
    return ",".join(map(str, data)).encode("ascii")


class _Rejected(Exception):
    """Raised by the JSON parser hooks; carries the error class and message."""

    def __init__(self, kind: type[ShareFormatError], message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _parse_int(text: str) -> int:
    if text.startswith("-"):
        raise _Rejected(MalformedShareError, "negative number (shares hold only unsigned integers)")
    if len(text) > _MAX_INT_DIGITS:
        raise _Rejected(MalformedShareError, "number too large for a share")
    return int(text)


def _parse_constant(_text: str) -> Any:
    raise _Rejected(ShareNotJsonError, "not JSON (NaN and Infinity are not JSON numbers)")


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, item in pairs:
        if key in result:
            shown = f'"{key}"' if key in _SHAMIR_FIELDS else "in an object"
            raise _Rejected(MalformedShareError, f"duplicate field {shown}")
        result[key] = item
    return result


def _load_object(data: bytes, position: int | None) -> dict[str, Any]:
    """Decode and parse ``data`` as one JSON object, or raise a ShareFormatError.

    Errors are raised after the ``except`` blocks so that the decoder's
    exception, which holds the whole document, is not chained to them.
    """
    error: ShareFormatError | None = None
    document: Any = None
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        error = ShareNotUtf8Error(f"not valid UTF-8 (byte offset {exc.start})", position)
    if error is not None:
        raise error
    try:
        document = json.loads(
            text,
            parse_int=_parse_int,
            parse_constant=_parse_constant,
            object_pairs_hook=_object_pairs,
        )
    except _Rejected as exc:
        error = exc.kind(exc.message, position)
    except json.JSONDecodeError as exc:
        error = ShareNotJsonError(
            f"not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", position
        )
    except RecursionError:
        error = MalformedShareError("not a share object (nested too deeply)", position)
    if error is not None:
        raise error
    if not isinstance(document, dict):
        raise MalformedShareError(f"expected a JSON object, got {_json_kind(document)}", position)
    return document


def _check_fields(fields: dict[str, Any], expected: tuple[str, ...], position: int | None) -> None:
    names = " and ".join(f'"{name}"' for name in expected)
    for name in expected:
        if name not in fields:
            raise MalformedShareError(f'missing field "{name}"', position)
    if len(fields) != len(expected):
        raise MalformedShareError(f"unknown field (a share has only {names})", position)


def _byte_array(item: Any, position: int | None) -> bytes:
    if not isinstance(item, list):
        raise MalformedShareError(
            f'"value" must be an array of integers 0-255, got {_json_kind(item)}', position
        )
    for number, element in enumerate(item, start=1):
        if type(element) is not int:
            raise MalformedShareError(
                f'"value" element {number} is {_json_kind(element)}, not an integer 0-255',
                position,
            )
        if element > 255:
            raise MalformedShareError(f'"value" element {number} is above 255', position)
    return bytes(item)


def _json_kind(item: Any) -> str:
    if isinstance(item, bool):
        return "a boolean"
    if item is None:
        return "null"
    if isinstance(item, int):
        return "an integer"
    if isinstance(item, float):
        return "a fractional number"
    if isinstance(item, str):
        return "a string"
    if isinstance(item, list):
        return "an array"
    return "an object"
