"""DT_NEEDED reader, checked against binutils' readelf on real binaries."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hats.vm.elf import ElfError, needed_libraries


def _readelf_needed(path: Path) -> list[str]:
    output = subprocess.run(
        ["readelf", "-d", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", output)


BINARIES = [Path(sys.executable).resolve(), Path("/bin/ls"), Path("/usr/bin/xz")]
BINARIES += sorted(Path(sys.base_prefix).glob("lib/python3*/lib-dynload/_ssl*.so"))[:1]


@pytest.mark.skipif(shutil.which("readelf") is None, reason="binutils' readelf is not installed")
@pytest.mark.parametrize("path", [p for p in BINARIES if p.exists()], ids=str)
def test_matches_readelf(path: Path) -> None:
    assert needed_libraries(path.read_bytes()) == _readelf_needed(path)


def test_not_elf_needs_nothing() -> None:
    assert needed_libraries(b"#!/bin/sh\n") == []
    assert needed_libraries(b"") == []


def test_truncated_elf_is_an_error() -> None:
    data = Path(sys.executable).resolve().read_bytes()
    with pytest.raises(ElfError):
        needed_libraries(data[:40])


@given(st.binary(min_size=0, max_size=300))
def test_garbage_after_magic_never_crashes(tail: bytes) -> None:
    with contextlib.suppress(ElfError):
        needed_libraries(b"\x7fELF\x02\x01" + tail)
