"""``hats image diff``'s rules: what counts as a difference between two images — pure.

Rules:

- The **effective trees** are compared first (what stage1 unpacks, see
  :mod:`hats.image.tree`), path by path: a path only in the second image is
  *added*, only in the first *removed*, in both with other values *changed*.
- What counts for an entry: its type, mode (as stage1 applies it, and the
  archive's special bits), size, content digest, link target, device numbers
  and mtime. **Ownership is ignored**, as stage1 ignores it; so are the layer
  an entry came from and the entries it overrode (how it was built, not what
  it is).
- Images whose **bytes** differ are never "the same": with equal trees the
  reasons the bytes differ are named (:func:`hats.image.bytesdiff.explain`:
  compression layout, block size, tar padding, ownership, …).

:func:`diff_images` reads two images and returns an :class:`ImageDiff`; the
CLI only formats it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hats.image.tree import EffectiveTree, Entry

#: ``Entry.to_json`` keys that never make a difference (module rules).
IGNORED = ("layer", "overrides", "uid", "gid")

Change = Literal["added", "removed", "changed"]


def comparable(entry: Entry) -> dict[str, object]:
    """The values of ``entry`` that count (module rules), named as in ``Entry.to_json``."""
    doc = entry.to_json()
    for key in IGNORED:
        doc.pop(key, None)
    doc["mtime"] = entry.mtime
    return doc


@dataclass(frozen=True)
class EntryChange:
    """One path that differs: ``/path``, how, the fields that differ (changed only)."""

    path: str
    change: Change
    old: dict[str, object] | None = None
    new: dict[str, object] | None = None
    fields: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {"path": self.path, "change": self.change}
        if self.change == "changed":
            doc["fields"] = list(self.fields)
        if self.old is not None:
            doc["old"] = self.old
        if self.new is not None:
            doc["new"] = self.new
        return doc


def tree_changes(a: EffectiveTree, b: EffectiveTree) -> list[EntryChange]:
    """Every path whose entry differs between ``a`` and ``b`` (module rules), sorted."""
    changes: list[EntryChange] = []
    for path in sorted(set(a.entries) | set(b.entries)):
        old, new = a.entries.get(path), b.entries.get(path)
        if old is None:
            assert new is not None
            changes.append(EntryChange("/" + path, "added", new=comparable(new)))
        elif new is None:
            changes.append(EntryChange("/" + path, "removed", old=comparable(old)))
        else:
            before, after = comparable(old), comparable(new)
            if before != after:
                fields = sorted(
                    k for k in set(before) | set(after) if before.get(k) != after.get(k)
                )
                changes.append(EntryChange("/" + path, "changed", before, after, tuple(fields)))
    return changes


@dataclass(frozen=True)
class ImageDiff:
    """Two images compared: their digests, the tree changes and why the bytes differ."""

    first: Path
    second: Path
    sha256: tuple[str, str]
    changes: tuple[EntryChange, ...]
    byte_differences: tuple[str, ...]

    @property
    def identical(self) -> bool:
        """The files are byte for byte the same (the only "no difference")."""
        return self.sha256[0] == self.sha256[1]

    @property
    def trees_equal(self) -> bool:
        return not self.changes

    def to_json(self) -> dict[str, object]:
        return {
            "first": str(self.first),
            "second": str(self.second),
            "sha256": list(self.sha256),
            "identical": self.identical,
            "trees_equal": self.trees_equal,
            "changes": [change.to_json() for change in self.changes],
            "byte_differences": list(self.byte_differences),
        }


def diff_images(first: Path, second: Path) -> ImageDiff:
    """Read both images (each once) and compare them (module rules)."""
    from hats.image.bytesdiff import explain, read_image

    a, facts_a = read_image(first)
    b, facts_b = read_image(second)
    return ImageDiff(
        first=first,
        second=second,
        sha256=(facts_a.sha256, facts_b.sha256),
        changes=tuple(tree_changes(a, b)),
        byte_differences=tuple(explain(facts_a, facts_b)),
    )


__all__ = ["IGNORED", "EntryChange", "ImageDiff", "comparable", "diff_images", "tree_changes"]
