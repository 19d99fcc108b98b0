"""Verify an SEV-SNP report: ARK → ASK → VCEK → report.

Rules, checked in this order (each failure its own error class, one line):

1. The VCEK parses (DER or PEM); its product is its issuer's (``SEV-<Product>``).
2. Roots for that product exist (built-in unless given) and are that product's.
3. The report parses; when its CPUID names a product, it is the VCEK's product.
4. Chain: the ARK is self-signed, the ASK is signed by the ARK and the VCEK by
   the ASK, each issuer name equal to its signer's subject; all three use
   RSASSA-PSS with SHA-384, MGF1 SHA-384, salt length 48 (trailer 1), the ARK and
   ASK keys are RSA-4096 and the VCEK key is ECDSA P-384; ``now`` (default: the
   current time) lies within each certificate's validity period.
5. The report is signed with the VCEK: SIGNATURE_ALGO 1 (ECDSA P-384 SHA-384),
   SIGNING_KEY 0 (VCEK), MASK_CHIP_KEY clear, and the signature (R, S) verifies
   over bytes 0x000–0x29F.
6. The VCEK's chip id (hwID) equals the report's CHIP_ID — its first 8 bytes on
   Turin — unless the report's CHIP_ID is all zero (the platform masks it,
   MASK_CHIP_ID; the signature still binds the report to this chip's VCEK).
7. The VCEK's TCB equals the report's REPORTED_TCB (the TCB the VCEK was derived for).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import SignatureAlgorithmOID

from hats.attestation.amd.certs import (
    AmdRoots,
    builtin_amd_roots,
    load_vcek,
    vcek_chip_id,
    vcek_product,
    vcek_tcb,
)
from hats.attestation.amd.report import (
    SIGNATURE_ALGO_ECDSA_P384_SHA384,
    SIGNING_KEY_VCEK,
    SnpReport,
    parse_report,
)
from hats.attestation.errors import EvidenceVerificationError


class AmdRootsMissingError(EvidenceVerificationError):
    """No ARK/ASK for the VCEK's product."""


class AmdProductMismatchError(EvidenceVerificationError):
    """The roots, the VCEK and the report name different products."""


class CertificateAlgorithmError(EvidenceVerificationError):
    """A certificate's signature algorithm or key type is not the one AMD uses."""


class CertificateSignatureError(EvidenceVerificationError):
    """A chain link (ARK self-signature, ASK by ARK, VCEK by ASK) does not verify."""


class CertificateValidityError(EvidenceVerificationError):
    """A certificate is expired or not yet valid at the verification time."""


class ReportSignatureError(EvidenceVerificationError):
    """The report's signature does not verify with the VCEK (or it is not VCEK-signed)."""


class ChipIdMismatchError(EvidenceVerificationError):
    """The VCEK belongs to another chip than the report's CHIP_ID."""


class TcbMismatchError(EvidenceVerificationError):
    """The VCEK was issued for another TCB than the report's REPORTED_TCB."""


@dataclass(frozen=True)
class VerifiedReport:
    """A report whose signature chains to AMD's roots for ``product``."""

    report: SnpReport
    product: str
    vcek: x509.Certificate


_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_OID_SHA384 = bytes.fromhex("608648016503040202")
_OID_MGF1 = bytes.fromhex("2a864886f70d010108")


class _DerError(Exception):
    pass


def _tlv(buf: bytes, pos: int) -> tuple[int, bytes, int]:
    """One DER TLV at ``pos``: (tag, value, position after it)."""
    if pos + 2 > len(buf):
        raise _DerError
    tag, length = buf[pos], buf[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 2 or pos + count > len(buf):
            raise _DerError
        length = int.from_bytes(buf[pos : pos + count], "big")
        pos += count
    if pos + length > len(buf):
        raise _DerError
    return tag, buf[pos : pos + length], pos + length


def _is_sha384_alg(value: bytes) -> bool:
    """An AlgorithmIdentifier body: OID SHA-384, parameters NULL or absent."""
    tag, oid, pos = _tlv(value, 0)
    if tag != 0x06 or oid != _OID_SHA384:
        return False
    return value[pos:] in (b"", b"\x05\x00")


def _pss_params_ok(cert: x509.Certificate) -> bool:
    """The certificate's RSASSA-PSS-params are SHA-384 / MGF1 SHA-384 / salt 48 / trailer 1."""
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
        return False
    # The outer signatureAlgorithm follows the TBSCertificate in the Certificate SEQUENCE.
    der = cert.public_bytes(Encoding.DER)
    try:
        _, body, _ = _tlv(der, 0)
        _, _, pos = _tlv(body, 0)  # tbsCertificate
        tag, alg, _ = _tlv(body, pos)
        if tag != 0x30:
            return False
        _, _, pos = _tlv(alg, 0)  # the rsassaPss OID, checked above
        tag, params, end = _tlv(alg, pos)
        if tag != 0x30 or end != len(alg):
            return False
        seen: dict[int, bytes] = {}
        pos = 0
        while pos < len(params):
            tag, value, pos = _tlv(params, pos)
            if tag in seen or tag not in (0xA0, 0xA1, 0xA2, 0xA3):
                return False
            seen[tag] = value
        if not {0xA0, 0xA1, 0xA2} <= set(seen):
            return False
        tag, hash_alg, end = _tlv(seen[0xA0], 0)
        if tag != 0x30 or end != len(seen[0xA0]) or not _is_sha384_alg(hash_alg):
            return False
        tag, mgf, end = _tlv(seen[0xA1], 0)
        if tag != 0x30 or end != len(seen[0xA1]):
            return False
        tag, oid, pos = _tlv(mgf, 0)
        if tag != 0x06 or oid != _OID_MGF1:
            return False
        tag, mgf_hash, end = _tlv(mgf, pos)
        if tag != 0x30 or end != len(mgf) or not _is_sha384_alg(mgf_hash):
            return False
        if seen[0xA2] != b"\x02\x01\x30":
            return False
        return seen.get(0xA3, b"\x02\x01\x01") == b"\x02\x01\x01"
    except _DerError:
        return False


def _check_algorithm(cert: x509.Certificate, label: str) -> None:
    if not _pss_params_ok(cert):
        raise CertificateAlgorithmError(
            f"{label} is not signed with RSASSA-PSS SHA-384 (MGF1 SHA-384, salt 48)"
        )


def _check_signed_by(cert: x509.Certificate, issuer: x509.Certificate, message: str) -> None:
    key = issuer.public_key()
    if cert.issuer != issuer.subject or not isinstance(key, rsa.RSAPublicKey):
        raise CertificateSignatureError(message)
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes, _PSS, hashes.SHA384())
    except InvalidSignature:
        raise CertificateSignatureError(message) from None


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_validity(cert: x509.Certificate, label: str, now: datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise CertificateValidityError(
            f"{label} is not valid before {_stamp(cert.not_valid_before_utc)} "
            f"(verification time {_stamp(now)})"
        )
    if now > cert.not_valid_after_utc:
        raise CertificateValidityError(
            f"{label} expired on {_stamp(cert.not_valid_after_utc)} "
            f"(verification time {_stamp(now)})"
        )


def _check_rsa4096(cert: x509.Certificate, label: str) -> None:
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size != 4096:
        raise CertificateAlgorithmError(f"{label} key is not RSA-4096")


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def verify_roots(roots: AmdRoots, *, now: datetime | None = None) -> None:
    """Check one product's ARK (self-signed) and ASK (signed by the ARK) at ``now``."""
    at = _now(now)
    product = roots.product
    ark_label, ask_label = f"the {product} ARK", f"the {product} ASK"
    for cert, label in ((roots.ark, ark_label), (roots.ask, ask_label)):
        _check_algorithm(cert, label)
        _check_rsa4096(cert, label)
    _check_signed_by(roots.ark, roots.ark, f"{ark_label} is not self-signed")
    _check_signed_by(roots.ask, roots.ark, f"{ask_label} is not signed by {ark_label}")
    _check_validity(roots.ark, ark_label, at)
    _check_validity(roots.ask, ask_label, at)


def verify_report(
    report_bytes: bytes,
    vcek: bytes,
    *,
    roots: dict[str, AmdRoots] | None = None,
    now: datetime | None = None,
) -> VerifiedReport:
    """Verify an SEV-SNP report against its VCEK (DER or PEM) and AMD's roots.

    ``roots`` maps products to their ARK/ASK (default: :func:`builtin_amd_roots`);
    ``now`` is the verification time (default: the current time; naive means UTC).
    The rules are in the module docstring.
    """
    at = _now(now)
    cert = load_vcek(vcek)
    product = vcek_product(cert)
    available = builtin_amd_roots() if roots is None else roots
    chosen = available.get(product)
    if chosen is None:
        names = ", ".join(sorted(available)) or "none"
        raise AmdRootsMissingError(
            f"no AMD roots for {product} (the VCEK's issuer); roots loaded for: {names}"
        )
    if chosen.product != product:
        raise AmdProductMismatchError(
            f"the {chosen.product} ARK/ASK cannot verify a {product} VCEK"
        )

    report = parse_report(report_bytes)
    if report.product is not None and report.product != product:
        raise AmdProductMismatchError(
            f"report CPUID is {report.product} but the VCEK is for {product}"
        )
    if report.product is None:
        report = parse_report(report_bytes, product)

    verify_roots(chosen, now=at)
    _check_algorithm(cert, "the VCEK")
    _check_signed_by(cert, chosen.ask, f"VCEK not signed by the {product} ASK")
    _check_validity(cert, "VCEK", at)
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise CertificateAlgorithmError("VCEK key is not ECDSA P-384")

    if report.signature_algo != SIGNATURE_ALGO_ECDSA_P384_SHA384:
        raise ReportSignatureError(
            f"report SIGNATURE_ALGO is {report.signature_algo}, expected 1 (ECDSA P-384 SHA-384)"
        )
    if report.mask_chip_key:
        raise ReportSignatureError("report is unsigned (MASK_CHIP_KEY is set)")
    if report.signing_key != SIGNING_KEY_VCEK:
        raise ReportSignatureError(f"report SIGNING_KEY is {report.signing_key}, expected 0 (VCEK)")
    signature = encode_dss_signature(report.signature_r, report.signature_s)
    try:
        key.verify(signature, report.signed_bytes, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise ReportSignatureError("report signature does not verify with the VCEK") from None

    if not report.chip_id_masked:
        hwid = vcek_chip_id(cert)
        if len(hwid) != 64 and product != "Turin":
            raise ChipIdMismatchError(f"{product} VCEK hwID is {len(hwid)} bytes, expected 64")
        if report.chip_id[: len(hwid)] != hwid:
            raise ChipIdMismatchError(
                f"VCEK chip id {hwid[:8].hex()}… != report CHIP_ID {report.chip_id[:8].hex()}…"
            )
    tcb = vcek_tcb(cert)
    if tcb != report.reported_tcb:
        raise TcbMismatchError(f"VCEK TCB {tcb} != report reported_tcb {report.reported_tcb}")
    return VerifiedReport(report=report, product=product, vcek=cert)
