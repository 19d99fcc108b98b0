"""The DICE attester and the layer events (spec wire-protocol §2 steps 5–8) — sans-I/O.

Rules:

* ``/oak/dice`` holds a **length-delimited** ``oak.attestation.v1.DiceData``:
  a base-128 varint length, then exactly that many proto bytes
  (:func:`load_dice_data` rejects a bad varint, a short file, trailing bytes
  and a proto that does not parse, with :class:`DiceDataError`);
  ``certificate_authority.eca_private_key`` is the current layer's ECA key (a
  32-byte P-256 scalar), ``evidence`` the evidence so far;
* :meth:`DiceAttester.extend` measures one layer: a fresh P-256 ECA key, a
  certificate for it (with the EVENT claim ``SHA-256(encoded_event)``) signed
  by the current ECA key with ``iss`` = the ``sub`` of the last layer
  certificate (or the hex key id of the root ``eca_public_key``), appended to
  ``evidence.layers``; the event is appended to ``event_log.encoded_events``;
  the fresh key becomes the current one;
* :meth:`DiceAttester.add_application_keys` (step 8) sets
  ``evidence.application_keys`` with certificates signed by the current
  (container-layer) ECA key: the instance X25519 KEM key and the instance
  signing key, both with the EVENT claim of the container event; the group
  X25519 KEM key without an EVENT claim; an empty group signing certificate.
  After it the attester is finished: the evidence is final;
* the events are ``oak.attestation.v1.Event{tag, Any{type_url, value}}``:
  ``"Stage0"``/``Stage0Measurements``, ``"stage1"``/``SystemLayerData``
  (SHA-256 of the ``.tar.xz`` bytes) and ``"ORCHESTRATOR"``/``ContainerLayerData``
  (SHA-256 of the bundle, SHA-256 of the empty config, the instance public keys).

The attester's private key never appears in a message or ``repr``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.message import DecodeError

from hats.attestation import cose
from hats.attestation.errors import AttestationError, EvidenceFormatError
from hats.pb.oak import digest_pb2
from hats.pb.oak.attestation.v1 import dice_pb2, eventlog_pb2, evidence_pb2
from hats.protocol import p256
from hats.protocol.crypto_errors import InvalidPrivateKeyError

TYPE_URL_PREFIX: Final = "type.googleapis.com/"
STAGE0_TAG: Final = "Stage0"
STAGE1_TAG: Final = "stage1"
ORCHESTRATOR_TAG: Final = "ORCHESTRATOR"
STAGE0_TYPE_URL: Final = TYPE_URL_PREFIX + "oak.attestation.v1.Stage0Measurements"
SYSTEM_LAYER_TYPE_URL: Final = TYPE_URL_PREFIX + "oak.attestation.v1.SystemLayerData"
CONTAINER_LAYER_TYPE_URL: Final = TYPE_URL_PREFIX + "oak.attestation.v1.ContainerLayerData"

EMPTY_CONFIG_SHA256: Final = hashlib.sha256(b"").digest()
"""The container config digest HATs always measures: SHA-256 of the empty config."""

X25519_PUBLIC_KEY_LENGTH: Final = 32
SHA256_LENGTH: Final = 32
_MAX_VARINT_BYTES: Final = 10

KeyGenerator = Callable[[], ec.EllipticCurvePrivateKey]
"""Makes a fresh P-256 ECA key (injectable for deterministic tests)."""


class DiceDataError(EvidenceFormatError):
    """The stage-1 DICE data (``/oak/dice``) does not parse or is inconsistent."""


class DiceStateError(AttestationError):
    """The attester was used out of order (extended after its evidence was finalised)."""


# --- the /oak/dice file ---------------------------------------------------------------------


def _read_varint(data: bytes) -> tuple[int, int]:
    value = 0
    for index in range(min(len(data), _MAX_VARINT_BYTES)):
        byte = data[index]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value, index + 1
    if len(data) < _MAX_VARINT_BYTES:
        raise DiceDataError(f"DICE data: truncated length prefix ({len(data)} bytes)")
    raise DiceDataError("DICE data: length prefix is longer than 10 bytes")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def load_dice_data(data: bytes) -> dice_pb2.DiceData:
    """Parse the length-delimited ``DiceData`` of ``/oak/dice`` (module rules)."""
    raw = bytes(data)
    if not raw:
        raise DiceDataError("DICE data: empty")
    length, offset = _read_varint(raw)
    end = offset + length
    if end > len(raw):
        raise DiceDataError(
            f"DICE data: length prefix says {length} bytes, only {len(raw) - offset} follow"
        )
    if end != len(raw):
        raise DiceDataError(f"DICE data: {len(raw) - end} trailing bytes after the message")
    message = dice_pb2.DiceData()
    try:
        message.ParseFromString(raw[offset:end])
    except DecodeError:
        raise DiceDataError("DICE data: the DiceData message does not parse") from None
    return message


def encode_dice_data(dice_data: dice_pb2.DiceData) -> bytes:
    """``DiceData`` in the length-delimited form of ``/oak/dice``."""
    body = dice_data.SerializeToString(deterministic=True)
    return _varint(len(body)) + body


# --- events ---------------------------------------------------------------------------------


def _event(tag: str, type_url: str, value: bytes) -> bytes:
    event = eventlog_pb2.Event(tag=tag)
    event.event.type_url = type_url
    event.event.value = value
    return event.SerializeToString(deterministic=True)


def _digest(sha256: bytes, what: str) -> digest_pb2.RawDigest:
    if len(sha256) != SHA256_LENGTH:
        raise ValueError(f"{what}: expected a {SHA256_LENGTH}-byte SHA-256, got {len(sha256)}")
    return digest_pb2.RawDigest(sha2_256=bytes(sha256))


def _sec1(key: p256.PublicKey, what: str) -> bytes:
    return p256.public_key_bytes(p256.load_public_key(key, what))


def _x25519(key: bytes, what: str) -> bytes:
    if len(key) != X25519_PUBLIC_KEY_LENGTH:
        raise ValueError(f"{what}: expected {X25519_PUBLIC_KEY_LENGTH} bytes, got {len(key)}")
    return bytes(key)


def container_event_from_digest(
    bundle_sha256: bytes,
    encryption_public_key: bytes,
    signing_public_key: p256.PublicKey,
    session_binding_public_key: p256.PublicKey,
) -> bytes:
    """The encoded ``"ORCHESTRATOR"`` event for a bundle given by its SHA-256 (step 6)."""
    data = eventlog_pb2.ContainerLayerData(
        bundle=_digest(bundle_sha256, "bundle SHA-256"),
        config=_digest(EMPTY_CONFIG_SHA256, "config SHA-256"),
        hybrid_encryption_public_key=_x25519(encryption_public_key, "encryption public key"),
        signing_public_key=_sec1(signing_public_key, "signing public key"),
        session_binding_public_key=_sec1(session_binding_public_key, "session binding public key"),
    )
    return _event(
        ORCHESTRATOR_TAG, CONTAINER_LAYER_TYPE_URL, data.SerializeToString(deterministic=True)
    )


def container_event(
    bundle: bytes,
    encryption_public_key: bytes,
    signing_public_key: p256.PublicKey,
    session_binding_public_key: p256.PublicKey,
) -> bytes:
    """The encoded ``"ORCHESTRATOR"`` event of step 6: ``bundle`` is the whole tar's bytes."""
    return container_event_from_digest(
        hashlib.sha256(bundle).digest(),
        encryption_public_key,
        signing_public_key,
        session_binding_public_key,
    )


def system_layer_event(image_sha256: bytes) -> bytes:
    """The encoded ``"stage1"`` event: ``SystemLayerData`` with the SHA-256 of the ``.tar.xz``."""
    data = eventlog_pb2.SystemLayerData(system_image=_digest(image_sha256, "system image SHA-256"))
    return _event(STAGE1_TAG, SYSTEM_LAYER_TYPE_URL, data.SerializeToString(deterministic=True))


def stage0_event(measurements: eventlog_pb2.Stage0Measurements) -> bytes:
    """The encoded ``"Stage0"`` event carrying ``measurements``."""
    return _event(STAGE0_TAG, STAGE0_TYPE_URL, measurements.SerializeToString(deterministic=True))


# --- the attester ---------------------------------------------------------------------------


def private_key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The 32-byte big-endian scalar of a P-256 private key (``eca_private_key``)."""
    return key.private_numbers().private_value.to_bytes(p256.PRIVATE_KEY_LENGTH, "big")


class DiceAttester:
    """Extends DICE evidence layer by layer (module rules); holds the current ECA private key."""

    def __init__(
        self,
        dice_data: dice_pb2.DiceData,
        *,
        generate_key: KeyGenerator = p256.generate_private_key,
    ) -> None:
        """Start from ``dice_data`` (the proto is copied, not kept).

        Raises :class:`DiceDataError` if the ECA private key is missing or
        invalid, the root ``eca_public_key`` or the last layer certificate
        does not parse, the event log and the layers differ in length, or
        the private key is not the one certified by the last layer (or the
        root key when there are no layers).
        """
        self._generate_key = generate_key
        self._evidence = evidence_pb2.Evidence()
        self._evidence.CopyFrom(dice_data.evidence)
        try:
            self._key = p256.load_private_key(
                dice_data.certificate_authority.eca_private_key, "DICE data ECA private key"
            )
        except InvalidPrivateKeyError as exc:
            raise DiceDataError(str(exc)) from None
        layers = self._evidence.layers
        if len(self._evidence.event_log.encoded_events) != len(layers):
            raise DiceDataError(
                f"DICE data: {len(layers)} layers but "
                f"{len(self._evidence.event_log.encoded_events)} events"
            )
        if layers:
            where = f"DICE data layer {len(layers) - 1} certificate"
            certificate = cose.parse_certificate(layers[-1].eca_certificate, where)
            certified = certificate.subject_public_key
            self._issuer_id = certificate.subject
        else:
            where = "DICE data root eca_public_key"
            certified = cose.CoseKey.decode(self._evidence.root_layer.eca_public_key, where)
            self._issuer_id = cose.key_id_hex(certified.raw_public_key())
        if certified.raw_public_key() != p256.public_key_bytes(self._key):
            raise DiceDataError(f"{where}: does not certify the DICE data's ECA private key")
        self._finished = self._evidence.HasField("application_keys")

    def __repr__(self) -> str:
        return (
            f"DiceAttester(layers={len(self._evidence.layers)}, issuer_id={self._issuer_id!r}, "
            f"finished={self._finished})"
        )

    @property
    def issuer_id(self) -> str:
        """The ``sub`` of the last layer certificate: the ``iss`` of the next one."""
        return self._issuer_id

    def _check_open(self) -> None:
        if self._finished:
            raise DiceStateError("the DICE evidence is final (application keys were added)")

    def extend(self, encoded_event: bytes) -> None:
        """Add one layer measuring ``encoded_event`` (module rules)."""
        self._check_open()
        event = bytes(encoded_event)
        new_key = self._generate_key()
        subject = cose.p256_cose_key(new_key.public_key())
        certificate = cose.issue_certificate(
            issuer_private_key=self._key,
            issuer_id=self._issuer_id,
            subject_key=subject,
            event_sha256=cose.sha256(event),
        )
        self._evidence.layers.add(eca_certificate=certificate)
        self._evidence.event_log.encoded_events.append(event)
        self._key = new_key
        self._issuer_id = cose.key_id_hex(subject.raw_public_key())

    def add_application_keys(
        self,
        *,
        encryption_public_key: bytes,
        signing_public_key: p256.PublicKey,
        group_encryption_public_key: bytes,
        event: bytes,
    ) -> None:
        """Certify the instance and group keys with the current ECA key (step 8) and finish.

        ``event`` is the encoded container event (the one passed to the last
        :meth:`extend`); X25519 keys are 32 raw bytes (:class:`ValueError`
        otherwise), a bad signing key raises
        :class:`hats.protocol.crypto_errors.InvalidPublicKeyError`.
        """
        self._check_open()
        event_sha256 = cose.sha256(bytes(event))
        signing_key = cose.p256_cose_key(signing_public_key)

        def issue(subject: cose.CoseKey, digest: bytes | None) -> bytes:
            return cose.issue_certificate(
                issuer_private_key=self._key,
                issuer_id=self._issuer_id,
                subject_key=subject,
                event_sha256=digest,
            )

        keys = evidence_pb2.ApplicationKeys(
            encryption_public_key_certificate=issue(
                cose.x25519_cose_key(encryption_public_key), event_sha256
            ),
            signing_public_key_certificate=issue(signing_key, event_sha256),
            group_encryption_public_key_certificate=issue(
                cose.x25519_cose_key(group_encryption_public_key), None
            ),
            group_signing_public_key_certificate=b"",
        )
        self._evidence.application_keys.CopyFrom(keys)
        self._finished = True

    def evidence(self) -> evidence_pb2.Evidence:
        """A copy of the evidence so far."""
        copy = evidence_pb2.Evidence()
        copy.CopyFrom(self._evidence)
        return copy

    def dice_data(self) -> dice_pb2.DiceData:
        """``DiceData`` for the next stage: the evidence so far and the current ECA private key."""
        data = dice_pb2.DiceData(evidence=self._evidence)
        data.certificate_authority.eca_private_key = private_key_bytes(self._key)
        return data
