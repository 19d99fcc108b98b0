"""`hats image inspect/diff/lint` print hostile member names escaped: no terminal
escape sequence reaches the terminal and no name forges a line of its own."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from hats.textsafe import printable

ESC = "\x1b]0;owned\x07\x1b[2J\x1b[H"  # set the title, clear the screen, cursor home
FORGED = "\n0 error(s), 0 warning(s)\n"
SUMMARY = re.compile(r"\d+ error\(s\), \d+ warning\(s\)")


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hats", *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="strict",
        timeout=120,
    )


def image(path: Path, *names: str, link: str = "") -> Path:
    """A plain tar image: a file per name (setuid, so lint names it), a device
    ``/dev-<ESC>`` and a symlink whose target is ``link``."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size, info.mode = 1, 0o4755
            tar.addfile(info, io.BytesIO(b"x"))
        device = tarfile.TarInfo("dev-" + ESC)
        device.type = tarfile.CHRTYPE
        tar.addfile(device)
        if link:
            symlink = tarfile.TarInfo("link")
            symlink.type, symlink.linkname = tarfile.SYMTYPE, link
            tar.addfile(symlink)
    return path


HOSTILE = ["esc" + ESC, "forged" + FORGED + "x", "/abs" + FORGED + "y", "bytes-\udcff"]


def assert_clean(text: str) -> None:
    """No control character but the newlines ending lines."""
    assert not [ch for ch in text if not ch.isprintable() and ch != "\n"], repr(text)


def test_printable_escapes_controls_and_keeps_the_rest() -> None:
    assert printable("plain ü 中 tab\there") == "plain ü 中 tab\there"
    assert printable("a\nb\x1b[2J\x7f\x85\u2028\udcff") == (
        "a\\x0ab\\x1b[2J\\x7f\\x85\\u2028\\udcff"
    )


def test_inspect_prints_names_and_link_targets_escaped(tmp_path: Path) -> None:
    result = run("image", "inspect", image(tmp_path / "i.tar", *HOSTILE, link=ESC + FORGED))
    assert result.returncode == 0, result.stderr
    assert_clean(result.stdout)
    lines = result.stdout.splitlines()
    assert not any(SUMMARY.fullmatch(line) for line in lines)
    assert any(line.endswith("/esc\\x1b]0;owned\\x07\\x1b[2J\\x1b[H  #0") for line in lines)
    assert any("/forged\\x0a0 error(s), 0 warning(s)\\x0ax  #1" in line for line in lines)
    assert any("/bytes-\\udcff  #3" in line for line in lines)
    assert any(
        line.endswith(" -> \\x1b]0;owned\\x07\\x1b[2J\\x1b[H\\x0a0 error(s), 0 warning(s)\\x0a  #5")
        for line in lines
    )
    assert len(lines) == 6  # one line per entry


def test_lint_cannot_forge_its_summary_line(tmp_path: Path) -> None:
    result = run("image", "lint", image(tmp_path / "i.tar", *HOSTILE))
    assert result.returncode == 1
    assert_clean(result.stdout)
    lines = result.stdout.splitlines()
    summaries = [line for line in lines if SUMMARY.fullmatch(line)]
    assert summaries == [lines[-1]] and lines[-1] != "0 error(s), 0 warning(s)"
    assert any(
        line.startswith("error: /abs\\x0a0 error(s), 0 warning(s)\\x0ay: absolute name")
        for line in lines
    )
    assert any(line.startswith("warning: /esc\\x1b]0;owned") for line in lines)
    assert any(line.startswith("warning: /dev-\\x1b]0;owned") for line in lines)


def test_lint_json_keeps_the_names_exactly(tmp_path: Path) -> None:
    """JSON escapes by itself; its strings stay the names as they are."""
    result = run("image", "lint", "--json", image(tmp_path / "i.tar", *HOSTILE))
    assert_clean(result.stdout)
    paths = {finding["path"] for finding in json.loads(result.stdout)["findings"]}
    assert {"/esc" + ESC, "/abs" + FORGED + "y", "/dev-" + ESC} <= paths


def test_diff_prints_paths_escaped(tmp_path: Path) -> None:
    first = image(tmp_path / "a.tar", "same")
    second = image(tmp_path / "b.tar", "same", "new" + ESC + FORGED)
    result = run("image", "diff", first, second)
    assert result.returncode == 1
    assert_clean(result.stdout)
    assert result.stdout.splitlines() == [
        "+ /new\\x1b]0;owned\\x07\\x1b[2J\\x1b[H\\x0a0 error(s), 0 warning(s)\\x0a"
    ]


@pytest.mark.parametrize("path", ["/x" + FORGED, "/x" + ESC])
def test_an_error_is_one_escaped_line(tmp_path: Path, path: str) -> None:
    result = run("image", "inspect", image(tmp_path / "i.tar", "same"), path)
    assert result.returncode != 0
    assert result.stdout == ""
    assert_clean(result.stderr)
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("hats: error: ")
