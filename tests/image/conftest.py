"""Small but realistic bases and inputs for image tests (no network needed)."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest
from image_support import Inputs, gnu_tar, make_root

import shared_data


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
