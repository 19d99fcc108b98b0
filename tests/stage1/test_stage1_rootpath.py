"""hats.stage1.rootpath: resolution inside a root, as after chroot."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from hats.stage1.rootpath import Root, split


@pytest.fixture
def root(tmp_path: Path) -> Root:
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/sh").write_bytes(b"")
    os.symlink("usr/bin", tmp_path / "bin")
    os.symlink("/usr", tmp_path / "abs")
    os.symlink("../../../../..", tmp_path / "up")
    os.symlink("loop2", tmp_path / "loop1")
    os.symlink("loop1", tmp_path / "loop2")
    os.symlink("nowhere", tmp_path / "dangling")
    return Root(str(tmp_path))


def test_symlinks_resolve_from_the_root(root: Root) -> None:
    assert root.resolve(split("bin/sh"), follow_final=True, strict=True) == ["usr", "bin", "sh"]
    assert root.resolve(split("abs/bin"), follow_final=True, strict=True) == ["usr", "bin"]
    assert root.resolve(split("up/usr/../usr"), follow_final=True, strict=True) == ["usr"]
    assert root.resolve(split("../../.."), follow_final=True, strict=True) == []
    assert root.resolve(split("bin/new"), follow_final=True, strict=False) == ["usr", "bin", "new"]


def test_the_final_component_is_followed_only_when_asked(root: Root) -> None:
    assert root.resolve(["bin"], follow_final=False, strict=True) == ["bin"]
    assert root.resolve(["dangling"], follow_final=False, strict=True) == ["dangling"]
    assert root.resolve(["dangling"], follow_final=True, strict=False) == ["nowhere"]
    assert root.lexists(["dangling"]) and not root.lexists(["dangling", "x"])


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("loop1", errno.ELOOP),
        ("dangling", errno.ENOENT),
        ("usr/bin/sh/x", errno.ENOTDIR),
        ("missing/x", errno.ENOENT),
    ],
)
def test_failures_are_the_kernels(root: Root, path: str, code: int) -> None:
    with pytest.raises(OSError) as info:
        root.resolve(split(path), follow_final=True, strict=True)
    assert info.value.errno == code


def test_the_host_path_never_leaves_the_root(root: Root, tmp_path: Path) -> None:
    for path in ("up/usr/bin/x", "/abs/../../../usr", "bin/../../..", "up/up/abs/bin/sh"):
        host = root.host(root.resolve(split(path), follow_final=True, strict=False))
        assert host == str(tmp_path) or host.startswith(str(tmp_path) + "/")
