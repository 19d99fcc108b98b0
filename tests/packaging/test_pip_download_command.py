"""The lock's resolution and the locked fetch run one ``pip download`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from hats import toolrun
from hats.packaging import fetch, lock
from hats.packaging.lockfile import LockedRequirement, pip_download_command


class Stop(Exception):
    """Raised by the fake runner: the command line is all the test needs."""


def _capture(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    seen: list[list[str]] = []

    def fake_run(argv: list[str], **_kwargs: Any) -> toolrun.ToolResult:
        seen.append([str(arg) for arg in argv])
        raise Stop

    monkeypatch.setattr(toolrun, "run", fake_run)
    return seen


def test_both_downloads_are_pip_download_for_the_image_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _capture(monkeypatch)
    with pytest.raises(Stop):
        lock.download_resolved(["grpcio"], tmp_path / "resolved")
    requirement = LockedRequirement(name="six", version="1.16.0", sha256=("ab" * 32,), line=1)
    with pytest.raises(Stop):
        fetch._download(requirement, tmp_path / "cache")
    resolved, fetched = seen
    assert resolved == pip_download_command(tmp_path / "resolved", "grpcio")
    assert resolved[:4] == [sys.executable, "-m", "pip", "download"]
    # The wheels are the in-image interpreter's (CPython 3.11 on x86-64 Linux), binary only.
    for command in (resolved, fetched):
        assert "--only-binary=:all:" in command
        assert command[command.index("--python-version") + 1] == "3.11"
        assert command[command.index("--implementation") + 1] == "cp"
    # The locked fetch: one requirement, its hashes required, nothing resolved.
    dest = Path(fetched[fetched.index("--dest") + 1])
    requirement_file = fetched[fetched.index("--requirement") + 1]
    assert fetched == pip_download_command(
        dest, "--require-hashes", "--no-deps", "--requirement", requirement_file
    )
