"""hats.keys.keyfile: the reference files, every problem kind, and properties."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shared_data
from hats.errors import HatsError
from hats.keys.keyfile import (
    KeyFileError,
    KeyProblem,
    TvsKey,
    check_key_file,
    decode_public_key_hex,
    format_key_file,
    parse_key_file,
    public_key_problem,
)
from hats.keys.keygen import P256_ORDER, public_key_from_private

TESTDATA = shared_data.TVS_KEYS


def point(k: int) -> bytes:
    return public_key_from_private(k.to_bytes(32, "big"))


G1, G2, G3 = point(1), point(2), point(3)
# A public key whose private key is not a small number (and not published).
OTHER = point(0x1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF)
HEX1 = G1.hex()
# The reference files' keys (spec: key1..key3 = 1·G..3·G; key4 = the heartbeat key).
KEY4_HEX = (
    "04b57ab5cad6ff969c3c77eff6ebcb1074cf74c5a9309d05ea48be0fa96251150a"
    "7f27730484a14da70811332d0935738aa57d706a6ebe240b9a48399861fbface"
)
REFERENCE = {
    "test_single.txt": [G1],
    "test_xor_2.txt": [G1, G2],
    "test_shamir_2_of_3.txt": [G1, G2, G3],
    "test_single_1sec_heartbeat.txt": [bytes.fromhex(KEY4_HEX)],
}
# What the reference files must contain, built from facts (k·G), not copied.
REFERENCE_SIZES = {"test_single.txt": 133, "test_xor_2.txt": 266, "test_shamir_2_of_3.txt": 399}

HEX_RUN = re.compile(r"[0-9a-fA-F]{17,}")


def line(index: int | str, key: bytes | str) -> bytes:
    text = key.hex() if isinstance(key, bytes) else key
    return f"{index}:{text}\n".encode()


def assert_safe(problems: list[KeyProblem]) -> None:
    """Messages are short, one line, and never echo key hex."""
    for problem in problems:
        text = str(problem)
        assert "\n" not in text and "\r" not in text
        assert len(text) < 200, text
        assert not HEX_RUN.search(text), text


# --- the reference files ----------------------------------------------------------


def test_g1_is_the_generator() -> None:
    assert HEX1.startswith("046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296")
    assert HEX1.endswith("37bf51f5")
    assert G2.hex().startswith("047cf27b") and G2.hex().endswith("227873d1")
    assert G3.hex().startswith("045ecbe4") and G3.hex().endswith("a27d5032")


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_file_parses(name: str) -> None:
    path = TESTDATA / name
    data = path.read_bytes()
    assert check_key_file(data) == []
    keys = parse_key_file(data, name)
    expected = REFERENCE[name]
    assert [k.public_key for k in keys] == expected
    assert [k.index for k in keys] == list(range(len(expected)))
    assert [k.line for k in keys] == list(range(1, len(expected) + 1))
    assert format_key_file(expected) == data


@pytest.mark.parametrize("name", sorted(REFERENCE_SIZES))
def test_format_matches_reference_layout(name: str) -> None:
    data = format_key_file(REFERENCE[name])
    assert len(data) == REFERENCE_SIZES[name]
    assert data.startswith(b"0:046b17d1f2e12c42")
    assert data.endswith(b"\n") and b"\r" not in data
    assert data.decode() == "".join(f"{i}:{k.hex()}\n" for i, k in enumerate(REFERENCE[name]))


def test_format_is_lowercase_and_canonical() -> None:
    data = format_key_file([G2, G1])
    assert data == b"0:" + G2.hex().encode() + b"\n1:" + HEX1.encode() + b"\n"
    assert data.lower() == data


def test_parse_returns_line_order_not_index_order() -> None:
    data = line(1, G1) + line(0, G2)
    assert parse_key_file(data, "f") == [
        TvsKey(index=1, public_key=G1, line=1),
        TvsKey(index=0, public_key=G2, line=2),
    ]


def test_uppercase_hex_and_missing_final_newline_are_fine() -> None:
    data = f"0:{HEX1.upper()}\n1:{G2.hex()}".encode()
    assert check_key_file(data) == []
    assert [k.public_key for k in parse_key_file(data, "f")] == [G1, G2]


def test_ten_keys_are_fine() -> None:
    keys = [point(k) for k in range(1, 11)]
    data = format_key_file(keys)
    assert [k.index for k in parse_key_file(data, "f")] == list(range(10))


# --- every problem kind -----------------------------------------------------------

GOOD = line(0, G1)
BAD_Y = G1[:-1] + bytes([G1[-1] ^ 1])

CASES: list[tuple[str, bytes, int | None, str]] = [
    ("not utf-8", b"0:" + HEX1.encode() + b"\xff\n", 1, "not valid UTF-8"),
    ("non-ascii", GOOD + "1:é4\n".encode(), 2, "non-ASCII character U+00E9 at column 3"),
    ("bom", b"\xef\xbb\xbf" + GOOD, 1, "byte order mark"),
    ("crlf", GOOD + line(1, G2).replace(b"\n", b"\r\n"), 2, "CRLF"),
    ("crlf last line no newline", GOOD + line(1, G2)[:-1] + b"\r", 2, "CRLF"),
    ("empty line in the middle", GOOD + b"\n" + line(1, G2), 2, "empty line"),
    ("empty line at the end", GOOD + line(1, G2) + b"\n", 3, "empty line"),
    ("blank line", GOOD + b"  \t\n", 2, "blank line"),
    ("too short", GOOD + b"1\n", 2, "line too short"),
    ("multi-digit index", GOOD + line(10, G2), 2, "index 10 has more than one digit"),
    ("non-digit index", line("a", G1), 1, "index must be a single digit 0-9, found 'a'"),
    ("missing index", GOOD + line("", G2), 2, "missing index before ':'"),
    ("second char not colon", GOOD + b"1;" + G2.hex().encode() + b"\n", 2, "expected ':'"),
    ("space before colon", GOOD + line("1 ", G2), 2, "expected ':' after the index, found ' '"),
    ("bare key", GOOD + G2.hex().encode() + b"\n", 2, "missing '<index>:'"),
    ("no colon", b"hello world\n", 1, "no ':'"),
    ("missing key", GOOD + b"1:\n", 2, "missing key"),
    ("only whitespace key", GOOD + b"1:  \n", 2, "only whitespace"),
    ("odd length", line(0, HEX1 + "0"), 1, "odd number of hex digits in the key (131)"),
    ("non-hex", line(0, "04" + "g" + HEX1[3:]), 1, "non-hex character 'g' in the key at column 5"),
    ("trailing space", line(0, HEX1 + " "), 1, "whitespace after the key"),
    ("trailing tab", line(0, HEX1 + "\t"), 1, "whitespace after the key"),
    ("leading space", line(0, " " + HEX1), 1, "whitespace before the key"),
    ("inner space", line(0, HEX1[:10] + " " + HEX1[10:]), 1, "whitespace inside the key"),
    ("0x prefix", line(0, "0x" + HEX1), 1, "'0x' prefix"),
    ("compressed", line(0, "02" + HEX1[2:66]), 1, "compressed key (33 bytes)"),
    ("private key pasted", line(0, "11" * 32), 1, "looks like a private key"),
    ("raw x||y", line(0, HEX1[2:]), 1, "key is 64 bytes"),
    ("short key", line(0, "0411"), 1, "key is 2 bytes, expected 65"),
    ("long key", line(0, HEX1 + "00"), 1, "key is 66 bytes, expected 65"),
    ("wrong prefix", line(0, "05" + HEX1[2:]), 1, "starts with byte 0x05"),
    ("off curve", line(0, BAD_Y), 1, "not a point on the P-256 curve"),
    ("zero point", line(0, b"\x04" + bytes(64)), 1, "not a point on the P-256 curve"),
    ("duplicate index", GOOD + line(0, G2), 2, "index 0 already used on line 1"),
    ("gap", GOOD + line(2, G2), 2, "index 2 is out of range"),
    ("gap names missing", GOOD + line(2, G2), 2, "(missing: 1)"),
    ("duplicate key", GOOD + line(1, G1), 2, "same public key as line 1"),
    ("no keys", b"", None, "no keys"),
    ("only newline", b"\n", 1, "empty line"),
    ("only newline has no keys", b"\n", None, "no keys"),
]


@pytest.mark.parametrize(
    ("data", "lineno", "fragment"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_problem_detected(data: bytes, lineno: int | None, fragment: str) -> None:
    problems = check_key_file(data)
    assert any(p.line == lineno and fragment in p.message for p in problems), problems
    assert_safe(problems)
    with pytest.raises(KeyFileError) as info:
        parse_key_file(data, "tvs.txt")
    first = problems[0]
    prefix = "tvs.txt" if first.line is None else f"tvs.txt:{first.line}"
    assert str(info.value).startswith(f"{prefix}: {first.message}")
    assert info.value.problems == tuple(problems)
    assert isinstance(info.value, HatsError)


def test_more_than_ten_keys() -> None:
    keys = [point(k) for k in range(1, 12)]
    data = b"".join(line(i % 10, k) for i, k in enumerate(keys))
    problems = check_key_file(data)
    assert KeyProblem(11, "too many keys (11): at most 10 TVSes are supported (indices 0-9)") in (
        problems
    )
    assert KeyProblem(11, "index 0 already used on line 1") in problems


def test_every_reason_is_reported_with_its_line() -> None:
    data = (
        line(0, G1)
        + b"\n"
        + line(10, "0411")
        + line("a", "0x" + G2.hex() + " ")
        + line(3, BAD_Y).replace(b"\n", b"\r\n")
    )
    assert [(p.line, p.message.split(":")[0].split(" (")[0]) for p in check_key_file(data)] == [
        (2, "empty line"),
        (3, "index 10 has more than one digit"),
        (3, "key is 2 bytes, expected 65"),
        (4, "index must be a single digit 0-9, found 'a'"),
        (4, "whitespace after the key"),
        (4, "'0x' prefix before the key is not allowed"),
        (5, "CRLF line ending"),
        (5, "key is not a point on the P-256 curve"),
    ]


def test_out_of_order_indices_are_accepted() -> None:
    data = line(2, G1) + line(0, G2) + line(1, G3)
    assert check_key_file(data) == []


def test_parse_error_message_counts_more_problems() -> None:
    data = line(0, "0411") + line(0, "zz")
    with pytest.raises(KeyFileError) as info:
        parse_key_file(data, "k.txt")
    message = str(info.value)
    assert message.startswith("k.txt:1: key is 2 bytes, expected 65")
    assert message.endswith(f"(and {len(info.value.problems) - 1} more problems)")
    assert "\n" not in message


def test_parse_error_single_problem_has_no_suffix() -> None:
    with pytest.raises(KeyFileError) as info:
        parse_key_file(b"", "empty.txt")
    assert str(info.value) == "empty.txt: no keys: the file must list at least one TVS key"


def test_problem_str() -> None:
    assert str(KeyProblem(3, "bad")) == "line 3: bad"
    assert str(KeyProblem(None, "bad")) == "bad"


def test_reject_test_keys() -> None:
    data = format_key_file([G1, OTHER, bytes.fromhex(KEY4_HEX)])
    assert check_key_file(data) == []
    problems = check_key_file(data, reject_test_keys=True)
    assert [p.line for p in problems] == [1, 3]
    assert "test key 1·G" in problems[0].message
    assert "published" in problems[1].message


def test_public_key_problem() -> None:
    assert public_key_problem(G1) is None
    assert public_key_problem(b"") is not None
    assert public_key_problem(G1[:33]) is not None


def test_decode_public_key_hex() -> None:
    assert decode_public_key_hex(HEX1.upper()) == G1
    with pytest.raises(KeyFileError, match="compressed"):
        decode_public_key_hex("03" + HEX1[2:66])
    with pytest.raises(KeyFileError) as info:
        decode_public_key_hex(HEX1 + " ")
    assert HEX1[:17] not in str(info.value)


@pytest.mark.parametrize(
    ("keys", "fragment"),
    [
        ([], "no keys"),
        ([G1, G1], "key 2: same public key as key 1"),
        ([G1, G2[:33]], "key 2: key is 33 bytes"),
        ([BAD_Y], "key 1: key is not a point"),
        ([point(k) for k in range(1, 12)], "too many keys (11)"),
    ],
)
def test_format_rejects_bad_keys(keys: list[bytes], fragment: str) -> None:
    with pytest.raises(KeyFileError) as info:
        format_key_file(keys)
    assert fragment in str(info.value)
    assert not HEX_RUN.search(str(info.value))


# --- properties -------------------------------------------------------------------

scalars = st.integers(min_value=1, max_value=P256_ORDER - 1)
key_lists = st.lists(scalars, min_size=1, max_size=10, unique=True).map(
    lambda ks: [point(k) for k in ks]
)


@settings(max_examples=60, deadline=None)
@given(key_lists)
def test_format_parse_round_trip(keys: list[bytes]) -> None:
    data = format_key_file(keys)
    assert check_key_file(data) == []
    parsed = parse_key_file(data, "f")
    assert [k.public_key for k in parsed] == keys
    assert [k.index for k in parsed] == list(range(len(keys)))
    assert [k.line for k in parsed] == list(range(1, len(keys) + 1))
    assert format_key_file([k.public_key for k in parsed]) == data


@settings(max_examples=40, deadline=None)
@given(key_lists, st.randoms(use_true_random=False))
def test_any_index_order_round_trips(keys: list[bytes], rng: random.Random) -> None:
    order = list(range(len(keys)))
    rng.shuffle(order)
    data = b"".join(line(i, k) for i, k in zip(order, keys, strict=True))
    parsed = parse_key_file(data, "f")
    assert [(k.index, k.public_key) for k in parsed] == list(zip(order, keys, strict=True))


def _parse_outcome(data: bytes) -> None:
    """parse raises only KeyFileError, and exactly when check finds problems."""
    problems = check_key_file(data)
    assert all(isinstance(p, KeyProblem) for p in problems)
    assert_safe(problems)
    try:
        keys = parse_key_file(data, "f")
    except KeyFileError as exc:
        assert problems, "parse failed although check found nothing"
        assert "\n" not in str(exc)
        return
    assert not problems
    assert 1 <= len(keys) <= 10
    assert sorted(k.index for k in keys) == list(range(len(keys)))


mutations = st.lists(
    st.tuples(
        st.sampled_from(["replace", "insert", "delete", "truncate"]),
        st.integers(min_value=0, max_value=2000),
        st.integers(min_value=0, max_value=255),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key_lists, mutations)
def test_mutations_raise_only_key_file_error(
    keys: list[bytes], edits: list[tuple[str, int, int]]
) -> None:
    data = bytearray(format_key_file(keys))
    for kind, position, value in edits:
        at = position % (len(data) + 1)
        if kind == "replace" and at < len(data):
            data[at] = value
        elif kind == "insert":
            data.insert(at, value)
        elif kind == "delete" and at < len(data):
            del data[at]
        elif kind == "truncate":
            del data[at:]
    _parse_outcome(bytes(data))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_key_file_error(data: bytes) -> None:
    _parse_outcome(data)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([HEX1, G2.hex(), HEX1.upper(), "", "0x" + HEX1, HEX1[:66]]),
            st.text(alphabet="0123456789abcdefx: \t\r", max_size=12),
        ),
        max_size=5,
    ),
    st.lists(st.sampled_from(["0", "1", "2", "10", "a", "", " "]), min_size=5, max_size=5),
)
def test_line_shaped_garbage_raises_only_key_file_error(
    keys: list[str], indices: list[str]
) -> None:
    data = "".join(f"{i}:{k}\n" for i, k in zip(indices, keys, strict=False)).encode()
    _parse_outcome(data)


@settings(max_examples=100, deadline=None)
@given(scalars)
def test_pasted_private_key_is_never_echoed(k: int) -> None:
    secret = k.to_bytes(32, "big").hex()
    for data in (line(0, secret), (secret + "\n").encode(), line(0, secret + " ")):
        problems = check_key_file(data)
        assert problems
        for problem in problems:
            assert not re.search(r"[0-9a-fA-F]{8,}", problem.message), problem
