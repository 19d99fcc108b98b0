"""Files holding secrets or private keys are mode 0600 from their first byte (issue item 11).

The demo used to write ``secrets.toml`` with the umask's mode (0644) and
chmod it afterwards: for a moment every local user could read the secret.
Here every ``chmod`` is made a no-op: what is left is the mode the file was
created with, which must already be 0600.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from hats.demo import write_secrets_file
from hats.fsio import PRIVATE_MODE, atomic_output, write_bytes_atomic
from hats.keys.cli import keys_group


@pytest.fixture
def no_chmod(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every chmod does nothing (and is recorded); the umask is the usual 022."""
    calls: list[str] = []
    monkeypatch.setattr(os, "chmod", lambda *a, **k: calls.append("chmod"))
    monkeypatch.setattr(os, "fchmod", lambda *a, **k: calls.append("fchmod"))
    monkeypatch.setattr(Path, "chmod", lambda *a, **k: calls.append("Path.chmod"))
    old = os.umask(0o022)
    try:
        yield calls
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_demo_secrets_file_is_created_0600(tmp_path: Path, no_chmod: list[str]) -> None:
    path = write_secrets_file(tmp_path / "secrets.toml", b"\x04" * 65, ['private_key = "00"'])
    assert mode(path) == 0o600
    assert 'private_key = "00"' in path.read_text()


def test_the_demo_secrets_file_ends_0600(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = write_secrets_file(tmp_path / "secrets.toml", b"\x04" * 65, ["shares = []"])
    finally:
        os.umask(old)
    assert mode(path) == 0o600


def test_atomic_output_is_private_while_it_is_written(tmp_path: Path) -> None:
    target = tmp_path / "key"
    with atomic_output(target, PRIVATE_MODE) as handle:
        handle.write(b"secret")
        assert stat.S_IMODE(os.fstat(handle.fileno()).st_mode) == 0o600
        others = [p for p in tmp_path.iterdir() if p != target]
        assert [mode(p) for p in others] == [0o600]
    assert mode(target) == 0o600
    write_bytes_atomic(target, b"public", 0o644)
    assert mode(target) == 0o644


def test_keys_gen_private_out_is_created_0600(tmp_path: Path, no_chmod: list[str]) -> None:
    out = tmp_path / "tvs.key"
    result = CliRunner().invoke(keys_group, ["gen", "--private-out", str(out)])
    assert result.exit_code == 0, result.output
    assert mode(out) == 0o600
    assert out.read_text().strip() not in result.output
