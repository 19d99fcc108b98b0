"""F4: stage1 is built with tar-rs 0.4.44, which applies directory entries last,
sorted by their raw path bytes in descending order (stable).

The expectations are F4's consequences, from the fact sheet: ``./etc/`` sorts
below ``etc/`` so the ``./``-spelled entry's mode wins wherever it stands; the
same spelling twice keeps archive order (the later wins).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from stage1_support import Spec, archive, tree_of

from hats.archive.tarstream import TarReader, TarWriter
from hats.image.compose import compose, read_tree
from hats.image.layers import ArchiveLayer
from hats.image.lint import lint
from hats.stage1.unpack import unpack_image


def _unpacked_mode(data: bytes, tmp_path: Path, path: str) -> int:
    root = tmp_path / "root"
    unpack_image(io.BytesIO(data), root)
    return (root / path).stat().st_mode & 0o7777


@pytest.mark.parametrize("dot_first", [True, False])
def test_f4_dot_slash_spelling_wins_wherever_it_stands(tmp_path: Path, dot_first: bool) -> None:
    dot = Spec("./etc", "dir", mode=0o700)
    plain = Spec("etc", "dir", mode=0o755)
    specs = [dot, Spec("etc/passwd", data=b"root"), plain]
    if not dot_first:
        specs = [plain, Spec("etc/passwd", data=b"root"), dot]
    data = archive(*specs)
    assert _unpacked_mode(data, tmp_path, "etc") == 0o700
    entry = tree_of(data).lookup("etc")
    assert entry is not None and entry.mode == 0o700


def test_f4_same_spelling_keeps_archive_order(tmp_path: Path) -> None:
    data = archive(Spec("./etc", "dir", mode=0o700), Spec("./etc", "dir", mode=0o751))
    assert _unpacked_mode(data, tmp_path, "etc") == 0o751
    entry = tree_of(data).lookup("etc")
    assert entry is not None and entry.mode == 0o751
    assert tree_of(data).sorting_overrides == []


def test_f4_inspect_and_lint_see_the_sorted_mode() -> None:
    data = archive(Spec("./etc", "dir", mode=0o755), Spec("etc", "dir", mode=0o700))
    tree = read_tree(TarReader(io.BytesIO(data), "image"))
    entry = tree.lookup("etc")
    assert entry is not None and entry.mode == 0o755 and entry.name == "./etc"
    findings = [f for f in lint(tree) if f.code == "dir-mode-order"]
    assert len(findings) == 1
    assert findings[0].severity == "warning" and findings[0].path == "etc"
    assert "0700" in findings[0].message and "./etc" in findings[0].message


def test_f4_builder_lint_warns_when_a_user_layer_mode_is_overridden(tmp_path: Path) -> None:
    """A user tar layer sets ``etc/`` to 0700 over a base that spells it ``./etc/`` (0755):
    the reference's stage1 keeps 0755, and so do our tree and our stage1; lint warns."""
    base = tmp_path / "base.tar"
    base.write_bytes(archive(Spec("./etc", "dir", mode=0o755), Spec("./etc/hosts", data=b"h")))
    user = tmp_path / "user.tar"
    user.write_bytes(archive(Spec("etc", "dir", mode=0o700), Spec("etc/secret", data=b"s")))
    out = io.BytesIO()
    tree = compose([ArchiveLayer("base", base), ArchiveLayer("user", user)], TarWriter(out.write))
    entry = tree.lookup("etc")
    assert entry is not None and entry.mode == 0o755
    warnings = [f for f in lint(tree) if f.code == "dir-mode-order"]
    assert [w.severity for w in warnings] == ["warning"]
    assert "0700" in warnings[0].message and "layer base" in warnings[0].message
    assert _unpacked_mode(out.getvalue(), tmp_path, "etc") == 0o755


def test_f4_same_mode_in_both_spellings_is_not_worth_a_warning() -> None:
    data = archive(Spec("./etc", "dir", mode=0o755), Spec("etc", "dir", mode=0o755))
    assert [f for f in lint(tree_of(data)) if f.code == "dir-mode-order"] == []
