"""hats.image.diff: what counts as a difference between two effective trees (pure)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from hats.image.diff import EntryChange, ImageDiff, tree_changes
from hats.image.tree import EffectiveTree, Entry

FILE = Entry(
    path="etc/hostname",
    kind="file",
    mode=0o644,
    raw_mode=0o644,
    uid=0,
    gid=0,
    size=4,
    mtime=946684800,
    layer="base",
    name="./etc/hostname",
    sha256="ab" * 32,
)


def tree(*entries: Entry) -> EffectiveTree:
    out = EffectiveTree()
    out.entries = {entry.path: entry for entry in entries}
    return out


@pytest.mark.parametrize(
    "ignored",
    [
        {"uid": 1000},
        {"gid": 1000},
        {"layer": "user-1"},
        {"overrides": ["base#3"]},
        {"name": "etc/hostname"},
    ],
)
def test_ownership_and_provenance_are_not_differences(ignored: dict[str, Any]) -> None:
    """stage1 ignores ownership; where an entry came from is not what it is."""
    assert tree_changes(tree(FILE), tree(dataclasses.replace(FILE, **ignored))) == []


@pytest.mark.parametrize(
    ("changed", "fields"),
    [
        ({"mode": 0o600, "raw_mode": 0o600}, ("mode",)),
        ({"raw_mode": 0o4644}, ("archive_mode",)),
        ({"size": 5, "sha256": "cd" * 32}, ("sha256", "size")),
        ({"mtime": 0}, ("mtime",)),
        ({"kind": "symlink", "linkname": "x", "sha256": None}, ("link", "sha256", "type")),
    ],
)
def test_what_stage1_unpacks_differently_is_a_change(
    changed: dict[str, Any], fields: tuple[str, ...]
) -> None:
    changes = tree_changes(tree(FILE), tree(dataclasses.replace(FILE, **changed)))
    assert [(c.path, c.change, c.fields) for c in changes] == [("/etc/hostname", "changed", fields)]
    assert changes[0].old is not None and "uid" not in changes[0].old


def test_added_and_removed_paths_in_path_order() -> None:
    other = dataclasses.replace(FILE, path="a/new", name="./a/new")
    changes = tree_changes(tree(FILE), tree(other))
    assert [(c.path, c.change) for c in changes] == [
        ("/a/new", "added"),
        ("/etc/hostname", "removed"),
    ]
    assert changes[0].old is None and changes[0].new is not None
    assert "fields" not in changes[0].to_json()


def test_equal_trees_with_other_bytes_are_not_identical() -> None:
    diff = ImageDiff(Path("a"), Path("b"), ("1" * 64, "2" * 64), (), ("xz block size",))
    assert diff.trees_equal and not diff.identical
    assert diff.to_json()["byte_differences"] == ["xz block size"]
    same = ImageDiff(Path("a"), Path("b"), ("1" * 64, "1" * 64), (), ())
    assert same.identical
    changed = ImageDiff(
        Path("a"), Path("b"), ("1" * 64, "2" * 64), (EntryChange("/x", "added", new={}),), ()
    )
    assert not changed.trees_equal and not changed.identical
