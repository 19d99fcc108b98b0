"""Fuzzing key material parsers: ``tvs_public_keys.txt``, hex keys, secret shares.

Entry points:

- :func:`hats.keys.keyfile.check_key_file` / :func:`~hats.keys.keyfile.parse_key_file`
  (the orchestrator reads the image's key file; ``hats keys check``, ``image lint``),
  :func:`~hats.keys.keyfile.decode_public_key_hex`;
- :func:`hats.keys.keygen.private_key_from_hex` (TVS and policy signing keys);
- :func:`hats.protocol.share_format.parse_xor_share` /
  :func:`~hats.protocol.share_format.parse_shamir_share` (shares a TVS returns).

Only :class:`hats.errors.HatsError` may escape, within the time and memory
bounds of :func:`fuzz_support.check_hostile`; no message echoes key material.
"""

from __future__ import annotations

import re

from fuzz_support import check_hostile, fuzz, mutations
from hypothesis import given
from hypothesis import strategies as st

import shared_data
from hats.keys.keyfile import (
    MAX_FILE_BYTES,
    KeyFileError,
    check_key_file,
    decode_public_key_hex,
    parse_key_file,
)
from hats.keys.keygen import private_key_from_hex
from hats.protocol.share_format import (
    ShamirShare,
    XorShare,
    format_shamir_share,
    format_xor_share,
    parse_shamir_share,
    parse_xor_share,
)

KEY_FILES = [path.read_bytes() for path in sorted(shared_data.TVS_KEYS.glob("*.txt"))]
LONG_HEX = re.compile(r"[0-9a-fA-F]{17,}")


_LINES = st.sampled_from(
    [b"0:", b"1:", b"9:", b"10:", b":", b"04", b"0x", b"\r", b"\n", b" ", b"\xef\xbb\xbf",
     b"\xff", b"0" * 130, b"04" + b"ab" * 64, b"a" * 5000]
)  # fmt: skip


@fuzz(200)
@given(
    st.one_of(*(mutations(data) for data in KEY_FILES))
    | st.lists(_LINES, max_size=30).map(b"".join)
    | st.binary(max_size=300)
)
def test_key_file(data: bytes) -> None:
    problems = check_hostile(lambda: check_key_file(data, reject_test_keys=True)).value
    outcome = check_hostile(lambda: parse_key_file(data, "keys.txt"))
    assert isinstance(problems, list)
    for problem in problems:
        assert not LONG_HEX.search(str(problem)), problem
    if outcome.error is not None:
        assert isinstance(outcome.error, KeyFileError)
        assert not LONG_HEX.search(str(outcome.error).removeprefix("keys.txt"))


def test_a_huge_key_file_is_one_problem() -> None:
    """Before the size cap, 200 000 duplicate lines (26 MB) took over 10 s to check."""
    line = b"0:" + KEY_FILES[0][2:].rstrip(b"\n") + b"\n"
    data = line * 200_000
    outcome = check_hostile(lambda: parse_key_file(data, "big"), measure_memory=False)
    assert str(outcome.error) == (
        f"big: {len(data)} bytes: too large for a key file (at most {MAX_FILE_BYTES} bytes)"
    )
    assert check_key_file(line * (MAX_FILE_BYTES // len(line))) != []  # checked: too many keys


@fuzz(150)
@given(st.text(max_size=200) | st.text(alphabet="0123456789abcdefABCDEFx \t", max_size=140))
def test_hex_keys(text: str) -> None:
    for outcome in (
        check_hostile(lambda: decode_public_key_hex(text)),
        check_hostile(lambda: private_key_from_hex(text)),
    ):
        if outcome.error is not None:
            assert not LONG_HEX.search(str(outcome.error))


_SHARES = [
    format_xor_share(XorShare(bytes(range(40)))),
    format_shamir_share(ShamirShare(index=3, value=(1 << 255) + 12345)),
]
_JSON = st.sampled_from(
    [b"[" * 10_000, b"{" * 10_000, b'{"value":' + b"9" * 5000 + b"}", b"NaN", b"-0", b"1e999",
     b'{"value":[],"value":[]}', b'"\\ud800"', b"\xff", b'{"index":0,"value":[0]}']
)  # fmt: skip


@fuzz(200)
@given(st.one_of(*(mutations(share) for share in _SHARES)) | _JSON | st.binary(max_size=200))
def test_shares(data: bytes) -> None:
    check_hostile(lambda: parse_xor_share(data, 1))
    check_hostile(lambda: parse_shamir_share(data, 2))
