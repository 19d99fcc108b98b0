"""The container bundle from a hostile launcher: deep paths cost time linear in
the bundle, and a path is refused where Linux refuses it (``PATH_MAX``)."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from orch_ipc_support import directory, link, minimal, reg

from hats.orchestrator.bundle import PATH_MAX, BundleError, unpack_bundle

SOCKET = "/run/oak_containers_orchestrator/oak_utils/orchestrator_ipc"


@pytest.fixture
def container() -> Iterator[Path]:
    """A fresh container directory, on tmpfs when there is one (a disk's own cost
    of deep directories is not what is measured), removed with ``rm -rf``
    (``shutil.rmtree`` recurses once per level)."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="hats-bundle-", dir=base))
    try:
        yield path / "container"
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=True)


def unpack(bundle: bytes, container: Path) -> float:
    """Unpack; the CPU seconds it took (a busy machine does not stretch them)."""
    start = time.process_time()
    unpack_bundle(bundle, container, uid=None, gid=None, ipc_socket_path=SOCKET)
    return time.process_time() - start


def chain(levels: int, mode: int = 0o751) -> bytes:
    """``rootfs/d/``, ``rootfs/d/d/``, … ``levels`` directory entries deep."""
    return minimal(*(directory("rootfs/" + "d/" * depth, mode) for depth in range(1, levels + 1)))


def open_path(root: Path, parts: list[str]) -> int:
    """An O_PATH descriptor of ``root/parts`` reached one component at a time."""
    fd = os.open(root, os.O_PATH)
    for part in parts:
        child = os.open(part, os.O_PATH | os.O_NOFOLLOW, dir_fd=fd)
        os.close(fd)
        fd = child
    return fd


def mode_at(root: Path, parts: list[str]) -> int:
    fd = open_path(root, parts[:-1])
    try:
        return stat.S_IMODE(os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode)
    finally:
        os.close(fd)


def test_four_thousand_levels_are_refused_in_well_under_a_second(container: Path) -> None:
    """Was 34 s in finish() alone (every directory mode applied by a walk from
    the top) and as long again unpacking; now refused at the first member whose
    path reaches PATH_MAX."""
    data = chain(4000)
    start = time.process_time()
    with pytest.raises(BundleError) as info:
        unpack(data, container)
    assert time.process_time() - start < 1.0
    message = str(info.value)
    assert "\n" not in message
    first_too_long = "rootfs/" + "d/" * 2045  # 7 + 4090 - 1 = 4096 bytes without the slash
    assert f"member {first_too_long.rstrip('/')!r}" in message
    assert "path is 4096 bytes, the limit is 4095 (PATH_MAX)" in message


def test_two_thousand_levels_unpack_in_well_under_a_second(container: Path) -> None:
    levels = 2040  # rootfs/ + 2040 × d/: 4087 bytes
    elapsed = unpack(chain(levels), container)
    assert elapsed < 1.0, f"{levels} levels took {elapsed:.2f} s"
    parts = ["rootfs", *["d"] * levels]
    assert mode_at(container, parts) == 0o751
    assert mode_at(container, parts[: levels // 2]) == 0o751
    assert mode_at(container, ["rootfs"]) == 0o755


def test_one_deep_member_with_implicit_parents_is_linear(container: Path) -> None:
    """One member makes 2,000 missing parents (each 0755)."""
    name = "rootfs/" + "d/" * 2000 + "f"
    elapsed = unpack(minimal(reg(name, b"deep")), container)
    assert elapsed < 1.0, f"took {elapsed:.2f} s"
    parts = name.split("/")
    assert mode_at(container, parts[:-1]) == 0o755
    assert mode_at(container, parts[:1000]) == 0o755
    parent = open_path(container, parts[:-1])
    try:
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=parent)
    finally:
        os.close(parent)
    with os.fdopen(fd, "rb") as handle:
        assert handle.read() == b"deep"


def test_the_longest_path_is_accepted_and_path_max_refused(container: Path) -> None:
    name = "rootfs/" + "/".join(["p" * 200] * 20)
    name += "/" + "q" * (PATH_MAX - 1 - len(name) - 1)
    assert len(name) == PATH_MAX - 1
    unpack(minimal(reg(name)), container / "ok")
    with pytest.raises(BundleError, match="path is 4096 bytes"):
        unpack(minimal(reg(name + "q")), container / "refused")
    target = name + "q"
    with pytest.raises(BundleError, match="hard link target is 4096 bytes"):
        unpack(minimal(link("rootfs/l", target, kind=b"1")), container / "link")


def test_a_mode_that_forbids_entry_is_applied_after_everything_below(container: Path) -> None:
    """Directory modes go on after their subtree, whatever the order of the archive."""
    deep = "rootfs/a/" + "b/" * 100
    data = minimal(
        directory("rootfs/a", 0o500),
        directory(deep, 0o700),
        reg(deep + "f"),
        directory("rootfs/a/b/c", 0o000),
        reg("rootfs/a/b/c/g"),
        directory("rootfs/z", 0o555),
    )
    unpack(data, container)
    assert mode_at(container, ["rootfs", "a"]) == 0o500
    assert mode_at(container, ["rootfs", "a", "b", "c"]) == 0o000
    assert mode_at(container, deep.rstrip("/").split("/")) == 0o700
    assert mode_at(container, ["rootfs", "z"]) == 0o555


def test_hard_links_across_deep_directories(container: Path) -> None:
    one = "rootfs/" + "x/" * 300 + "f"
    other = "rootfs/" + "y/" * 300 + "g"
    data = minimal(
        reg(one, b"shared"), link(other, one, kind=b"1"), reg("rootfs/" + "x/" * 299 + "h")
    )
    unpack(data, container)
    first = open_path(container, one.split("/"))
    second = open_path(container, other.split("/"))
    try:
        assert os.fstat(first).st_ino == os.fstat(second).st_ino
    finally:
        os.close(first)
        os.close(second)


def test_no_descriptor_stays_open(container: Path) -> None:
    before = set(os.listdir("/proc/self/fd"))
    unpack(chain(100), container / "ok")
    with pytest.raises(BundleError):
        unpack(chain(2100), container / "refused")
    with pytest.raises(BundleError):
        unpack(
            minimal(reg("rootfs/" + "d/" * 70 + "f"), reg("rootfs/" + "d/" * 70 + "f/x")),
            container / "bad",
        )
    assert set(os.listdir("/proc/self/fd")) == before
