"""DICE key ids, COSE_Keys and certificates, checked against the real Genoa evidence."""

from __future__ import annotations

import contextlib
import hashlib

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shared_data
from hats.attestation import cose
from hats.attestation.errors import EvidenceFormatError, EvidenceVerificationError
from hats.pb.oak.attestation.v1 import evidence_pb2
from hats.protocol import p256

EVIDENCE_FILE = shared_data.EVIDENCE / "evidence_v1_genoa.binarypb"
SIGNING_KEY_FILE = shared_data.EVIDENCE / "evidence_v1_genoa_signing_key"


def load_evidence() -> evidence_pb2.Evidence:
    return evidence_pb2.Evidence.FromString(EVIDENCE_FILE.read_bytes())


def real_certificates() -> list[bytes]:
    """Layer 0..2, then the encryption, signing and group-encryption key certificates."""
    evidence = load_evidence()
    keys = evidence.application_keys
    return [layer.eca_certificate for layer in evidence.layers] + [
        keys.encryption_public_key_certificate,
        keys.signing_public_key_certificate,
        keys.group_encryption_public_key_certificate,
    ]


def key_from_int(value: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(value % (p256.CURVE_ORDER - 1) + 1, ec.SECP256R1())


private_keys = st.integers(min_value=1, max_value=p256.CURVE_ORDER - 1).map(key_from_int)


# --- the real evidence --------------------------------------------------------------------


def test_real_root_key_re_encodes_byte_identically() -> None:
    raw = load_evidence().root_layer.eca_public_key
    key = cose.CoseKey.decode(raw)
    assert len(raw) == 102
    assert key.encode() == raw
    assert key.kid == cose.key_id(key.raw_public_key())
    assert key == cose.p256_cose_key(key.raw_public_key())


def test_real_chain_parses_verifies_and_chains() -> None:
    evidence = load_evidence()
    issuer = cose.CoseKey.decode(evidence.root_layer.eca_public_key)
    for index, layer in enumerate(evidence.layers):
        cert = cose.parse_certificate(layer.eca_certificate, f"layer {index}")
        cose.verify_certificate(cert, issuer)
        assert cert.issuer == cose.key_id_hex(issuer.raw_public_key())
        assert (
            cert.event_sha256 == hashlib.sha256(evidence.event_log.encoded_events[index]).digest()
        )
        issuer = cert.subject_public_key
    for raw in real_certificates()[3:]:
        cert = cose.parse_certificate(raw)
        cose.verify_certificate(cert, issuer)
        assert cert.issuer == cose.key_id_hex(issuer.raw_public_key())


@pytest.mark.parametrize("index", range(6))
def test_real_certificates_re_encode_byte_identically(index: int) -> None:
    raw = real_certificates()[index]
    cert = cose.parse_certificate(raw)
    assert cert.protected == cose.PROTECTED_ES256
    assert cert.unprotected == {4: cose.UNPROTECTED_KID}
    assert cert.key_usage == cose.KEY_CERT_SIGN
    expected_order: tuple[int, ...] = (1, 2, cose.SUBJECT_PUBLIC_KEY_ID, cose.KEY_USAGE_ID)
    if index != 5:
        expected_order += (cose.EVENT_ID,)
    assert cert.claim_order == expected_order
    # The subject key, the claims and the whole COSE_Sign1 with our encoder.
    key = cert.subject_public_key
    assert key.encode() == cert.claims[cose.SUBJECT_PUBLIC_KEY_ID]
    if key.y is None:
        assert key == cose.x25519_cose_key(key.x)
        assert len(key.encode()) == 68
    else:
        assert key == cose.p256_cose_key(key.raw_public_key())
        assert len(key.encode()) == 102
    assert cert.subject == cose.key_id_hex(key.raw_public_key())
    payload = cose.certificate_payload(
        issuer_id=cert.issuer, subject_key=key, event_sha256=cert.event_sha256
    )
    assert payload == cert.payload
    assert cose.encode_sign1(payload, cert.signature) == raw


def test_real_signing_certificate_holds_the_published_signing_key() -> None:
    private = p256.load_private_key(
        bytes.fromhex(SIGNING_KEY_FILE.read_text().strip()), "test signing key"
    )
    cert = cose.parse_certificate(real_certificates()[4])
    assert cert.subject_public_key.raw_public_key() == p256.public_key_bytes(private)


def test_real_certificate_fails_with_another_issuer_key() -> None:
    evidence = load_evidence()
    cert = cose.parse_certificate(evidence.layers[1].eca_certificate)
    root = cose.CoseKey.decode(evidence.root_layer.eca_public_key)
    with pytest.raises(cose.CertificateSignatureError, match="does not verify"):
        cose.verify_certificate(cert, root)


def test_key_id_known_value() -> None:
    # The root key id of the real evidence, recomputed from the raw point.
    root = cose.CoseKey.decode(load_evidence().root_layer.eca_public_key)
    assert cose.key_id(root.raw_public_key()).hex() == "1351351c3a5f9149fc0faf44c217b1e6090c82ab"
    assert len(cose.key_id(b"")) == cose.KEY_ID_LENGTH


# --- issuing ------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    issuer=private_keys,
    subject=private_keys,
    issuer_id=st.text(max_size=60),
    event=st.none() | st.binary(min_size=32, max_size=32),
    extra=st.dictionaries(
        st.integers(min_value=-(2**40), max_value=-5_000_000),
        st.binary(max_size=40) | st.integers() | st.text(max_size=10),
        max_size=3,
    ),
)
def test_issue_parse_verify_round_trip(
    issuer: ec.EllipticCurvePrivateKey,
    subject: ec.EllipticCurvePrivateKey,
    issuer_id: str,
    event: bytes | None,
    extra: dict[int, object],
) -> None:
    subject_key = cose.p256_cose_key(subject.public_key())
    raw = cose.issue_certificate(
        issuer_private_key=issuer,
        issuer_id=issuer_id,
        subject_key=subject_key,
        event_sha256=event,
        extra_claims=extra,
    )
    cert = cose.parse_certificate(raw)
    cose.verify_certificate(cert, issuer.public_key())
    cose.verify_certificate(cert, cose.p256_cose_key(issuer.public_key()))
    assert cert.raw == raw
    assert cert.issuer == issuer_id
    assert cert.subject == cose.key_id_hex(p256.public_key_bytes(subject))
    assert cert.subject_public_key == subject_key
    assert cert.event_sha256 == event
    base = (1, 2, cose.SUBJECT_PUBLIC_KEY_ID, cose.KEY_USAGE_ID)
    assert cert.claim_order == base + ((cose.EVENT_ID,) if event else ()) + tuple(extra)
    for label, value in extra.items():
        assert cert.claims[label] == value
    if p256.public_key_bytes(subject) != p256.public_key_bytes(issuer):
        with pytest.raises(cose.CertificateSignatureError):
            cose.verify_certificate(cert, subject.public_key())


def test_issued_certificate_layout_and_size() -> None:
    issuer, subject = key_from_int(7), key_from_int(11)
    raw = cose.issue_certificate(
        issuer_private_key=issuer,
        issuer_id="ab" * 20,
        subject_key=cose.p256_cose_key(subject.public_key()),
        event_sha256=b"\x01" * 32,
    )
    assert raw.startswith(bytes.fromhex("8443a10126a104524173796d6d6574726963454344534132353658f9"))
    assert len(raw) == 343  # as every real layer certificate
    kem = cose.issue_certificate(
        issuer_private_key=issuer,
        issuer_id="ab" * 20,
        subject_key=cose.x25519_cose_key(b"\x09" * 32),
        event_sha256=None,
    )
    assert len(kem) == 264  # as the real group encryption certificate


def test_issue_rejects_bad_arguments() -> None:
    key = cose.p256_cose_key(key_from_int(3).public_key())
    with pytest.raises(ValueError, match="32 bytes"):
        cose.issue_certificate(
            issuer_private_key=key_from_int(5), issuer_id="", subject_key=key, event_sha256=b"x"
        )
    with pytest.raises(ValueError, match="repeats"):
        cose.issue_certificate(
            issuer_private_key=key_from_int(5),
            issuer_id="",
            subject_key=key,
            event_sha256=None,
            extra_claims={1: "again"},
        )
    with pytest.raises(ValueError, match="32 bytes"):
        cose.x25519_cose_key(b"\x00" * 31)


# --- malformed input: only the two typed errors -------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_format_errors(data: bytes) -> None:
    with pytest.raises(EvidenceFormatError):
        cose.parse_certificate(data)
    with contextlib.suppress(EvidenceFormatError):
        cose.CoseKey.decode(data)


def _mutations() -> st.SearchStrategy[tuple[int, bytes]]:
    @st.composite
    def build(draw: st.DrawFn) -> tuple[int, bytes]:
        index = draw(st.integers(min_value=0, max_value=5))
        raw = bytearray(real_certificates()[index])
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "set"]))
        position = draw(st.integers(min_value=0, max_value=len(raw) - 1))
        if kind == "flip":
            raw[position] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif kind == "truncate":
            del raw[position:]
        elif kind == "insert":
            raw[position:position] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del raw[position : position + draw(st.integers(min_value=1, max_value=4))]
        else:
            raw[position] = draw(st.integers(min_value=0, max_value=255))
        return index, bytes(raw)

    return build()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_mutated_real_certificates_raise_only_typed_errors(mutation: tuple[int, bytes]) -> None:
    index, data = mutation
    evidence = load_evidence()
    issuers = [cose.CoseKey.decode(evidence.root_layer.eca_public_key)]
    issuers += [cose.parse_certificate(cert).subject_public_key for cert in real_certificates()[:3]]
    issuer = issuers[min(index, 3)]
    if data == real_certificates()[index]:
        return
    try:
        cert = cose.parse_certificate(data)
        cose.verify_certificate(cert, issuer)
    except (EvidenceFormatError, EvidenceVerificationError):
        return
    # A mutation may survive only where the signature does not reach: the unprotected header.
    original = cose.parse_certificate(real_certificates()[index])
    assert cert.payload == original.payload
    assert cert.protected == original.protected


SHORT_EVENT = {cose.SHA2_256_ID: b"short"}


def _sign1(**changes: object) -> bytes:
    parts: list[object] = [cose.PROTECTED_ES256, {4: cose.UNPROTECTED_KID}, b"", b"\x01" * 64]
    good = cose.parse_certificate(real_certificates()[0])
    parts[2] = good.payload
    for key, value in changes.items():
        parts[int(key[1:])] = value
    return cbor2.dumps(parts)


def _payload_without(label: int, replace: dict[int, object] | None = None) -> bytes:
    claims = dict(cose.parse_certificate(real_certificates()[0]).claims)
    claims.pop(label, None)
    claims.update(replace or {})
    return cbor2.dumps(claims)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"", b""])), "not valid CBOR"),
        (real_certificates()[0] + b"\x00", "trailing bytes"),
        (cbor2.dumps([1, 2, 3]), "array of 4"),
        (_sign1(p0="a10126"), "protected header: expected a byte string"),
        (_sign1(p0=b"\xa1\x01\x38\x22"), "not ES256"),
        (_sign1(p1=[]), "unprotected header: expected a CBOR map"),
        (_sign1(p3=b"\x01" * 63), "expected 64 bytes"),
        (_sign1(p2=cbor2.dumps([1])), "expected a CBOR map"),
        (_sign1(p2=_payload_without(1)), r"iss \(1\)"),
        (_sign1(p2=_payload_without(2, {2: b"x"})), r"sub \(2\): expected a text string"),
        (_sign1(p2=_payload_without(cose.SUBJECT_PUBLIC_KEY_ID)), "subject public key"),
        (_sign1(p2=_payload_without(cose.KEY_USAGE_ID)), "key usage"),
        (
            _sign1(p2=_payload_without(0, {cose.EVENT_ID: {cose.SHA2_256_ID: b"short"}})),
            "expected 32 bytes",
        ),
        (_sign1(p2=_payload_without(0, {cose.EVENT_ID: b""})), "event claim"),
        (_sign1(p2=cbor2.dumps({"iss": "x"})), "claim label"),
        (b"\xa2\x01\x01\x01\x02", "not valid CBOR"),
    ],
)
def test_malformed_certificates(data: bytes, message: str) -> None:
    with pytest.raises(cose.CertificateFormatError, match=message):
        cose.parse_certificate(data)


def _key_map(**changes: object) -> dict[int, object]:
    items: dict[int, object] = dict(
        cbor2.loads(cose.p256_cose_key(key_from_int(9).public_key()).encode())
    )
    for key, value in changes.items():
        label = int(key.replace("m", "-")[1:])
        if value is None:
            del items[label]
        else:
            items[label] = value
    return items


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (_key_map(v1=3), "unsupported key type 3"),
        (_key_map(vm3=None), "missing labels -3"),
        (_key_map(v5=1), "unexpected labels 5"),
        (_key_map(vm2=b"\x00" * 31), "expected 32 bytes"),
        (_key_map(vm3=b"\x00" * 32), "not a point on P-256"),
        (_key_map(vm1=2), "not P-256"),
        (_key_map(v4=2), r"key_ops \(4\): expected an array"),
        (_key_map(v2="kid"), r"kid \(2\): expected a byte string"),
        (_key_map(v1=1), "unexpected labels -3"),
        (_key_map(v3=True), r"alg \(3\): expected an integer"),
    ],
)
def test_malformed_cose_keys(items: dict[int, object], message: str) -> None:
    with pytest.raises(cose.CertificateFormatError, match=message):
        cose.CoseKey.decode(cbor2.dumps(items))


def test_x25519_key_is_not_a_verifying_key() -> None:
    cert = cose.parse_certificate(real_certificates()[0])
    kem = cose.x25519_cose_key(b"\x05" * 32)
    with pytest.raises(cose.CertificateFormatError, match="not a P-256"):
        cose.verify_certificate(cert, kem)
    with pytest.raises(cose.CertificateFormatError, match="not a point"):
        cose.verify_certificate(cert, b"\x04" + b"\x00" * 64)


def test_okp_key_with_other_curve_is_rejected() -> None:
    items = cbor2.loads(cose.x25519_cose_key(b"\x05" * 32).encode())
    items[-1] = 6
    with pytest.raises(cose.CertificateFormatError, match="not X25519"):
        cose.CoseKey.decode(cbor2.dumps(items))
