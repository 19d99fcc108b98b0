"""Test helpers for DICE evidence: deterministic keys and a full chain check."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hats.attestation import cose, dice, simulate
from hats.pb.oak.attestation.v1 import dice_pb2, evidence_pb2
from hats.protocol import p256


def key_from_int(value: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(value, ec.SECP256R1())


def key_sequence(seed: int) -> dice.KeyGenerator:
    """A deterministic key generator: keys derived from SHA-256(seed, counter)."""
    counter: Iterator[int] = iter(range(1_000_000))

    def generate() -> ec.EllipticCurvePrivateKey:
        digest = hashlib.sha256(f"{seed}/{next(counter)}".encode()).digest()
        return key_from_int(int.from_bytes(digest, "big") % (p256.CURVE_ORDER - 1) + 1)

    return generate


def x25519_public(seed: int) -> bytes:
    private = x25519.X25519PrivateKey.from_private_bytes(hashlib.sha256(bytes([seed])).digest())
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def root_dice_data(root: ec.EllipticCurvePrivateKey) -> dice_pb2.DiceData:
    data = dice_pb2.DiceData()
    data.evidence.root_layer.CopyFrom(simulate.insecure_root_layer(root.public_key()))
    data.certificate_authority.eca_private_key = dice.private_key_bytes(root)
    return data


def verify_chain(evidence: evidence_pb2.Evidence) -> list[cose.Certificate]:
    """Every certificate verifies with its issuer's key and chains by iss/sub; events match."""
    issuer = cose.CoseKey.decode(evidence.root_layer.eca_public_key)
    issuer_id = cose.key_id_hex(issuer.raw_public_key())
    certs = []
    assert len(evidence.layers) == len(evidence.event_log.encoded_events)
    for index, layer in enumerate(evidence.layers):
        cert = cose.parse_certificate(layer.eca_certificate)
        cose.verify_certificate(cert, issuer)
        assert cert.issuer == issuer_id
        event = evidence.event_log.encoded_events[index]
        assert cert.event_sha256 == hashlib.sha256(event).digest()
        issuer, issuer_id = cert.subject_public_key, cert.subject
        certs.append(cert)
    keys = evidence.application_keys
    for raw in (
        keys.encryption_public_key_certificate,
        keys.signing_public_key_certificate,
        keys.group_encryption_public_key_certificate,
    ):
        if raw:
            cert = cose.parse_certificate(raw)
            cose.verify_certificate(cert, issuer)
            assert cert.issuer == issuer_id
            certs.append(cert)
    return certs
