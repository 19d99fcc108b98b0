"""The demos' process harness: ``hats`` commands as steps, and servers as collected processes.

Rules:

- :func:`hats_command` is the argv of ``python -m hats …`` with this
  interpreter (so a demo runs the same ``hats`` as its caller);
- :func:`run_step` runs a command to completion (:func:`hats.toolrun.run`):
  its stdout is returned, a failure is one :class:`DemoError` line naming the
  step;
- a :class:`Process` is a long-running child (TVS, launcher): its stdout and
  stderr are collected line by line by a thread (:attr:`Process.lines`); it is
  *ready* when it prints a line starting with ``listening on``
  (:meth:`Process.wait_ready`, bounded by :data:`READY_TIMEOUT`), and
  :meth:`Process.stop` terminates it (SIGTERM, then SIGKILL after the
  timeout);
- :func:`processes` stops every process started in it, the last first, on
  any exit (errors and Ctrl-C included).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from hats.errors import HatsError
from hats.toolrun import run

READY_TIMEOUT = 60.0
STEP_TIMEOUT = 600.0
READY_PREFIX = "listening on"


class DemoError(HatsError):
    """A demo step failed (the message names the step and the process)."""


def hats_command(*args: str | Path) -> list[str]:
    """``[python, -m, hats, *args]`` with this interpreter."""
    return [sys.executable, "-m", "hats", *map(str, args)]


def run_step(
    step: str,
    args: list[str],
    env: Mapping[str, str],
    *,
    show_progress: bool = False,
    timeout: float = STEP_TIMEOUT,
) -> str:
    """Run one step to completion; its stdout is returned; a failure is a :class:`DemoError`.

    With ``show_progress`` the step's stderr (its progress and log lines) goes
    straight to ours, so a long step is not silent; on failure its own lines
    are already on the screen.
    """
    result = run(
        args,
        what=step,
        error=DemoError,
        env=env,
        timeout=timeout,
        stderr_to_terminal=show_progress,
    )
    return result.text


class Process:
    """A long-running child process whose output is collected by a thread (see the rules)."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str]) -> None:
        self.name = name
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(env),
            stdin=subprocess.DEVNULL,
        )
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith(READY_PREFIX):
                self._ready.set()
        self._ready.set()

    @property
    def output(self) -> str:
        """Everything it printed so far, one line each."""
        return "\n".join(self.lines)

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait for its ``listening on`` line; a :class:`DemoError` if it exits or is late."""
        if not self._ready.wait(timeout) or self.proc.poll() is not None:
            tail = self.lines[-1] if self.lines else "no output"
            raise DemoError(f"{self.name} did not start: {tail}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s; its output is complete afterwards."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(5)


def start(name: str, args: list[str], env: Mapping[str, str], running: list[Process]) -> Process:
    """Start a :class:`Process`, register it in ``running`` and wait until it is ready."""
    process = Process(name, args, env)
    running.append(process)
    process.wait_ready()
    return process


@contextmanager
def processes() -> Iterator[list[Process]]:
    """A list to register processes in; all are stopped on exit, the last first."""
    running: list[Process] = []
    try:
        yield running
    finally:
        for process in reversed(running):
            process.stop()
