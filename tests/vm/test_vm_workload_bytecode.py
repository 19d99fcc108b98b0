"""The workload bundle ships deterministic bytecode for its packages (issue 16 item 3).

PEP 552 (the pyc header: magic, flags word 0b01 = hash-based and unchecked,
the source's SipHash from importlib.util.source_hash) and the interpreter's
rule that an unchecked-hash pyc is used whatever its source says.
"""

from __future__ import annotations

import importlib.util
import marshal
import subprocess
import sys
from pathlib import Path

import pytest

from hats.packaging.agents_layer import bytecode_interpreter
from hats.vm.workload import DIST_PACKAGES, workload_packages

pytestmark = pytest.mark.skipif(
    bytecode_interpreter() is None, reason="pycs are only compiled by CPython 3.11"
)
TYPING = b"VALUE = 'typing_extensions from the site'\n"
GRPC = b"from grpc._channel import CHANNEL\n"
CHANNEL = b"CHANNEL = 'grpc channel'\n"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "grpc" / "__pycache__").mkdir(parents=True)
    (site / "grpc" / "__init__.py").write_bytes(GRPC)
    (site / "grpc" / "_channel.py").write_bytes(CHANNEL)
    # The agents layer's own pyc, compiled for /usr/lib/hats/python: must not be copied.
    (site / "grpc" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"agents pyc")
    (site / "typing_extensions.py").write_bytes(TYPING)
    (site / "__pycache__").mkdir()
    (site / "__pycache__" / "typing_extensions.cpython-311.pyc").write_bytes(b"agents pyc")
    (site / "grpcio-1.0.dist-info").mkdir()
    (site / "grpcio-1.0.dist-info" / "METADATA").write_text("Name: grpcio\n")
    return site


def test_every_module_has_an_unchecked_hash_pyc_with_its_bundle_path(site: Path) -> None:
    tree = workload_packages(site)
    for module, source in [
        ("typing_extensions", TYPING),
        ("grpc/__init__", GRPC),
        ("grpc/_channel", CHANNEL),
    ]:
        folder, _, stem = f"{DIST_PACKAGES}/{module}".rpartition("/")
        entry = tree.get(f"{folder}/__pycache__/{stem}.cpython-311.pyc")
        assert entry is not None, module
        pyc = entry.data
        assert pyc[:4] == importlib.util.MAGIC_NUMBER
        assert int.from_bytes(pyc[4:8], "little") == 0b01
        assert pyc[8:16] == importlib.util.source_hash(source)
        assert marshal.loads(pyc[16:]).co_filename == f"/{folder}/{stem}.py"
    pycs = [name for name, _ in tree.items() if name.endswith(".pyc")]
    assert len(pycs) == 3  # the agents layer's pycs were left out


def test_the_bytecode_is_reproducible(site: Path) -> None:
    first = list(workload_packages(site).items())
    second = list(workload_packages(site).items())
    assert first == second


def test_the_workload_python_uses_the_pyc_and_compiles_nothing(site: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    for name, entry in workload_packages(site).items():
        path = root / name
        if entry.kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(entry.data)
    packages = root / DIST_PACKAGES
    # An unchecked pyc is used whatever the source now says: proof it is loaded.
    (packages / "typing_extensions.py").write_bytes(b"raise SystemExit('source compiled')\n")
    before = sorted(p.name for p in packages.rglob("*.pyc"))
    script = (
        f"import sys; sys.path.insert(0, {str(packages)!r}); "
        "import typing_extensions, grpc; print(typing_extensions.VALUE, grpc.CHANNEL)"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(packages)!r}); {script}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "typing_extensions from the site grpc channel\n"
    assert sorted(p.name for p in packages.rglob("*.pyc")) == before
