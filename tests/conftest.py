"""Shared fixtures for the whole test suite."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from suite_support import short_dir


@pytest.fixture
def work() -> Iterator[Path]:
    """A short, empty work directory, removed after the test (unix socket paths need it)."""
    with short_dir() as path:
        yield path


@pytest.fixture(scope="session")
def default_base_tar() -> Path:
    """The default base tarball (with python3), built at most once per machine.

    Uses the persistent cache (``$HATS_CACHE_DIR`` or ``~/.cache/hats``), so the
    first run on a machine builds it with mmdebstrap (about half a minute with a
    fast mirror) and later runs reuse it. Skipped only when mmdebstrap is not
    installed.
    """
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap is not installed (Debian package 'mmdebstrap')")
    from hats.base import default_cache_dir, ensure_default_base

    return ensure_default_base(with_python=True, cache_dir=default_cache_dir())
