"""``--guest-kernel-arg ipv6.disable=1`` end to end: the demo's boot with the opt-in line.

The session's image, bundle and keys (``vm_setup`` of ``tests/vm/conftest.py``)
booted once more by the demo's code path with ``ipv6.disable=1`` added to the
guest's kernel command line: stage1's reference values and the policy are made
for that line (:func:`hats.vm.demo.guest_policy`), the launcher is given the
same option, the workload gets its key, and the evidence the launcher saved
(``--evidence-out``) records the command line with ``ipv6.disable=1``.
"""

from __future__ import annotations

import pytest

from hats.attestation.verify import extract_root_and_kernel
from hats.demo import DemoSetup
from hats.pb.oak.attestation.v1 import evidence_pb2
from hats.vm.demo import VmDemoOptions, boot_and_wait, guest_cmdline, guest_policy

pytestmark = [pytest.mark.slow, pytest.mark.vm]


def test_ipv6_disabled_guest_gets_its_key_and_its_evidence_says_so(vm_setup: DemoSetup) -> None:
    options = VmDemoOptions(
        workdir=vm_setup.work,
        accel="auto",
        boot_timeout=480.0,
        guest_kernel_args=("ipv6.disable=1",),
    )
    lines: list[str] = []
    _, policy = guest_policy(
        options,
        image=vm_setup.image,
        image_sha256=vm_setup.image_sha256,
        bundle=vm_setup.bundle,
        env=vm_setup.env,
        steps=lines.append,
        name="ipv6",
    )
    console_log = vm_setup.work / "ipv6.log"
    result = boot_and_wait(vm_setup, options, lines.append, policy=policy, console_log=console_log)
    print("\n".join(lines))
    output = "\n".join(result.launcher_output)
    console = console_log.read_text(errors="replace")
    assert result.ok, f"no key line; launcher said:\n{output[-4000:]}\nconsole:\n{console[-3000:]}"
    assert "the guest's kernel command line is not the reference's" in output
    evidence = evidence_pb2.Evidence.FromString(
        (vm_setup.work / "ipv6.evidence.binarypb").read_bytes()
    )
    recorded = extract_root_and_kernel(evidence).kernel_cmdline
    assert "ipv6.disable=1" in recorded.split(" -- ")[0].split()
    assert recorded == guest_cmdline(("ipv6.disable=1",))
    assert result.clean_poweroff, output[-2000:]
    print(f"boot to keys with ipv6.disable=1: {result.boot_to_keys:.1f} s")
