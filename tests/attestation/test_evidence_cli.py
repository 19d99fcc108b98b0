"""``hats evidence inspect/verify`` and ``hats policy make``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import shared_data
from hats.attestation import dice, simulate
from hats.attestation.cli import evidence_group, policy_group
from hats.attestation.errors import (
    EvidenceFormatError,
    EvidenceVerificationError,
    PolicyError,
    PolicyMismatchError,
)
from hats.attestation.policy import TEST_POLICY_PRIVATE_KEY, load_policies
from hats.protocol import p256

E = shared_data.EVIDENCE
NOW = "2026-11-26T00:00Z"
V1 = str(E / "evidence_v1_genoa.binarypb")
V2 = str(E / "evidence_v2_genoa.binarypb")
VCEK = str(E / "vcek_genoa.crt")
REFERENCE = str(E / "on-perm-reference.txtpb")
V1_IMAGE = "3c59bd10c2b890ff152cc57fdca0633693acbb04982da90c670de6530fa8a836"
V2_IMAGE = "b0f34de77126561d911e0687f79eaad808b0948e0a1045f7449274efc2e411c5"
BUNDLE = "b0803886a6e096bf1c9eacaa77dd1514134d2e88a7734af9ba2dbf650884f899"


def run(group: click.Group, *args: str) -> object:
    return group.main(list(args), standalone_mode=False)


def verify_args(evidence: str, policy_file: str, *extra: str) -> list[str]:
    return [
        "verify",
        evidence,
        "--policy",
        policy_file,
        "--tee-certificate",
        VCEK,
        "--now",
        NOW,
        *extra,
    ]


@pytest.fixture
def test_key(tmp_path: Path) -> Path:
    path = tmp_path / "policy.key"
    path.write_text(TEST_POLICY_PRIVATE_KEY.hex() + "\n")
    return path


# --- inspect -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "form"),
    [("evidence_v1_genoa.binarypb", "binary"), ("evidence_v1_genoa.txtpb", "text")],
)
def test_inspect_text(name: str, form: str) -> None:
    result = CliRunner().invoke(evidence_group, ["inspect", str(E / name)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"Evidence ({form})" in out
    assert "root layer: AMD_SEV_SNP, report 1184 bytes, eca_public_key 102 bytes" in out
    assert (
        "event 0: tag 'Stage0' type type.googleapis.com/oak.attestation.v1.Stage0Measurements"
        in out
    )
    assert (
        "event 1: tag 'stage1' type type.googleapis.com/oak.attestation.v1.SystemLayerData" in out
    )
    assert "event 2: tag 'ORCHESTRATOR'" in out
    assert "layer 2: iss " in out
    assert (
        "system_image_sha256: 3c59bd10c2b890ff152cc57fdca0633693acbb04982da90c670de6530fa8a836"
        in out
    )
    assert "reported_tcb: boot_loader=10 tee=0 snp=25 microcode=84 fmc=0" in out


def test_inspect_json() -> None:
    result = CliRunner().invoke(evidence_group, ["inspect", "--json", V1])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["form"] == "binary"
    assert [e["tag"] for e in info["events"]] == ["Stage0", "stage1", "ORCHESTRATOR"]
    assert [layer["event_sha256"] for layer in info["layers"]] == [
        e["sha256"] for e in info["events"]
    ]
    assert info["layers"][1]["issuer"] == info["layers"][0]["subject"]
    assert info["measurements"]["container_bundle_sha256"] == BUNDLE
    assert info["application_keys"]["group_signing_public_key_certificate"] == 0


def _simulated_dice_data(image: bytes = b"image") -> bytes:
    data = simulate.simulate_stage1(hashlib.sha256(image).digest())
    return dice.encode_dice_data(data)


def _simulated_evidence_file(tmp_path: Path) -> Path:
    attester = dice.DiceAttester(simulate.simulate_stage1(hashlib.sha256(b"image").digest()))
    signing = p256.public_key_bytes(p256.generate_private_key())
    event = dice.container_event(b"bundle", b"\x03" * 32, signing, signing)
    attester.extend(event)
    attester.add_application_keys(
        encryption_public_key=b"\x03" * 32,
        signing_public_key=signing,
        group_encryption_public_key=b"\x04" * 32,
        event=event,
    )
    path = tmp_path / "sim.binarypb"
    path.write_bytes(attester.evidence().SerializeToString())
    return path


def test_inspect_dice_data(tmp_path: Path) -> None:
    path = tmp_path / "dice"
    path.write_bytes(_simulated_dice_data())
    result = CliRunner().invoke(evidence_group, ["inspect", "--json", str(path)])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["form"] == "DiceData"
    assert info["root_layer"]["platform"] == "TEE_PLATFORM_NONE"
    assert [e["tag"] for e in info["events"]] == ["Stage0", "stage1"]
    # Only two layers: the container event is missing.
    assert "error" in info["measurements"]


def test_inspect_garbage_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(EvidenceFormatError, match=f"^{path}: "):
        run(evidence_group, "inspect", str(path))
    path.write_text("root_layer { nonsense: 1 }")
    with pytest.raises(EvidenceFormatError, match="not a text-format Evidence"):
        run(evidence_group, "inspect", str(path))


# --- verify ------------------------------------------------------------------------------------


def test_v1_is_accepted_by_the_reference_policy() -> None:
    result = CliRunner().invoke(evidence_group, verify_args(V1, REFERENCE))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{V1}: accepted: policy 0\n"
    # The reference policy is open-ended (F10): accepted, with one warning line.
    assert result.stderr.count("\n") == 1 and "policy 0: kernel_cmd_line_regex is open-ended" in (
        result.stderr
    )
    assert run(evidence_group, *verify_args(V1, REFERENCE)) == 0


def test_v1_text_form_is_accepted_with_explicit_roots() -> None:
    text = str(E / "evidence_v1_genoa.txtpb")
    amd = str(shared_data.AMD)
    assert run(evidence_group, *verify_args(text, REFERENCE, "--amd-certs-dir", amd)) == 0


def test_v2_is_rejected_by_the_reference_policy() -> None:
    with pytest.raises(PolicyMismatchError, match=r"rejected: .*policy 0: system_image_sha256"):
        run(evidence_group, *verify_args(V2, REFERENCE))
    result = CliRunner().invoke(evidence_group, verify_args(V2, REFERENCE))
    assert result.exit_code == 1
    assert isinstance(result.exception, PolicyMismatchError)
    assert "\n" not in str(result.exception)


def test_verify_time_outside_the_vcek_validity_is_rejected() -> None:
    args = verify_args(V1, REFERENCE)
    args[args.index(NOW)] = "2033-01-01T00:00:00+00:00"
    with pytest.raises(EvidenceVerificationError, match="rejected: root layer"):
        run(evidence_group, *args)


def test_verify_needs_the_vcek() -> None:
    with pytest.raises(EvidenceVerificationError, match="VCEK"):
        run(evidence_group, "verify", V1, "--policy", REFERENCE, "--now", NOW)


def test_verify_bad_now_is_a_usage_error() -> None:
    result = CliRunner().invoke(evidence_group, [*verify_args(V1, REFERENCE), "--now", "soon"])
    assert result.exit_code == 2
    assert "--now" in result.output


def test_tampered_evidence_file_is_rejected(tmp_path: Path) -> None:
    data = bytearray(Path(V1).read_bytes())
    data[2100] ^= 0x10  # inside layer 2's certificate
    path = tmp_path / "tampered.binarypb"
    path.write_bytes(bytes(data))
    with pytest.raises(EvidenceVerificationError, match="rejected: layer 2 certificate"):
        run(evidence_group, *verify_args(str(path), REFERENCE))


# --- policy make + verify -------------------------------------------------------------------


def test_policy_made_like_v2_accepts_v2_only(tmp_path: Path, test_key: Path) -> None:
    out = tmp_path / "v2.txtpb"
    result = CliRunner().invoke(
        policy_group,
        [
            "make",
            "--like", V2,
            "--system-image-sha256", V2_IMAGE,
            "--bundle-sha256", BUNDLE,
            "--sign-key", str(test_key),
            "--description", "v2",
            "-o", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    first, *values = result.output.splitlines()
    assert first == f"{out}: 1 signed policy"
    # Then every value with where it came from (test_policy_make_artifacts.py checks them).
    assert len(values) == 10
    assert all("copied from the evidence" in line for line in values[:8])
    loaded = load_policies(out.read_text(), str(out), accept_insecure=False)
    assert loaded.policies[0].description == "v2"
    assert run(evidence_group, *verify_args(V2, str(out))) == 0
    with pytest.raises(PolicyMismatchError, match="system_image_sha256"):
        run(evidence_group, *verify_args(V1, str(out)))


def test_unsigned_policy_needs_no_policy_signature(tmp_path: Path) -> None:
    out = tmp_path / "p.txtpb"
    run(
        policy_group,
        "make", "--like", V1, "--system-image-sha256", V1_IMAGE,
        "--bundle-sha256", BUNDLE, "-o", str(out),
    )  # fmt: skip
    with pytest.raises(PolicyError, match=f"^{out}: policy 0: no signature"):
        run(evidence_group, *verify_args(V1, str(out)))
    assert run(evidence_group, *verify_args(V1, str(out), "--no-policy-signature")) == 0


def test_policy_from_files_and_explicit_values(tmp_path: Path) -> None:
    image = tmp_path / "image.tar.xz"
    image.write_bytes(b"x" * 300_000)
    bundle_a, bundle_b = tmp_path / "a.tar", tmp_path / "b.tar"
    bundle_a.write_bytes(b"bundle a")
    bundle_b.write_bytes(b"bundle b")
    out = tmp_path / "p.txtpb"
    digest = "ab" * 32
    run(
        policy_group,
        "make", "--system-image", str(image), "--bundle", str(bundle_a), "--bundle", str(bundle_b),
        "--bundle-sha256", "CD" * 32,
        "--amd-sha384", "ef" * 48, "--min-tcb", "1/2/3/4",
        "--kernel-image-sha256", digest, "--kernel-setup-data-sha256", digest,
        "--init-ram-fs-sha256", digest, "--memory-map-sha256", digest,
        "--acpi-table-sha256", digest, "--kernel-cmdline-regex", "^console$",
        "-o", str(out),
    )  # fmt: skip
    made = load_policies(out.read_text(), "p", accept_insecure=False).policies[0]
    m = made.measurement
    assert m.system_image_sha256 == hashlib.sha256(image.read_bytes()).hexdigest()
    assert list(m.container_binary_sha256) == [
        hashlib.sha256(b"bundle a").hexdigest(),
        hashlib.sha256(b"bundle b").hexdigest(),
        "cd" * 32,
    ]
    tcb = m.stage0_measurement.amd_sev.min_tcb_version
    assert (tcb.boot_loader, tcb.tee, tcb.snp, tcb.microcode) == (1, 2, 3, 4)
    assert m.kernel_cmd_line_regex == "^console$"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bundle-sha256", BUNDLE], "--system-image"),
        (["--system-image-sha256", V2_IMAGE], "--bundle"),
        (["--system-image-sha256", V2_IMAGE, "--bundle-sha256", BUNDLE], "--amd-sha384"),
        (
            ["--system-image-sha256", V2_IMAGE, "--bundle-sha256", BUNDLE, "--insecure"],
            "--kernel-image-sha256",
        ),
    ],
)
def test_policy_make_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "p.txtpb"
    result = CliRunner().invoke(policy_group, ["make", *args, "-o", str(out)])
    assert result.exit_code == 2
    assert message in result.output
    assert not out.exists()


def test_policy_make_bad_digest_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "p.txtpb"
    result = CliRunner().invoke(
        policy_group,
        [
            "make", "--like", V1, "--system-image-sha256", V2_IMAGE,
            "--bundle-sha256", "xyz", "-o", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--bundle-sha256" in result.output and "64 hex digits" in result.output
    assert "xyz" not in result.output
    assert not out.exists()


# --- insecure evidence ------------------------------------------------------------------------


def test_insecure_evidence_needs_accept_insecure(tmp_path: Path, test_key: Path) -> None:
    evidence = _simulated_evidence_file(tmp_path)
    out = tmp_path / "insecure.txtpb"
    with pytest.raises(PolicyError, match="--insecure"):
        run(
            policy_group,
            "make", "--like", str(evidence), "--system-image-sha256", "00" * 32,
            "--bundle-sha256", BUNDLE, "-o", str(out),
        )  # fmt: skip
    run(
        policy_group,
        "make", "--like", str(evidence), "--insecure",
        "--system-image-sha256", hashlib.sha256(b"image").hexdigest(),
        "--bundle", str(_write(tmp_path / "bundle.tar", b"bundle")),
        "--sign-key", str(test_key), "-o", str(out),
    )  # fmt: skip
    base = ["verify", str(evidence), "--policy", str(out)]
    with pytest.raises(PolicyError, match="cannot accept insecure policies"):
        run(evidence_group, *base)
    assert run(evidence_group, *base, "--accept-insecure") == 0
    # An insecure policy does not make insecure evidence acceptable by itself, and vice versa.
    with pytest.raises(EvidenceVerificationError, match="TEE_PLATFORM_NONE"):
        run(evidence_group, *verify_args(str(evidence), REFERENCE))
    with pytest.raises(PolicyMismatchError, match="policy needs AMD_SEV_SNP"):
        run(evidence_group, *verify_args(str(evidence), REFERENCE, "--accept-insecure"))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
