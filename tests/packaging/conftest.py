"""Fixtures for the packaging tests.

Tests marked ``network`` need the locked wheels: the first run downloads them
from PyPI into the normal wheel cache (``$HATS_CACHE_DIR`` or
``~/.cache/hats``); later runs reuse it and need no network.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from hats.packaging.agents_layer import AgentsTree, build_agents_tree, default_hats_source
from hats.packaging.fetch import default_cache_dir


@pytest.fixture(scope="session")
def hats_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A frozen copy of the ``hats`` sources.

    Other work edits src/hats concurrently; builds that are compared with each
    other must read the same sources.
    """
    target = tmp_path_factory.mktemp("snapshot") / "hats"
    shutil.copytree(
        default_hats_source(), target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    return target


@pytest.fixture(scope="session")
def wheel_cache() -> Path:
    """The real wheel cache (downloads happen once, then it is reused)."""
    return default_cache_dir()


@pytest.fixture(scope="session")
def agents_tree(
    tmp_path_factory: pytest.TempPathFactory, hats_snapshot: Path, wheel_cache: Path
) -> Iterator[AgentsTree]:
    """One agents tree, built once for the session."""
    root = tmp_path_factory.mktemp("agents") / "tree"
    yield build_agents_tree(root, cache_dir=wheel_cache, hats_source=hats_snapshot)
