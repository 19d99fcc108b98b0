"""Inputs for image tests: the reference variants, a realistic toy root, GNU tar, binaries.

Plain helpers, imported by name (``from image_support import …``); the fixtures
that build them once per session are in ``conftest.py``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: Offset and length of each numeric field of a tar header block (POSIX ustar).
NUMERIC_FIELDS = {
    "mode": (100, 8),
    "uid": (108, 8),
    "gid": (116, 8),
    "size": (124, 12),
    "mtime": (136, 12),
    "devmajor": (329, 8),
    "devminor": (337, 8),
}

REFERENCE_VARIANTS = (
    "test_single",
    "test_xor_2",
    "test_shamir_2_of_3",
    "test_single_1sec_heartbeat",
)
SHARE_TYPE = {
    "test_single": "no-split",
    "test_xor_2": "xor",
    "test_shamir_2_of_3": "shamir",
    "test_single_1sec_heartbeat": "no-split",
}


def make_root(root: Path) -> Path:
    """A root with what real Debian bases have: merged /usr, setuid, sticky
    /tmp, hard links, devices, a FIFO, long and non-ASCII names, and Oak's
    own versions of the files HATs overrides."""
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/sbin").mkdir(parents=True)
    (root / "etc/systemd/system/multi-user.target.wants").mkdir(parents=True)
    (root / "etc/systemd/network").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    os.symlink("usr/bin", root / "bin")
    os.symlink("usr/sbin", root / "sbin")
    for name in ("sh", "journalctl", "passwd"):
        (root / "usr/bin" / name).write_bytes(b"#!/bin/sh\nexit 0\n")
        os.chmod(root / "usr/bin" / name, 0o755)
    os.chmod(root / "usr/bin/passwd", 0o4755)
    os.link(root / "usr/bin/sh", root / "usr/bin/dash")
    (root / "usr/sbin/init").write_bytes(b"\x7fELF fake init\n")
    os.chmod(root / "usr/sbin/init", 0o755)
    (root / "etc/hostname").write_text("")
    (root / "etc/systemd/network/10-enp0s1.network").write_text(
        "[Match]\nName=enp0s1\n\n[Network]\nAddress=10.0.2.15/24\n"
    )
    (root / "etc/systemd/system/oak-orchestrator.service").write_text(
        "[Service]\nExecStart=/bin/oak_containers_orchestrator\n"
    )
    for unit in ("oak-orchestrator", "oak-syslogd", "oak-agent"):
        os.symlink(
            f"../{unit}.service",
            root / f"etc/systemd/system/multi-user.target.wants/{unit}.service",
        )
    os.chmod(root / "etc/systemd/system/oak-orchestrator.service", 0o755)
    deep = root / "usr/share" / ("very-long-directory-name-" * 3) / ("and-a-long-file-" * 5)
    deep.mkdir(parents=True)
    (deep / "données.txt").write_text("long name\n")
    os.mkfifo(root / "dev/initctl")
    os.mknod(root / "dev/null", 0o666 | 0o020000, os.makedev(1, 3))
    return root


def gnu_tar(root: Path, out: Path, *extra: str, members: tuple[str, ...] = (".",)) -> Path:
    subprocess.run(
        [
            "tar",
            "--sort=name",
            "--numeric-owner",
            "--mtime=2000-01-01Z",
            *extra,
            "-C",
            str(root),
            "-cf",
            str(out),
            *members,
        ],
        check=True,
    )
    return out


@dataclass(frozen=True)
class Inputs:
    orchestrator: Path
    agent: Path
    syslogd: Path
    workdir: Path

    def binaries(self) -> dict[str, bytes]:
        return {
            "orchestrator": self.orchestrator.read_bytes(),
            "agent": self.agent.read_bytes(),
            "syslogd": self.syslogd.read_bytes(),
        }
