"""The VM cache keeps only the most recently used initramfs files (hats.vm.assets).

Fast: the Debian packages, the base, the agents tree and the initramfs
writer are replaced by fakes; no QEMU.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hats.packaging import agents_layer
from hats.vm import assets, initramfs
from hats.vm.assets import ensure_guest_assets, prune_initrds
from hats.vm.debian import BUSYBOX_PACKAGE

HOUR = 3600.0


def _file(path: Path, age_hours: float, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stamp = time.time() - age_hours * HOUR
    os.utime(path, (stamp, stamp))
    return path


def _initrd(cache: Path, name: str, age_hours: float) -> Path:
    return _file(cache / f"initrd-{name}.cpio.gz", age_hours)


def _others(cache: Path) -> list[Path]:
    """Entries of a VM cache that are not initramfs files, all older than any initrd."""
    return [
        _file(cache / "linux-image-6.1.0-9-cloud-amd64_6.1.1-1_amd64/boot/vmlinuz-6.1.0-9", 100),
        _file(cache / "busybox-static_1%3a1.35.0-4_amd64/bin/busybox", 100),
        _file(cache / "apt/archives/linux-image-6.1.0-9-cloud-amd64_6.1.1-1_amd64.deb", 100),
        _file(cache / "apt/lists/deb.debian.org_dists_bookworm_InRelease", 100),
        _file(cache / ".initrd-0000000000000099.cpio.gz.k2j3h4.part", 100),  # a build's temp file
        _file(cache / "initrd-notes.txt", 100),
        _file(cache / "initrd-0000000000000098.cpio.gz.bak", 100),
        _file(cache / "my-initrd-0000000000000097.cpio.gz", 100),
        _file(cache / ".lock", 100, b""),
    ]


def _names(cache: Path) -> set[str]:
    return {p.name for p in cache.glob("initrd-*.cpio.gz")}


def test_prune_keeps_the_newest_and_the_returned_one(tmp_path: Path) -> None:
    cache = tmp_path / "vm"
    for name, age in [("a1", 1), ("a2", 2), ("a3", 3), ("a4", 4), ("a5", 5), ("a6", 6)]:
        _initrd(cache, name, age)
    returned = _initrd(cache, "old", 7)  # older than all the others
    _initrd(cache, "oldest", 8)
    (cache / "initrd-dir.cpio.gz").mkdir()  # not a regular file: never a candidate
    others = _others(cache)

    removed = prune_initrds(cache, keep=returned, limit=4)

    assert sorted(p.name for p in removed) == [
        "initrd-a5.cpio.gz",
        "initrd-a6.cpio.gz",
        "initrd-oldest.cpio.gz",
    ]
    assert _names(cache) == {
        "initrd-a1.cpio.gz",
        "initrd-a2.cpio.gz",
        "initrd-a3.cpio.gz",
        "initrd-a4.cpio.gz",
        "initrd-old.cpio.gz",
        "initrd-dir.cpio.gz",
    }
    assert all(p.is_file() for p in others)
    assert (cache / "initrd-dir.cpio.gz").is_dir()


def test_prune_with_few_files_removes_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "vm"
    files = [_initrd(cache, str(i), i) for i in range(4)]
    _others(cache)
    assert prune_initrds(cache, keep=files[0], limit=4) == []
    assert _names(cache) == {p.name for p in files}
    with pytest.raises(ValueError, match="at least 1"):
        prune_initrds(cache, keep=files[0], limit=0)


def test_prune_ignores_files_that_vanish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "vm"
    keep = _initrd(cache, "new", 0)
    raced = _initrd(cache, "raced", 5)  # removed by someone else between lstat and unlink
    _initrd(cache, "stale", 6)
    real_iterdir, real_unlink = Path.iterdir, Path.unlink

    def iterdir(self: Path) -> Any:
        yield from real_iterdir(self)
        yield self / "initrd-listed-then-gone.cpio.gz"  # gone before its lstat

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.name == raced.name:
            os.unlink(self)
        real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    monkeypatch.setattr(Path, "unlink", unlink)
    removed = prune_initrds(cache, keep=keep, limit=1)
    assert [p.name for p in removed] == ["initrd-stale.cpio.gz"]
    assert _names(cache) == {"initrd-new.cpio.gz"}


@pytest.fixture
def fake_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A cache dir whose kernel and busybox are unpacked already, and fakes for the rest."""
    cache_dir = tmp_path / "cache"
    vm = cache_dir / "vm"
    debs = tmp_path / "debs"
    debs.mkdir()
    kernel_stem = "linux-image-6.1.0-9-cloud-amd64_6.1.1-1_amd64"
    _file(vm / kernel_stem / "boot/vmlinuz-6.1.0-9-cloud-amd64", 100)
    (vm / kernel_stem / "lib/modules/6.1.0-9-cloud-amd64").mkdir(parents=True)
    _file(vm / f"{BUSYBOX_PACKAGE}_1.35.0-4_amd64/bin/busybox", 100)
    state = SimpleNamespace(cache=vm, cache_dir=cache_dir, digest="agents-1", builds=0)

    class Fetcher:
        def __init__(self, config: object) -> None:
            self.config = config

        def kernel_package(self) -> str:
            return "linux-image-6.1.0-9-cloud-amd64"

        def download(self, package: str) -> Path:
            version = "6.1.1-1" if package.startswith("linux-image") else "1.35.0-4"
            deb = debs / f"{package}_{version}_amd64.deb"
            deb.touch()
            return deb

    class FakeTree:
        def __len__(self) -> int:
            return 1

        def size(self) -> int:
            return 1

    def write_initramfs(tree: object, out: Path) -> None:
        state.builds += 1
        out.write_bytes(b"initrd")

    monkeypatch.setattr(assets, "PackageFetcher", Fetcher)
    monkeypatch.setattr(agents_layer, "agents_tree_digest", lambda **_: state.digest)
    monkeypatch.setattr(
        agents_layer, "build_agents_tree", lambda *_, **__: SimpleNamespace(site_dir=tmp_path)
    )
    monkeypatch.setattr(initramfs, "build_tree", lambda **_: FakeTree())
    monkeypatch.setattr(initramfs, "write_initramfs", write_initramfs)
    state.base = _file(tmp_path / "base.tar", 100, b"base")
    return state


def _ensure(inputs: SimpleNamespace, lines: list[str]) -> Path:
    got = ensure_guest_assets(base=inputs.base, cache_dir=inputs.cache_dir, progress=lines.append)
    assert got.kernel_release == "6.1.0-9-cloud-amd64"
    return got.initrd


def test_ensure_guest_assets_prunes_after_a_build_and_a_hit(fake_inputs: SimpleNamespace) -> None:
    cache = fake_inputs.cache
    for i in range(1, 6):
        _initrd(cache, f"old{i}", i)
    others = _others(cache)

    lines: list[str] = []
    built = _ensure(fake_inputs, lines)
    assert fake_inputs.builds == 1
    # the default keeps 4: the new one and the 3 newest old ones
    assert _names(cache) == {
        built.name,
        "initrd-old1.cpio.gz",
        "initrd-old2.cpio.gz",
        "initrd-old3.cpio.gz",
    }
    assert [line for line in lines if "removed" in line] == [
        f"removed 2 old initramfs file(s) from {cache} (keeping the 4 most recently used)"
    ]

    # a cache hit on a file that is now the oldest: it is refreshed (used = recent) and kept
    stamp = time.time() - 50 * HOUR
    os.utime(built, (stamp, stamp))
    _initrd(cache, "new1", 0.5)
    lines.clear()
    again = _ensure(fake_inputs, lines)
    assert again == built and fake_inputs.builds == 1
    assert built.stat().st_mtime > time.time() - 60
    assert _names(cache) == {
        built.name,
        "initrd-new1.cpio.gz",
        "initrd-old1.cpio.gz",
        "initrd-old2.cpio.gz",
    }
    assert [line for line in lines if "removed" in line] == [
        f"removed 1 old initramfs file(s) from {cache} (keeping the 4 most recently used)"
    ]

    # nothing to remove: no line about it
    lines.clear()
    _ensure(fake_inputs, lines)
    assert not [line for line in lines if "removed" in line]
    assert len(_names(cache)) == 4
    assert all(p.is_file() for p in others)


def test_a_cache_without_a_lock_file_is_used_as_it_is(tmp_path: Path) -> None:
    """A cache whose lock file cannot be opened (read-only and shared; here a
    directory is in its place): the initramfs is used, nothing fails, and
    removing is attempted without the lock (and skipped where refused)."""
    cache = tmp_path / "vm"
    cache.mkdir()
    (cache / ".lock").mkdir()
    wanted = _initrd(cache, "initrd-wanted.cpio.gz", 1)
    assert assets._use_and_prune(cache, wanted) == []
    assert wanted.exists()
    assert (cache / ".lock").is_dir()
