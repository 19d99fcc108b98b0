"""The launcher tests' one process collector: ``hats launcher serve`` as a child process.

:func:`launcher` starts it (without an inherited ``HATS_TVS_AUTHENTICATION_KEY``,
or with ``key`` in it), requires ``listening on ADDR`` as its first stdout line
and yields a :class:`LauncherProcess` whose stdout lines a thread collects; at
the end a still running launcher gets SIGTERM, then the kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

KEY = "5a" * 32
WRAP = "11" * 32 + "," + "22" * 32
RUN = [sys.executable, "-c", "from hats.launcher.cli import launcher_group; launcher_group()"]


class LauncherProcess:
    """A running ``hats launcher serve``: its address and the stdout lines so far."""

    def __init__(self, process: subprocess.Popen[str], address: str) -> None:
        self.process = process
        self.address = address
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Send ``sig``, wait for the exit; (exit status, all of stderr)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(10)
        self._reader.join(5)
        assert self.process.stderr is not None
        return code, self.process.stderr.read()


@contextmanager
def launcher(args: list[str], cwd: Path, key: str | None = None) -> Iterator[LauncherProcess]:
    """``hats launcher serve ARGS`` in ``cwd`` until the block ends (module docstring)."""
    env = dict(os.environ)
    env.pop("HATS_TVS_AUTHENTICATION_KEY", None)
    if key is not None:
        env["HATS_TVS_AUTHENTICATION_KEY"] = key
    process = subprocess.Popen(
        [*RUN, "serve", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().rstrip("\n")
        if not first.startswith("listening on "):
            process.kill()
            assert process.stderr is not None
            pytest.fail(f"no 'listening on' line: {first!r}; stderr: {process.stderr.read()}")
        yield LauncherProcess(process, first[len("listening on ") :])
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
