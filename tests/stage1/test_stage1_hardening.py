"""hats.stage1.unpack against hostile images: deep paths cost time linear in the
archive, and a path is refused where the kernel refuses it (``PATH_MAX``)."""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from stage1_support import Spec, archive

from hats.stage1.errors import LinkTargetError, UnpackOSError
from hats.stage1.unpack import PATH_MAX, unpack_image

#: Linux refuses a path of PATH_MAX (4096) bytes or more, NUL excluded: 4095 is the longest.
LONGEST = 4095


@pytest.fixture
def dest() -> Iterator[Path]:
    """A fresh directory, on tmpfs when there is one (the guest unpacks into RAM; a
    disk's own cost of deep directories is not what these tests measure). Removed
    with ``rm -rf``: ``shutil.rmtree`` recurses once per level."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="hats-deep-", dir=base))
    try:
        yield path / "root"
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=True)


def deep_archive(levels: int) -> bytes:
    """``d/``, ``d/f``, ``d/d/``, ``d/d/f``, … ``levels`` deep (each level a
    directory entry and a file in it)."""
    specs = []
    for depth in range(1, levels + 1):
        specs.append(Spec("d/" * depth, "dir", mode=0o755))
        specs.append(Spec("d/" * depth + "f", data=b"x"))
    return archive(*specs)


def timed_unpack(data: bytes, dest: Path) -> float:
    start = time.perf_counter()
    unpack_image(io.BytesIO(data), dest)
    return time.perf_counter() - start


def test_a_thousand_levels_unpack_in_well_under_a_second(dest: Path) -> None:
    """Was 54 s (each path resolved one full host path per component, for every
    ancestor of every entry: cubic in the depth)."""
    data = deep_archive(1000)
    elapsed = timed_unpack(data, dest)
    assert elapsed < 1.0, f"1,000 levels took {elapsed:.2f} s"
    deepest = os.open(dest, os.O_PATH)
    try:
        for _ in range(1000):
            child = os.open("d", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=deepest)
            os.close(deepest)
            deepest = child
        assert os.stat("f", dir_fd=deepest).st_size == 1
    finally:
        os.close(deepest)


def test_the_cost_per_level_does_not_grow_with_the_depth(dest: Path) -> None:
    """Twice the levels (so four times the archive's name bytes) must not cost
    much more than four times: a quadratic walk would cost eight, a cubic one 16."""
    small = timed_unpack(deep_archive(300), dest / "small")
    large = timed_unpack(deep_archive(600), dest / "large")
    assert large < 6 * small + 0.05, f"300 levels: {small:.3f} s, 600 levels: {large:.3f} s"


def name_of(size: int) -> str:
    """A relative name whose ``/<name>`` is ``size`` bytes (components of 200 bytes)."""
    body = size - 1
    parts = []
    while body > 0:
        part = min(200, body)
        parts.append("p" * part)
        body -= part + 1
    name = "/".join(parts)
    assert len("/" + name) == size, len(name)
    return name


def test_the_longest_path_the_kernel_accepts_unpacks(dest: Path) -> None:
    name = name_of(LONGEST)
    unpack_image(io.BytesIO(archive(Spec(name, data=b"x"))), dest)
    fd = os.open(dest, os.O_PATH)
    try:
        parts = name.split("/")
        for part in parts[:-1]:
            child = os.open(part, os.O_PATH | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        assert os.stat(parts[-1], dir_fd=fd).st_size == 1
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind", ["file", "dir", "symlink"])
def test_a_path_of_path_max_bytes_is_refused_naming_the_member(dest: Path, kind: str) -> None:
    """tar-rs hands the kernel ``/<name>``: ENAMETOOLONG at PATH_MAX bytes."""
    assert PATH_MAX == 4096
    name = name_of(PATH_MAX)
    data = archive(Spec("ok", data=b"x"), Spec(name, kind, data=b"", link="ok"))
    start = time.perf_counter()
    with pytest.raises(UnpackOSError) as info:
        unpack_image(io.BytesIO(data), dest)
    assert time.perf_counter() - start < 1.0
    message = str(info.value)
    assert "\n" not in message
    assert f"member {name!r}" in message
    assert "4096 bytes" in message and "PATH_MAX" in message
    assert sorted(os.listdir(dest)) == ["ok"]  # nothing of it was created


def test_a_name_thousands_of_levels_deep_is_refused_at_once(dest: Path) -> None:
    name = "d/" * 3000 + "f"
    start = time.perf_counter()
    with pytest.raises(UnpackOSError, match="6002 bytes, the limit is 4095"):
        unpack_image(io.BytesIO(archive(Spec(name, data=b"x"))), dest)
    assert time.perf_counter() - start < 0.5
    assert os.listdir(dest) == []


def test_a_hard_link_target_of_path_max_bytes_is_refused(dest: Path) -> None:
    target = name_of(PATH_MAX)
    data = archive(Spec("link", "hardlink", link=target))
    with pytest.raises(LinkTargetError, match="hard link target is 4096 bytes"):
        unpack_image(io.BytesIO(data), dest)
    absolute = archive(Spec("link", "hardlink", link="/" + target))
    with pytest.raises(LinkTargetError, match="hard link target is 4096 bytes"):
        unpack_image(io.BytesIO(absolute), dest)


def test_unpacking_leaves_no_descriptor_open(dest: Path) -> None:
    before = set(os.listdir("/proc/self/fd"))
    unpack_image(io.BytesIO(deep_archive(20)), dest)
    with pytest.raises(UnpackOSError):
        unpack_image(io.BytesIO(archive(Spec("d/" * 3000))), dest / "again")
    assert set(os.listdir("/proc/self/fd")) == before
