"""Hardening of evidence verification and policies against a hostile host.

Item 9: only the DICE layers Oak's extraction takes (upstream-facts F9).
Item 1: open-ended kernel command-line regexes (upstream-facts F10).
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from pathlib import Path

import click.testing
import pytest
from click.testing import CliRunner
from dice_testing import key_sequence, x25519_public

import shared_data
from hats.attestation import dice, policy, simulate, verify
from hats.attestation.cli import evidence_group, load_evidence, policy_group
from hats.attestation.errors import EvidenceVerificationError, PolicyError
from hats.pb.oak.attestation.v1 import evidence_pb2
from hats.protocol import p256

F9_MESSAGE = "incorrect number of DICE layers for Oak Containers"


def _evidence_with_layers(extra_events: list[bytes]) -> tuple[evidence_pb2.Evidence, bytes]:
    """Simulated evidence: kernel, system and container layers, then ``extra_events`` layers.

    The application keys are bound (signed, EVENT claim) to the last layer, as a host
    holding the container layer's key could make them.
    """
    keys = key_sequence(9)
    image_sha256 = hashlib.sha256(b"the approved image").digest()
    attester = dice.DiceAttester(
        simulate.simulate_stage1(image_sha256, generate_key=keys), generate_key=keys
    )
    signing = p256.public_key_bytes(keys())
    binding = p256.public_key_bytes(keys())
    container = dice.container_event(b"the approved bundle", x25519_public(1), signing, binding)
    attester.extend(container)
    last = container
    for event in extra_events:
        attester.extend(event)
        last = event
    attester.add_application_keys(
        encryption_public_key=x25519_public(2),
        signing_public_key=signing,
        group_encryption_public_key=x25519_public(3),
        event=last,
    )
    return attester.evidence(), signing


def _verify(evidence: evidence_pb2.Evidence) -> verify.VerifiedEvidence:
    return verify.verify_evidence(evidence, tee_certificate=None, allow_insecure=True)


def test_three_layers_verify() -> None:
    evidence, signing = _evidence_with_layers([])
    assert len(evidence.layers) == 3
    assert _verify(evidence).measurements.application_signing_public_key == signing


def test_a_fourth_unmeasured_layer_is_refused() -> None:
    """The issue's evidence: a fourth layer with an unmeasured event carries the app keys."""
    unmeasured = dice.system_layer_event(hashlib.sha256(b"anything at all").digest())
    evidence, _ = _evidence_with_layers([unmeasured])
    assert len(evidence.layers) == len(evidence.event_log.encoded_events) == 4
    with pytest.raises(EvidenceVerificationError, match=F9_MESSAGE):
        _verify(evidence)


def test_many_extra_layers_are_refused() -> None:
    extra = [b"not even an event"] * 3
    evidence, _ = _evidence_with_layers(extra)
    with pytest.raises(EvidenceVerificationError, match=f"6 layers: {F9_MESSAGE}"):
        _verify(evidence)


def test_two_layers_are_refused_with_the_count() -> None:
    evidence, _ = _evidence_with_layers([])
    del evidence.layers[2]
    del evidence.event_log.encoded_events[2]
    with pytest.raises(EvidenceVerificationError, match=f"2 layers: {F9_MESSAGE}"):
        _verify(evidence)


# --- item 1: open-ended command-line regexes (F10) ------------------------------------------

E = shared_data.EVIDENCE
V1 = str(E / "evidence_v1_genoa.binarypb")
REFERENCE_POLICY = str(E / "on-perm-reference.txtpb")
V1_IMAGE = "3c59bd10c2b890ff152cc57fdca0633693acbb04982da90c670de6530fa8a836"
BUNDLE = "b0803886a6e096bf1c9eacaa77dd1514134d2e88a7734af9ba2dbf650884f899"
VERIFY_V1 = [
    "verify", V1, "--tee-certificate", str(E / "vcek_genoa.crt"), "--now", "2026-11-26T00:00:00",
]  # fmt: skip
DIGEST = "ab" * 32
EXPLICIT = [
    "make", "--system-image-sha256", V1_IMAGE, "--bundle-sha256", BUNDLE, "--insecure",
    "--kernel-image-sha256", DIGEST, "--kernel-setup-data-sha256", DIGEST,
    "--init-ram-fs-sha256", DIGEST, "--memory-map-sha256", DIGEST, "--acpi-table-sha256", DIGEST,
]  # fmt: skip


def _make_like_v1(tmp_path: Path, *extra: str) -> tuple[click.testing.Result, Path]:
    out = tmp_path / "policy.txtpb"
    args = ["make", "--like", V1, "--system-image-sha256", V1_IMAGE, "--bundle-sha256", BUNDLE]
    result = CliRunner().invoke(policy_group, [*args, *extra, "-o", str(out)])
    return result, out


def test_policy_make_like_anchors_the_port_and_the_end(tmp_path: Path) -> None:
    result, out = _make_like_v1(tmp_path)
    assert result.exit_code == 0, result.output
    made = policy.load_policies(out.read_text(), "p", accept_insecure=False).policies[0]
    regex = made.measurement.kernel_cmd_line_regex
    cmdline = verify.extract_root_and_kernel(load_evidence(V1)).kernel_cmdline
    assert regex.endswith(r"\-\-launcher\-addr=vsock://2:[0-9]+$") and regex.startswith("^ ")
    assert ".*" not in regex
    assert policy.cmdline_matches(regex, cmdline)
    assert policy.cmdline_matches(regex, cmdline.replace(":1061704822", ":7"))
    for hostile in (
        cmdline + " --init=/bin/sh",
        cmdline + "--init=/bin/sh",
        cmdline.replace(":1061704822", ":1 --init=/bin/sh"),
        cmdline.replace(":1061704822", ":"),
        "rdinit=/bin/sh " + cmdline,
    ):
        assert not policy.cmdline_matches(regex, hostile), hostile
    assert policy.cmdline_regex_risk(regex) is None
    assert result.stderr == ""


def test_policy_make_refuses_an_open_ended_regex(tmp_path: Path) -> None:
    out = tmp_path / "p.txtpb"
    open_regex = "^console=ttyS0 -- --launcher-addr=vsock://2:.*$"
    result = CliRunner().invoke(
        policy_group, [*EXPLICIT, "--kernel-cmdline-regex", open_regex, "-o", str(out)]
    )
    assert result.exit_code != 0 and not out.exists()
    assert isinstance(result.exception, PolicyError)
    message = str(result.exception)
    assert "--init=/x" in message and "--allow-open-cmdline-regex" in message
    allowed = CliRunner().invoke(
        policy_group,
        [*EXPLICIT, "--kernel-cmdline-regex", open_regex, "--allow-open-cmdline-regex", "-o",
         str(out)],
    )  # fmt: skip
    assert allowed.exit_code == 0, allowed.output
    assert "open-ended" in allowed.stderr and allowed.stderr.count("\n") == 1
    made = policy.load_policies(out.read_text(), "p", accept_insecure=True).policies[0]
    assert made.measurement.kernel_cmd_line_regex == open_regex


@pytest.mark.parametrize(
    ("regex", "risky"),
    [
        (r"^a -- --launcher-addr=vsock://2:[0-9]+$", False),
        (r"^a -- --launcher-addr=vsock://2:.*$", True),  # the reference's form (F10)
        (r"^a -- --launcher-addr=vsock://2:[0-9]+", True),  # no end anchor
        (r"a -- --launcher-addr=vsock://2:[0-9]+$", True),  # no start anchor
        (r"^a .* -- --launcher-addr=vsock://2:[0-9]+$", True),  # a wildcard inside
        (r"^a[^\n]{0,40} -- x$", True),
        (r"^(a|bb) --launcher-addr=\S+$", False),
        (r"^(?:a|b c)(?:[0-9]+)?$", False),
        (r"^a(?=b)", True),  # cannot derive a match: "could not check"
        (r"^x{100000}$", True),  # longer than the limit: "could not check"
    ],
)
def test_cmdline_regex_risk(regex: str, risky: bool) -> None:
    assert (policy.cmdline_regex_risk(regex) is not None) == risky


def test_shortest_match_matches() -> None:
    for regex in (r"^a:[0-9]+$", r"^(a|bb)\1$", r"^a\s+b$", r"^[^ab]c{2,3}$", r"x|y+z"):
        candidate = policy.shortest_match(regex)
        assert candidate is not None and policy.cmdline_matches(regex, candidate)
    assert policy.shortest_match(r"^a(?=b)") is None
    assert policy.shortest_match(r"^(?:a{300}){300}$") is None  # 90000 > the limit


def test_reference_policy_warns_once_and_still_verifies() -> None:
    text = Path(REFERENCE_POLICY).read_text()
    policies = policy.load_policies(text, "ref", accept_insecure=False)
    warnings = policy.open_cmdline_warnings(policies, "ref")
    assert len(warnings) == len(policies.policies) == 1
    assert warnings[0].startswith("ref: policy 0: kernel_cmd_line_regex is open-ended: ")
    assert "\n" not in warnings[0]
    result = CliRunner().invoke(evidence_group, [*VERIFY_V1, "--policy", REFERENCE_POLICY])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{V1}: accepted: policy 0\n"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hats: warning: ") and "policy 0" in lines[0]


def test_anchored_policy_verifies_without_warning(tmp_path: Path) -> None:
    made, out = _make_like_v1(tmp_path)
    assert made.exit_code == 0, made.output
    result = CliRunner().invoke(
        evidence_group, [*VERIFY_V1, "--policy", str(out), "--no-policy-signature"]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


G2_HEX = p256.public_key_bytes(p256.load_private_key((2).to_bytes(32, "big"), "k")).hex()


def _serve_log(policy_file: str) -> str:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hats", "tvs", "serve", f"--primary_private_key={'11' * 32}",
         f"--appraisal_policy_file={policy_file}", "--now=2026-11-26T00:00:00+00:00",
         "--user_authentication_public_key=" + G2_HEX, "--listen=127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    return err


def test_tvs_serve_warns_once_per_open_ended_policy(tmp_path: Path) -> None:
    two = tmp_path / "two.txtpb"
    two.write_text(Path(REFERENCE_POLICY).read_text() * 2)  # the same policy twice
    log = _serve_log(str(two))
    warnings = [line for line in log.splitlines() if "open-ended" in line]
    assert len(warnings) == 2
    assert ": policy 0: " in warnings[0] and ": policy 1: " in warnings[1]


def test_tvs_serve_does_not_warn_for_anchored_policies(tmp_path: Path) -> None:
    made, out = _make_like_v1(tmp_path)
    assert made.exit_code == 0, made.output
    assert "open-ended" not in _serve_log(str(out))
