"""Shared fixtures for the whole test suite."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from suite_support import short_dir

if TYPE_CHECKING:  # imported by the fixture that needs it: a fast start for the rest
    from hats.packaging.agents_layer import AgentsTree


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Under pytest-xdist (``-n``) the ``slow`` tests take turns: each holds a
    lock shared by the run's workers from its setup (session fixtures such as
    the default base included) to its teardown, so two VM boots or two builds
    into one cache never run at the same time.

    A ``vm`` test (a QEMU guest under TCG) also runs alone: it takes a second
    lock exclusively, which every other test holds shared while it runs. An
    emulated guest starved of CPU by the other worker can hang in the kernel's
    early timekeeping (microvm's jiffies clocksource; seen through Oak stage0
    on a loaded machine), which is the emulator's limit, not the product's.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return (yield)
    root = Path(item.config.option.basetemp).parent  # the run's temp root (popen-gwN's parent)
    with contextlib.ExitStack() as locks:
        if item.get_closest_marker("slow") is not None:
            locks.enter_context(_flock(root / "slow-tests.lock", fcntl.LOCK_EX))
        alone = item.get_closest_marker("vm") is not None
        locks.enter_context(
            _flock(root / "vm-alone.lock", fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        )
        return (yield)


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


@pytest.fixture(scope="session")
def hats_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A frozen copy of the ``hats`` sources.

    Other work edits src/hats concurrently; builds that are compared with each
    other must read the same sources.
    """
    from hats.packaging.agents_layer import default_hats_source

    target = tmp_path_factory.mktemp("snapshot") / "hats"
    shutil.copytree(
        default_hats_source(), target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    return target


@pytest.fixture(scope="session")
def wheel_cache() -> Path:
    """The real wheel cache (``$HATS_CACHE_DIR`` or ``~/.cache/hats``).

    Tests marked ``network`` need the locked wheels: the first run downloads
    them from PyPI into it; later runs reuse it and need no network.
    """
    from hats.packaging.fetch import default_cache_dir

    return default_cache_dir()


@pytest.fixture(scope="session")
def agents_tree(
    tmp_path_factory: pytest.TempPathFactory, hats_snapshot: Path, wheel_cache: Path
) -> AgentsTree:
    """One agents tree (the locked wheels and ``hats``), built once for the session."""
    from hats.packaging.agents_layer import build_agents_tree

    root = tmp_path_factory.mktemp("agents") / "tree"
    return build_agents_tree(root, cache_dir=wheel_cache, hats_source=hats_snapshot)
