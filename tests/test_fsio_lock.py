"""hats.fsio.exclusive_lock: the one flock helper of the caches."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from hats.fsio import LockFileError, exclusive_lock


def _try_lock(path: Path) -> bool:
    """Whether another open file description of ``path`` gets the lock now."""
    with open(path, "a+b") as other:
        try:
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(other.fileno(), fcntl.LOCK_UN)
        return True


def test_the_lock_is_exclusive_while_held_and_released_after(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    with exclusive_lock(path) as locked:
        assert locked is True
        assert path.exists()
        assert not _try_lock(path)
    assert _try_lock(path)


def test_the_lock_is_released_when_the_block_fails(tmp_path: Path) -> None:
    path = tmp_path / ".lock"
    with pytest.raises(RuntimeError), exclusive_lock(path):
        raise RuntimeError("inside")
    assert _try_lock(path)


def test_a_lock_file_that_cannot_be_opened(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / ".lock"
    with pytest.raises(LockFileError) as caught, exclusive_lock(missing):
        pytest.fail("the block must not run")
    assert str(caught.value) == f"{missing}: cannot open lock file: No such file or directory"
    with exclusive_lock(missing, optional=True) as locked:
        assert locked is False
    assert not missing.exists()
