"""hats.stage1.finish: stage1's steps after unpacking."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hats.stage1.errors import (
    DiceWriteError,
    DockerenvError,
    FinishError,
    MachineIdError,
    OakDirError,
    OakDirExistsError,
)
from hats.stage1.finish import (
    create_oak_dir,
    ensure_machine_id,
    finish_root,
    remove_dockerenv,
    write_dice,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    return tmp_path


def test_the_steps_in_order_on_a_plain_root(root: Path) -> None:
    (root / ".dockerenv").write_bytes(b"")
    report = finish_root(root, b"\x0adice-data")
    assert report.machine_id_created and report.dockerenv_removed
    assert (root / "etc/machine-id").read_bytes() == b""
    assert report.dice_path == root / "oak/dice"
    assert (root / "oak/dice").read_bytes() == b"\x0adice-data"
    assert stat.S_IMODE(os.stat(root / "oak/dice").st_mode) == 0o600
    assert not (root / ".dockerenv").exists()


def test_an_existing_machine_id_is_kept(root: Path) -> None:
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    assert ensure_machine_id(root) is False
    assert (root / "etc/machine-id").read_text().startswith("0123")


def test_a_dangling_machine_id_symlink_gets_its_target_created_inside_the_root(
    tmp_path: Path,
) -> None:
    """As ``fs::write`` in the chrooted stage1: the link is followed, from the root."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "run").mkdir()
    (tmp_path / "run").mkdir()
    os.symlink("/run/machine-id", root / "etc/machine-id")
    assert ensure_machine_id(root) is True
    assert (root / "run/machine-id").read_bytes() == b""
    assert list((tmp_path / "run").iterdir()) == []


def test_machine_id_without_etc_fails(tmp_path: Path) -> None:
    with pytest.raises(MachineIdError, match="machine-id"):
        ensure_machine_id(tmp_path)


@pytest.mark.parametrize("what", ["dir", "file", "dangling-symlink"])
def test_the_image_must_not_contain_oak(root: Path, what: str) -> None:
    if what == "dir":
        (root / "oak").mkdir()
    elif what == "file":
        (root / "oak").write_bytes(b"")
    else:
        os.symlink("/nowhere", root / "oak")
    with pytest.raises(OakDirExistsError, match="the image must not contain /oak"):
        finish_root(root, b"dice")


def test_oak_dir_other_failures(tmp_path: Path) -> None:
    with pytest.raises(OakDirError):
        create_oak_dir(tmp_path / "missing-root")


def test_dice_is_a_new_file_never_written_through_a_link(root: Path) -> None:
    create_oak_dir(root)
    os.symlink("/etc/passwd", root / "oak/dice")
    with pytest.raises(DiceWriteError):
        write_dice(root, b"secret")
    assert (root / "oak/dice").is_symlink()


def test_dockerenv_absent_or_unremovable(root: Path) -> None:
    assert remove_dockerenv(root) is False
    (root / ".dockerenv").mkdir()
    with pytest.raises(DockerenvError):
        remove_dockerenv(root)


def test_finish_errors_share_a_base() -> None:
    for cls in (MachineIdError, OakDirExistsError, OakDirError, DiceWriteError, DockerenvError):
        assert issubclass(cls, FinishError)
