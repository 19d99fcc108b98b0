"""One reproducible epoch: every deterministic output stamps 2000-01-01T00:00:00Z."""

from __future__ import annotations

from datetime import UTC, datetime

from hats import reproducible
from hats.archive import tarformat
from hats.base import recipe
from hats.demo import sample_bundle
from hats.packaging import agents_layer
from hats.vm import tree


def test_epoch_is_2000_01_01_utc() -> None:
    # rules_pkg's portable mtime and Oak's tar --mtime='2000-01-01Z'.
    assert int(datetime(2000, 1, 1, tzinfo=UTC).timestamp()) == reproducible.EPOCH


def test_every_deterministic_writer_uses_the_one_epoch() -> None:
    assert tarformat.PORTABLE_MTIME == reproducible.EPOCH
    assert recipe.SOURCE_DATE_EPOCH == reproducible.EPOCH
    assert tree.TREE_MTIME == reproducible.EPOCH
    assert sample_bundle._MTIME == reproducible.EPOCH
    assert agents_layer.TREE_MTIME == reproducible.EPOCH
