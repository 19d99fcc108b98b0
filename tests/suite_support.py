"""Helpers every part of the test suite shares (imported by name, never from a conftest).

- :func:`short_dir`: a short temporary directory (unix socket paths are limited
  to ~107 bytes); the ``work`` fixture in ``tests/conftest.py`` is one;
- :class:`Process`: a child process whose stdout and stderr lines are collected;
- :func:`wait_for`: polling with a deadline;
- :func:`run_hats`: ``hats ARGS`` in-process, with a subprocess's result (no
  interpreter start);
- :func:`assert_no_key_material` and :func:`assert_no_values`: the rule that
  messages, logs and reprs never show key material or secrets.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

#: 16 hex digits in a row: 8 bytes of some key or secret printed as hex.
HEX_RUN = re.compile(r"[0-9a-fA-F]{16}")


@contextmanager
def short_dir() -> Iterator[Path]:
    """A short directory (unix socket paths are limited to ~107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ht-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Process:
    """A child process whose stdout and stderr lines are collected by threads."""

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.popen = subprocess.Popen(
            list(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.popen.stdout, self.out), daemon=True),
            threading.Thread(target=self._pump, args=(self.popen.stderr, self.err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _pump(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig``, wait for the exit; the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 20.0) -> int:
        code = self.popen.wait(timeout)
        for thread in self._threads:
            thread.join(5)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)


def wait_for(
    condition: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``condition`` until it is truthy; its value (fails the test on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or condition}")
        time.sleep(interval)


def run_hats(
    *args: str | Path, stdin: str | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``hats ARGS`` run in this process by :func:`hats.cli.main`, as ``python -m hats`` runs it.

    stdout and stderr are captured (and stdin given) by swapping ``sys``'s
    streams; ``env`` replaces the environment for the call, as a subprocess's
    would. The result is a :class:`subprocess.CompletedProcess`, so a test
    reads the same either way. Keep a few real subprocess tests per CLI for
    what only a process shows: exit status, no traceback, signals, umask.
    """
    from hats.cli import main

    argv = [str(arg) for arg in args]
    out, err = io.StringIO(), io.StringIO()
    saved_env = dict(os.environ)
    saved_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        sys.stdin = saved_stdin
        if env is not None:
            os.environ.clear()
            os.environ.update(saved_env)
    return subprocess.CompletedProcess(["hats", *argv], code, out.getvalue(), err.getvalue())


def assert_no_key_material(text: str) -> None:
    """No run of 16 hex digits (8 bytes of any key printed as hex), no bytes reprs."""
    assert HEX_RUN.search(text) is None, text
    assert "\\x" not in text, text


def assert_no_values(text: str, *values: bytes) -> None:
    """None of ``values`` appears in ``text``: as hex, as a bytes repr, or (8+ bytes) as text."""
    for value in values:
        assert value.hex() not in text
        assert repr(value) not in text
        decoded = value.decode("latin-1")
        if len(decoded) >= 8:
            assert decoded not in text
