"""XOR and Shamir secret sharing: byte-exact share formats, recovery, strict parsing."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hats.errors import HatsError
from hats.protocol.secret_sharing import (
    DuplicateShareIndexError,
    EmptySecretError,
    InconsistentSharesError,
    LabelMismatchError,
    MalformedShareError,
    SecretSharingError,
    SecretSplitter,
    SecretTooLongError,
    ShareCountError,
    ShareFormatError,
    ShareLengthMismatchError,
    ShareNotJsonError,
    ShareNotUtf8Error,
    SharingParametersError,
)
from hats.protocol.shamir import (
    MAX_SHAMIR_SECRET_LENGTH,
    SHAMIR_LABEL,
    SHAMIR_PRIME,
    ShamirSharing,
)
from hats.protocol.share_format import (
    ShamirShare,
    XorShare,
    format_shamir_share,
    format_xor_share,
    parse_shamir_share,
    parse_xor_share,
)
from hats.protocol.xor import XorSharing

P_HEX = (
    "C90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B23"
    "5A2359C4AFBC9EB7987F1C9AB37E42599188C4B7DC6269B830D80897F57A5F71"
)


def seeded(seed: int) -> Callable[[int], bytes]:
    """A deterministic random source."""
    return random.Random(seed).randbytes


def zeros(size: int) -> bytes:
    """A random source that always returns zero bytes (Shamir coefficients become 1)."""
    return bytes(size)


def int_list(data: bytes) -> str:
    return ",".join(str(b) for b in data)


def assert_no_leak(exc: BaseException, *secrets: bytes) -> None:
    """The message names no secret or share content, and no parser exception is chained."""
    message = str(exc)
    assert "[" not in message and "{" not in message
    for secret in secrets:
        if len(secret) >= 2:
            assert secret.hex() not in message
            assert int_list(secret) not in message
            assert repr(secret) not in message
    assert exc.__cause__ is None
    assert exc.__context__ is None


# --- constants -------------------------------------------------------------------------------


def test_prime_label_and_maximum_length() -> None:
    assert int(P_HEX, 16) == SHAMIR_PRIME
    assert SHAMIR_PRIME.bit_length() == 512
    assert pow(2, SHAMIR_PRIME - 1, SHAMIR_PRIME) == 1  # Fermat witness: (probably) prime
    assert SHAMIR_LABEL == b"hats"
    assert MAX_SHAMIR_SECRET_LENGTH == 60
    assert int.from_bytes(b"hats" + b"\xff" * 60, "big") < SHAMIR_PRIME
    assert int.from_bytes(b"hats" + b"\x00" * 61, "big") > SHAMIR_PRIME


def test_errors_are_hats_errors() -> None:
    assert issubclass(SecretSharingError, HatsError)
    for kind in (ShareNotJsonError, ShareNotUtf8Error, MalformedShareError):
        assert issubclass(kind, ShareFormatError)
        assert issubclass(kind, SecretSharingError)


def test_both_splitters_satisfy_the_protocol() -> None:
    splitters: list[SecretSplitter] = [XorSharing(3), ShamirSharing(3, 2)]
    for splitter in splitters:
        assert splitter.recover(splitter.split(b"k")) == b"k"


# --- XOR: known answers ----------------------------------------------------------------------


def test_xor_known_answer() -> None:
    shares = XorSharing(2, rng=lambda n: b"\x0f" * n).split(b"\x01\x02")
    assert shares == [b'{"value":[15,15]}', b'{"value":[14,13]}']
    assert XorSharing(2).recover(shares) == b"\x01\x02"


def test_xor_three_shares_known_answer() -> None:
    randoms = iter([b"\xaa\x00\xff", b"\x01\x02\x03"])
    shares = XorSharing(3, rng=lambda n: next(randoms)).split(b"abc")
    # 0x61^0xaa^0x01 = 0xca, 0x62^0x00^0x02 = 0x60, 0x63^0xff^0x03 = 0x9f
    assert shares == [b'{"value":[170,0,255]}', b'{"value":[1,2,3]}', b'{"value":[202,96,159]}']


def test_xor_one_share_is_the_secret() -> None:
    assert XorSharing(1).split(b"\x00A") == [b'{"value":[0,65]}']
    assert XorSharing(1).recover([b'{"value":[0,65]}']) == b"\x00A"


def test_xor_empty_secret() -> None:
    assert XorSharing(3).split(b"") == [b'{"value":[]}'] * 3
    assert XorSharing(3).recover([b'{"value":[]}'] * 3) == b""


def test_xor_accepts_json_whitespace() -> None:
    assert XorSharing(2).recover([b' { "value" : [ 1 , 2 ] }\n', b'{"value":[0,0]}']) == b"\x01\x02"


# --- XOR: properties ---------------------------------------------------------------------------


@given(
    secret=st.binary(max_size=300),
    num_shares=st.integers(1, 8),
    seed=st.integers(0, 2**32),
    data=st.data(),
)
def test_xor_split_recover_identity_in_any_order(
    secret: bytes, num_shares: int, seed: int, data: st.DataObject
) -> None:
    sharing = XorSharing(num_shares, rng=seeded(seed))
    shares = sharing.split(secret)
    assert len(shares) == num_shares
    for share in shares:
        assert parse_xor_share(share) == XorShare(parse_xor_share(share).value)
        assert format_xor_share(parse_xor_share(share)) == share
    order = data.draw(st.permutations(shares))
    assert XorSharing(num_shares).recover(order) == secret


def test_xor_default_rng_gives_fresh_shares() -> None:
    first = XorSharing(2).split(b"0123456789abcdef")
    second = XorSharing(2).split(b"0123456789abcdef")
    assert first[0] != second[0]


# --- XOR: errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("num_shares", [0, -1])
def test_xor_rejects_no_shares(num_shares: int) -> None:
    with pytest.raises(SharingParametersError):
        XorSharing(num_shares)


@pytest.mark.parametrize("count", [1, 3])
def test_xor_needs_exactly_n_shares(count: int) -> None:
    shares = XorSharing(2).split(b"key")
    with pytest.raises(ShareCountError, match="exactly 2 shares, got"):
        XorSharing(2).recover((shares * 2)[:count])


def test_xor_rejects_length_mismatch() -> None:
    with pytest.raises(ShareLengthMismatchError, match="share 2 holds 1 bytes but share 1 holds 2"):
        XorSharing(2).recover([b'{"value":[1,2]}', b'{"value":[1]}'])


def test_xor_rejects_a_shamir_share() -> None:
    """The reference ignores the index and XORs a Shamir share in; we say what it is."""
    with pytest.raises(MalformedShareError, match=r'share 2: unknown field "index" \(a Shamir'):
        XorSharing(2).recover([b'{"value":[1]}', b'{"value":[1],"index":2}'])


@pytest.mark.parametrize(
    ("document", "error", "message"),
    [
        (b"\xff", ShareNotUtf8Error, "not valid UTF-8"),
        (b"not json", ShareNotJsonError, "not JSON"),
        (b"", ShareNotJsonError, "not JSON"),
        (b'{"value":[1]', ShareNotJsonError, "not JSON"),
        (b'{"value":[NaN]}', ShareNotJsonError, "NaN and Infinity"),
        (b"[[1]]", MalformedShareError, "expected a JSON object, got an array"),
        (b"{}", MalformedShareError, 'missing field "value"'),
        (b'{"value":[1],"other":0}', MalformedShareError, "unknown field"),
        (b'{"value":[1],"value":[1]}', MalformedShareError, 'duplicate field "value"'),
        (b'{"value":"AQI="}', MalformedShareError, "got a string"),
        (b'{"value":[1.0]}', MalformedShareError, "element 1 is a fractional number"),
        (b'{"value":[1,256]}', MalformedShareError, "element 2 is above 255"),
        (b'{"value":[-1]}', MalformedShareError, "negative"),
        (b'{"value":[false]}', MalformedShareError, "element 1 is a boolean"),
        (b'{"value":[null]}', MalformedShareError, "element 1 is null"),
    ],
)
def test_xor_parse_errors(document: bytes, error: type[ShareFormatError], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        XorSharing(2).recover([b'{"value":[1]}', document])
    assert info.value.position == 2
    assert str(info.value).startswith("share 2: ")
    assert_no_leak(info.value, document)


# --- Shamir: known answers -------------------------------------------------------------------

# With a random source of zero bytes every coefficient is 1: f(x) = S + x + … + x^(t-1), where
# S = int(b"hats" + secret). For b"secret" and t = 2 the share values are b"hatssecre" followed
# by 0x74 + x, i.e. b"hatssecreu" (x=1), b"hatssecrev" (x=2), b"hatssecrew" (x=3).
SECRET_SHARES_2_OF_3 = [
    b'{"value":[104,97,116,115,115,101,99,114,101,117],"index":1}',
    b'{"value":[104,97,116,115,115,101,99,114,101,118],"index":2}',
    b'{"value":[104,97,116,115,115,101,99,114,101,119],"index":3}',
]


def test_shamir_known_answer() -> None:
    assert ShamirSharing(3, 2, rng=zeros).split(b"secret") == SECRET_SHARES_2_OF_3
    assert ShamirSharing(3, 2).recover(SECRET_SHARES_2_OF_3) == b"secret"


def test_shamir_known_answer_3_of_3() -> None:
    secret = b"\x00\x01"
    constant = int.from_bytes(b"hats\x00\x01", "big")
    expected = []
    for x in (1, 2, 3):
        value = (constant + x + x * x) % SHAMIR_PRIME
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        expected.append(f'{{"value":[{int_list(raw)}],"index":{x}}}'.encode())
    assert ShamirSharing(3, 3, rng=zeros).split(secret) == expected
    assert ShamirSharing(3, 3).recover(list(reversed(expected))) == secret


def test_shamir_zero_value_is_written_as_a_single_zero() -> None:
    assert format_shamir_share(ShamirShare(index=3, value=0)) == b'{"value":[0],"index":3}'
    assert parse_shamir_share(b'{"value":[0],"index":3}') == ShamirShare(index=3, value=0)


def test_shamir_accepts_any_field_order_and_whitespace() -> None:
    reordered = [
        b'{ "index" : 2 , "value" : [104,97,116,115,115,101,99,114,101,118] }',
        b'\t{"index":1,"value":[104,97,116,115,115,101,99,114,101,117]}\r\n',
    ]
    assert ShamirSharing(3, 2).recover(reordered) == b"secret"


def test_shamir_indices_beyond_num_shares_are_accepted() -> None:
    """Shares of a larger split (indices above our n) still lie on the polynomial."""
    shares = ShamirSharing(5, 2, rng=seeded(1)).split(b"k")
    assert ShamirSharing(3, 2).recover([shares[4], shares[3], shares[0]]) == b"k"


@pytest.mark.parametrize("size", range(1, MAX_SHAMIR_SECRET_LENGTH + 1))
def test_shamir_every_allowed_size(size: int) -> None:
    for secret in (b"\xff" * size, b"\x00" * size, bytes(range(size))):
        shares = ShamirSharing(3, 2, rng=seeded(size)).split(secret)
        assert ShamirSharing(3, 2).recover(shares[1:]) == secret
        assert ShamirSharing(3, 2).recover(shares) == secret


def test_shamir_default_rng_gives_fresh_shares() -> None:
    assert ShamirSharing(3, 2).split(b"k") != ShamirSharing(3, 2).split(b"k")


# --- Shamir: properties ------------------------------------------------------------------------

sizes = st.binary(min_size=1, max_size=MAX_SHAMIR_SECRET_LENGTH)


@st.composite
def shamir_params(draw: st.DrawFn) -> tuple[int, int]:
    num_shares = draw(st.integers(2, 7))
    return num_shares, draw(st.integers(2, num_shares))


@settings(max_examples=150)
@given(secret=sizes, params=shamir_params(), seed=st.integers(0, 2**32), data=st.data())
def test_shamir_any_threshold_subset_recovers(
    secret: bytes, params: tuple[int, int], seed: int, data: st.DataObject
) -> None:
    num_shares, threshold = params
    shares = ShamirSharing(num_shares, threshold, rng=seeded(seed)).split(secret)
    assert len(shares) == num_shares
    for index, share in enumerate(shares, 1):
        parsed = parse_shamir_share(share)
        assert parsed.index == index
        assert format_shamir_share(parsed) == share
    count = data.draw(st.integers(threshold, num_shares))
    subset = data.draw(st.permutations(shares))[:count]
    assert ShamirSharing(num_shares, threshold).recover(subset) == secret


@settings(max_examples=150)
@given(
    secret=sizes,
    params=shamir_params().filter(lambda p: p[0] > p[1]),
    seed=st.integers(0, 2**32),
    delta=st.integers(1, SHAMIR_PRIME - 1),
    data=st.data(),
)
def test_shamir_corrupted_share_detected_beyond_threshold(
    secret: bytes, params: tuple[int, int], seed: int, delta: int, data: st.DataObject
) -> None:
    """With more shares than the threshold, changing any one share's value is always caught."""
    num_shares, threshold = params
    shares = ShamirSharing(num_shares, threshold, rng=seeded(seed)).split(secret)
    count = data.draw(st.integers(threshold + 1, num_shares))
    subset = data.draw(st.permutations(shares))[:count]
    victim = data.draw(st.integers(0, count - 1))
    share = parse_shamir_share(subset[victim])
    corrupted = ShamirShare(index=share.index, value=(share.value + delta) % SHAMIR_PRIME)
    subset[victim] = format_shamir_share(corrupted)
    with pytest.raises(InconsistentSharesError) as info:
        ShamirSharing(num_shares, threshold).recover(subset)
    assert_no_leak(info.value, secret)


@settings(max_examples=150)
@given(
    secret=sizes,
    params=shamir_params().filter(lambda p: p[0] > p[1]),
    seed=st.integers(0, 2**32),
    data=st.data(),
)
def test_shamir_corrupted_share_bytes_detected(
    secret: bytes, params: tuple[int, int], seed: int, data: st.DataObject
) -> None:
    """Any byte of any share document flipped: recovery with all shares fails, typed."""
    num_shares, threshold = params
    shares = ShamirSharing(num_shares, threshold, rng=seeded(seed)).split(secret)
    victim = data.draw(st.integers(0, num_shares - 1))
    document = bytearray(shares[victim])
    offset = data.draw(st.integers(0, len(document) - 1))
    document[offset] ^= data.draw(st.integers(1, 255))
    shares[victim] = bytes(document)
    with pytest.raises(SecretSharingError) as info:
        ShamirSharing(num_shares, threshold).recover(shares)
    assert_no_leak(info.value, secret)


# --- Shamir: the reference's garbage cases are typed errors ---------------------------------


def test_shamir_share_of_another_secret_at_threshold_fails_the_label() -> None:
    ours = ShamirSharing(3, 2, rng=seeded(7)).split(b"our secret")
    theirs = ShamirSharing(3, 2, rng=seeded(8)).split(b"their secret")
    with pytest.raises(LabelMismatchError, match='"hats" label') as info:
        ShamirSharing(3, 2).recover([ours[0], theirs[1]])
    assert_no_leak(info.value, b"our secret", b"their secret")


def test_shamir_random_value_at_threshold_fails_the_label() -> None:
    shares = ShamirSharing(3, 3, rng=seeded(3)).split(b"k" * 32)
    shares[1] = format_shamir_share(
        ShamirShare(index=2, value=random.Random(4).randrange(0, 2**500))
    )
    with pytest.raises(LabelMismatchError):
        ShamirSharing(3, 3).recover(shares)


def test_shamir_label_is_checked_not_just_length() -> None:
    """f(x) = int(b"xats" + b"secret") + x: five or more bytes, but the wrong label."""
    constant = int.from_bytes(b"xatssecret", "big")
    shares = [format_shamir_share(ShamirShare(index=x, value=constant + x)) for x in (1, 2)]
    with pytest.raises(LabelMismatchError):
        ShamirSharing(2, 2).recover(shares)


def test_shamir_too_short_result_fails_the_label() -> None:
    with pytest.raises(LabelMismatchError):
        ShamirSharing(2, 2).recover([b'{"value":[1],"index":1}', b'{"value":[2],"index":2}'])


def test_shamir_empty_secret_is_refused_both_ways() -> None:
    with pytest.raises(EmptySecretError):
        ShamirSharing(3, 2).split(b"")
    # f(x) = int(b"hats") + x: the reference's MalformedSecret case (length 4).
    constant = int.from_bytes(b"hats", "big")
    shares = [format_shamir_share(ShamirShare(index=x, value=constant + x)) for x in (1, 2)]
    with pytest.raises(EmptySecretError):
        ShamirSharing(2, 2).recover(shares)


def test_shamir_duplicate_index_is_rejected() -> None:
    shares = ShamirSharing(3, 2, rng=seeded(5)).split(b"k")
    with pytest.raises(DuplicateShareIndexError, match="shares 1 and 2 both have index 1"):
        ShamirSharing(3, 2).recover([shares[0], shares[0]])
    forged = format_shamir_share(ShamirShare(index=2, value=5))
    with pytest.raises(DuplicateShareIndexError, match="shares 2 and 4 both have index 2"):
        ShamirSharing(3, 2).recover([shares[0], shares[1], shares[2], forged])


def test_shamir_inconsistency_names_the_extra_share() -> None:
    shares = ShamirSharing(3, 2, rng=seeded(6)).split(b"k")
    other = ShamirSharing(3, 2, rng=seeded(9)).split(b"k")
    with pytest.raises(InconsistentSharesError, match="share 3 does not agree with shares 1-2"):
        ShamirSharing(3, 2).recover([shares[0], shares[1], other[2]])


def test_shamir_fewer_than_threshold() -> None:
    shares = ShamirSharing(4, 3, rng=seeded(2)).split(b"k")
    with pytest.raises(ShareCountError, match="at least 3 shares, got 2"):
        ShamirSharing(4, 3).recover(shares[:2])
    with pytest.raises(ShareCountError):
        ShamirSharing(4, 3).recover([])


@pytest.mark.parametrize(("num_shares", "threshold"), [(1, 1), (2, 1), (3, 0), (2, 3), (0, 0)])
def test_shamir_parameters(num_shares: int, threshold: int) -> None:
    with pytest.raises(SharingParametersError):
        ShamirSharing(num_shares, threshold)


def test_shamir_secret_too_long() -> None:
    ShamirSharing(2, 2).split(b"\xff" * 60)
    with pytest.raises(SecretTooLongError, match="at most 60 bytes, the secret has 61"):
        ShamirSharing(2, 2).split(b"\x00" * 61)
    with pytest.raises(SecretTooLongError, match="use XOR sharing"):
        ShamirSharing(2, 2).split(b"\x00" * 63)


def test_shamir_rejects_an_xor_share() -> None:
    with pytest.raises(MalformedShareError, match='share 1: missing field "index"'):
        ShamirSharing(2, 2).recover([b'{"value":[1]}', b'{"value":[1],"index":2}'])


P_BYTES = int_list(SHAMIR_PRIME.to_bytes(64, "big"))
P_MINUS_1 = int_list((SHAMIR_PRIME - 1).to_bytes(64, "big"))


@pytest.mark.parametrize(
    ("document", "error", "message"),
    [
        (b"\xc3\x28", ShareNotUtf8Error, r"not valid UTF-8 \(byte offset 0\)"),
        (b'{"value":[1],"index":1}\x80', ShareNotUtf8Error, "byte offset 23"),
        (b"hats", ShareNotJsonError, r"not JSON \(line 1, column 1"),
        (b'{"value":[1],"index":1} x', ShareNotJsonError, "not JSON"),
        (b'{"value":[1],"index":Infinity}', ShareNotJsonError, "NaN and Infinity"),
        (b'\xef\xbb\xbf{"value":[1],"index":1}', ShareNotJsonError, "BOM"),
        (b'{"value":[01],"index":1}', ShareNotJsonError, "not JSON"),
        (b"[" * 100_000, MalformedShareError, "nested too deeply"),
        (b"[[1],1]", MalformedShareError, "got an array"),
        (b'"text"', MalformedShareError, "got a string"),
        (b"null", MalformedShareError, "got null"),
        (b'{"index":1}', MalformedShareError, 'missing field "value"'),
        (b'{"value":[1],"index":1,"value2":0}', MalformedShareError, "unknown field"),
        (b'{"value":[1],"index":1,"index":2}', MalformedShareError, 'duplicate field "index"'),
        (b'{"value":[],"index":1}', MalformedShareError, "empty"),
        (b'{"value":[0,1],"index":1}', MalformedShareError, "leading zero byte"),
        (b'{"value":[0,0],"index":1}', MalformedShareError, "leading zero byte"),
        (f'{{"value":[{P_BYTES}],"index":1}}'.encode(), MalformedShareError, "not below"),
        (f'{{"value":[1,{P_MINUS_1}],"index":1}}'.encode(), MalformedShareError, "not below"),
        (b'{"value":[1.5],"index":1}', MalformedShareError, "fractional"),
        (b'{"value":[-0],"index":1}', MalformedShareError, "negative"),
        (b'{"value":[300],"index":1}', MalformedShareError, "above 255"),
        (b'{"value":[true],"index":1}', MalformedShareError, "boolean"),
        (b'{"value":{},"index":1}', MalformedShareError, "got an object"),
        (b'{"value":[1],"index":0}', MalformedShareError, '"index" is 0'),
        (b'{"value":[1],"index":-1}', MalformedShareError, "negative"),
        (b'{"value":[1],"index":1.0}', MalformedShareError, '"index" is not an integer'),
        (b'{"value":[1],"index":"1"}', MalformedShareError, '"index" is not an integer'),
        (b'{"value":[1],"index":true}', MalformedShareError, '"index" is not an integer'),
        (b'{"value":[1],"index":null}', MalformedShareError, '"index" is not an integer'),
        (
            f'{{"value":[1],"index":{SHAMIR_PRIME}}}'.encode(),
            MalformedShareError,
            '"index" is not below',
        ),
        (b'{"value":[1],"index":1' + b"0" * 5000 + b"}", MalformedShareError, "too large"),
    ],
)
def test_shamir_parse_errors(document: bytes, error: type[ShareFormatError], message: str) -> None:
    good = ShamirSharing(3, 2, rng=seeded(1)).split(b"k")
    with pytest.raises(error, match=message) as info:
        ShamirSharing(3, 2).recover([good[1], good[2], document])
    assert type(info.value) is error
    assert info.value.position == 3
    assert str(info.value).startswith("share 3: ")
    assert_no_leak(info.value, document)


def test_unknown_field_names_are_not_echoed() -> None:
    with pytest.raises(MalformedShareError) as info:
        parse_shamir_share(b'{"value":[1],"index":1,"my-secret-name":0}')
    assert "my-secret-name" not in str(info.value)
    with pytest.raises(MalformedShareError) as info:
        parse_shamir_share(b'{"value":[1],"index":1,"nested":{"my-secret":1,"my-secret":2}}')
    assert "my-secret" not in str(info.value)


def test_parse_without_position_has_no_prefix() -> None:
    with pytest.raises(ShareNotJsonError) as info:
        parse_xor_share(b"x")
    assert info.value.position is None
    assert str(info.value).startswith("not JSON")


def test_share_values_must_be_in_the_field() -> None:
    with pytest.raises(ValueError):
        ShamirShare(index=0, value=1)
    with pytest.raises(ValueError):
        ShamirShare(index=1, value=SHAMIR_PRIME)


# --- no secrets in reprs -----------------------------------------------------------------------


def test_reprs_hide_values() -> None:
    assert repr(XorShare(b"secret")) == "XorShare(value=<6 bytes>)"
    assert repr(ShamirShare(index=2, value=12345)) == "ShamirShare(index=2, value=<hidden>)"
    assert repr(XorSharing(3, rng=seeded(1))) == "XorSharing(num_shares=3)"
    assert repr(ShamirSharing(3, 2)) == "ShamirSharing(num_shares=3, threshold=2)"


def test_random_source_length_is_checked() -> None:
    with pytest.raises(ValueError, match="random source returned 1 bytes, expected 3"):
        XorSharing(2, rng=lambda n: b"x").split(b"abc")
