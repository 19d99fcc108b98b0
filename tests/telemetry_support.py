"""Helpers for the syslogd, agent and launcher telemetry tests.

- real journal files, written by systemd's own ``systemd-journal-remote``
  from the journal export format (``systemd-cat`` needs a running journald);
- a real ``hats launcher serve`` process on a unix socket, with its logs and
  metrics files;
- polling helpers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from suite_support import Process as Process
from suite_support import short_dir as short_dir
from suite_support import wait_for as wait_for

JOURNAL_REMOTE = next(
    (
        p
        for p in ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")
        if os.access(p, os.X_OK)
    ),
    None,
)
needs_journal_tools = pytest.mark.skipif(
    JOURNAL_REMOTE is None or shutil.which("journalctl") is None,
    reason="needs systemd-journal-remote and journalctl (apt install systemd-journal-remote)",
)
BOOT_ID = b"0123456789abcdef0123456789abcdef"
BASE_USEC = 1_700_000_000_000_000
LAUNCHER = [sys.executable, "-c", "from hats.launcher.cli import launcher_group; launcher_group()"]
SYSLOGD = [sys.executable, "-m", "hats.syslogd"]
AGENT = [sys.executable, "-m", "hats.agent"]

Field = tuple[str, bytes]


def export_format(entries: Sequence[Sequence[Field]]) -> bytes:
    """Entries in the journal export format (systemd's JOURNAL_EXPORT_FORMATS).

    A value with a newline is written in the binary form (64-bit
    little-endian length, then the bytes), any other as ``FIELD=value``.
    """
    out = bytearray()
    for entry in entries:
        for field, value in entry:
            name = field.encode("ascii")
            if b"\n" in value:
                out += name + b"\n" + len(value).to_bytes(8, "little") + value + b"\n"
            else:
                out += name + b"=" + value + b"\n"
        out += b"\n"
    return bytes(out)


def entry(index: int, *fields: Field, realtime: int | None = None) -> list[Field]:
    """A journal entry with the address fields journal-remote needs, then ``fields``."""
    usec = BASE_USEC + index * 1000 if realtime is None else realtime
    return [
        ("__REALTIME_TIMESTAMP", str(usec).encode()),
        ("__MONOTONIC_TIMESTAMP", str(1_000_000 + index).encode()),
        ("_BOOT_ID", BOOT_ID),
        *fields,
    ]


def simple_entries(count: int, start: int = 0, unit: bytes = b"app.service") -> list[list[Field]]:
    """``count`` info entries with bodies ``m<i>``."""
    return [
        entry(i, ("MESSAGE", f"m{i}".encode()), ("PRIORITY", b"6"), ("_SYSTEMD_UNIT", unit))
        for i in range(start, start + count)
    ]


def write_journal(path: Path, entries: Sequence[Sequence[Field]]) -> Path:
    """A real journal file at ``path`` (its name must end in ``.journal``)."""
    assert JOURNAL_REMOTE is not None
    assert path.name.endswith(".journal")
    result = subprocess.run(
        [JOURNAL_REMOTE, "-o", str(path), "-"],
        input=export_format(entries),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert f"writing {len(entries)} entries".encode() in result.stderr, result.stderr
    return path


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a JSON-lines file (none if it does not exist yet)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


@contextmanager
def launcher_process(
    socket: Path, logs_file: Path | None = None, metrics_file: Path | None = None
) -> Iterator[Process]:
    """A real ``hats launcher serve`` on ``unix:socket``; stopped with SIGTERM after."""
    args = [*LAUNCHER, "serve", "--listen", f"unix:{socket}"]
    if logs_file is not None:
        args += ["--logs-file", str(logs_file)]
    if metrics_file is not None:
        args += ["--metrics-file", str(metrics_file)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HATS_")}
    process = Process(args, env=env)
    try:
        wait_for(
            lambda: (
                any(line.startswith("listening on ") for line in process.out)
                or process.popen.poll() is not None
            ),
            what="the launcher to listen",
        )
        assert process.popen.poll() is None, process.err
        yield process
        assert process.stop() == 0, process.err
    finally:
        process.kill()
