"""The image's syslogd (``python3 -m hats.syslogd``) runs at a lower CPU priority.

Issue [boot-fast]: it starts together with the orchestrator; its imports and
the boot's journal backlog must not take an equal share of the guest's vCPUs
while the orchestrator attests. ``hats syslogd`` on a host keeps its
priority. The priority is observed in journalctl, which inherits it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hats.syslogd import NICE_INCREMENT

MAX_NICE = 19


def _journalctl_niceness(work: Path, command: list[str]) -> int:
    """Run syslogd with a journalctl that writes its niceness and no entries."""
    out = work / "nice.txt"
    fake = work / "journalctl"
    fake.write_text(f"#!/bin/sh\nnice > {out}\n")
    fake.chmod(0o755)
    flags = ["--journal-directory", str(work), "--journalctl", str(fake), "--no-follow"]
    result = subprocess.run(
        [*command, "unix:/nonexistent.sock", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return int(out.read_text())


def test_the_image_entry_point_lowers_the_priority(tmp_path: Path) -> None:
    own = os.nice(0)
    seen = _journalctl_niceness(tmp_path, [sys.executable, "-m", "hats.syslogd"])
    assert seen == min(own + NICE_INCREMENT, MAX_NICE)
    assert seen > own or own == MAX_NICE


def test_hats_syslogd_keeps_the_priority(tmp_path: Path) -> None:
    own = os.nice(0)
    seen = _journalctl_niceness(tmp_path, [sys.executable, "-m", "hats", "syslogd"])
    assert seen == own
