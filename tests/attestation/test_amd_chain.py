"""ARK → ASK → VCEK → report: the real Genoa chain, tampering, roots, time.

Verification time for the real chain: ``NOW`` = 2026-01-01 (inside the VCEK's
2025-08-07 – 2032-08-07 validity); one test also uses the actual current time.
Checks that need reports AMD never signs (masked chip id, wrong TCB, VLEK, ...)
use a synthetic Genoa chain made here with the same algorithms.
"""

from __future__ import annotations

import shutil
import struct
import warnings
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

import shared_data
from hats.attestation.amd.certs import (
    OID_BL_SPL,
    OID_HWID,
    OID_SNP_SPL,
    OID_TEE_SPL,
    OID_UCODE_SPL,
    AmdCertificateError,
    AmdRoots,
    builtin_amd_roots,
    load_amd_roots,
    load_vcek,
    vcek_chip_id,
    vcek_product,
    vcek_tcb,
)
from hats.attestation.amd.report import TcbVersion
from hats.attestation.amd.verify import (
    AmdProductMismatchError,
    AmdRootsMissingError,
    CertificateAlgorithmError,
    CertificateSignatureError,
    CertificateValidityError,
    ChipIdMismatchError,
    ReportSignatureError,
    TcbMismatchError,
    verify_report,
    verify_roots,
)
from hats.attestation.errors import (
    AttestationError,
    EvidenceFormatError,
    EvidenceVerificationError,
)
from hats.pb.oak.attestation.v1 import evidence_pb2
from shared_data import EVIDENCE

NOW = datetime(2026, 1, 1, tzinfo=UTC)
VCEK = (EVIDENCE / "vcek_genoa.crt").read_bytes()
AMD_DIR = shared_data.AMD


def _report() -> bytes:
    evidence = evidence_pb2.Evidence()
    evidence.ParseFromString((EVIDENCE / "evidence_v1_genoa.binarypb").read_bytes())
    return evidence.root_layer.remote_attestation_report


REPORT = _report()
ROOTS = builtin_amd_roots()


def _flip(data: bytes, position: int, mask: int = 0x01) -> bytes:
    return data[:position] + bytes([data[position] ^ mask]) + data[position + 1 :]


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


# --- the real chain -----------------------------------------------------------------


def test_real_genoa_report_verifies_with_builtin_roots() -> None:
    verified = verify_report(REPORT, VCEK, now=NOW)
    assert verified.product == "Genoa"
    assert verified.report.reported_tcb == TcbVersion(10, 0, 25, 84)
    assert str(verified.report.reported_tcb) == "10/0/25/84"
    assert verified.report.measurement.hex() == (
        "c57729018b0a6fb90dc17bb138b0aa35e4401004283ff4a2c24d3739ff3750f5"
        "2384370e77b7032862a08c440a9bc4dc"
    )
    with warnings.catch_warnings():  # serial number 0: RFC 5280 says positive
        warnings.simplefilter("ignore")
        assert verified.vcek.serial_number == 0


def test_real_genoa_report_verifies_at_the_current_time() -> None:
    assert verify_report(REPORT, VCEK).product == "Genoa"


def test_vcek_loads_with_this_cryptography_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vcek = load_vcek(VCEK)
    with warnings.catch_warnings():  # serial number 0: RFC 5280 says positive
        warnings.simplefilter("ignore")
        assert vcek.serial_number == 0
    assert load_vcek(vcek.public_bytes(serialization.Encoding.PEM)) == vcek
    assert vcek_product(vcek) == "Genoa"
    assert vcek_tcb(vcek) == TcbVersion(10, 0, 25, 84)
    assert vcek_chip_id(vcek) == REPORT[0x1A0:0x1E0]


def test_builtin_roots_verify_for_all_products() -> None:
    assert sorted(ROOTS) == ["Genoa", "Milan", "Turin"]
    for product, roots in ROOTS.items():
        assert roots.product == product
        verify_roots(roots, now=NOW)


def test_garbage_vcek() -> None:
    with pytest.raises(AmdCertificateError, match="VCEK is not a valid certificate"):
        verify_report(REPORT, b"not a certificate", now=NOW)


# --- tampering ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "offset"),
    [
        ("version", 0x000),
        ("guest_svn", 0x004),
        ("policy", 0x008),
        ("family_id", 0x010),
        ("image_id", 0x020),
        ("vmpl", 0x030),
        ("signature_algo", 0x034),
        ("current_tcb", 0x038),
        ("platform_info", 0x040),
        ("flags", 0x048),
        ("report_data", 0x050),
        ("measurement", 0x090),
        ("host_data", 0x0C0),
        ("id_key_digest", 0x0E0),
        ("author_key_digest", 0x110),
        ("report_id", 0x140),
        ("report_id_ma", 0x160),
        ("reported_tcb", 0x180),
        ("cpuid", 0x188),
        ("chip_id", 0x1A0),
        ("committed_tcb", 0x1E0),
        ("current_build", 0x1E8),
        ("launch_tcb", 0x1F0),
        ("launch_mit_vector", 0x1F8),
        ("current_mit_vector", 0x200),
        ("reserved", 0x29F),
    ],
)
def test_tampered_report_field_is_rejected(name: str, offset: int) -> None:
    with pytest.raises(AttestationError):
        verify_report(_flip(REPORT, offset), VCEK, now=NOW)


def test_every_signed_byte_tamper_is_rejected() -> None:
    for position in range(0x2A0):
        with pytest.raises((EvidenceFormatError, EvidenceVerificationError)):
            verify_report(_flip(REPORT, position), VCEK, roots=ROOTS, now=NOW)


def test_tampered_measurement_fails_the_signature() -> None:
    with pytest.raises(ReportSignatureError, match=r"^report signature does not verify"):
        verify_report(_flip(REPORT, 0x90), VCEK, now=NOW)


@pytest.mark.parametrize("offset", [0x2A0, 0x2CF, 0x2E8, 0x317])
def test_tampered_signature_is_rejected(offset: int) -> None:
    with pytest.raises(ReportSignatureError):
        verify_report(_flip(REPORT, offset), VCEK, now=NOW)


@settings(max_examples=150, deadline=None)
@given(position=st.integers(0, 0x32F), mask=st.integers(1, 255))
def test_hypothesis_report_tamper(position: int, mask: int) -> None:
    with pytest.raises((EvidenceFormatError, EvidenceVerificationError)):
        verify_report(_flip(REPORT, position, mask), VCEK, roots=ROOTS, now=NOW)


@settings(max_examples=150, deadline=None)
@given(position=st.integers(0, len(VCEK) - 1), mask=st.integers(1, 255))
def test_hypothesis_vcek_tamper(position: int, mask: int) -> None:
    with pytest.raises((EvidenceFormatError, EvidenceVerificationError)):
        verify_report(REPORT, _flip(VCEK, position, mask), roots=ROOTS, now=NOW)


def test_every_vcek_byte_tamper_is_rejected() -> None:
    for position in range(len(VCEK)):
        for mask in (0x01, 0x80):
            with pytest.raises((EvidenceFormatError, EvidenceVerificationError)):
                verify_report(REPORT, _flip(VCEK, position, mask), roots=ROOTS, now=NOW)


def test_tampered_vcek_signature() -> None:
    with pytest.raises(CertificateSignatureError, match=r"^VCEK not signed by the Genoa ASK$"):
        verify_report(REPORT, _flip(VCEK, len(VCEK) - 1), now=NOW)


def _tamper_cert(cert: x509.Certificate) -> x509.Certificate:
    """Flip a byte of the certificate's RSA modulus (signed, still parses)."""
    der = _der(cert)
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    modulus = key.public_numbers().n.to_bytes(512, "big")
    position = der.index(modulus) + 100
    return x509.load_der_x509_certificate(_flip(der, position))


def test_tampered_ask_is_rejected() -> None:
    genoa = ROOTS["Genoa"]
    roots = {"Genoa": replace(genoa, ask=_tamper_cert(genoa.ask))}
    with pytest.raises(CertificateSignatureError, match="Genoa ASK is not signed by the Genoa ARK"):
        verify_report(REPORT, VCEK, roots=roots, now=NOW)


def test_tampered_ark_is_rejected() -> None:
    genoa = ROOTS["Genoa"]
    roots = {"Genoa": replace(genoa, ark=_tamper_cert(genoa.ark))}
    with pytest.raises(CertificateSignatureError, match="Genoa ARK is not self-signed"):
        verify_report(REPORT, VCEK, roots=roots, now=NOW)


def test_mixed_roots_are_rejected() -> None:
    roots = {"Genoa": AmdRoots("Genoa", ROOTS["Genoa"].ark, ROOTS["Milan"].ask)}
    with pytest.raises(CertificateSignatureError):
        verify_report(REPORT, VCEK, roots=roots, now=NOW)


# --- products -------------------------------------------------------------------------


def test_milan_roots_for_a_genoa_vcek() -> None:
    with pytest.raises(AmdRootsMissingError, match="no AMD roots for Genoa"):
        verify_report(REPORT, VCEK, roots={"Milan": ROOTS["Milan"]}, now=NOW)
    with pytest.raises(AmdProductMismatchError, match="Milan ARK/ASK cannot verify a Genoa VCEK"):
        verify_report(REPORT, VCEK, roots={"Genoa": ROOTS["Milan"]}, now=NOW)


def test_report_cpuid_must_match_the_vcek_product() -> None:
    milan_report = REPORT[:0x188] + b"\x19\x01" + REPORT[0x18A:]
    with pytest.raises(AmdProductMismatchError, match="report CPUID is Milan"):
        verify_report(milan_report, VCEK, now=NOW)


# --- time -----------------------------------------------------------------------------


def test_before_the_vcek_validity() -> None:
    with pytest.raises(CertificateValidityError, match=r"^VCEK is not valid before 2025-08-07"):
        verify_report(REPORT, VCEK, now=datetime(2025, 8, 1, tzinfo=UTC))


def test_after_the_vcek_validity() -> None:
    with pytest.raises(CertificateValidityError, match=r"^VCEK expired on 2032-08-07T18:32:21Z"):
        verify_report(REPORT, VCEK, now=datetime(2033, 1, 1, tzinfo=UTC))


def test_before_the_ask_validity() -> None:
    with pytest.raises(CertificateValidityError, match="Genoa ASK is not valid before"):
        verify_report(REPORT, VCEK, now=datetime(2022, 6, 1, tzinfo=UTC))


def test_naive_time_is_utc() -> None:
    assert verify_report(REPORT, VCEK, now=datetime(2026, 1, 1)).product == "Genoa"


# --- roots from a directory ------------------------------------------------------------


def test_roots_from_a_directory(tmp_path: Path) -> None:
    for name in ("ark_genoa.pem", "ask_genoa.pem"):
        shutil.copy(AMD_DIR / name, tmp_path / name)
    roots = load_amd_roots(tmp_path)
    assert sorted(roots) == ["Genoa"]
    assert verify_report(REPORT, VCEK, roots=roots, now=NOW).product == "Genoa"


def test_all_roots_from_the_shared_directory() -> None:
    roots = load_amd_roots(AMD_DIR)
    assert sorted(roots) == ["Genoa", "Milan", "Turin"]
    for product in roots:
        assert _der(roots[product].ark) == _der(ROOTS[product].ark)
        assert _der(roots[product].ask) == _der(ROOTS[product].ask)
        verify_roots(roots[product], now=NOW)


def test_missing_root_file(tmp_path: Path) -> None:
    shutil.copy(AMD_DIR / "ark_genoa.pem", tmp_path / "ark_genoa.pem")
    with pytest.raises(AmdCertificateError) as info:
        load_amd_roots(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "ask_genoa.pem") in message
    assert "missing" in message


def test_empty_or_absent_directory(tmp_path: Path) -> None:
    with pytest.raises(AmdCertificateError, match="no AMD roots"):
        load_amd_roots(tmp_path)
    with pytest.raises(AmdCertificateError, match="does not exist"):
        load_amd_roots(tmp_path / "nope")


def test_garbage_root_file(tmp_path: Path) -> None:
    (tmp_path / "ark_milan.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nxx\n")
    shutil.copy(AMD_DIR / "ask_milan.pem", tmp_path / "ask_milan.pem")
    with pytest.raises(AmdCertificateError, match=r"ark_milan.pem is not a valid certificate"):
        load_amd_roots(tmp_path)


def test_swapped_root_files(tmp_path: Path) -> None:
    shutil.copy(AMD_DIR / "ask_genoa.pem", tmp_path / "ark_genoa.pem")
    shutil.copy(AMD_DIR / "ark_genoa.pem", tmp_path / "ask_genoa.pem")
    with pytest.raises(AmdCertificateError, match="expected 'ARK-Genoa'"):
        load_amd_roots(tmp_path)


# --- a synthetic Genoa chain for reports AMD never signs ---------------------------------

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_GENOA_TCB = bytes([10, 0, 0, 0, 0, 0, 25, 84])


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test"),
        ]
    )


class FakeChain:
    """ARK-Genoa → SEV-Genoa → a VCEK for ``chip_id`` at TCB 10/0/25/84 (test keys)."""

    def __init__(self) -> None:
        self.ark_key = rsa.generate_private_key(65537, 4096)
        self.ask_key = rsa.generate_private_key(65537, 4096)
        self.vcek_key = ec.generate_private_key(ec.SECP384R1())
        self.chip_id = bytes(range(64))
        start = datetime(2025, 1, 1, tzinfo=UTC)
        end = start + timedelta(days=3650)

        def build(
            subject: str, issuer: str, key: object, signer: rsa.RSAPrivateKey
        ) -> x509.CertificateBuilder:
            assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
            return (
                x509.CertificateBuilder()
                .subject_name(_name(subject))
                .issuer_name(_name(issuer))
                .public_key(key)
                .serial_number(1)
                .not_valid_before(start)
                .not_valid_after(end)
            )

        ark = build("ARK-Genoa", "ARK-Genoa", self.ark_key.public_key(), self.ark_key)
        self.ark = ark.sign(self.ark_key, hashes.SHA384(), rsa_padding=_PSS)
        ask = build("SEV-Genoa", "ARK-Genoa", self.ask_key.public_key(), self.ark_key)
        self.ask = ask.sign(self.ark_key, hashes.SHA384(), rsa_padding=_PSS)
        vcek = build("SEV-VCEK", "SEV-Genoa", self.vcek_key.public_key(), self.ask_key)
        for oid, value in (
            (OID_BL_SPL, 10),
            (OID_TEE_SPL, 0),
            (OID_SNP_SPL, 25),
            (OID_UCODE_SPL, 84),
        ):
            vcek = vcek.add_extension(
                x509.UnrecognizedExtension(oid, b"\x02\x01" + bytes([value])), critical=False
            )
        vcek = vcek.add_extension(x509.UnrecognizedExtension(OID_HWID, self.chip_id), False)
        self.vcek = _der(vcek.sign(self.ask_key, hashes.SHA384(), rsa_padding=_PSS))
        self.roots = {"Genoa": AmdRoots("Genoa", self.ark, self.ask)}

    def report(self, **fields: bytes) -> bytes:
        """A signed version 5 Genoa report; ``fields`` maps offsets (``o_0x1a0``) to bytes."""
        data = bytearray(REPORT[:0x2A0])
        data[0x1A0:0x1E0] = self.chip_id
        for key, value in fields.items():
            offset = int(key[2:], 16)
            data[offset : offset + len(value)] = value
        der = self.vcek_key.sign(bytes(data), ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(72, "little") + s.to_bytes(72, "little")
        return bytes(data) + signature + bytes(0x4A0 - 0x2A0 - 144)


@pytest.fixture(scope="module")
def fake() -> FakeChain:
    return FakeChain()


def test_fake_chain_verifies(fake: FakeChain) -> None:
    verified = verify_report(fake.report(), fake.vcek, roots=fake.roots, now=NOW)
    assert verified.report.chip_id == fake.chip_id


def test_fake_chain_is_not_amd(fake: FakeChain) -> None:
    with pytest.raises(CertificateSignatureError, match="VCEK not signed by the Genoa ASK"):
        verify_report(fake.report(), fake.vcek, now=NOW)
    with pytest.raises(ReportSignatureError, match="does not verify with the VCEK"):
        verify_report(fake.report(), VCEK, now=NOW)


def test_masked_chip_id_is_accepted(fake: FakeChain) -> None:
    report = fake.report(o_0x1a0=bytes(64))
    assert verify_report(report, fake.vcek, roots=fake.roots, now=NOW).report.chip_id_masked


def test_other_chip_is_rejected(fake: FakeChain) -> None:
    with pytest.raises(ChipIdMismatchError, match=r"^VCEK chip id 0001020304050607… != report"):
        verify_report(fake.report(o_0x1a0=b"\xff" * 64), fake.vcek, roots=fake.roots, now=NOW)


def test_tcb_mismatch(fake: FakeChain) -> None:
    report = fake.report(o_0x180=bytes([10, 0, 0, 0, 0, 0, 25, 85]))
    with pytest.raises(
        TcbMismatchError, match=r"^VCEK TCB 10/0/25/84 != report reported_tcb 10/0/25/85$"
    ):
        verify_report(report, fake.vcek, roots=fake.roots, now=NOW)


def test_vlek_signed_report(fake: FakeChain) -> None:
    report = fake.report(o_0x048=struct.pack("<I", 1 << 2))
    with pytest.raises(ReportSignatureError, match="SIGNING_KEY is 1"):
        verify_report(report, fake.vcek, roots=fake.roots, now=NOW)


def test_masked_chip_key(fake: FakeChain) -> None:
    report = fake.report(o_0x048=struct.pack("<I", 1 << 1))
    with pytest.raises(ReportSignatureError, match="MASK_CHIP_KEY"):
        verify_report(report, fake.vcek, roots=fake.roots, now=NOW)


def test_other_signature_algorithm(fake: FakeChain) -> None:
    report = fake.report(o_0x034=struct.pack("<I", 2))
    with pytest.raises(ReportSignatureError, match="SIGNATURE_ALGO is 2"):
        verify_report(report, fake.vcek, roots=fake.roots, now=NOW)


def test_pkcs1_signed_vcek_is_rejected(fake: FakeChain) -> None:
    vcek = load_vcek(fake.vcek)
    builder = (
        x509.CertificateBuilder()
        .subject_name(vcek.subject)
        .issuer_name(vcek.issuer)
        .public_key(fake.vcek_key.public_key())
        .serial_number(2)
        .not_valid_before(vcek.not_valid_before_utc)
        .not_valid_after(vcek.not_valid_after_utc)
    )
    for ext in vcek.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    pkcs1 = _der(builder.sign(fake.ask_key, hashes.SHA384()))
    with pytest.raises(CertificateAlgorithmError, match="not signed with RSASSA-PSS"):
        verify_report(fake.report(), pkcs1, roots=fake.roots, now=NOW)


def test_pss_with_another_salt_length_is_rejected(fake: FakeChain) -> None:
    vcek = load_vcek(fake.vcek)
    builder = (
        x509.CertificateBuilder()
        .subject_name(vcek.subject)
        .issuer_name(vcek.issuer)
        .public_key(fake.vcek_key.public_key())
        .serial_number(3)
        .not_valid_before(vcek.not_valid_before_utc)
        .not_valid_after(vcek.not_valid_after_utc)
    )
    for ext in vcek.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    salt32 = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=32)
    other = _der(builder.sign(fake.ask_key, hashes.SHA384(), rsa_padding=salt32))
    with pytest.raises(CertificateAlgorithmError, match="salt 48"):
        verify_report(fake.report(), other, roots=fake.roots, now=NOW)
