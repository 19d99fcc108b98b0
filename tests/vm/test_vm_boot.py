"""[vm-boot] end to end: the built image boots in QEMU and the workload gets its key.

Real parts only: the default Debian base with Python, ``hats image build``,
Debian's cloud kernel, our initramfs (busybox + Python stage1), QEMU (KVM if
a probe guest boots, else TCG), systemd in the guest, our orchestrator,
syslogd and agent from the image, runc, a ``hats tvs serve`` process and
``hats launcher serve --vmm qemu``. Two boots of the same image:

1. a policy holding the image's and bundle's digests → the workload prints
   key 64 with the secret's fingerprint, which reaches the launcher through
   syslogd; the launcher then powers the guest off cleanly;
2. a policy holding another image digest → the TVS refuses, the orchestrator
   stops with that reason, no key reaches the workload.

Skipped (with the reason) when QEMU or mmdebstrap is missing. ``vm_setup``
(the image, bundle, keys) is the session fixture of ``tests/vm/conftest.py``.
"""

from __future__ import annotations

import pytest

from hats.demo import DemoSetup
from hats.vm.demo import VmDemoOptions, boot_and_wait, make_vm_policy

pytestmark = [pytest.mark.slow, pytest.mark.vm]


def _options(setup: DemoSetup) -> VmDemoOptions:
    return VmDemoOptions(workdir=setup.work, accel="auto", boot_timeout=480.0)


def test_workload_in_the_guest_gets_its_key(vm_setup: DemoSetup) -> None:
    lines: list[str] = []
    result = boot_and_wait(
        vm_setup, _options(vm_setup), lines.append, console_log=vm_setup.work / "ok.log"
    )
    print("\n".join(lines))
    output = "\n".join(result.launcher_output)
    console = result.console_log.read_text(errors="replace")
    assert result.ok, f"no key line; launcher said:\n{output[-4000:]}\nconsole:\n{console[-3000:]}"
    assert not result.refused
    # The key line came from inside the guest: the orchestrator's unit, via syslogd.
    assert all(line.startswith("oak-orchestrator.service: ") for line in result.key_lines)
    assert f"private_key_sha256={vm_setup.expected_fingerprint}" in result.key_lines[0]
    # Never the secret itself.
    assert vm_setup.secret.hex() not in output and vm_setup.secret.hex() not in console
    # Stage1 measured the image we built; the TVS saw evidence; the guest powered off cleanly.
    assert f"sha256 {vm_setup.image_sha256}" in console
    assert "received attestation evidence" in output
    assert "vm: accelerator " in output
    assert result.clean_poweroff, output[-2000:]
    # syslogd's records as JSON lines, and the agent's /proc metrics, reached the launcher.
    logs = (vm_setup.work / "ok.logs.jsonl").read_text()
    for key in (vm_setup.secret.hex(), vm_setup.client_private.hex()):
        assert key not in logs and key not in output and key not in console
    assert "private_key_sha256=" in logs and "oak-orchestrator.service" in logs
    metrics = (vm_setup.work / "ok.metrics.json").read_text()
    assert "cpu_seconds_total" in metrics and "mem_total" in metrics
    print(f"boot to keys: {result.boot_to_keys:.1f} s")


def test_policy_for_another_image_gets_no_keys(vm_setup: DemoSetup) -> None:
    policy = make_vm_policy(
        vm_setup.work / "other_image_policy.txtpb",
        image_sha256="ab" * 32,
        bundle=vm_setup.bundle,
        dice=vm_setup.dice,
        env=vm_setup.env,
    )
    lines: list[str] = []
    result = boot_and_wait(
        vm_setup,
        _options(vm_setup),
        lines.append,
        policy=policy,
        console_log=vm_setup.work / "refused.log",
    )
    print("\n".join(lines))
    output = "\n".join(result.launcher_output)
    assert result.refused, output[-4000:]
    assert not result.key_lines and not result.ok
    assert "No matching appraisal policy" in output
    assert "key_id=" not in output
    assert result.clean_poweroff, output[-2000:]
