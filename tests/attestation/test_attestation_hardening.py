"""Hardening of evidence verification and policies against a hostile host.

Item 9: only the DICE layers Oak's extraction takes (upstream-facts F9).
Item 1: open-ended kernel command-line regexes (upstream-facts F10).
"""

from __future__ import annotations

import hashlib

import pytest
from dice_testing import key_sequence, x25519_public

from hats.attestation import dice, simulate, verify
from hats.attestation.errors import EvidenceVerificationError
from hats.pb.oak.attestation.v1 import evidence_pb2
from hats.protocol import p256

F9_MESSAGE = "incorrect number of DICE layers for Oak Containers"


def _evidence_with_layers(extra_events: list[bytes]) -> tuple[evidence_pb2.Evidence, bytes]:
    """Simulated evidence: kernel, system and container layers, then ``extra_events`` layers.

    The application keys are bound (signed, EVENT claim) to the last layer, as a host
    holding the container layer's key could make them.
    """
    keys = key_sequence(9)
    image_sha256 = hashlib.sha256(b"the approved image").digest()
    attester = dice.DiceAttester(
        simulate.simulate_stage1(image_sha256, generate_key=keys), generate_key=keys
    )
    signing = p256.public_key_bytes(keys())
    binding = p256.public_key_bytes(keys())
    container = dice.container_event(b"the approved bundle", x25519_public(1), signing, binding)
    attester.extend(container)
    last = container
    for event in extra_events:
        attester.extend(event)
        last = event
    attester.add_application_keys(
        encryption_public_key=x25519_public(2),
        signing_public_key=signing,
        group_encryption_public_key=x25519_public(3),
        event=last,
    )
    return attester.evidence(), signing


def _verify(evidence: evidence_pb2.Evidence) -> verify.VerifiedEvidence:
    return verify.verify_evidence(evidence, tee_certificate=None, allow_insecure=True)


def test_three_layers_verify() -> None:
    evidence, signing = _evidence_with_layers([])
    assert len(evidence.layers) == 3
    assert _verify(evidence).measurements.application_signing_public_key == signing


def test_a_fourth_unmeasured_layer_is_refused() -> None:
    """The issue's evidence: a fourth layer with an unmeasured event carries the app keys."""
    unmeasured = dice.system_layer_event(hashlib.sha256(b"anything at all").digest())
    evidence, _ = _evidence_with_layers([unmeasured])
    assert len(evidence.layers) == len(evidence.event_log.encoded_events) == 4
    with pytest.raises(EvidenceVerificationError, match=F9_MESSAGE):
        _verify(evidence)


def test_many_extra_layers_are_refused() -> None:
    extra = [b"not even an event"] * 3
    evidence, _ = _evidence_with_layers(extra)
    with pytest.raises(EvidenceVerificationError, match=f"6 layers: {F9_MESSAGE}"):
        _verify(evidence)


def test_two_layers_are_refused_with_the_count() -> None:
    evidence, _ = _evidence_with_layers([])
    del evidence.layers[2]
    del evidence.event_log.encoded_events[2]
    with pytest.raises(EvidenceVerificationError, match=f"2 layers: {F9_MESSAGE}"):
        _verify(evidence)
