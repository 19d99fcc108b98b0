"""One cache directory rule: $HATS_CACHE_DIR if set and not empty, else ~/.cache/hats."""

from __future__ import annotations

from pathlib import Path

import pytest

from hats import cachedir
from hats.archive import blockcache
from hats.base import cache as base_cache
from hats.packaging import fetch


def test_env_wins_empty_means_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HATS_CACHE_DIR", str(tmp_path / "c"))
    assert cachedir.default_cache_dir() == tmp_path / "c"
    monkeypatch.setenv("HATS_CACHE_DIR", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cachedir.default_cache_dir() == tmp_path / "home" / ".cache" / "hats"


def test_every_cache_user_shares_the_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HATS_CACHE_DIR", str(tmp_path))
    assert base_cache.default_cache_dir() == tmp_path
    assert fetch.default_cache_dir() == tmp_path
    assert blockcache.default_block_cache_dir() == tmp_path / "xz-blocks"
    assert base_cache.CACHE_ENV == cachedir.CACHE_ENV == "HATS_CACHE_DIR"
