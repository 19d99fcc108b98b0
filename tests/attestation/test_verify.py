"""Evidence verification: the real Genoa evidence, tampering, and simulated DICE evidence."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shared_data
from hats.attestation import dice, simulate, verify
from hats.attestation.amd.certs import builtin_amd_roots
from hats.attestation.cli import load_evidence, parse_evidence
from hats.attestation.errors import (
    AttestationError,
    EvidenceFormatError,
    EvidenceVerificationError,
)
from hats.keys.keygen import private_key_from_hex, public_key_from_private
from hats.pb.oak.attestation.v1 import evidence_pb2
from hats.protocol import p256

E = shared_data.EVIDENCE
NOW = datetime(2026, 11, 26, tzinfo=UTC)
"""A current time inside the VCEK's validity (2025-08-07 .. 2032-08-07)."""

VCEK = (E / "vcek_genoa.crt").read_bytes()
ROOTS = builtin_amd_roots()


def v1() -> evidence_pb2.Evidence:
    return load_evidence(E / "evidence_v1_genoa.binarypb")


def v2() -> evidence_pb2.Evidence:
    return load_evidence(E / "evidence_v2_genoa.binarypb")


def check(evidence: evidence_pb2.Evidence, **kwargs: object) -> verify.VerifiedEvidence:
    options: dict[str, object] = {
        "tee_certificate": VCEK,
        "amd_roots": ROOTS,
        "now": NOW,
        "allow_insecure": False,
    }
    options.update(kwargs)
    return verify.verify_evidence(evidence, **options)  # type: ignore[arg-type]


def flip(data: bytes, position: int, mask: int = 0x01) -> bytes:
    changed = bytearray(data)
    changed[position % len(changed)] ^= mask
    return bytes(changed)


# --- the real evidence ----------------------------------------------------------------------


def test_v1_verifies_and_measurements_are_extracted() -> None:
    verified = check(v1())
    m = verified.measurements
    assert m.platform == "AMD_SEV_SNP"
    assert m.amd_measurement == (
        "c57729018b0a6fb90dc17bb138b0aa35e4401004283ff4a2c24d3739ff3750f5"
        "2384370e77b7032862a08c440a9bc4dc"
    )
    assert m.reported_tcb == verify.Tcb(boot_loader=10, tee=0, snp=25, microcode=84, fmc=0)
    assert m.kernel_image_sha256.startswith("f9d0584247b46cc2")
    assert m.kernel_setup_data_sha256.startswith("75f091da89ce81e9")
    assert m.init_ram_fs_sha256.startswith("b2b5eda097c2e159")
    assert m.memory_map_sha256.startswith("11103720aab9f4ef")
    assert m.acpi_table_sha256.startswith("194afdde1699c335")
    assert m.kernel_cmdline.endswith("--launcher-addr=vsock://2:1061704822")
    assert m.system_image_sha256 == (
        "3c59bd10c2b890ff152cc57fdca0633693acbb04982da90c670de6530fa8a836"
    )
    assert m.container_bundle_sha256 == (
        "b0803886a6e096bf1c9eacaa77dd1514134d2e88a7734af9ba2dbf650884f899"
    )
    assert m.container_config_sha256 == hashlib.sha256(b"").hexdigest()
    assert len(verified.layer_certificates) == 3
    assert verified.report is not None and verified.report.product == "Genoa"


@pytest.mark.parametrize("name", ["evidence_v1_genoa", "evidence_v2_genoa"])
def test_signing_key_equals_published_key(name: str) -> None:
    evidence = load_evidence(E / f"{name}.binarypb")
    private = private_key_from_hex((E / f"{name}_signing_key").read_text())
    expected = public_key_from_private(private)
    assert check(evidence).measurements.application_signing_public_key == expected
    assert verify.application_signing_key(evidence) == expected


def test_v1_and_v2_differ_in_system_image_only() -> None:
    a, b = check(v1()).measurements, check(v2()).measurements
    differing = {k for k, value in a.as_dict().items() if b.as_dict()[k] != value}
    # The launcher port in the command line and the instance keys change every boot.
    assert differing == {"system_image_sha256", "kernel_cmdline", "application_signing_public_key"}


@pytest.mark.parametrize("name", ["evidence_v1_genoa", "evidence_v2_genoa"])
def test_text_and_binary_forms_are_the_same(name: str) -> None:
    binary, form_b = parse_evidence((E / f"{name}.binarypb").read_bytes(), "b")
    text, form_t = parse_evidence((E / f"{name}.txtpb").read_bytes(), "t")
    assert (form_b, form_t) == ("binary", "text")
    assert binary == text


def test_default_roots_and_now_in_validity() -> None:
    verify.verify_evidence(v1(), tee_certificate=VCEK, allow_insecure=False, now=NOW)


@pytest.mark.parametrize(
    "moment", [datetime(2025, 8, 6, tzinfo=UTC), datetime(2032, 8, 8, tzinfo=UTC)]
)
def test_vcek_outside_validity_is_rejected(moment: datetime) -> None:
    with pytest.raises(EvidenceVerificationError, match=r"^root layer: AMD SEV-SNP report"):
        check(v1(), now=moment)


def test_missing_vcek_is_rejected() -> None:
    with pytest.raises(EvidenceVerificationError, match=r"root layer: .*VCEK"):
        check(v1(), tee_certificate=None)


def test_wrong_platform_is_rejected() -> None:
    evidence = v1()
    evidence.root_layer.platform = evidence_pb2.INTEL_TDX
    with pytest.raises(EvidenceVerificationError, match="root layer: unsupported platform"):
        check(evidence)


def test_insecure_root_needs_allow_insecure() -> None:
    evidence = v1()
    evidence.root_layer.platform = evidence_pb2.TEE_PLATFORM_NONE
    with pytest.raises(EvidenceVerificationError, match=r"root layer: .*TEE_PLATFORM_NONE"):
        check(evidence)
    # With allow_insecure the (real) DICE chain still verifies from the root key.
    verified = check(evidence, allow_insecure=True)
    assert verified.report is None
    assert verified.measurements.amd_measurement is None
    assert verified.measurements.reported_tcb is None


# --- tampering ------------------------------------------------------------------------------

REPORT_POSITIONS = [
    0x00,
    0x08,
    0x0A,
    0x38,
    0x50,
    0x6F,
    0x70,
    0x90,
    0xBF,
    0x180,
    0x1A0,
    0x2A0,
    0x2E8,
]


@pytest.mark.parametrize("position", REPORT_POSITIONS)
def test_report_tamper_is_rejected(position: int) -> None:
    evidence = v1()
    root = evidence.root_layer
    root.remote_attestation_report = flip(root.remote_attestation_report, position)
    with pytest.raises(AttestationError, match=r"^root layer: AMD SEV-SNP report"):
        check(evidence)


def test_report_data_must_bind_the_root_key() -> None:
    evidence = v1()
    evidence.root_layer.eca_public_key = flip(evidence.root_layer.eca_public_key, 60)
    with pytest.raises(AttestationError, match=r"^root layer"):
        check(evidence)


@pytest.mark.parametrize("layer", [0, 1, 2])
@pytest.mark.parametrize("position", [0, 3, 6, 12, 30, 60, 120, 200, 270, 300, 342])
def test_layer_certificate_tamper_is_rejected(layer: int, position: int) -> None:
    evidence = v1()
    cert = evidence.layers[layer]
    cert.eca_certificate = flip(cert.eca_certificate, position)
    with pytest.raises(AttestationError, match=f"^layer {layer} certificate"):
        check(evidence)


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("position", [0, 5, 20, 36, -1])
def test_event_tamper_is_rejected(index: int, position: int) -> None:
    evidence = v1()
    events = evidence.event_log.encoded_events
    events[index] = flip(events[index], position)
    with pytest.raises(
        EvidenceVerificationError,
        match=rf"^layer {index} certificate: EVENT digest is not SHA-256 of "
        rf"event_log.encoded_events\[{index}\]",
    ):
        check(evidence)


@pytest.mark.parametrize(
    "field",
    [
        "encryption_public_key_certificate",
        "signing_public_key_certificate",
        "group_encryption_public_key_certificate",
    ],
)
@pytest.mark.parametrize("position", [0, 8, 40, 150, -1])
def test_application_key_tamper_is_rejected(field: str, position: int) -> None:
    evidence = v1()
    keys = evidence.application_keys
    setattr(keys, field, flip(getattr(keys, field), position))
    with pytest.raises(AttestationError, match=f"^application_keys.{field}"):
        check(evidence)


def test_group_signing_certificate_must_be_empty() -> None:
    evidence = v1()
    evidence.application_keys.group_signing_public_key_certificate = (
        evidence.application_keys.signing_public_key_certificate
    )
    with pytest.raises(EvidenceVerificationError, match="group_signing_public_key_certificate"):
        check(evidence)


def test_missing_signing_certificate_is_rejected() -> None:
    evidence = v1()
    evidence.application_keys.signing_public_key_certificate = b""
    with pytest.raises(EvidenceFormatError, match="signing_public_key_certificate: empty"):
        check(evidence)


def test_application_key_from_another_evidence_is_rejected() -> None:
    evidence = v1()
    evidence.application_keys.CopyFrom(v2().application_keys)
    with pytest.raises(EvidenceVerificationError, match=r"^application_keys.encryption"):
        check(evidence)


def test_event_and_layer_counts_must_match() -> None:
    evidence = v1()
    del evidence.event_log.encoded_events[-1]
    with pytest.raises(EvidenceVerificationError, match="2 events for 3 layers"):
        check(evidence)


def test_dropped_layer_is_rejected() -> None:
    evidence = v1()
    del evidence.layers[1]
    del evidence.event_log.encoded_events[1]
    with pytest.raises(EvidenceVerificationError, match="incorrect number of DICE layers"):
        check(evidence)


def test_skipped_layer_breaks_the_chain() -> None:
    evidence = v1()
    evidence.layers[1].CopyFrom(evidence.layers[2])
    evidence.event_log.encoded_events[1] = evidence.event_log.encoded_events[2]
    with pytest.raises(EvidenceVerificationError, match=r"^layer 1 certificate"):
        check(evidence)


def test_swapped_events_are_rejected() -> None:
    evidence = v1()
    events = evidence.event_log.encoded_events
    events[0], events[1] = events[1], events[0]
    with pytest.raises(EvidenceVerificationError, match=r"^layer 0 certificate: EVENT"):
        check(evidence)


def test_no_layers_is_rejected() -> None:
    evidence = v1()
    del evidence.layers[:]
    del evidence.event_log.encoded_events[:]
    with pytest.raises(EvidenceVerificationError, match="no layers"):
        check(evidence)


_V1_BYTES = (E / "evidence_v1_genoa.binarypb").read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    position=st.integers(min_value=0, max_value=len(_V1_BYTES) - 1),
    mask=st.integers(min_value=1, max_value=255),
)
def test_any_single_byte_change_of_the_file_is_rejected(position: int, mask: int) -> None:
    """Every byte of the serialized evidence is covered by a parse rule, signature or digest."""
    data = flip(_V1_BYTES, position, mask)
    with pytest.raises(AttestationError):
        evidence, _ = parse_evidence(data, "tampered")
        check(evidence)


# --- simulated (insecure) DICE evidence -----------------------------------------------------


def _simulated() -> tuple[evidence_pb2.Evidence, bytes]:
    """Evidence as our orchestrator builds it on simulated stage1 data; its signing key."""
    image_sha256 = hashlib.sha256(b"a system image").digest()
    attester = dice.DiceAttester(simulate.simulate_stage1(image_sha256))
    signing = p256.generate_private_key()
    signing_public = p256.public_key_bytes(signing)
    binding_public = p256.public_key_bytes(p256.generate_private_key())
    event = dice.container_event(b"a bundle", b"\x01" * 32, signing_public, binding_public)
    attester.extend(event)
    attester.add_application_keys(
        encryption_public_key=b"\x01" * 32,
        signing_public_key=signing_public,
        group_encryption_public_key=b"\x02" * 32,
        event=event,
    )
    return attester.evidence(), signing_public


def test_simulated_evidence_verifies_when_insecure_is_allowed() -> None:
    evidence, signing_public = _simulated()
    verified = verify.verify_evidence(evidence, tee_certificate=None, allow_insecure=True)
    m = verified.measurements
    assert m.platform == "TEE_PLATFORM_NONE"
    assert m.system_image_sha256 == hashlib.sha256(b"a system image").hexdigest()
    assert m.container_bundle_sha256 == hashlib.sha256(b"a bundle").hexdigest()
    assert m.kernel_image_sha256 == simulate.default_digest("kernel").hex()
    assert m.application_signing_public_key == signing_public
    with pytest.raises(EvidenceVerificationError, match="TEE_PLATFORM_NONE"):
        verify.verify_evidence(evidence, tee_certificate=None, allow_insecure=False)


Mutation = Callable[[evidence_pb2.Evidence], None]


def _replace_layer(index: int) -> Mutation:
    """Replace layer ``index`` with the same layer of another simulated evidence."""

    def mutate(evidence: evidence_pb2.Evidence) -> None:
        other, _ = _simulated()
        evidence.layers[index].CopyFrom(other.layers[index])

    return mutate


def _flip_layer(index: int, position: int) -> Mutation:
    def mutate(evidence: evidence_pb2.Evidence) -> None:
        layer = evidence.layers[index]
        layer.eca_certificate = flip(layer.eca_certificate, position)

    return mutate


def _flip_event(index: int) -> Mutation:
    def mutate(evidence: evidence_pb2.Evidence) -> None:
        events = evidence.event_log.encoded_events
        events[index] = flip(events[index], 10)

    return mutate


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (_replace_layer(0), "layer 0 certificate"),
        (_replace_layer(1), "layer 1 certificate"),
        (_replace_layer(2), "layer 2 certificate"),
        (_flip_layer(0, 100), "layer 0 certificate"),
        (_flip_layer(1, -5), "layer 1 certificate"),
        (_flip_layer(2, 50), "layer 2 certificate"),
        (_flip_event(0), "layer 0 certificate"),
        (_flip_event(1), "layer 1 certificate"),
        (_flip_event(2), "layer 2 certificate"),
    ],
)
def test_simulated_evidence_with_an_altered_layer_fails(mutate: Mutation, where: str) -> None:
    evidence, _ = _simulated()
    mutate(evidence)
    with pytest.raises(AttestationError, match=f"^{where}"):
        verify.verify_evidence(evidence, tee_certificate=None, allow_insecure=True)


def test_extract_measurements_names_the_wrong_event() -> None:
    evidence, _ = _simulated()
    events = evidence.event_log.encoded_events
    events[1], events[2] = events[2], events[1]
    with pytest.raises(EvidenceFormatError, match="event 1: tag 'ORCHESTRATOR', expected 'stage1'"):
        verify.extract_measurements(evidence)
