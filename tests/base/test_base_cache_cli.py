"""Cache lookup, export to .tar/.tar.xz and the ``hats base`` CLI, on a fake cached base."""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import tarfile
from pathlib import Path

import pytest

from hats.base import build_base, cached_base, default_cache_dir
from hats.base.build import installed_packages
from hats.base.cache import METADATA, BaseCache, manifest_path, tar_name
from hats.base.mmdebstrap import BuildSpec
from hats.cli import main

STATUS = b"""Package: zlib1g
Status: install ok installed
Architecture: amd64
Version: 1:1.2.13.dfsg-1
Description: compression
 multi-line description: with a colon

Package: removed
Status: deinstall ok config-files
Version: 1.0

Package: base-files
Status: install ok installed
Version: 12.4+deb12u11
"""


def _fake_entry(cache_dir: Path, *, with_python: bool) -> Path:
    cache = BaseCache.at(cache_dir)
    entry = cache.entry_dir(BuildSpec(with_python=with_python))
    entry.mkdir(parents=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        info = tarfile.TarInfo("./var/lib/dpkg/status")
        info.size = len(STATUS)
        archive.addfile(info, io.BytesIO(STATUS))
    data = buffer.getvalue()
    manifest = b"base-files=12.4+deb12u11\nzlib1g=1:1.2.13.dfsg-1\n"
    packages_sha256 = hashlib.sha256(manifest).hexdigest()
    tar = entry / tar_name(packages_sha256)
    tar.write_bytes(data)
    manifest_path(tar).write_bytes(manifest)
    meta = {
        "tar": tar.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "packages_sha256": packages_sha256,
    }
    (entry / METADATA).write_text(json.dumps(meta))
    return tar


def test_installed_packages() -> None:
    assert installed_packages(STATUS) == ("base-files=12.4+deb12u11", "zlib1g=1:1.2.13.dfsg-1")


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HATS_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.setenv("HATS_CACHE_DIR", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "hats"


def test_lookup(tmp_path: Path) -> None:
    assert cached_base(with_python=True, cache_dir=tmp_path) is None
    tar = _fake_entry(tmp_path, with_python=True)
    found = cached_base(with_python=True, cache_dir=tmp_path)
    assert found is not None
    assert found.path == tar
    assert found.packages == ("base-files=12.4+deb12u11", "zlib1g=1:1.2.13.dfsg-1")
    assert cached_base(with_python=False, cache_dir=tmp_path) is None
    assert cached_base(with_python=True, cache_dir=tmp_path, mirror="http://x/debian") is None
    # A truncated tarball is not reused.
    tar.write_bytes(tar.read_bytes()[:512])
    assert cached_base(with_python=True, cache_dir=tmp_path) is None


def test_build_reuses_cache_and_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # proves mmdebstrap is not needed
    tar = _fake_entry(tmp_path / "cache", with_python=False)
    messages: list[str] = []
    result = build_base(None, with_python=False, cache_dir=tmp_path / "cache")
    assert result.cached and result.path == tar
    assert result.sha256 == result.tar_sha256 == hashlib.sha256(tar.read_bytes()).hexdigest()

    out = tmp_path / "out.tar"
    result = build_base(
        out, with_python=False, cache_dir=tmp_path / "cache", progress=messages.append
    )
    assert out.read_bytes() == tar.read_bytes()
    assert result.path == out and result.size == out.stat().st_size
    assert manifest_path(out).read_bytes() == manifest_path(tar).read_bytes()

    xz = tmp_path / "out.tar.xz"
    result = build_base(xz, with_python=False, cache_dir=tmp_path / "cache")
    raw = xz.read_bytes()
    assert result.sha256 == hashlib.sha256(raw).hexdigest()
    assert result.tar_sha256 == hashlib.sha256(tar.read_bytes()).hexdigest()
    assert lzma.decompress(raw) == tar.read_bytes()
    assert raw == lzma.compress(
        tar.read_bytes(), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6
    )
    assert (tmp_path / "out.tar.xz.packages.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cache",
        "out.tar",
        "out.tar.packages.txt",
        "out.tar.xz",
        "out.tar.xz.packages.txt",
    ]


def test_cli_json_from_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HATS_CACHE_DIR", str(tmp_path))
    tar = _fake_entry(tmp_path, with_python=True)
    assert main(["base", "build", "--with-python", "--json"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(line)
    assert summary["path"] == str(tar)
    assert summary["packages"] == 2
    assert summary["size"] == tar.stat().st_size
    assert summary["sha256"] == hashlib.sha256(tar.read_bytes()).hexdigest()
    assert summary["cached"] is True


def test_cli_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HATS_CACHE_DIR", str(tmp_path))
    assert main(["base", "path"]) == 1
    err = capsys.readouterr().err
    assert err == "hats: error: no cached base for these options: run 'hats base build'\n"
    tar = _fake_entry(tmp_path, with_python=False)
    assert main(["base", "path", "--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"{tar}\n"
    assert main(["base", "path", "--with-python"]) == 1


def test_cli_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HATS_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["base", "build", "-o", str(tmp_path / "base.zip")]) == 1
    assert capsys.readouterr().err == (
        f"hats: error: {tmp_path / 'base.zip'}: output name must end with .tar or .tar.xz\n"
    )
    (tmp_path / "file").write_bytes(b"")
    assert main(["base", "build", "-o", str(tmp_path / "file" / "base.tar")]) == 1
    assert "cannot create its directory" in capsys.readouterr().err
    (tmp_path / "file").unlink()

    monkeypatch.setenv("PATH", "/nonexistent")
    out = tmp_path / "base.tar"
    assert main(["base", "build", "-q", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "install the Debian package 'mmdebstrap'" in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_prune_keeps_recent_entries_of_the_same_flavour(tmp_path: Path) -> None:
    cache = BaseCache.at(tmp_path)
    cache.prepare()
    names = {
        "bookworm-amd64-minbase-python-" + "a" * 16: 100.0,
        "bookworm-amd64-minbase-python-" + "b" * 16: 300.0,
        "bookworm-amd64-minbase-python-" + "c" * 16: 200.0,
        "bookworm-amd64-minbase-" + "d" * 16: 50.0,
    }
    for name, stamp in names.items():
        (cache.root / name).mkdir()
        meta = cache.root / name / METADATA
        meta.write_text("{}")
        os.utime(meta, (stamp, stamp))
    removed = cache.prune(BuildSpec(with_python=True))
    assert [p.name for p in removed] == ["bookworm-amd64-minbase-python-" + "a" * 16]
    left = sorted(p.name for p in cache.root.iterdir() if p.name.startswith("bookworm"))
    assert left == [
        "bookworm-amd64-minbase-" + "d" * 16,
        "bookworm-amd64-minbase-python-" + "b" * 16,
        "bookworm-amd64-minbase-python-" + "c" * 16,
    ]
