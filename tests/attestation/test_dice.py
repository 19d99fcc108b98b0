"""The DICE attester, the /oak/dice file and the layer events (against the real evidence)."""

from __future__ import annotations

import hashlib

import pytest
from dice_testing import key_from_int, key_sequence, root_dice_data, verify_chain, x25519_public
from hypothesis import given, settings
from hypothesis import strategies as st

import shared_data
from hats.attestation import dice
from hats.attestation.errors import EvidenceFormatError
from hats.pb.oak.attestation.v1 import dice_pb2, eventlog_pb2, evidence_pb2
from hats.protocol import p256

EVIDENCE_FILE = shared_data.EVIDENCE / "evidence_v1_genoa.binarypb"


def real_evidence() -> evidence_pb2.Evidence:
    return evidence_pb2.Evidence.FromString(EVIDENCE_FILE.read_bytes())


# --- events: byte-identical to the real ones ----------------------------------------------


def test_real_events_rebuild_byte_identically() -> None:
    events = list(real_evidence().event_log.encoded_events)
    stage0 = eventlog_pb2.Event.FromString(events[0])
    measurements = eventlog_pb2.Stage0Measurements.FromString(stage0.event.value)
    assert dice.stage0_event(measurements) == events[0]

    stage1 = eventlog_pb2.Event.FromString(events[1])
    system = eventlog_pb2.SystemLayerData.FromString(stage1.event.value)
    assert dice.system_layer_event(system.system_image.sha2_256) == events[1]
    assert (stage1.tag, stage1.event.type_url) == ("stage1", dice.SYSTEM_LAYER_TYPE_URL)

    container = eventlog_pb2.Event.FromString(events[2])
    data = eventlog_pb2.ContainerLayerData.FromString(container.event.value)
    assert data.config.sha2_256 == dice.EMPTY_CONFIG_SHA256
    rebuilt = dice.container_event_from_digest(
        data.bundle.sha2_256,
        data.hybrid_encryption_public_key,
        data.signing_public_key,
        data.session_binding_public_key,
    )
    assert rebuilt == events[2]


def test_container_event_hashes_the_bundle() -> None:
    signing, binding = key_from_int(3).public_key(), key_from_int(4).public_key()
    event = dice.container_event(b"tar bytes", x25519_public(1), signing, binding)
    parsed = eventlog_pb2.Event.FromString(event)
    assert parsed.tag == "ORCHESTRATOR"
    assert parsed.event.type_url == "type.googleapis.com/oak.attestation.v1.ContainerLayerData"
    data = eventlog_pb2.ContainerLayerData.FromString(parsed.event.value)
    assert data.bundle.sha2_256 == hashlib.sha256(b"tar bytes").digest()
    assert data.config.sha2_256.hex().startswith("e3b0c442")
    assert data.signing_public_key == p256.public_key_bytes(signing)
    assert data.session_binding_public_key == p256.public_key_bytes(binding)
    assert len(event) == 321  # as the real container event


def test_event_argument_errors() -> None:
    signing = key_from_int(3).public_key()
    with pytest.raises(ValueError, match="32 bytes"):
        dice.container_event(b"", b"\x00" * 31, signing, signing)
    with pytest.raises(ValueError, match="SHA-256"):
        dice.container_event_from_digest(b"\x00" * 31, x25519_public(1), signing, signing)
    with pytest.raises(ValueError, match="SHA-256"):
        dice.system_layer_event(b"\x00" * 33)


# --- /oak/dice ----------------------------------------------------------------------------


def test_dice_data_round_trip_and_varint() -> None:
    small = dice_pb2.DiceData()
    small.certificate_authority.eca_private_key = b"\x07" * 32
    encoded = dice.encode_dice_data(small)
    assert encoded == bytes.fromhex("24 12 22 0a 20") + b"\x07" * 32  # one-byte varint 36
    assert dice.load_dice_data(encoded) == small
    data = root_dice_data(key_from_int(5))
    assert dice.load_dice_data(dice.encode_dice_data(data)) == data
    big = dice_pb2.DiceData()
    big.evidence.root_layer.remote_attestation_report = b"\x01" * 1184
    encoded = dice.encode_dice_data(big)
    assert encoded[:2] == bytes([0x80 | (len(encoded) - 2) & 0x7F, (len(encoded) - 2) >> 7])
    assert dice.load_dice_data(encoded) == big


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x80", "truncated length prefix"),
        (b"\xff" * 11, "longer than 10 bytes"),
        (b"\x05abc", "says 5 bytes, only 3 follow"),
        (b"\x00\x00\x00", "2 trailing bytes"),
        (b"\x02\x0a\xff", "does not parse"),
    ],
)
def test_bad_dice_data(data: bytes, message: str) -> None:
    with pytest.raises(dice.DiceDataError, match=message):
        dice.load_dice_data(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_dice_data_raises_only_dice_data_error(data: bytes) -> None:
    try:
        loaded = dice.load_dice_data(data)
    except dice.DiceDataError:
        return
    assert dice.encode_dice_data(loaded) is not None


# --- the attester -------------------------------------------------------------------------


def build_like_genoa(seed: int = 1) -> evidence_pb2.Evidence:
    """Our evidence with the real events' contents and our own keys."""
    real = real_evidence()
    generate = key_sequence(seed)
    attester = dice.DiceAttester(root_dice_data(generate()), generate_key=generate)
    events = list(real.event_log.encoded_events)
    attester.extend(events[0])
    attester.extend(events[1])
    signing, binding = generate(), generate()
    encryption, group = x25519_public(seed), x25519_public(seed + 100)
    container = eventlog_pb2.Event.FromString(events[2])
    bundle = eventlog_pb2.ContainerLayerData.FromString(container.event.value).bundle.sha2_256
    event = dice.container_event_from_digest(
        bundle, encryption, signing.public_key(), binding.public_key()
    )
    attester.extend(event)
    attester.add_application_keys(
        encryption_public_key=encryption,
        signing_public_key=signing.public_key(),
        group_encryption_public_key=group,
        event=event,
    )
    return attester.evidence()


def test_attester_evidence_has_the_real_structure() -> None:
    ours, real = build_like_genoa(), real_evidence()
    assert len(ours.layers) == len(real.layers) == 3
    assert len(ours.event_log.encoded_events) == 3
    for mine, theirs in zip(
        ours.event_log.encoded_events, real.event_log.encoded_events, strict=True
    ):
        a, b = eventlog_pb2.Event.FromString(mine), eventlog_pb2.Event.FromString(theirs)
        assert (a.tag, a.event.type_url) == (b.tag, b.event.type_url)
        assert len(mine) == len(theirs)
    ours_certs, real_certs = verify_chain(ours), verify_chain(real)
    assert len(ours_certs) == len(real_certs) == 6
    for mine_cert, their_cert in zip(ours_certs, real_certs, strict=True):
        assert mine_cert.claim_order == their_cert.claim_order
        assert mine_cert.protected == their_cert.protected
        assert mine_cert.unprotected == their_cert.unprotected
        assert mine_cert.key_usage == their_cert.key_usage
        assert len(mine_cert.raw) == len(their_cert.raw)
        assert len(mine_cert.payload) == len(their_cert.payload)
        mine_key, their_key = mine_cert.subject_public_key, their_cert.subject_public_key
        assert (mine_key.kty, mine_key.alg, mine_key.key_ops, mine_key.crv) == (
            their_key.kty,
            their_key.alg,
            their_key.key_ops,
            their_key.crv,
        )
        assert len(mine_key.encode()) == len(their_key.encode())
    assert ours.application_keys.group_signing_public_key_certificate == b""
    # The application-key certificates carry the container event's digest, the group one none.
    container_digest = hashlib.sha256(ours.event_log.encoded_events[2]).digest()
    assert [cert.event_sha256 for cert in ours_certs[3:]] == [
        container_digest,
        container_digest,
        None,
    ]


def test_attester_is_deterministic_with_injected_keys() -> None:
    assert build_like_genoa(7) == build_like_genoa(7)
    assert build_like_genoa(7) != build_like_genoa(8)


def test_attester_continues_from_its_dice_data() -> None:
    generate = key_sequence(3)
    first = dice.DiceAttester(root_dice_data(generate()), generate_key=generate)
    first.extend(dice.system_layer_event(b"\x11" * 32))
    loaded = dice.load_dice_data(dice.encode_dice_data(first.dice_data()))
    second = dice.DiceAttester(loaded, generate_key=generate)
    assert second.issuer_id == first.issuer_id
    second.extend(b"next event")
    evidence = second.evidence()
    assert len(evidence.layers) == 2
    verify_chain(evidence)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=5), st.integers(min_value=0, max_value=99))
def test_any_number_of_layers_chains(events: list[bytes], seed: int) -> None:
    generate = key_sequence(seed)
    attester = dice.DiceAttester(root_dice_data(generate()), generate_key=generate)
    for event in events:
        attester.extend(event)
    evidence = attester.evidence()
    assert list(evidence.event_log.encoded_events) == events
    verify_chain(evidence)


def test_attester_rejects_inconsistent_dice_data() -> None:
    data = root_dice_data(key_from_int(5))
    data.certificate_authority.eca_private_key = dice.private_key_bytes(key_from_int(6))
    with pytest.raises(dice.DiceDataError, match="does not certify"):
        dice.DiceAttester(data)
    data.certificate_authority.eca_private_key = b""
    with pytest.raises(dice.DiceDataError, match="ECA private key"):
        dice.DiceAttester(data)
    data = root_dice_data(key_from_int(5))
    data.evidence.event_log.encoded_events.append(b"orphan")
    with pytest.raises(dice.DiceDataError, match="0 layers but 1 events"):
        dice.DiceAttester(data)
    data = root_dice_data(key_from_int(5))
    data.evidence.root_layer.eca_public_key = b"\x00"
    with pytest.raises(EvidenceFormatError, match="root eca_public_key"):
        dice.DiceAttester(data)


def test_real_evidence_without_its_key_is_rejected() -> None:
    data = dice_pb2.DiceData(evidence=real_evidence())
    data.evidence.ClearField("application_keys")
    data.certificate_authority.eca_private_key = dice.private_key_bytes(key_from_int(5))
    with pytest.raises(dice.DiceDataError, match="layer 2 certificate: does not certify"):
        dice.DiceAttester(data)


def test_evidence_is_final_after_application_keys() -> None:
    generate = key_sequence(2)
    attester = dice.DiceAttester(root_dice_data(generate()), generate_key=generate)
    attester.extend(b"event")
    attester.add_application_keys(
        encryption_public_key=x25519_public(1),
        signing_public_key=key_from_int(9).public_key(),
        group_encryption_public_key=x25519_public(2),
        event=b"event",
    )
    with pytest.raises(dice.DiceStateError, match="final"):
        attester.extend(b"more")
    with pytest.raises(dice.DiceStateError):
        attester.add_application_keys(
            encryption_public_key=x25519_public(1),
            signing_public_key=key_from_int(9).public_key(),
            group_encryption_public_key=x25519_public(2),
            event=b"event",
        )
    # A DiceData holding final evidence cannot be extended either.
    with pytest.raises(dice.DiceStateError):
        dice.DiceAttester(attester.dice_data()).extend(b"x")


def test_repr_hides_the_private_key() -> None:
    key = key_from_int(0x1234567)
    attester = dice.DiceAttester(root_dice_data(key))
    text = repr(attester)
    assert dice.private_key_bytes(key).hex() not in text
    assert "layers=0" in text
