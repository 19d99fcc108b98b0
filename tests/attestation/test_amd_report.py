"""The SEV-SNP report parser: the real Genoa report, layouts, and strictness."""

from __future__ import annotations

import contextlib
import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hats.attestation.amd.report import (
    REPORT_SIZE,
    ReportFormatError,
    TcbVersion,
    parse_report,
    product_from_cpuid,
)
from hats.attestation.errors import EvidenceFormatError
from hats.pb.oak.attestation.v1 import evidence_pb2
from shared_data import EVIDENCE

STAGE0_SHA384 = (
    "c57729018b0a6fb90dc17bb138b0aa35e4401004283ff4a2c24d3739ff3750f5"
    "2384370e77b7032862a08c440a9bc4dc"
)


def _evidence() -> evidence_pb2.Evidence:
    evidence = evidence_pb2.Evidence()
    evidence.ParseFromString((EVIDENCE / "evidence_v1_genoa.binarypb").read_bytes())
    return evidence


EVIDENCE_V1 = _evidence()
REPORT = EVIDENCE_V1.root_layer.remote_attestation_report


def _with(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def test_real_genoa_report_fields() -> None:
    report = parse_report(REPORT)
    assert len(REPORT) == REPORT_SIZE == 1184
    assert report.version == 5
    assert report.product == "Genoa"
    assert (report.cpuid_fam_id, report.cpuid_mod_id, report.cpuid_step) == (0x19, 0x11, 0x01)
    assert report.reported_tcb == TcbVersion(boot_loader=10, tee=0, snp=25, microcode=84)
    assert str(report.reported_tcb) == "10/0/25/84"
    assert report.current_tcb == report.committed_tcb == report.launch_tcb == report.reported_tcb
    assert report.measurement.hex() == STAGE0_SHA384
    assert report.signature_algo == 1
    assert report.vmpl == 0
    assert report.policy == 0x30000
    assert not report.debug_allowed
    assert report.signing_key == 0
    assert not report.mask_chip_key
    assert not report.chip_id_masked
    assert len(report.chip_id) == 64
    assert len(report.report_data) == 64
    assert report.signed_bytes == REPORT[:0x2A0]
    assert report.raw == REPORT
    assert 0 < report.signature_r < 2**384
    assert 0 < report.signature_s < 2**384


def test_report_data_binds_the_root_eca_key() -> None:
    report = parse_report(REPORT)
    eca_key = EVIDENCE_V1.root_layer.eca_public_key
    assert report.report_data[:32] == hashlib.sha256(eca_key).digest()


def test_debug_bit() -> None:
    policy = struct.unpack_from("<Q", REPORT, 8)[0] | 1 << 19
    assert parse_report(_with(REPORT, 8, struct.pack("<Q", policy))).debug_allowed


def test_tcb_layouts() -> None:
    milan_genoa = bytes([2, 3, 0, 0, 0, 0, 4, 5])
    assert TcbVersion.parse(milan_genoa) == TcbVersion(2, 3, 4, 5)
    assert TcbVersion.parse(milan_genoa, "milan") == TcbVersion(2, 3, 4, 5)
    turin = bytes([1, 2, 3, 4, 0, 0, 0, 5])
    assert TcbVersion.parse(turin, "Turin") == TcbVersion(2, 3, 4, 5, fmc=1)
    assert str(TcbVersion(2, 3, 4, 5, fmc=1)) == "fmc 1 2/3/4/5"
    with pytest.raises(ReportFormatError, match="reserved bytes 2-5"):
        TcbVersion.parse(turin, "Genoa")
    with pytest.raises(ReportFormatError, match="reserved bytes 4-6"):
        TcbVersion.parse(milan_genoa, "Turin")
    with pytest.raises(ReportFormatError, match="8"):
        TcbVersion.parse(b"\x00" * 7)
    with pytest.raises(ReportFormatError, match="unknown AMD product"):
        TcbVersion.parse(milan_genoa, "Rome")


def test_cpuid_products() -> None:
    assert product_from_cpuid(0x19, 0x01) == "Milan"
    assert product_from_cpuid(0x19, 0x11) == "Genoa"
    assert product_from_cpuid(0x19, 0xA0) == "Genoa"
    assert product_from_cpuid(0x1A, 0x02) == "Turin"
    assert product_from_cpuid(0x17, 0x31) is None


def test_turin_report_uses_the_turin_layout() -> None:
    data = _with(REPORT, 0x188, bytes([0x1A, 0x02, 0x00]))
    turin_tcb = bytes([1, 10, 0, 25, 0, 0, 0, 84])
    for offset in (0x38, 0x180, 0x1E0, 0x1F0):
        data = _with(data, offset, turin_tcb)
    report = parse_report(data)
    assert report.product == "Turin"
    assert report.reported_tcb == TcbVersion(10, 0, 25, 84, fmc=1)
    with pytest.raises(ReportFormatError, match="is Turin, not Genoa"):
        parse_report(data, "Genoa")


def test_version_2_report_takes_the_product_from_the_caller() -> None:
    data = _with(_with(REPORT, 0, struct.pack("<I", 2)), 0x188, b"\x00\x00\x00")
    data = _with(data, 0x1F8, bytes(16))  # no mitigation vectors before version 5
    report = parse_report(data)
    assert report.version == 2
    assert report.product is None
    assert report.cpuid_fam_id is None
    assert report.reported_tcb == TcbVersion(10, 0, 25, 84)
    assert parse_report(data, "genoa").product == "Genoa"


@pytest.mark.parametrize("size", [0, 1183, 1185, 2 * 1184])
def test_wrong_size(size: int) -> None:
    with pytest.raises(ReportFormatError, match=f"{size} bytes, expected 1184"):
        parse_report((REPORT * 2)[:size])


@pytest.mark.parametrize("version", [0, 1, 4, 6, 0xFFFFFFFF])
def test_unsupported_version(version: int) -> None:
    with pytest.raises(ReportFormatError, match=f"version {version} is not supported"):
        parse_report(_with(REPORT, 0, struct.pack("<I", version)))


@pytest.mark.parametrize(
    "offset", [0x4C, 0x4F, 0x18B, 0x19F, 0x1EB, 0x1EF, 0x208, 0x29F, 0x330, 0x49F]
)
def test_reserved_bytes_must_be_zero(offset: int) -> None:
    with pytest.raises(ReportFormatError, match="reserved bytes"):
        parse_report(_with(REPORT, offset, b"\x01"))


def test_reserved_flag_bits() -> None:
    with pytest.raises(ReportFormatError, match="reserved bits 5-31"):
        parse_report(_with(REPORT, 0x48, struct.pack("<I", 1 << 5)))


def test_non_snp_cpu_family() -> None:
    with pytest.raises(ReportFormatError, match="not an SEV-SNP product"):
        parse_report(_with(REPORT, 0x188, b"\x17"))


def test_non_bytes_input() -> None:
    with pytest.raises(ReportFormatError, match="must be bytes"):
        parse_report("x" * 1184)  # type: ignore[arg-type]


def test_errors_are_one_line() -> None:
    with pytest.raises(EvidenceFormatError) as info:
        parse_report(_with(REPORT, 0x180, b"\x0a\x00\x01"))
    assert "\n" not in str(info.value)
    assert "REPORTED_TCB (0x180)" in str(info.value)


_PRODUCTS = st.sampled_from([None, "Milan", "genoa", "Turin", "Rome"])


@settings(max_examples=400, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, REPORT_SIZE - 1), st.integers(0, 255)), min_size=1, max_size=6
    ),
    product=_PRODUCTS,
)
def test_fuzzed_reports_raise_only_format_errors(
    edits: list[tuple[int, int]], product: str | None
) -> None:
    data = bytearray(REPORT)
    for position, value in edits:
        data[position] = value
    with contextlib.suppress(EvidenceFormatError):
        parse_report(bytes(data), product)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=1300), product=_PRODUCTS)
def test_random_bytes_raise_only_format_errors(data: bytes, product: str | None) -> None:
    with contextlib.suppress(EvidenceFormatError):
        parse_report(data, product)


@settings(max_examples=200, deadline=None)
@given(
    head=st.sampled_from([2, 3, 5]),
    body=st.binary(min_size=REPORT_SIZE - 4, max_size=REPORT_SIZE - 4),
    product=_PRODUCTS,
)
def test_random_bodies_with_valid_versions(head: int, body: bytes, product: str | None) -> None:
    with contextlib.suppress(EvidenceFormatError):
        parse_report(struct.pack("<I", head) + body, product)
