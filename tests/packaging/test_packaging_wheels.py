"""The deterministic wheel unpacker, on wheels made here (no network)."""

from __future__ import annotations

import csv
import io
import stat
import zipfile
from pathlib import Path

import pytest

from hats.packaging.wheels import WheelError, read_wheel, record_hash, unpack_wheel_bytes

WHEEL_META = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def make_wheel(
    files: dict[str, bytes],
    *,
    name: str = "demo",
    version: str = "1.0",
    record_overrides: dict[str, tuple[str, str]] | None = None,
    unlisted: frozenset[str] = frozenset(),
    extra_record: dict[str, tuple[str, str]] | None = None,
) -> bytes:
    """A wheel with ``files`` plus dist-info; RECORD can be made to lie."""
    dist_info = f"{name}-{version}.dist-info"
    members = dict(files)
    members[f"{dist_info}/WHEEL"] = WHEEL_META
    members[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    )
    rows: list[tuple[str, str, str]] = []
    for path, data in members.items():
        if path in unlisted:
            continue
        hash_value, size = record_hash(data), str(len(data))
        if record_overrides and path in record_overrides:
            hash_value, size = record_overrides[path]
        rows.append((path, hash_value, size))
    for path, (hash_value, size) in (extra_record or {}).items():
        rows.append((path, hash_value, size))
    rows.append((f"{dist_info}/RECORD", "", ""))
    record = io.StringIO()
    csv.writer(record, lineterminator="\n").writerows(rows)
    members[f"{dist_info}/RECORD"] = record.getvalue().encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in members.items():
            archive.writestr(path, data)
    return buffer.getvalue()


def test_good_wheel_installs_sorted_with_rewritten_record() -> None:
    data = make_wheel(
        {
            "demo/__init__.py": b"X = 1\n",
            "demo/_c.so": b"\x7fELF",
            "demo-1.0.data/platlib/demo_ext.py": b"Y = 2\n",
            "demo-1.0.data/scripts/demo": b"#!python\n",
            "demo-1.0.data/headers/demo.h": b"int x;\n",
        }
    )
    unpacked = unpack_wheel_bytes("demo-1.0-py3-none-any.whl", data)
    assert (unpacked.name, unpacked.version, unpacked.dist_info) == (
        "demo",
        "1.0",
        "demo-1.0.dist-info",
    )
    paths = [f.path for f in unpacked.files]
    assert paths == sorted(paths)
    assert "demo_ext.py" in paths  # .data/platlib → site dir
    assert not any(p.startswith("demo-1.0.data/") for p in paths)
    assert set(unpacked.skipped) == {"demo-1.0.data/scripts/demo", "demo-1.0.data/headers/demo.h"}
    assert not any(p.endswith((".pyc", "INSTALLER", "direct_url.json", "REQUESTED")) for p in paths)

    record = {f.path: f.data for f in unpacked.files}["demo-1.0.dist-info/RECORD"].decode()
    rows = list(csv.reader(io.StringIO(record)))
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)
    installed = {f.path: f.data for f in unpacked.files}
    for path, hash_value, size in rows:
        if path == "demo-1.0.dist-info/RECORD":
            assert (hash_value, size) == ("", "")
            continue
        assert hash_value == record_hash(installed[path])
        assert size == str(len(installed[path]))
    assert {row[0] for row in rows} == set(installed)


def test_unpacking_is_independent_of_member_order() -> None:
    files = {f"demo/m{i}.py": f"V = {i}\n".encode() for i in range(20)}
    forward = make_wheel(files)
    backward = make_wheel(dict(reversed(list(files.items()))))
    assert forward != backward
    a = unpack_wheel_bytes("a.whl", forward)
    b = unpack_wheel_bytes("b.whl", backward)
    assert a.files == b.files


def test_content_not_matching_record_is_rejected() -> None:
    data = make_wheel(
        {"demo/__init__.py": b"X = 1\n"},
        record_overrides={"demo/__init__.py": (record_hash(b"X = 2\n"), "6")},
    )
    with pytest.raises(WheelError, match=r"demo/__init__.py: content does not match"):
        unpack_wheel_bytes("demo-1.0-py3-none-any.whl", data)


def test_size_not_matching_record_is_rejected() -> None:
    data = make_wheel(
        {"demo/__init__.py": b"X = 1\n"},
        record_overrides={"demo/__init__.py": (record_hash(b"X = 1\n"), "7")},
    )
    with pytest.raises(WheelError, match="size"):
        unpack_wheel_bytes("demo.whl", data)


def test_file_missing_from_record_is_rejected() -> None:
    data = make_wheel(
        {"demo/__init__.py": b"", "demo/evil.py": b"x"}, unlisted=frozenset({"demo/evil.py"})
    )
    with pytest.raises(WheelError, match=r"demo/evil\.py is not hashed in RECORD"):
        unpack_wheel_bytes("demo.whl", data)


def test_record_entry_missing_from_archive_is_rejected() -> None:
    data = make_wheel(
        {"demo/__init__.py": b""}, extra_record={"demo/gone.py": (record_hash(b"x"), "1")}
    )
    with pytest.raises(WheelError, match=r"demo/gone\.py is listed in RECORD but missing"):
        unpack_wheel_bytes("demo.whl", data)


@pytest.mark.parametrize("bad", ["md5=abc", "sha1=abc", "nohash"])
def test_weak_or_malformed_hashes_are_rejected(bad: str) -> None:
    data = make_wheel({"demo/__init__.py": b""}, record_overrides={"demo/__init__.py": (bad, "0")})
    with pytest.raises(WheelError, match="unsupported RECORD hash"):
        unpack_wheel_bytes("demo.whl", data)


@pytest.mark.parametrize(
    "name", ["../evil.py", "/abs.py", "demo/../../x.py", "demo\\x.py", "C:/x.py"]
)
def test_unsafe_member_names_are_rejected(name: str) -> None:
    data = make_wheel({"demo/__init__.py": b"", name: b"x"})
    with pytest.raises(WheelError, match="unsafe member name"):
        unpack_wheel_bytes("demo.whl", data)


def test_symlink_members_are_rejected() -> None:
    buffer = io.BytesIO(make_wheel({"demo/__init__.py": b""}))
    with zipfile.ZipFile(buffer, "a") as archive:
        info = zipfile.ZipInfo("demo/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "target")
    with pytest.raises(WheelError, match="symlinks"):
        unpack_wheel_bytes("demo.whl", buffer.getvalue())


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "demo-1.0-py3-none-any.whl"
    path.write_bytes(b"not a zip")
    with pytest.raises(WheelError, match="not a readable wheel"):
        read_wheel(path)


def test_missing_dist_info_is_rejected() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("demo/__init__.py", "")
    with pytest.raises(WheelError, match=r"one \.dist-info"):
        unpack_wheel_bytes("demo.whl", buffer.getvalue())
