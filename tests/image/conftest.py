"""Small but realistic bases and inputs for image tests (no network needed)."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import shared_data

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


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_root(tmp_path_factory.mktemp("toy") / "root")


@pytest.fixture(scope="session")
def bases(toy_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same root as several kinds of base archive (and as a directory)."""
    out = tmp_path_factory.mktemp("bases")
    plain = gnu_tar(toy_root, out / "base.tar", "--format=gnu")
    subprocess.run(["xz", "-T1", "-k", str(plain)], check=True)
    subprocess.run(["gzip", "-k", "-n", str(plain)], check=True)
    subprocess.run(["zstd", "-q", "-k", str(plain), "-o", str(out / "base.tar.zst")], check=True)
    pax = gnu_tar(
        toy_root,
        out / "pax.tar",
        "--format=posix",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
    )
    # Names without "./" and a base whose parent directories are missing.
    bare = gnu_tar(toy_root, out / "bare.tar", "--format=gnu", members=("etc", "usr", "tmp"))
    orphan = out / "orphans.tar"
    with tarfile.open(orphan, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, uid in (("./opt/app/bin/tool", 7), ("var/lib/x/state", 0), ("./etc/", 0)):
            info = tarfile.TarInfo(name)
            info.uid, info.mtime, info.size = uid, 1234, 3
            if name.endswith("/"):
                info.type, info.size = tarfile.DIRTYPE, 0
            tar.addfile(info, io.BytesIO(b"abc") if info.size else None)
        for name in ("usr/bin/sh", "usr/sbin/init", "usr/bin/journalctl"):
            data = (toy_root / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return {
        "tar": plain,
        "xz": out / "base.tar.xz",
        "gz": out / "base.tar.gz",
        "zst": out / "base.tar.zst",
        "pax": pax,
        "bare": bare,
        "orphans": orphan,
    }


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    work = tmp_path_factory.mktemp("inputs")
    paths = {}
    for name in ("orchestrator", "agent", "syslogd"):
        path = work / name
        path.write_bytes(f"#!/bin/sh\necho {name}\n".encode() + bytes(range(256)) * 3)
        path.chmod(0o644)  # the reference forces 0755 whatever the source mode
        paths[name] = path
    return Inputs(workdir=work, **paths)


@pytest.fixture(scope="session")
def reference_units() -> Path:
    return shared_data.UNITS


@pytest.fixture(scope="session")
def reference_keys() -> Path:
    return shared_data.TVS_KEYS
