"""Real builds with mmdebstrap (network: Debian's mirror). Marked slow."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from hats.base import build_base, default_cache_dir, recipe
from hats.base.cache import BaseCache, manifest_path
from hats.base.tarnorm import sort_key
from hats.cli import main

pytestmark = pytest.mark.slow

EPOCH_2000 = 946684800


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _warm_cache_dir(tmp_path: Path) -> Path:
    """A fresh cache dir (no built base) sharing the persistent apt caches."""
    shared = BaseCache.at(default_cache_dir())
    shared.prepare()
    cache_dir = tmp_path / "cache"
    (cache_dir / "base").mkdir(parents=True)
    os.symlink(shared.root / "apt", cache_dir / "base" / "apt")
    return cache_dir


def test_default_base_contents(default_base_tar: Path) -> None:
    with tarfile.open(default_base_tar) as tar:
        members = tar.getmembers()
        by_name = {m.name.rstrip("/"): m for m in members}

        def read(name: str) -> bytes:
            handle = tar.extractfile(by_name[name])
            assert handle is not None
            return handle.read()

        # Oak's tar format: "./" first, names sorted like GNU tar --sort=name.
        with open(default_base_tar, "rb") as raw:
            assert raw.read(100).rstrip(b"\0") == b"./"
        assert members[0].name == "." and members[0].isdir()
        keys = [sort_key(m.name[2:]) for m in members[1:]]
        assert all(m.name.startswith("./") for m in members[1:])
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        assert all(m.mtime == EPOCH_2000 for m in members)
        assert all(m.uname == "" and m.gname == "" for m in members)
        assert any(m.gid != 0 for m in members)  # real ids kept (e.g. shadow group)

        for item in recipe.CONFIG_FILES:
            member = by_name["." + item.path]
            assert member.isreg() and member.mode == 0o755, item.path
            assert read("." + item.path) == item.content, item.path
        for link, target in recipe.ENABLEMENT_LINKS.items():
            member = by_name["." + link]
            assert member.issym() and member.linkname == target, link
        assert "./etc/systemd/system/getty.target.wants/getty@tty1.service" not in by_name
        assert "./etc/systemd/system/multi-user.target.wants/nvidia-ctk.service" not in by_name

        names = set(by_name)
        assert "./oak" not in names and not any(n.startswith("./oak/") for n in names)
        assert "./.dockerenv" not in names
        for docs in ("./usr/share/doc", "./usr/share/man", "./usr/share/info"):
            assert not any(n == docs or n.startswith(docs + "/") for n in names), docs
        assert by_name["./dev"].isdir()
        assert not any(n.startswith("./dev/") for n in names)
        assert not any(n.startswith("./var/lib/apt/lists/") for n in names)
        assert not any(n.endswith(".deb") for n in names)
        assert "./var/cache/ldconfig/aux-cache" not in names
        assert "./etc/passwd-" not in names and "./etc/shadow-" not in names

        assert by_name["./etc/machine-id"].isreg() and by_name["./etc/machine-id"].size == 0
        dbus_id = by_name["./var/lib/dbus/machine-id"]
        assert dbus_id.issym() and dbus_id.linkname == "/etc/machine-id"
        assert read("./etc/hostname") == b"" and read("./etc/resolv.conf") == b""
        for name, member in by_name.items():
            if name.startswith("./var/log/") and member.isreg():
                assert member.size == 0, name
        shadow = read("./etc/shadow").decode().splitlines()
        days = {line.split(":")[2] for line in shadow}
        assert days == {"10957"}, days

        assert by_name["./usr/bin/python3"].issym()
        assert by_name["./usr/bin/python3.11"].isreg()
        assert by_name["./lib"].issym() and by_name["./lib"].linkname == "usr/lib"  # merged /usr
        for binary in ("./usr/sbin/runc", "./usr/lib/systemd/systemd", "./usr/bin/dbus-daemon"):
            assert by_name[binary].isreg(), binary
        # stage1 execs /sbin/init: /sbin -> usr/sbin, usr/sbin/init -> systemd.
        assert by_name["./sbin"].issym() and by_name["./sbin"].linkname == "usr/sbin"
        assert by_name["./usr/sbin/init"].linkname == "/lib/systemd/systemd"

    packages = manifest_path(default_base_tar).read_text().splitlines()
    assert packages == sorted(packages)
    by_pkg = dict(p.split("=", 1) for p in packages)
    for pkg in ("systemd", "systemd-sysv", "dbus", "udev", "runc", "python3", "python3.11"):
        assert pkg in by_pkg, pkg
    assert by_pkg["systemd"].startswith("252.")
    # debootstrap-style merged /usr (as in Debian's container images): no usrmerge, no perl.
    assert "usr-is-merged" in by_pkg
    assert "usrmerge" not in by_pkg and "perl" not in by_pkg
    assert by_pkg["python3"].startswith("3.11.")


def test_cached_base_is_reused(default_base_tar: Path) -> None:
    result = build_base(None, with_python=True, cache_dir=default_cache_dir())
    assert result.cached and result.path == default_base_tar
    assert result.sha256 == _sha256(default_base_tar)


def test_rebuild_is_bit_for_bit_reproducible(default_base_tar: Path, tmp_path: Path) -> None:
    """A second build from scratch (apt archive cache warm) gives the same bytes."""
    first = build_base(None, with_python=True, cache_dir=default_cache_dir())
    cache_dir = _warm_cache_dir(tmp_path)
    second = build_base(None, with_python=True, cache_dir=cache_dir, rebuild=True)
    assert not second.cached
    if second.packages != first.packages:
        pytest.skip("the mirror published new package versions between the two builds")
    assert second.sha256 == first.sha256 == _sha256(second.path)
    assert second.size == first.size


def test_build_without_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap is not installed (Debian package 'mmdebstrap')")
    cache_dir = _warm_cache_dir(tmp_path)
    out = tmp_path / "base.tar"
    argv = ["base", "build", "-q", "--json", "--cache-dir", str(cache_dir), "-o", str(out)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["path"] == str(out)
    assert summary["sha256"] == _sha256(out)
    assert summary["size"] == out.stat().st_size
    assert summary["cached"] is False
    packages = manifest_path(out).read_text().splitlines()
    assert summary["packages"] == len(packages)
    assert not any(p.startswith("python3") for p in packages)

    assert summary["tar_sha256"] == summary["sha256"]
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
    assert "./usr/bin/python3" not in names
    assert "./etc/systemd/system/oak-orchestrator.service" in names

    # Same options again: served from the cache, same bytes.
    assert main(["base", "path", "--cache-dir", str(cache_dir)]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert _sha256(path) == summary["tar_sha256"]
