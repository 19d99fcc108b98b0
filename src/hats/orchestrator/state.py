"""What start-up hands to the orchestrator's services and runtime.

:class:`Secret` is one workload secret as the TVS ``Secret`` message carries
it (``string key_id = 1; string public_key = 2; bytes private_key = 3;``),
after recovery from the shares of all TVSes (and optional unwrapping).
:class:`InstanceKeys` are the keys made at start-up (spec wire-protocol §2
step 3). :class:`OrchestratorState` gathers everything start-up produced; the
IPC services read it (``GetKeys`` through ``secret_manager.current()``,
``GetEndorsedEvidence``, ``OrchestratorCrypto``) and the runtime unpacks
``bundle``.

No ``repr`` here shows a private key, a secret or the bundle's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from hats.pb.oak.attestation.v1 import evidence_pb2
from hats.protocol import p256

if TYPE_CHECKING:
    from hats.orchestrator.secret_manager import SecretManager


@dataclass(frozen=True)
class Secret:
    """One workload secret: the TVS proto ``Secret`` (same field names and types).

    ``key_id`` is a string in the proto (the reference's local TVS uses
    ``"64"``; GCP mode a decimal number 0-255); ``public_key`` is free text
    (hex of an HPKE public key in GCP mode); ``private_key`` is the recovered
    (and, with ``--unwrap-secrets``, unwrapped) key. The repr hides it.
    """

    key_id: str
    public_key: str
    private_key: bytes = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"Secret(key_id={self.key_id!r}, public_key={self.public_key!r}, "
            f"private_key=<{len(self.private_key)} bytes>)"
        )


def _raw_x25519(key: x25519.X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True, repr=False)
class InstanceKeys:
    """The instance keys and the group key (§2 step 3); the repr shows no key."""

    encryption_key: x25519.X25519PrivateKey
    """HPKE X25519 key pair (``ContainerLayerData.hybrid_encryption_public_key``)."""
    signing_key: ec.EllipticCurvePrivateKey
    """P-256 signing key: signs the TVS handshake hash and ``OrchestratorCrypto.Sign``."""
    session_binding_key: ec.EllipticCurvePrivateKey
    """P-256 session-binding key (``OrchestratorCrypto.BindSession``)."""
    group_encryption_key: x25519.X25519PrivateKey
    """The group X25519 key (HATs is always Oak's "leader")."""

    @classmethod
    def generate(cls) -> InstanceKeys:
        """Fresh keys."""
        return cls(
            encryption_key=x25519.X25519PrivateKey.generate(),
            signing_key=p256.generate_private_key(),
            session_binding_key=p256.generate_private_key(),
            group_encryption_key=x25519.X25519PrivateKey.generate(),
        )

    @property
    def encryption_public_key(self) -> bytes:
        """The 32 raw bytes of the instance X25519 public key."""
        return _raw_x25519(self.encryption_key)

    @property
    def signing_public_key(self) -> bytes:
        """The 65-byte SEC1 point of the instance signing key."""
        return p256.public_key_bytes(self.signing_key)

    @property
    def session_binding_public_key(self) -> bytes:
        """The 65-byte SEC1 point of the session-binding key."""
        return p256.public_key_bytes(self.session_binding_key)

    @property
    def group_encryption_public_key(self) -> bytes:
        """The 32 raw bytes of the group X25519 public key."""
        return _raw_x25519(self.group_encryption_key)

    def __repr__(self) -> str:
        return "InstanceKeys(<hidden>)"


@dataclass(frozen=True, repr=False)
class OrchestratorState:
    """Everything start-up produced, for the IPC services and the container runtime."""

    evidence: evidence_pb2.Evidence
    """The final DICE evidence (after the container layer and the application keys)."""
    instance_keys: InstanceKeys
    bundle: bytes
    """The container bundle (an uncompressed tar) exactly as measured."""
    secret_manager: SecretManager
    """``secret_manager.current()`` gives the secrets for ``GetKeys``."""
    launcher_target: str
    """The launcher's gRPC target (for ``NotifyAppReady`` forwarding)."""
    tee_certificate: bytes = b""
    """The VCEK from the launcher's metadata (empty when not SEV-SNP)."""
    rpc_timeout: float = 30.0
    """Deadline in seconds for calls to the launcher."""

    def __repr__(self) -> str:
        return (
            f"OrchestratorState(layers={len(self.evidence.layers)}, "
            f"bundle=<{len(self.bundle)} bytes>, launcher={self.launcher_target!r})"
        )
