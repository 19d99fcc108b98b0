"""[real-stage0] end to end: real Oak stage0 → our stage1 → systemd, orchestrator → our TVS.

The guest boots with ``-bios stage0_bin`` (the binary HATs pins, test data) on
the reference's ``microvm,acpi=on,pcie=on``:
stage0 measures our Debian kernel, initramfs and command line and hands its DICE
data to our stage1 (upstream-facts F11). The policy holds what stage0 measured:
kernel, setup data, initrd and command line computed from the artifacts and
checked against stage0's own console, ACPI and E820 from a stage0 run of the
same configuration. Two boots:

1. that policy → the workload gets key 64; the evidence's root and kernel layers
   are stage0's (its Stage0 event, its root key and fake report); stage1 zeroed
   the DICE range; ``hats evidence verify`` accepts the saved evidence and
   refuses it for another initrd or another command line;
2. a policy for another command line → the TVS refuses, no key.

Skipped when QEMU is older than 8 (scripts/setup.sh installs a newer one).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import shared_data
from hats.demo import DemoSetup
from hats.pb.oak.attestation.v1 import eventlog_pb2, evidence_pb2
from hats.vm.demo import VmDemoOptions, boot_and_wait, prepare_vm, stage0_config
from hats.vm.qemu import QEMU, QemuError, check_stage0_qemu

pytestmark = [pytest.mark.slow, pytest.mark.vm]
STAGE0 = shared_data.OAK_STAGE0 / "stage0_bin"


@pytest.fixture(scope="module")
def stage0_setup(tmp_path_factory: pytest.TempPathFactory, default_base_tar: Path) -> DemoSetup:
    if shutil.which(QEMU) is None:
        pytest.skip(f"{QEMU} is not installed")
    try:
        check_stage0_qemu()
    except QemuError as exc:
        pytest.skip(str(exc))
    work = tmp_path_factory.mktemp("vm-stage0")
    lines: list[str] = []
    setup = prepare_vm(
        VmDemoOptions(workdir=work, xz_block_size="8MiB", stage0=STAGE0), lines.append
    )
    print("\n".join(lines))
    # The demo's step "real stage0: …" logs the comparison with the artifacts under it.
    step = next(i for i, line in enumerate(lines) if "real stage0:" in line)
    assert any("match the artifacts" in line for line in lines[step + 1 :])
    return setup


def _options(setup: DemoSetup) -> VmDemoOptions:
    return VmDemoOptions(workdir=setup.work, accel="auto", boot_timeout=480.0, stage0=STAGE0)


def _hats(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hats", *map(str, args)], capture_output=True, text=True, check=False
    )


def _verify(evidence: Path, policy: Path) -> subprocess.CompletedProcess[str]:
    return _hats(
        "evidence",
        "verify",
        evidence,
        "--policy",
        policy,
        "--accept-insecure",
        "--no-policy-signature",
    )


def _policy(setup: DemoSetup, evidence: Path, name: str, *extra: str | Path) -> Path:
    out = setup.work / name
    made = _hats(
        "policy", "make", "--system-image-sha256", setup.image_sha256, "--bundle", setup.bundle,
        "--like", evidence, *extra, "--insecure", "-o", out,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return out


def _values(policy: Path) -> list[str]:
    return [line for line in policy.read_text().splitlines() if not line.startswith("#")]


def test_boot_through_real_stage0_gets_the_key(stage0_setup: DemoSetup) -> None:
    setup = stage0_setup
    lines: list[str] = []
    result = boot_and_wait(setup, _options(setup), lines.append, console_log=setup.work / "s0.log")
    print("\n".join(lines))
    output = "\n".join(result.launcher_output)
    console = result.console_log.read_text(errors="replace")
    assert result.ok, f"no key line; launcher said:\n{output[-4000:]}\nconsole:\n{console[-3000:]}"
    assert "vm: firmware: Oak stage0" in output
    # Stage0 ran and handed over; our stage1 took it, zeroed it and did not simulate.
    assert "stage0 INFO: jumping to kernel" in console
    assert "stage0 hand-off at 0x" in console and "reads as zeros" in console
    assert "no stage0 hand-off" not in console
    # On the reference's microvm the guest has ACPI under stage0: the power button works.
    assert "ACPI: Unable to enable ACPI" not in console
    assert "vm: powered off" in output, output[-2000:]

    evidence_file = setup.work / "s0.evidence.binarypb"
    evidence = evidence_pb2.Evidence.FromString(evidence_file.read_bytes())
    assert evidence.root_layer.platform == evidence_pb2.TEE_PLATFORM_NONE
    assert len(evidence.root_layer.remote_attestation_report) == 1184
    first = eventlog_pb2.Event.FromString(evidence.event_log.encoded_events[0])
    assert first.tag == "Stage0"
    # Byte for byte stage0's: the kernel layer's event is the one stage0 printed the
    # digest of in this boot, and the fake report binds stage0's root key (F1).
    printed = re.search(r"stage0 DEBUG: Event digest: sha2-256:([0-9a-f]{64})", console)
    assert printed is not None
    assert hashlib.sha256(evidence.event_log.encoded_events[0]).hexdigest() == printed.group(1)
    root = evidence.root_layer
    report_data = root.remote_attestation_report[0x50:0x70]
    assert report_data == hashlib.sha256(root.eca_public_key).digest()
    measured = eventlog_pb2.Stage0Measurements.FromString(first.event.value)
    # Stage0 measured the line without the --oak-* arguments it appended.
    assert "--oak-dice" not in measured.kernel_cmdline
    tags = [eventlog_pb2.Event.FromString(e).tag for e in evidence.event_log.encoded_events]
    assert tags == ["Stage0", "stage1", "ORCHESTRATOR"]

    # hats evidence verify: the policy from this boot accepts it; another initrd or
    # another command line does not.
    same = _policy(setup, evidence_file, "same.txtpb")
    accepted = _verify(evidence_file, same)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    # The values computable from the artifacts (kernel, setup data, initrd, command
    # line) give the same policy as the boot's evidence, which then still verifies.
    config = stage0_config(_options(setup))
    computed = _policy(
        setup, evidence_file, "computed.txtpb",
        "--kernel", config.kernel, "--initrd", config.initrd, "--cmdline", config.cmdline,
    )  # fmt: skip
    assert _values(computed) == _values(same)  # (the "# … computed from" comments differ)
    other_initrd = _policy(setup, evidence_file, "initrd.txtpb", "--init-ram-fs-sha256", "cd" * 32)
    assert _verify(evidence_file, other_initrd).returncode == 1
    other_line = _policy(setup, evidence_file, "cmdline.txtpb", "--cmdline", " console=ttyS0 quiet")
    assert _verify(evidence_file, other_line).returncode == 1
    print(f"boot to keys through stage0: {result.boot_to_keys:.1f} s")


def test_policy_for_another_command_line_gets_no_key(stage0_setup: DemoSetup) -> None:
    setup = stage0_setup
    evidence_file = setup.work / "s0.evidence.binarypb"
    if not evidence_file.exists():
        pytest.skip("needs the first boot's evidence")
    policy = _policy(setup, evidence_file, "other_cmdline.txtpb", "--cmdline", " console=ttyS0")
    lines: list[str] = []
    result = boot_and_wait(
        setup, _options(setup), lines.append, policy=policy, console_log=setup.work / "s0r.log"
    )
    print("\n".join(lines))
    output = "\n".join(result.launcher_output)
    assert result.refused, output[-4000:]
    assert not result.key_lines and "key_id=" not in output
    assert "No matching appraisal policy" in output
