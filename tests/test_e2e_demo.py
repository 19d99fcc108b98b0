"""The whole chain as separate processes over real unix sockets: ``hats demo``.

image → simulated stage1 → policy from the build → TVS process(es) → launcher
process → orchestrator process (process runtime) → sample workload calling
GetKeys — for the four reference variants.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

VARIANTS = {
    "test_single": ["--tvs", "1", "--share", "no-split"],
    "test_xor_2": ["--tvs", "2", "--share", "xor"],
    "test_shamir_2_of_3": ["--tvs", "3", "--share", "shamir"],
    "test_single_1sec_heartbeat": [
        "--tvs",
        "1",
        "--share",
        "no-split",
        "--tvs-heartbeat-frequency",
        "1",
    ],
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_demo_variant_end_to_end(variant: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hats", "demo", *VARIANTS[variant]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    expected = re.search(r"fingerprint ([0-9a-f]{16})", result.stdout)
    assert expected is not None
    assert f"key_id=64 public_key=demo public key private_key_sha256={expected.group(1)}" in (
        result.stdout
    )
    assert result.stdout.strip().splitlines()[-1].startswith("OK:")
    # the secret itself (32 random bytes) is never printed: only its fingerprint
    fingerprint = re.search(r"sha256 ([0-9a-f]{64})", result.stdout)
    assert fingerprint is not None, result.stdout
    assert not re.search(r"\b[0-9a-f]{64}\b", result.stdout.replace(fingerprint.group(1), ""))


def test_demo_rejects_impossible_setups() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hats", "demo", "--tvs", "1", "--share", "xor"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "needs at least two TVSes" in result.stderr and "Traceback" not in result.stderr
