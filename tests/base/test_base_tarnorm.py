"""Normalising a tarball into Oak's base format (synthetic inputs)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from hats.base.tarnorm import TarNormaliseError, normalise, relpath, sort_key


def _add(
    tar: tarfile.TarFile,
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    *,
    mode: int = 0o644,
    linkname: str = "",
    uid: int = 0,
    gid: int = 0,
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid = uid
    info.gid = gid
    info.uname = "someone"
    info.gname = "somegroup"
    info.mtime = 1_700_000_000
    info.linkname = linkname
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def _input(path: Path) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "./dev/", tarfile.DIRTYPE, mode=0o755)
        _add(tar, "./dev/null", tarfile.CHRTYPE, mode=0o666)
        _add(tar, "./", tarfile.DIRTYPE, mode=0o755)
        _add(tar, "./usr/", tarfile.DIRTYPE, mode=0o755)
        _add(tar, "./usr/bin/", tarfile.DIRTYPE, mode=0o755)
        _add(tar, "./usr/bin/z", data=b"zz", mode=0o4755)
        _add(tar, "./usr/bin/perl", data=b"perl!", mode=0o755)
        _add(tar, "./usr/bin/a-perl", tarfile.LNKTYPE, linkname="./usr/bin/perl")
        _add(tar, "./usr/bin-x", data=b"x", uid=5, gid=42)
        _add(tar, "./bin", tarfile.SYMTYPE, linkname="usr/bin", mode=0o777)
        _add(tar, "./etc/", tarfile.DIRTYPE, mode=0o755)
        _add(tar, "./etc/hosts", data=b"old")
        _add(tar, "./etc/hosts", data=b"new")  # later entry wins


def _normalised(tmp_path: Path) -> tuple[Path, str]:
    src = tmp_path / "in.tar"
    _input(src)
    dst = tmp_path / "out.tar"
    with open(dst, "wb") as handle:
        result = normalise(src, handle, empty_dirs=("dev",))
    assert result.sha256 == hashlib.sha256(dst.read_bytes()).hexdigest()
    assert result.size == dst.stat().st_size
    return dst, result.sha256


def test_order_names_and_metadata(tmp_path: Path) -> None:
    dst, _ = _normalised(tmp_path)
    raw = dst.read_bytes()
    assert raw[257:265] == b"ustar  \x00"  # GNU magic
    assert len(raw) % 10240 == 0
    with tarfile.open(dst) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    # tarfile strips the trailing "/" of directories when reading.
    assert names == [
        ".",
        "./bin",
        "./dev",
        "./etc",
        "./etc/hosts",
        "./usr",
        "./usr/bin",
        "./usr/bin/a-perl",
        "./usr/bin/perl",
        "./usr/bin/z",
        "./usr/bin-x",
    ]
    assert raw[:3] == b"./\x00"
    for m in members:
        assert m.mtime == 946684800
        assert m.uname == "" and m.gname == ""
        assert not m.pax_headers
    by_name = {m.name: m for m in members}
    assert by_name["./usr/bin/z"].mode == 0o4755
    assert (by_name["./usr/bin-x"].uid, by_name["./usr/bin-x"].gid) == (5, 42)
    assert by_name["./bin"].issym() and by_name["./bin"].linkname == "usr/bin"
    with tarfile.open(dst) as tar:
        hosts = tar.extractfile("./etc/hosts")
        assert hosts is not None and hosts.read() == b"new"


def test_hard_link_data_moves_to_first_name(tmp_path: Path) -> None:
    dst, _ = _normalised(tmp_path)
    with tarfile.open(dst) as tar:
        first = tar.getmember("./usr/bin/a-perl")
        second = tar.getmember("./usr/bin/perl")
        assert first.isreg() and first.size == 5 and first.mode == 0o755
        data = tar.extractfile(first)
        assert data is not None and data.read() == b"perl!"
        assert second.islnk() and second.linkname == "./usr/bin/a-perl"


def test_deterministic(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    _, one = _normalised(tmp_path / "1")
    _, two = _normalised(tmp_path / "2")
    assert one == two


def test_root_entry_synthesised(tmp_path: Path) -> None:
    src = tmp_path / "in.tar"
    with tarfile.open(src, "w") as tar:
        _add(tar, "etc/hosts", data=b"x")
    out = io.BytesIO()
    normalise(src, out)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        assert [m.name for m in tar.getmembers()] == [".", "./etc/hosts"]


def test_dangling_hard_link_rejected(tmp_path: Path) -> None:
    src = tmp_path / "in.tar"
    with tarfile.open(src, "w") as tar:
        _add(tar, "./a", tarfile.LNKTYPE, linkname="./missing")
    with pytest.raises(TarNormaliseError, match="hard link"):
        normalise(src, io.BytesIO())


def test_relpath_and_sort_key() -> None:
    assert relpath("./etc/hosts") == "etc/hosts"
    assert relpath("/etc//hosts/") == "etc/hosts"
    assert relpath("./") == ""
    with pytest.raises(TarNormaliseError):
        relpath("./a/../b")
    names = ["usr/bin-x", "usr/bin/z", "usr", "", "usr/bin"]
    assert sorted(names, key=sort_key) == ["", "usr", "usr/bin", "usr/bin/z", "usr/bin-x"]
