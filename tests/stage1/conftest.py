"""Fixtures for the stage1 tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ORACLE_SOURCE = Path(__file__).parent / "tarrs_oracle"
DEBIAN_CRATES = Path("/usr/share/cargo/registry")


@pytest.fixture(scope="session")
def tarrs_oracle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/stage1/tarrs_oracle built offline against Debian's tar crate."""
    cargo = shutil.which("cargo")
    crates = sorted(DEBIAN_CRATES.glob("tar-0.4.*")) if DEBIAN_CRATES.is_dir() else []
    if cargo is None or not crates or os.geteuid() != 0:
        pytest.skip("needs root, cargo and Debian's librust-tar-dev (the tar-rs oracle)")
    work = tmp_path_factory.mktemp("tarrs")
    shutil.copytree(ORACLE_SOURCE, work / "src-tree")
    config = work / "src-tree" / ".cargo"
    config.mkdir()
    (config / "config.toml").write_text(
        '[source.crates-io]\nreplace-with = "debian"\n'
        f'[source.debian]\ndirectory = "{DEBIAN_CRATES}"\n'
        "[net]\noffline = true\n"
    )
    result = subprocess.run(
        [cargo, "build", "--release", "--offline", "--target-dir", str(work / "target")],
        cwd=work / "src-tree",
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        pytest.skip(f"the tar-rs oracle does not build here: {result.stderr[-300:]}")
    return work / "target" / "release" / "tarrs-oracle"
