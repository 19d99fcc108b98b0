"""hats.attestation.policymake: the rules of `hats policy make`, without the CLI."""

from __future__ import annotations

import pytest

import shared_data
from hats.attestation import policy, verify
from hats.attestation.errors import PolicyError
from hats.attestation.evidencefile import load_evidence
from hats.attestation.measure import CpuSignature
from hats.attestation.policymake import (
    PolicyRequest,
    PolicyUsageError,
    Stage0Options,
    check_usage,
    collect_values,
    make_policy_text,
)

V1 = str(shared_data.EVIDENCE / "evidence_v1_genoa.binarypb")
DIGEST = "ab" * 32
IMAGE = {"system_image_sha256": "00" * 32, "bundle_digests": ("11" * 32,)}
ALL_BUT_SEV = {
    "kernel_image_sha256": DIGEST,
    "kernel_setup_data_sha256": DIGEST,
    "init_ram_fs_sha256": DIGEST,
    "memory_map_sha256": DIGEST,
    "acpi_table_sha256": DIGEST,
}


def no_cpu(cpu: str | None, cpu_from: str | None) -> tuple[CpuSignature | None, str]:
    return None, "none"


def like_cmdline() -> str:
    return verify.extract_root_and_kernel(load_evidence(V1)).kernel_cmdline


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (PolicyRequest(bundle_digests=("1",)), "missing system_image_sha256 \\("),
        (PolicyRequest(system_image_sha256="0"), "missing container_binary_sha256 \\("),
        (
            PolicyRequest(system_image="i", system_image_sha256="0"),
            "give one of --system-image and --system-image-sha256",
        ),
        (
            PolicyRequest(**IMAGE, kernel="k", kernel_setup_data_sha256=DIGEST),  # type: ignore[arg-type]
            "give one of --kernel and --kernel-setup-data-sha256",
        ),
        (
            PolicyRequest(**IMAGE, cmdline="c", kernel_cmdline_regex="^c$"),  # type: ignore[arg-type]
            "give one of --cmdline and --kernel-cmdline-regex",
        ),
        (
            PolicyRequest(**IMAGE, stage0=Stage0Options(vcpus=2, vmm="qemu")),  # type: ignore[arg-type]
            "--vcpus, --vmm need --stage0",
        ),
        (
            PolicyRequest(**IMAGE, stage0=Stage0Options(path="s", vcpus=2), insecure=True),  # type: ignore[arg-type]
            "not with --insecure",
        ),
        (PolicyRequest(**IMAGE, stage0=Stage0Options(path="s")), "--stage0 needs --vcpus"),  # type: ignore[arg-type]
    ],
)
def test_usage_rules(request_: PolicyRequest, message: str) -> None:
    with pytest.raises(PolicyUsageError, match=message) as info:
        check_usage(request_)
    assert info.value.exit_code == 2


def test_every_missing_value_is_named_once() -> None:
    with pytest.raises(PolicyUsageError) as info:
        collect_values(PolicyRequest(**IMAGE, memory_map_sha256=DIGEST), no_cpu)  # type: ignore[arg-type]
    text = str(info.value)
    assert text.startswith("missing 7 values: amd_sev.sha384 (")
    assert "memory_map_sha256" not in text and text.endswith("--like EVIDENCE")
    # Insecure: no SEV-SNP values are needed (and none are kept).
    values, warning = collect_values(
        PolicyRequest(**IMAGE, **ALL_BUT_SEV, cmdline="console=ttyS0", insecure=True),  # type: ignore[arg-type]
        no_cpu,
    )
    assert warning is None and not values.has("amd_sev.sha384")


def test_explicit_values_win_over_like_and_each_disagreement_is_one_warning() -> None:
    values, _ = collect_values(PolicyRequest(**IMAGE, like=V1, memory_map_sha256=DIGEST), no_cpu)  # type: ignore[arg-type]
    item = values.values["memory_map_sha256"]
    assert item.value == DIGEST and item.provenance.kind == "option"
    assert values.values["acpi_table_sha256"].provenance.kind == "evidence"
    warnings = values.warnings()
    assert len(warnings) == 1
    assert warnings[0].startswith("memory_map_sha256: given by --memory-map-sha256 gives ")
    assert warnings[0].endswith("the policy will not accept it")


def test_a_cmdline_the_like_evidence_does_not_have_is_a_warning() -> None:
    """Only its case differs: the regexes' texts are equal ignoring case, the match is not."""
    cmdline = like_cmdline().replace("console=", "Console=")
    assert cmdline != like_cmdline()
    values, _ = collect_values(PolicyRequest(**IMAGE, like=V1, cmdline=cmdline), no_cpu)  # type: ignore[arg-type]
    warnings = values.warnings()
    assert [w.split(":")[0] for w in warnings] == ["kernel_cmd_line_regex"]
    assert "the policy will not accept it" in warnings[0]


def test_a_regex_that_matches_the_like_cmdline_is_no_disagreement() -> None:
    regex = policy.cmdline_regex_for(like_cmdline()).replace(policy.PORT_REGEX, "[0-9]{1,10}")
    assert regex != policy.cmdline_regex_for(like_cmdline())
    values, warning = collect_values(
        PolicyRequest(**IMAGE, like=V1, kernel_cmdline_regex=regex),  # type: ignore[arg-type]
        no_cpu,
    )
    assert warning is None and values.warnings() == []
    assert values.get("kernel_cmd_line_regex") == regex


def test_an_open_regex_is_refused_unless_allowed() -> None:
    request = PolicyRequest(**IMAGE, like=V1, kernel_cmdline_regex="console.*$")  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="--allow-open-cmdline-regex"):
        collect_values(request, no_cpu)
    allowed = PolicyRequest(
        **IMAGE,  # type: ignore[arg-type]
        like=V1,
        kernel_cmdline_regex="console.*$",
        allow_open_cmdline_regex=True,
    )
    made = make_policy_text(allowed, no_cpu)
    assert made.open_regex_warning is not None
    assert made.open_regex_warning.startswith("kernel_cmd_line_regex is open-ended: ")
    assert made.stderr_warnings()[0] == made.open_regex_warning


def test_stage0_with_qemu_needs_the_cpu() -> None:
    request = PolicyRequest(**IMAGE, stage0=Stage0Options(path="stage0_bin", vcpus=2))  # type: ignore[arg-type]
    with pytest.raises(PolicyUsageError, match="--stage0 needs --cpu or --cpu-from"):
        collect_values(request, no_cpu)


def test_the_made_text_has_the_provenance_header_then_one_policy() -> None:
    made = make_policy_text(PolicyRequest(**IMAGE, like=V1), no_cpu)  # type: ignore[arg-type]
    head, _, body = made.text.partition("policies {")
    assert head.startswith("# Made by hats ") and all(
        line.startswith("# ") for line in head.splitlines()
    )
    assert body and not made.signed and made.warnings == []
    loaded = policy.load_policies(made.text, "made", accept_insecure=False)
    assert loaded.policies[0].measurement.system_image_sha256 == "00" * 32
