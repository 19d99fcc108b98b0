"""The wheel is the product: installed alone, without the source tree, it runs.

Builds the wheel from a copy of the sources (as ``pip wheel .`` does for a
user), installs it into a fresh virtualenv (dependencies resolved by pip, as a
user gets them) and runs the commands that need package data from a
directory far from the checkout: ``hats --version``, ``hats demo`` (the sample
workload script is package data) and ``hats vm workload-bundle``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import hats

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.network]


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with only the built wheel (and its dependencies) in it."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    wheels = work / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         str(source), "-w", str(wheels)],
        check=True, capture_output=True, cwd=work,
    )  # fmt: skip
    (wheel,) = wheels.glob("hats-*.whl")
    venv = work / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=_clean_env()
    )
    # pip from the test's environment installs into the fresh venv (--python).
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "-q", str(wheel)],
        check=True, capture_output=True, cwd=work, env=_clean_env(),
    )  # fmt: skip
    return venv


def _hats(
    venv: Path, *args: str, cwd: Path, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "hats"), *args],
        capture_output=True, text=True, cwd=cwd, env=_clean_env(), timeout=timeout,
    )  # fmt: skip


def test_the_installed_package_is_not_the_source_tree(installed: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import hats; print(hats.__file__)"],
        check=True, capture_output=True, text=True, cwd=tmp_path, env=_clean_env(),
    ).stdout.strip()  # fmt: skip
    assert Path(out).is_relative_to(installed)
    assert not Path(out).is_relative_to(ROOT)
    version = _hats(installed, "--version", cwd=tmp_path)
    assert version.stdout == f"hats, version {hats.__version__}\n"


def test_the_wheel_runs_the_demo(installed: Path, tmp_path: Path) -> None:
    result = _hats(installed, "demo", "--workdir", str(tmp_path / "demo"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "workload: key_id=64" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("OK: the workload got key")


def test_the_wheel_makes_the_vm_workload_bundle(installed: Path, tmp_path: Path) -> None:
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap is not installed (Debian package 'mmdebstrap')")
    out = tmp_path / "bundle.tar"
    result = _hats(installed, "vm", "workload-bundle", "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    script = (ROOT / "src" / "hats" / "demo" / "workload" / "get_keys.py").read_bytes()
    with tarfile.open(out) as bundle:
        member = bundle.extractfile("rootfs/app/get_keys.py")
        assert member is not None and member.read() == script
        assert "config.json" in bundle.getnames()
