"""Insecure evidence as real Oak stage0 makes it, and as the real verifier takes it.

Every expected value here comes from ``shared/spec/upstream-facts.md`` (F1, F2,
F11) or from the real stage0's hand-off (``tests/data/oak-stage0``), never
from our own verifier: :func:`fact_sheet_verifier` is written from F1/F2.
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path
from typing import Any

import cbor2
import pytest
from click.testing import CliRunner
from dice_testing import key_sequence, verify_chain
from google.protobuf import text_format

import shared_data
from hats.attestation import dice, simulate, verify
from hats.attestation.cli import evidence_group, policy_group
from hats.attestation.errors import EvidenceFormatError, EvidenceVerificationError
from hats.pb.oak.attestation.v1 import dice_pb2, eventlog_pb2, evidence_pb2
from hats.pb.pcit.tvs import appraisal_policies_pb2 as policies_pb2
from hats.protocol import p256

REPORT_SIZE = 1184
REPORT_DATA = slice(0x50, 0x90)


def real_stage0_dice_data() -> dice_pb2.DiceData:
    """The DiceData real stage0 left at event log + 4 KiB (F11): magic, u64 LE length, proto."""
    raw = (shared_data.OAK_STAGE0 / "stage0-attester.bin").read_bytes()
    assert raw[:8] == b"OakProto"
    (length,) = struct.unpack_from("<Q", raw, 8)
    return dice_pb2.DiceData.FromString(raw[16 : 16 + length])


# --- F2, written from the fact sheet only -----------------------------------------------------


def f2_report_is_valid(report: bytes) -> bool:
    """F2: exact size, guest policy valid, _reserved_4 zero, key/algorithm fields in range,
    signature reserved bytes zero (AMD SEV-SNP ABI layout: policy u64 at 0x08, signature
    algorithm u32 at 0x34, flags u32 at 0x48 with SIGNING_KEY in bits 2-4, reserved u32 at
    0x4C, signature R and S at 0x2A0 (72 bytes each) then 368 reserved bytes)."""
    if len(report) != REPORT_SIZE:
        return False
    policy = int.from_bytes(report[0x08:0x10], "little")
    flags = (policy >> 16) & 0xFFFF
    if policy >> 32 or flags & ~0b11111:  # SMT, reserved-1, MIGRATE_MA, DEBUG, SINGLE_SOCKET
        return False
    if int.from_bytes(report[0x4C:0x50], "little"):
        return False
    if (int.from_bytes(report[0x48:0x4C], "little") >> 2) & 7 not in (0, 1, 7):
        return False
    if int.from_bytes(report[0x34:0x38], "little") not in (0, 1):
        return False
    return not any(report[0x2A0 + 144 :])


def _event(encoded: bytes, type_name: str, message: Any) -> Any:
    event = eventlog_pb2.Event.FromString(encoded)
    assert event.event.type_url == "type.googleapis.com/oak.attestation.v1." + type_name
    return message.FromString(event.event.value)


def fact_sheet_verifier(
    evidence: evidence_pb2.Evidence, policies: policies_pb2.AppraisalPolicies
) -> bool:
    """A TVS with --accept_insecure_policies, per F1/F2: extraction, binding, then values."""
    root = evidence.root_layer
    if root.platform != 3:  # TEE_PLATFORM_NONE
        return False
    report = bytes(root.remote_attestation_report)
    if not f2_report_is_valid(report):
        return False  # "extracting evidence" fails
    if report[REPORT_DATA][:32] != hashlib.sha256(root.eca_public_key).digest():
        return False
    verify_chain(evidence)  # the DICE chain from the root key (signatures, iss/sub, events)
    events = list(evidence.event_log.encoded_events)
    if len(events) != 3:
        return False
    kernel = _event(events[0], "Stage0Measurements", eventlog_pb2.Stage0Measurements)
    system = _event(events[1], "SystemLayerData", eventlog_pb2.SystemLayerData)
    container = _event(events[2], "ContainerLayerData", eventlog_pb2.ContainerLayerData)
    for policy in policies.policies:
        m = policy.measurement
        if m.stage0_measurement.WhichOneof("type") != "insecure":
            continue
        if (
            m.kernel_image_sha256 == kernel.kernel_measurement.hex()
            and m.kernel_setup_data_sha256 == kernel.setup_data_digest.hex()
            and m.init_ram_fs_sha256 == kernel.ram_disk_digest.hex()
            and m.memory_map_sha256 == kernel.memory_map_digest.hex()
            and m.acpi_table_sha256 == kernel.acpi_digest.hex()
            and re.search(m.kernel_cmd_line_regex, kernel.kernel_cmdline)
            and m.system_image_sha256 == system.system_image.sha2_256.hex()
            and container.bundle.sha2_256.hex() in m.container_binary_sha256
        ):
            return True
    return False


def orchestrator_evidence(dice_data: dice_pb2.DiceData, bundle: bytes) -> evidence_pb2.Evidence:
    attester = dice.DiceAttester(dice_data, generate_key=key_sequence(77))
    signing = p256.public_key_bytes(p256.generate_private_key())
    binding = p256.public_key_bytes(p256.generate_private_key())
    event = dice.container_event(bundle, b"\x01" * 32, signing, binding)
    attester.extend(event)
    attester.add_application_keys(
        encryption_public_key=b"\x01" * 32,
        signing_public_key=signing,
        group_encryption_public_key=b"\x02" * 32,
        event=event,
    )
    return attester.evidence()


# --- F1 / F11: the shape of what we simulate --------------------------------------------------


def test_f1_simulated_root_carries_the_fake_report() -> None:
    data = simulate.simulate_stage1(hashlib.sha256(b"image").digest())
    root = data.evidence.root_layer
    assert root.platform == evidence_pb2.TEE_PLATFORM_NONE
    report = root.remote_attestation_report
    assert len(report) == REPORT_SIZE
    assert report[REPORT_DATA] == hashlib.sha256(root.eca_public_key).digest() + bytes(32)
    assert not any(report[: REPORT_DATA.start]) and not any(report[REPORT_DATA.stop :])


def _cert_shape(raw: bytes) -> tuple[Any, ...]:
    protected, unprotected, payload, signature = cbor2.loads(raw)
    claims = cbor2.loads(payload)
    return (
        protected,
        unprotected,
        list(claims),
        list(cbor2.loads(claims[-4670552])),
        claims[-4670553],
        list(claims[-4670573]),
        len(signature),
    )


def _shape(data: dice_pb2.DiceData) -> dict[str, Any]:
    evidence = data.evidence
    root = evidence.root_layer
    report = root.remote_attestation_report
    events = [eventlog_pb2.Event.FromString(e) for e in evidence.event_log.encoded_events]
    return {
        "dice": [f.name for f, _ in data.ListFields()],
        "evidence": [f.name for f, _ in evidence.ListFields()],
        "root": [f.name for f, _ in root.ListFields()],
        "platform": root.platform,
        "report": (len(report), [i for i, b in enumerate(report) if b and not 0x50 <= i < 0x70]),
        "root key": (len(root.eca_public_key), list(cbor2.loads(root.eca_public_key))),
        "layers": [_cert_shape(layer.eca_certificate) for layer in evidence.layers],
        "events": [(e.tag, e.event.type_url) for e in events],
        "stage0 fields": [
            f.name
            for f, _ in eventlog_pb2.Stage0Measurements.FromString(
                events[0].event.value
            ).ListFields()
        ],
        "ca": [(f.name, len(v)) for f, v in data.certificate_authority.ListFields()],
    }


def test_f11_simulated_stage0_has_the_real_stage0_shape() -> None:
    real = real_stage0_dice_data()
    ours = simulate.simulate_stage0(generate_key=key_sequence(3))
    assert _shape(ours) == _shape(real)
    # And what the real stage0 gave is itself what F1 says.
    root = real.evidence.root_layer
    assert root.remote_attestation_report[REPORT_DATA] == (
        hashlib.sha256(root.eca_public_key).digest() + bytes(32)
    )


def test_f11_real_stage0_data_continues_like_ours() -> None:
    """Our stage1 and orchestrator steps extend the real stage0's data; the result verifies."""
    real = real_stage0_dice_data()
    attester = dice.DiceAttester(real, generate_key=key_sequence(5))
    attester.extend(dice.system_layer_event(hashlib.sha256(b"image").digest()))
    evidence = orchestrator_evidence(attester.dice_data(), b"bundle")
    verified = verify.verify_evidence(evidence, tee_certificate=None, allow_insecure=True)
    assert verified.measurements.kernel_cmdline == (
        "console=ttyS0 panic=-1 quiet -- --launcher-addr=vsock://2:1234"
    )


# --- F2: our verifier ----------------------------------------------------------------------


def _evidence(mutate_report: Any = None) -> evidence_pb2.Evidence:
    dice_data = simulate.simulate_stage1(hashlib.sha256(b"image").digest())
    evidence = orchestrator_evidence(dice_data, b"bundle")
    if mutate_report is not None:
        report = bytearray(evidence.root_layer.remote_attestation_report)
        mutate_report(report)
        evidence.root_layer.remote_attestation_report = bytes(report)
    return evidence


def test_f2_evidence_without_the_fake_report_is_refused() -> None:
    evidence = _evidence()
    evidence.root_layer.ClearField("remote_attestation_report")
    with pytest.raises(EvidenceFormatError, match="invalid fake attestation report"):
        verify.verify_evidence(evidence, tee_certificate=None, allow_insecure=True)


def _set(offset: int, value: bytes) -> Any:
    def mutate(report: bytearray) -> None:
        report[offset : offset + len(value)] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda r: r.extend(b"\0"), "1185 bytes"),
        (lambda r: r.__delitem__(slice(-1, None)), "1183 bytes"),
        (_set(0x0C, b"\x01"), "nonzero value in _reserved"),  # policy bits 32-39
        (_set(0x0A, b"\x20"), "invalid flags"),  # policy bit 21
        (_set(0x4C, b"\x01"), "nonzero value in _reserved_4"),
        (_set(0x48, b"\x08"), "invalid signing key setting"),  # SIGNING_KEY 2
        (_set(0x34, b"\x02"), "invalid signature algorithm"),
        (_set(0x49F, b"\x01"), "signature: nonzero value in _reserved"),
    ],
)
def test_f2_invalid_fake_report_is_refused(mutate: Any, reason: str) -> None:
    evidence = _evidence(mutate)
    assert not f2_report_is_valid(evidence.root_layer.remote_attestation_report)
    with pytest.raises(EvidenceFormatError, match=f"invalid fake attestation report: .*{reason}"):
        verify.verify_evidence(evidence, tee_certificate=None, allow_insecure=True)


@pytest.mark.parametrize(
    "mutate",
    [
        _set(0x00, b"\x05"),  # any version
        _set(0x08, b"\x00\x00\x1f"),  # every known policy flag
        _set(0x48, b"\x1c"),  # SIGNING_KEY 7
        _set(0x34, b"\x01"),
        _set(0x2A0, b"\x01" * 144),  # R and S are not checked
        _set(0x90, b"\x01" * 48),  # nor the measurement
    ],
)
def test_f2_fields_the_real_verifier_does_not_check_are_accepted(mutate: Any) -> None:
    verify.verify_evidence(_evidence(mutate), tee_certificate=None, allow_insecure=True)


def test_f2_report_data_must_bind_the_root_key() -> None:
    evidence = _evidence(_set(0x50, b"\x00"))
    with pytest.raises(EvidenceVerificationError, match=r"report_data\[0:32\]"):
        verify.verify_evidence(evidence, tee_certificate=None, allow_insecure=True)


def test_f2_insecure_evidence_still_needs_insecure_acceptance() -> None:
    with pytest.raises(EvidenceVerificationError, match="TEE_PLATFORM_NONE is insecure"):
        verify.verify_evidence(_evidence(), tee_certificate=None, allow_insecure=False)


# --- done-when: an insecure policy from `hats policy make` passes the fact-sheet verifier ----


def test_f2_policy_make_insecure_is_accepted_by_the_fact_sheet_verifier(tmp_path: Path) -> None:
    image = tmp_path / "image.tar.xz"
    image.write_bytes(b"system image bytes")
    bundle = tmp_path / "bundle.tar"
    bundle.write_bytes(b"bundle bytes")
    dice_file = tmp_path / "dice"
    dice_file.write_bytes(
        dice.encode_dice_data(simulate.simulate_stage1(hashlib.sha256(image.read_bytes()).digest()))
    )
    policy_file = tmp_path / "policy.txtpb"
    runner = CliRunner()
    make_args = ["make", "--insecure", "--like", str(dice_file), "--system-image", str(image)]
    make_args += ["--bundle", str(bundle), "-o", str(policy_file)]
    result = runner.invoke(policy_group, make_args)
    assert result.exit_code == 0, result.output
    policies = text_format.Parse(policy_file.read_text(), policies_pb2.AppraisalPolicies())
    evidence = orchestrator_evidence(dice.load_dice_data(dice_file.read_bytes()), b"bundle bytes")
    assert fact_sheet_verifier(evidence, policies)
    # Our `evidence verify` agrees, and both refuse the evidence without the fake report.
    evidence_file = tmp_path / "evidence.binpb"
    evidence_file.write_bytes(evidence.SerializeToString())
    verify_args = ["verify", str(evidence_file), "--policy", str(policy_file)]
    verify_args += ["--accept-insecure", "--no-policy-signature"]
    ok = runner.invoke(evidence_group, verify_args)
    assert ok.exit_code == 0, ok.output
    evidence.root_layer.ClearField("remote_attestation_report")
    assert not fact_sheet_verifier(evidence, policies)
    evidence_file.write_bytes(evidence.SerializeToString())
    refused = runner.invoke(evidence_group, verify_args)
    assert refused.exit_code != 0
    assert "invalid fake attestation report" in str(refused.exception)


# --- F9, reconciled with the real evidence -----------------------------------------------------


def test_f9_real_evidence_has_three_layers_and_so_do_we() -> None:
    """F9's ``[kernel_layer, system_layer]`` is Oak's rule for evidence *without* an event
    log. The real HATs evidence has an event log of three events (Stage0, SystemLayerData,
    ContainerLayerData) and three layers; the real stage0 hands over one, stage1 adds the
    system layer and the orchestrator the container layer. We follow the real evidence."""
    real = evidence_pb2.Evidence.FromString(
        (shared_data.EVIDENCE / "evidence_v1_genoa.binarypb").read_bytes()
    )
    assert len(real.layers) == 3
    urls = [eventlog_pb2.Event.FromString(e).event.type_url for e in real.event_log.encoded_events]
    assert [u.rpartition(".")[2] for u in urls] == [
        "Stage0Measurements",
        "SystemLayerData",
        "ContainerLayerData",
    ]
    assert len(real_stage0_dice_data().evidence.layers) == 1
    ours = orchestrator_evidence(simulate.simulate_stage1(hashlib.sha256(b"i").digest()), b"b")
    assert len(ours.layers) == 3
    del ours.layers[-1]
    del ours.event_log.encoded_events[-1]
    with pytest.raises(EvidenceVerificationError, match="incorrect number of DICE layers"):
        verify.verify_evidence(ours, tee_certificate=None, allow_insecure=True)
