"""newc cpio writer: parsed back by an independent reader written from the format text."""

from __future__ import annotations

import io
import stat
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hats.vm.cpio import CpioError, CpioWriter, header


def parse_newc(data: bytes) -> list[dict[str, Any]]:
    """Entries of a newc archive (stops at TRAILER!!!); checks alignment and magic."""
    entries: list[dict[str, Any]] = []
    pos = 0
    while True:
        assert pos % 4 == 0
        assert data[pos : pos + 6] == b"070701", f"bad magic at {pos}"
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name_start = pos + 110
        name = data[name_start : name_start + namesize]
        assert name.endswith(b"\0")
        pos = name_start + namesize
        pos += -pos % 4
        content = data[pos : pos + filesize]
        pos += filesize
        pos += -pos % 4
        if name[:-1] == b"TRAILER!!!":
            assert pos == len(data)
            return entries
        entries.append(
            {
                "ino": fields[0],
                "mode": fields[1],
                "uid": fields[2],
                "gid": fields[3],
                "nlink": fields[4],
                "mtime": fields[5],
                "rdev": (fields[9], fields[10]),
                "name": name[:-1].decode(),
                "data": content,
            }
        )


def test_entries_round_trip() -> None:
    out = io.BytesIO()
    writer = CpioWriter(out)
    writer.directory("bin")
    writer.file("bin/busybox", b"\x7fELF" + b"x" * 13, 0o755)
    writer.symlink("bin/sh", "busybox")
    writer.device("dev/console", stat.S_IFCHR | 0o600, 5, 1)
    writer.close()
    entries = parse_newc(out.getvalue())
    assert [e["name"] for e in entries] == ["bin", "bin/busybox", "bin/sh", "dev/console"]
    assert entries[0]["mode"] == stat.S_IFDIR | 0o755 and entries[0]["nlink"] == 2
    assert (
        entries[1]["mode"] == stat.S_IFREG | 0o755 and entries[1]["data"] == b"\x7fELF" + b"x" * 13
    )
    assert entries[2]["mode"] == stat.S_IFLNK | 0o777 and entries[2]["data"] == b"busybox"
    assert entries[3]["rdev"] == (5, 1)
    assert all(e["uid"] == 0 and e["gid"] == 0 and e["mtime"] == 0 for e in entries)
    assert [e["ino"] for e in entries] == [1, 2, 3, 4]


@given(
    st.dictionaries(
        st.text("abcdefgh_.", min_size=1, max_size=20).filter(lambda n: n not in (".", "..")),
        st.binary(max_size=50),
        max_size=8,
    )
)
def test_any_files_parse_back(files: dict[str, bytes]) -> None:
    out = io.BytesIO()
    writer = CpioWriter(out)
    for name, data in sorted(files.items()):
        writer.file(name, data)
    writer.close()
    parsed = {e["name"]: e["data"] for e in parse_newc(out.getvalue())}
    assert parsed == files


def test_same_input_same_bytes() -> None:
    def build() -> bytes:
        out = io.BytesIO()
        writer = CpioWriter(out)
        writer.file("a", b"1")
        writer.close()
        return out.getvalue()

    assert build() == build()


def test_errors() -> None:
    writer = CpioWriter(io.BytesIO())
    writer.file("a", b"")
    with pytest.raises(CpioError, match="added twice"):
        writer.file("a", b"x")
    with pytest.raises(CpioError, match="not a device"):
        writer.device("d", stat.S_IFREG, 1, 1)
    writer.close()
    with pytest.raises(CpioError, match="closed"):
        writer.file("b", b"")
    with pytest.raises(CpioError, match="does not fit"):
        header(ino=1, mode=0, nlink=1, mtime=1 << 33, filesize=0, name="x")
