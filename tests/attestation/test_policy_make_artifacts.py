"""``hats policy make`` from artifacts, with provenance; ``hats evidence verify --explain``.

The reference values that cannot be rebuilt here (the system image, the
bundle, and the Oak kernel and initrd the Genoa CVM booted) are taken from
the reference policy ``on-perm-reference.txtpb``; the ACPI and E820 digests,
which depend on the VMM and machine, from the evidence with ``--like``. The
stage0 measurement is computed from ``stage0_bin``.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import shared_data
from hats.attestation import policy as policy_mod
from hats.attestation.cli import evidence_group, policy_group
from hats.attestation.errors import PolicyMismatchError
from hats.attestation.policy import TEST_POLICY_PRIVATE_KEY, load_policies
from hats.pb.pcit.tvs import appraisal_policies_pb2 as policies_pb2

E = shared_data.EVIDENCE
NOW = "2026-11-26T00:00Z"
V1 = str(E / "evidence_v1_genoa.binarypb")
V2 = str(E / "evidence_v2_genoa.binarypb")
VCEK = str(E / "vcek_genoa.crt")
REFERENCE = str(E / "on-perm-reference.txtpb")
STAGE0_BIN = str(shared_data.STAGE0 / "stage0_bin")
# The command line HATs' launcher passes (the reference regex's text, with a port).
CMDLINE = (
    " console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size=10485760 brd.max_part=1"
    " ip=10.0.2.15:::255.255.255.0::enp0s1:off quiet -- --launcher-addr=vsock://2:1234"
)


def reference() -> policies_pb2.AppraisalPolicy:
    return load_policies(Path(REFERENCE).read_text(), REFERENCE, accept_insecure=False).policies[0]


def artifact_args(out: Path, *extra: str) -> list[str]:
    ref = reference().measurement
    tcb = ref.stage0_measurement.amd_sev.min_tcb_version
    return [
        "make",
        "--stage0", STAGE0_BIN, "--vcpus", "4", "--cpu-from", V1,
        "--min-tcb", f"{tcb.boot_loader}/{tcb.tee}/{tcb.snp}/{tcb.microcode}",
        "--kernel-image-sha256", ref.kernel_image_sha256,
        "--kernel-setup-data-sha256", ref.kernel_setup_data_sha256,
        "--init-ram-fs-sha256", ref.init_ram_fs_sha256,
        "--cmdline", CMDLINE,
        "--like", V1,
        "--system-image-sha256", ref.system_image_sha256,
        "--bundle-sha256", ref.container_binary_sha256[0],
        "-o", str(out),
        *extra,
    ]  # fmt: skip


@pytest.fixture
def test_key(tmp_path: Path) -> Path:
    path = tmp_path / "policy.key"
    path.write_text(TEST_POLICY_PRIVATE_KEY.hex() + "\n")
    return path


def verify(evidence: str, policy_file: str, *extra: str) -> object:
    args = ["verify", evidence, "--policy", policy_file, "--tee-certificate", VCEK, "--now", NOW]
    return evidence_group.main([*args, *extra], standalone_mode=False)


def make_json(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(policy_group, [*args, "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert isinstance(document, dict)
    return document


def test_policy_from_artifacts_accepts_the_genoa_evidence_as_the_reference_does(
    tmp_path: Path, test_key: Path
) -> None:
    out = tmp_path / "artifacts.txtpb"
    CliRunner().invoke(policy_group, artifact_args(out, "--sign-key", str(test_key)))
    made = load_policies(out.read_text(), str(out), accept_insecure=False).policies[0]
    ref = reference()
    # Every value equals the reference's but the command-line regex (ours is closed, F10).
    assert made.measurement.stage0_measurement == ref.measurement.stage0_measurement
    for field in (
        "kernel_image_sha256", "kernel_setup_data_sha256", "init_ram_fs_sha256",
        "memory_map_sha256", "acpi_table_sha256", "system_image_sha256",
        "container_binary_sha256",
    ):  # fmt: skip
        assert getattr(made.measurement, field) == getattr(ref.measurement, field), field
    assert policy_mod.cmdline_matches(ref.measurement.kernel_cmd_line_regex, CMDLINE)
    # The same decisions as the reference policy, on both real evidences.
    assert verify(V1, str(out)) == 0
    assert verify(V1, REFERENCE) == 0
    for policy_file in (str(out), REFERENCE):
        with pytest.raises(PolicyMismatchError, match="system_image_sha256"):
            verify(V2, policy_file)
    # Where they differ: the reference also accepts extra stage1 flags after the port.
    regex = made.measurement.kernel_cmd_line_regex
    assert policy_mod.cmdline_regex_risk(regex) is None
    assert not policy_mod.cmdline_matches(regex, CMDLINE + " --init=/bin/sh")
    assert policy_mod.cmdline_matches(
        ref.measurement.kernel_cmd_line_regex, CMDLINE + " --init=/bin/sh"
    )


def test_policy_make_json_gives_the_provenance_of_every_value(tmp_path: Path) -> None:
    out = tmp_path / "p.txtpb"
    doc = make_json(*artifact_args(out))
    assert doc["hats_version"]
    assert doc["output"] == str(out)
    assert doc["signed"] is False
    values = {v["field"]: v for v in doc["values"]}
    assert list(values) == [
        "amd_sev.sha384", "amd_sev.min_tcb_version", "kernel_image_sha256",
        "kernel_setup_data_sha256", "init_ram_fs_sha256", "memory_map_sha256",
        "acpi_table_sha256", "kernel_cmd_line_regex", "system_image_sha256",
        "container_binary_sha256[0]",
    ]  # fmt: skip
    stage0 = values["amd_sev.sha384"]
    assert (stage0["source"], stage0["from"]) == ("computed", STAGE0_BIN)
    assert "4 vCPUs" in stage0["how"] and "stepping 1" in stage0["how"] and V1 in stage0["how"]
    assert stage0["value"] == reference().measurement.stage0_measurement.amd_sev.sha384
    for field in ("memory_map_sha256", "acpi_table_sha256"):
        assert (values[field]["source"], values[field]["from"]) == ("evidence", V1)
    assert values["kernel_cmd_line_regex"]["source"] == "computed"
    assert values["kernel_cmd_line_regex"]["from"] == "--cmdline"
    assert values["amd_sev.min_tcb_version"]["source"] == "option"
    assert values["amd_sev.min_tcb_version"]["value"] == {
        "boot_loader": 10, "tee": 0, "snp": 25, "microcode": 84, "fmc": 0,
    }  # fmt: skip
    assert values["system_image_sha256"]["from"] == "--system-image-sha256"
    assert doc["warnings"] == []
    # The file says the same, as comments the parser skips.
    text = out.read_text()
    head = text[: text.index("policies {")]
    assert all(line.startswith("# ") for line in head.splitlines())
    assert f'# acpi_table_sha256: copied from the evidence "{V1}"' in head


def test_computed_kernel_and_initrd_replace_the_evidence_values_with_a_warning(
    tmp_path: Path,
) -> None:
    kernel = tmp_path / "bzImage"
    image = bytearray(b"\x11" * 1536)
    image[0x1F1] = 2
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", image, 0x206, 0x020F)
    kernel.write_bytes(bytes(image) + b"payload")
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"initrd")
    out = tmp_path / "p.txtpb"
    result = CliRunner().invoke(
        policy_group,
        [
            "make", "--like", V1, "--kernel", str(kernel), "--initrd", str(initrd),
            "--system-image-sha256", "00" * 32, "--bundle-sha256", "11" * 32,
            "-o", str(out), "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    values = {v["field"]: v for v in json.loads(result.stdout)["values"]}
    assert values["kernel_image_sha256"]["value"] == hashlib.sha256(b"payload").hexdigest()
    assert values["kernel_image_sha256"]["source"] == "computed"
    ref = reference().measurement
    assert values["kernel_image_sha256"]["evidence_value"] == ref.kernel_image_sha256
    assert values["init_ram_fs_sha256"]["value"] == hashlib.sha256(b"initrd").hexdigest()
    assert values["amd_sev.sha384"]["source"] == "evidence"
    assert values["amd_sev.min_tcb_version"]["how"] == "the SEV-SNP report's REPORTED_TCB"
    assert "evidence_value" not in values["acpi_table_sha256"]
    warned = [line for line in result.stderr.splitlines() if "hats: warning:" in line]
    assert len(warned) == 3  # kernel image, setup data, initrd
    assert all("the policy will not accept it" in line for line in warned)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--amd-sha384", "ab" * 48], "give one of --stage0 and --amd-sha384"),
        (["--kernel", STAGE0_BIN], "give one of --kernel and --kernel-image-sha256"),
        (["--kernel-cmdline-regex", "^x$"], "give one of --cmdline and --kernel-cmdline-regex"),
        (["--insecure"], "not with --insecure"),
    ],
)
def test_conflicting_sources_are_usage_errors(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    out = tmp_path / "p.txtpb"
    result = CliRunner().invoke(policy_group, artifact_args(out, *extra))
    assert result.exit_code == 2
    assert message in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vcpus", "4"], "--vcpus need --stage0"),
        (["--stage0", STAGE0_BIN, "--cpu", "genoa"], "--stage0 needs --vcpus"),
        (["--stage0", STAGE0_BIN, "--vcpus", "4"], "--cpu or --cpu-from"),
        # Never a guessed TCB minimum: a flag or the --like evidence.
        (["--stage0", STAGE0_BIN, "--vcpus", "4", "--cpu", "genoa"], "--min-tcb"),
    ],
)
def test_stage0_options_and_the_tcb_minimum(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "p.txtpb"
    digest = "ab" * 32
    result = CliRunner().invoke(
        policy_group,
        [
            "make", *args, "--kernel-image-sha256", digest, "--kernel-setup-data-sha256", digest,
            "--init-ram-fs-sha256", digest, "--memory-map-sha256", digest,
            "--acpi-table-sha256", digest, "--cmdline", "console=ttyS0",
            "--system-image-sha256", digest, "--bundle-sha256", digest, "-o", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


def test_provenance_comments_stay_comments_whatever_the_file_names(tmp_path: Path) -> None:
    bundle = tmp_path / "evil\npolicies { }\n.tar"
    bundle.write_bytes(b"bundle")
    out = tmp_path / "p.txtpb"
    CliRunner().invoke(
        policy_group,
        [
            "make", "--like", V1, "--system-image-sha256", "00" * 32,
            "--bundle", str(bundle), "-o", str(out),
        ],
    )  # fmt: skip
    text = out.read_text()
    head = text[: text.index("policies {\n  measurement")]
    assert all(line.startswith("# ") for line in head.splitlines())
    loaded = load_policies(text, str(out), accept_insecure=False)
    assert len(loaded.policies) == 1
    assert loaded.policies[0].measurement.container_binary_sha256 == [
        hashlib.sha256(b"bundle").hexdigest()
    ]


# --- evidence verify --explain -----------------------------------------------------------------


def test_explain_shows_each_value_and_the_one_that_differs() -> None:
    result = CliRunner().invoke(
        evidence_group,
        ["verify", V2, "--policy", REFERENCE, "--tee-certificate", VCEK, "--now", NOW, "--explain"],
    )
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "policy 0: 1 of 15 values differ"
    differing = [line for line in lines if line.startswith("  DIFFERS ")]
    v2_image = "b0f34de77126561d911e0687f79eaad808b0948e0a1045f7449274efc2e411c5"
    ref_image = reference().measurement.system_image_sha256
    assert differing == [f"  DIFFERS system_image_sha256: policy {ref_image} | evidence {v2_image}"]
    fields = [line.split(":")[0].split()[-1] for line in lines[1:]]
    assert fields == [
        "platform", "amd_sev.sha384", "amd_sev.min_tcb_version.boot_loader",
        "amd_sev.min_tcb_version.tee", "amd_sev.min_tcb_version.snp",
        "amd_sev.min_tcb_version.microcode", "amd_sev.min_tcb_version.fmc",
        "kernel_image_sha256", "kernel_setup_data_sha256", "init_ram_fs_sha256",
        "memory_map_sha256", "acpi_table_sha256", "kernel_cmd_line_regex",
        "system_image_sha256", "container_binary_sha256",
    ]  # fmt: skip
    assert "rejected: no appraisal policy matches" in str(result.exception)


def test_explain_marks_every_difference_not_only_the_first(tmp_path: Path) -> None:
    out = tmp_path / "p.txtpb"
    CliRunner().invoke(
        policy_group,
        [
            "make", "--like", V1, "--min-tcb", "11/0/25/90", "--acpi-table-sha256", "ab" * 32,
            "--cmdline", "console=ttyS0", "--system-image-sha256", "00" * 32,
            "--bundle-sha256", "11" * 32, "-o", str(out),
        ],
    )  # fmt: skip
    result = CliRunner().invoke(
        evidence_group,
        [
            "verify", V1, "--policy", str(out), "--no-policy-signature",
            "--tee-certificate", VCEK, "--now", NOW, "--explain",
        ],
    )  # fmt: skip
    assert result.exit_code == 1
    differing = [line.split(":")[0] for line in result.stdout.splitlines() if "DIFFERS" in line]
    assert differing == [
        "  DIFFERS amd_sev.min_tcb_version.boot_loader",
        "  DIFFERS amd_sev.min_tcb_version.microcode",
        "  DIFFERS acpi_table_sha256",
        "  DIFFERS kernel_cmd_line_regex",
        "  DIFFERS system_image_sha256",
        "  DIFFERS container_binary_sha256",
    ]
    # The first difference is still what the refusal names.
    assert "amd_sev.min_tcb_version: reported TCB boot_loader 10 is below the minimum 11" in (
        str(result.exception)
    )


def test_explain_on_an_accepted_evidence_shows_no_difference() -> None:
    result = CliRunner().invoke(
        evidence_group,
        ["verify", V1, "--policy", REFERENCE, "--tee-certificate", VCEK, "--now", NOW, "--explain"],
    )
    assert result.exit_code == 0
    assert "policy 0: 0 of 15 values differ" in result.stdout
    assert "DIFFERS" not in result.stdout
    assert result.stdout.splitlines()[-1] == f"{V1}: accepted: policy 0"


def test_explain_says_when_the_evidence_did_not_verify() -> None:
    result = CliRunner().invoke(
        evidence_group,
        [
            "verify", V1, "--policy", REFERENCE, "--tee-certificate", VCEK,
            "--now", "2033-01-01T00:00Z", "--explain",
        ],
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stdout.startswith("the evidence did not verify (")
    assert "its values below are NOT verified" in result.stdout.splitlines()[0]
    assert "policy 0: 0 of 15 values differ" in result.stdout
