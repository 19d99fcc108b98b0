"""The attestation errors: one base, one class per kind of failure.

Messages say what failed and where (layer, certificate, field), never key
material or secrets. Sub-modules subclass these for finer cases.
"""

from hats.errors import HatsError


class AttestationError(HatsError):
    """Base of every attestation failure."""


class EvidenceFormatError(AttestationError):
    """Malformed input: CBOR, COSE, a proto, a report or a certificate that does not parse."""


class EvidenceVerificationError(AttestationError):
    """Well-formed evidence that does not verify: a signature, chain link or digest is wrong."""


class PolicyError(AttestationError):
    """An appraisal policy file is malformed, unsigned or not acceptable."""


class PolicyMismatchError(AttestationError):
    """Verified evidence matches no appraisal policy (the message says why)."""
