"""Appraisal policies: loading, the §7.2 signature, matching and appraisal."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shared_data
from hats.attestation import policy, verify
from hats.attestation.amd.certs import builtin_amd_roots
from hats.attestation.cli import load_evidence
from hats.attestation.errors import PolicyError, PolicyMismatchError
from hats.keys.keygen import public_key_from_private
from hats.pb.pcit.tvs import appraisal_policies_pb2 as policies_pb2

E = shared_data.EVIDENCE
NOW = datetime(2026, 11, 26, tzinfo=UTC)
REFERENCE_TEXT = (E / "on-perm-reference.txtpb").read_text()
OTHER_KEY = bytes.fromhex("11" * 32)


def reference() -> policies_pb2.AppraisalPolicies:
    return policy.load_policies(REFERENCE_TEXT, "on-perm-reference.txtpb", accept_insecure=False)


def reference_policy() -> policies_pb2.AppraisalPolicy:
    return reference().policies[0]


def _verified(name: str) -> verify.VerifiedEvidence:
    return verify.verify_evidence(
        load_evidence(E / f"{name}.binarypb"),
        tee_certificate=(E / "vcek_genoa.crt").read_bytes(),
        amd_roots=builtin_amd_roots(),
        now=NOW,
        allow_insecure=False,
    )


V1 = _verified("evidence_v1_genoa")
V2 = _verified("evidence_v2_genoa")


# --- signatures ------------------------------------------------------------------------------


def test_reference_keys_are_a_pair() -> None:
    assert public_key_from_private(policy.TEST_POLICY_PRIVATE_KEY) == policy.REFERENCE_POLICY_KEY


def test_reference_policy_signature_verifies() -> None:
    policies = reference()
    policy.verify_policy_signatures(policies, "ref")
    policy.verify_policy_signature(policies.policies[0])


def test_signed_bytes_layout() -> None:
    p = reference_policy()
    data = policy.signed_bytes(p)
    m = p.measurement
    assert data[:48] == bytes.fromhex(m.stage0_measurement.amd_sev.sha384)
    assert data[48:64] == bytes.fromhex("0000000a000000000000001900000054")
    assert data[64:96] == bytes.fromhex(m.kernel_image_sha256)
    regex = m.kernel_cmd_line_regex.encode()
    assert data[224 : 224 + len(regex)] == regex
    assert data[-64:-32] == bytes.fromhex(m.system_image_sha256)
    assert data[-32:] == bytes.fromhex(m.container_binary_sha256[0])
    assert len(data) == 48 + 16 + 5 * 32 + len(regex) + 32 + 32


def test_signed_bytes_of_insecure_policy_skip_the_root() -> None:
    p = reference_policy()
    full = policy.signed_bytes(p)
    p.measurement.stage0_measurement.insecure.SetInParent()
    assert policy.signed_bytes(p) == full[64:]


def test_sign_with_test_key_verifies_and_one_byte_off_fails() -> None:
    p = reference_policy()
    p.measurement.system_image_sha256 = "ab" * 32
    with pytest.raises(PolicyError, match="does not match"):
        policy.verify_policy_signature(p)
    policy.sign_policy(p, policy.TEST_POLICY_PRIVATE_KEY)
    assert len(p.signature) == 1 and p.signature[0].signer == "hats"
    policy.verify_policy_signature(p)
    good = p.signature[0].signature
    for index in (0, 40, 64, 127):
        digit = "0" if good[index] != "0" else "1"
        p.signature[0].signature = good[:index] + digit + good[index + 1 :]
        with pytest.raises(PolicyError, match="signature"):
            policy.verify_policy_signature(p)


@pytest.mark.parametrize(
    "field",
    [
        "kernel_image_sha256",
        "kernel_setup_data_sha256",
        "init_ram_fs_sha256",
        "memory_map_sha256",
        "acpi_table_sha256",
        "system_image_sha256",
    ],
)
def test_changed_digest_breaks_the_reference_signature(field: str) -> None:
    p = reference_policy()
    value = getattr(p.measurement, field)
    setattr(p.measurement, field, ("1" if value[0] != "1" else "2") + value[1:])
    with pytest.raises(PolicyError, match="does not match"):
        policy.verify_policy_signature(p)


def test_uncovered_fields_do_not_break_the_signature() -> None:
    """As in the reference, the description and fmc are not signed (spec §8.11)."""
    p = reference_policy()
    p.description = "changed"
    p.measurement.stage0_measurement.amd_sev.min_tcb_version.fmc = 9
    policy.verify_policy_signature(p)


def test_other_key_fails_under_reference_key() -> None:
    p = reference_policy()
    policy.sign_policy(p, OTHER_KEY)
    with pytest.raises(PolicyError):
        policy.verify_policy_signature(p)
    policy.verify_policy_signature(p, public_key_from_private(OTHER_KEY))


def test_missing_and_malformed_signatures() -> None:
    policies = reference()
    del policies.policies[0].signature[:]
    with pytest.raises(PolicyError, match=r"^src.txtpb: policy 0: no signature"):
        policy.verify_policy_signatures(policies, "src.txtpb")
    policies.policies[0].signature.add(signature="zz")
    with pytest.raises(PolicyError, match="signature\\[0\\]: not hex"):
        policy.verify_policy_signatures(policies, "src.txtpb")
    policies.policies[0].signature[0].signature = "00" * 10
    with pytest.raises(PolicyError, match="64"):
        policy.verify_policy_signatures(policies, "src.txtpb")


def test_one_bad_signature_fails_the_set() -> None:
    policies = reference()
    second = policies.policies.add()
    second.CopyFrom(policies.policies[0])
    second.measurement.system_image_sha256 = "00" * 32
    with pytest.raises(PolicyError, match="policy 1"):
        policy.verify_policy_signatures(policies, "p")


# --- loading ----------------------------------------------------------------------------------


def _edit(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("sha384: ", "sha384: ", None),
        (
            'kernel_image_sha256: "f9',
            'kernel_image_sha256: "zz',
            "kernel_image_sha256: expected 64",
        ),
        ('system_image_sha256: "3c', 'system_image_sha256: "', "system_image_sha256: expected 64"),
        ('sha384: "c5', 'sha384: "', "amd_sev.sha384: expected 96"),
        ("min_tcb_version { boot_loader: 10 snp: 25 microcode: 84 }", "", "min_tcb_version"),
        ("container_binary_sha256: ", "# ", "container_binary_sha256 is empty"),
        ('kernel_cmd_line_regex: "^', 'kernel_cmd_line_regex: "(', "does not compile"),
        ("policies {", "policies { unknown_field: 1", "not a text-format AppraisalPolicies"),
    ],
)
def test_load_errors_name_the_file_and_field(old: str, new: str, message: str | None) -> None:
    text = _edit(REFERENCE_TEXT, old, new)
    if message is None:
        policy.load_policies(text, "p.txtpb", accept_insecure=False)
        return
    with pytest.raises(PolicyError, match=f"^p.txtpb: .*{re.escape(message)}"):
        policy.load_policies(text, "p.txtpb", accept_insecure=False)


def test_empty_file_has_no_policies() -> None:
    with pytest.raises(PolicyError, match=r"^x: no policies"):
        policy.load_policies("", "x", accept_insecure=True)


def _replace_root(root: str) -> str:
    start = REFERENCE_TEXT.index("amd_sev {")
    end = REFERENCE_TEXT.index("}", REFERENCE_TEXT.index("min_tcb_version")) + 1
    end = REFERENCE_TEXT.index("}", end) + 1
    return REFERENCE_TEXT[:start] + root + REFERENCE_TEXT[end:]


def _insecure_text() -> str:
    return _replace_root("insecure {}")


def test_dynamic_policies_are_not_supported() -> None:
    text = _replace_root('amd_sev_dynamic { stage0_ovmf_binary_hash: "00" }')
    with pytest.raises(PolicyError, match=r"^p: policy 0: .*amd_sev_dynamic is not supported"):
        policy.load_policies(text, "p", accept_insecure=True)


def test_insecure_policy_needs_accept_insecure() -> None:
    text = _insecure_text()
    with pytest.raises(PolicyError, match="policy 0: insecure policy; cannot accept"):
        policy.load_policies(text, "p", accept_insecure=False)
    loaded = policy.load_policies(text, "p", accept_insecure=True)
    p = loaded.policies[0]
    assert p.measurement.stage0_measurement.WhichOneof("type") == "insecure"
    assert policy.match_policy(V1.measurements, p, accept_insecure=True) is None
    assert policy.match_policy(V1.measurements, p) == (
        "stage0_measurement: insecure policy not accepted"
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # protobuf's text unescaping
@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_load_never_raises_anything_but_policy_error(text: str) -> None:
    try:
        policy.load_policies(text, "fuzz", accept_insecure=True)
    except PolicyError as exc:
        assert str(exc).startswith("fuzz: ")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(REFERENCE_TEXT) - 1), st.characters())
def test_load_of_edited_reference_raises_only_policy_error(position: int, char: str) -> None:
    text = REFERENCE_TEXT[:position] + char + REFERENCE_TEXT[position + 1 :]
    try:
        policy.load_policies(text, "edited", accept_insecure=True)
    except PolicyError as exc:
        assert str(exc).startswith("edited: ")


# --- matching ---------------------------------------------------------------------------------


def test_v1_matches_the_reference_policy() -> None:
    assert policy.match_policy(V1.measurements, reference_policy()) is None
    assert policy.appraise(V1, reference()) == 0


def test_v2_is_rejected_naming_the_system_image() -> None:
    reason = policy.match_policy(V2.measurements, reference_policy())
    assert reason is not None and reason.startswith("system_image_sha256:")
    with pytest.raises(PolicyMismatchError, match="policy 0: system_image_sha256"):
        policy.appraise(V2, reference())


def test_appraise_returns_the_first_matching_index() -> None:
    policies = reference()
    v2_policy = policies.policies.add()
    v2_policy.CopyFrom(policies.policies[0])
    v2_policy.measurement.system_image_sha256 = V2.measurements.system_image_sha256
    assert policy.appraise(V1, policies) == 0
    assert policy.appraise(V2, policies) == 1
    policies.policies[0].CopyFrom(v2_policy)
    assert policy.appraise(V2, policies) == 0
    with pytest.raises(PolicyMismatchError, match=r"policy 0: system.*; policy 1: system"):
        policy.appraise(V1, policies)


def test_appraise_without_policies() -> None:
    with pytest.raises(PolicyMismatchError, match="no policies"):
        policy.appraise(V1, [])


MEASUREMENT_CHANGES = [
    ("amd_measurement", "00" * 48, "amd_sev.sha384"),
    ("kernel_image_sha256", "00" * 32, "kernel_image_sha256"),
    ("kernel_setup_data_sha256", "00" * 32, "kernel_setup_data_sha256"),
    ("init_ram_fs_sha256", "00" * 32, "init_ram_fs_sha256"),
    ("memory_map_sha256", "00" * 32, "memory_map_sha256"),
    ("acpi_table_sha256", "00" * 32, "acpi_table_sha256"),
    ("kernel_cmdline", " console=ttyS1", "kernel_cmd_line_regex"),
    ("system_image_sha256", "00" * 32, "system_image_sha256"),
    ("container_bundle_sha256", "00" * 32, "container_binary_sha256"),
    ("platform", "TEE_PLATFORM_NONE", "stage0_measurement"),
]


@pytest.mark.parametrize(("attribute", "value", "field"), MEASUREMENT_CHANGES)
def test_each_differing_measurement_is_named(attribute: str, value: str, field: str) -> None:
    changes: dict[str, Any] = {attribute: value}
    changed = dataclasses.replace(V1.measurements, **changes)
    reason = policy.match_policy(changed, reference_policy())
    assert reason is not None and reason.startswith(field + ":"), reason


def test_first_difference_wins() -> None:
    changed = dataclasses.replace(
        V1.measurements, memory_map_sha256="00" * 32, system_image_sha256="00" * 32
    )
    reason = policy.match_policy(changed, reference_policy())
    assert reason is not None and reason.startswith("memory_map_sha256:")


def test_container_config_is_not_checked() -> None:
    changed = dataclasses.replace(V1.measurements, container_config_sha256="00" * 32)
    assert policy.match_policy(changed, reference_policy()) is None


def test_digests_compare_case_insensitively() -> None:
    p = reference_policy()
    p.measurement.system_image_sha256 = p.measurement.system_image_sha256.upper()
    assert policy.match_policy(V1.measurements, p) is None


@pytest.mark.parametrize("component", ["boot_loader", "tee", "snp", "microcode", "fmc"])
def test_tcb_components_must_each_reach_the_minimum(component: str) -> None:
    p = reference_policy()
    tcb = V1.measurements.reported_tcb
    assert tcb is not None
    minimum = p.measurement.stage0_measurement.amd_sev.min_tcb_version
    setattr(minimum, component, getattr(tcb, component) + 1)
    reason = policy.match_policy(V1.measurements, p)
    assert reason == (
        f"amd_sev.min_tcb_version: reported TCB {component} {getattr(tcb, component)} is below "
        f"the minimum {getattr(tcb, component) + 1}"
    )
    # Higher reported values in the other components do not compensate; equal is enough.
    setattr(minimum, component, getattr(tcb, component))
    assert policy.match_policy(V1.measurements, p) is None
    higher = dataclasses.replace(tcb, **{component: getattr(tcb, component) + 5})
    assert policy.match_policy(dataclasses.replace(V1.measurements, reported_tcb=higher), p) is None


@pytest.mark.parametrize(
    ("field", "position"),
    [
        ("kernel_image_sha256", 0),
        ("kernel_setup_data_sha256", 63),
        ("init_ram_fs_sha256", 10),
        ("memory_map_sha256", 31),
        ("acpi_table_sha256", 5),
        ("system_image_sha256", 40),
    ],
)
def test_policy_digest_tamper_is_rejected(field: str, position: int) -> None:
    p = reference_policy()
    value = getattr(p.measurement, field)
    digit = "0" if value[position] != "0" else "1"
    setattr(p.measurement, field, value[:position] + digit + value[position + 1 :])
    reason = policy.match_policy(V1.measurements, p)
    assert reason is not None and reason.startswith(f"{field}:")
    with pytest.raises(PolicyError, match="does not match"):
        policy.verify_policy_signature(p)


def test_policy_container_and_measurement_tamper_is_rejected() -> None:
    p = reference_policy()
    p.measurement.container_binary_sha256[0] = "0" + p.measurement.container_binary_sha256[0][1:]
    reason = policy.match_policy(V1.measurements, p)
    assert reason is not None and reason.startswith("container_binary_sha256:")
    p = reference_policy()
    amd = p.measurement.stage0_measurement.amd_sev
    amd.sha384 = amd.sha384[:-1] + ("0" if amd.sha384[-1] != "0" else "1")
    reason = policy.match_policy(V1.measurements, p)
    assert reason is not None and reason.startswith("amd_sev.sha384:")


def test_bundle_may_be_any_listed_digest() -> None:
    p = reference_policy()
    listed = p.measurement.container_binary_sha256
    listed.insert(0, "00" * 32)
    assert policy.match_policy(V1.measurements, p) is None


# --- command-line regexes ----------------------------------------------------------------------


def test_regex_is_a_search_like_rust_is_match() -> None:
    cmdline = V1.measurements.kernel_cmdline
    assert policy.cmdline_matches("quiet", cmdline)
    assert not policy.cmdline_matches("^quiet$", cmdline)
    assert policy.cmdline_matches(reference_policy().measurement.kernel_cmd_line_regex, cmdline)
    assert not policy.cmdline_matches(
        reference_policy().measurement.kernel_cmd_line_regex, "x" + cmdline
    )


@given(st.text(max_size=80))
def test_escaped_text_matches_itself_only(text: str) -> None:
    pattern = policy.escape_regex(text)
    assert re.fullmatch(pattern, text)
    assert re.fullmatch(pattern, text + "x") is None


def test_cmdline_regex_allows_any_launcher_port() -> None:
    cmdline = V1.measurements.kernel_cmdline
    regex = policy.cmdline_regex_for(cmdline)
    assert regex.startswith("^ console=ttyS0") and regex.endswith(r"vsock://2:[0-9]+$")
    assert not policy.cmdline_matches(regex, cmdline + " --init=/bin/sh")
    assert policy.cmdline_matches(regex, cmdline)
    assert policy.cmdline_matches(regex, V2.measurements.kernel_cmdline)
    assert not policy.cmdline_matches(regex, cmdline.replace("ttyS0", "ttyS1"))
    assert not policy.cmdline_matches(regex, cmdline.replace("brd.rd_nr", "brdxrd_nr"))
    assert not policy.cmdline_matches(regex, cmdline.replace("vsock://2:", "vsock://3:"))
    assert policy.cmdline_regex_for("a.b") == r"^a\.b$"


# --- making ----------------------------------------------------------------------------------


def _like(measurements: verify.Measurements, **overrides: object) -> policies_pb2.AppraisalPolicy:
    values: dict[str, object] = {
        "system_image_sha256": measurements.system_image_sha256,
        "container_sha256": [measurements.container_bundle_sha256],
        "kernel_image_sha256": measurements.kernel_image_sha256,
        "kernel_setup_data_sha256": measurements.kernel_setup_data_sha256,
        "init_ram_fs_sha256": measurements.init_ram_fs_sha256,
        "memory_map_sha256": measurements.memory_map_sha256,
        "acpi_table_sha256": measurements.acpi_table_sha256,
        "kernel_cmd_line_regex": policy.cmdline_regex_for(measurements.kernel_cmdline),
        "amd_sha384": measurements.amd_measurement,
        "min_tcb": measurements.reported_tcb,
    }
    values.update(overrides)
    return policy.make_policy(**values)  # type: ignore[arg-type]


def test_made_policy_matches_and_signs() -> None:
    made = _like(V2.measurements, description="v2")
    assert policy.match_policy(V2.measurements, made) is None
    reason = policy.match_policy(V1.measurements, made)
    assert reason is not None and reason.startswith("system_image_sha256")
    policy.sign_policy(made, policy.TEST_POLICY_PRIVATE_KEY)
    policies = policies_pb2.AppraisalPolicies(policies=[made])
    loaded = policy.load_policies(policy.format_policies(policies), "made", accept_insecure=False)
    policy.verify_policy_signatures(loaded, "made")
    assert loaded == policies


def test_made_v1_policy_equals_the_reference_signed_bytes_except_the_regex() -> None:
    made = _like(V1.measurements)
    ref = reference_policy()
    made.measurement.kernel_cmd_line_regex = ref.measurement.kernel_cmd_line_regex
    assert policy.signed_bytes(made) == policy.signed_bytes(ref)


def test_make_policy_rejects_bad_values() -> None:
    with pytest.raises(PolicyError, match="system_image_sha256: expected 64"):
        _like(V1.measurements, system_image_sha256="abc")
    with pytest.raises(PolicyError, match="sha384"):
        _like(V1.measurements, amd_sha384=None)
    insecure = _like(V1.measurements, insecure=True, amd_sha384=None, min_tcb=None)
    assert insecure.measurement.stage0_measurement.WhichOneof("type") == "insecure"


@pytest.mark.parametrize(
    ("regex", "expected"),
    [
        ("^a$", r"^a\Z"),
        (r"a\$b$", r"a\$b\Z"),
        ("[$]$", r"[$]\Z"),
        ("[]$]x$", r"[]$]x\Z"),
        ("[^]$]$", r"[^]$]\Z"),
        ("(a|b$)", r"(a|b\Z)"),
    ],
)
def test_rust_end_anchors(regex: str, expected: str) -> None:
    assert policy.rust_end_anchors(regex) == expected


def test_dollar_means_the_very_end_as_in_rust() -> None:
    assert policy.cmdline_matches("^quiet$", "quiet")
    assert not policy.cmdline_matches("^quiet$", "quiet\n")
    assert policy.cmdline_matches("^quiet\n$", "quiet\n")
    regex = reference_policy().measurement.kernel_cmd_line_regex
    assert not policy.cmdline_matches(regex, V1.measurements.kernel_cmdline + "\n")
