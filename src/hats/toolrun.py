"""``run``: the one way to run an external tool to completion (mmdebstrap, apt-get, dpkg-deb, pip…).

Rules:

- the command line is logged (``logging`` at DEBUG, logger ``hats.toolrun``)
  before the tool starts; the environment never is (keys travel there);
- a failure is one :class:`ToolError` (or the caller's subclass of
  :class:`hats.errors.HatsError`) with ONE line, always in the same form::

      [WHAT: ]TOOL failed (exit N): DETAIL
      [WHAT: ]TOOL is not installed
      [WHAT: ]cannot run TOOL: REASON
      [WHAT: ]TOOL timed out after N s

  where DETAIL is the last non-empty line of the tool's stderr (else of its
  stdout, else ``no output``), or what the caller's ``explain`` picks;
- ``on_stderr``: the tool's stderr is streamed line by line to the callback
  (stdout is discarded) instead of being captured — for long tools whose
  progress is shown; an interrupted run (Ctrl-C) terminates the tool and waits
  for it, so it can clean up;
- stdlib and :mod:`hats.errors` only: stage1 runs busybox through it in our
  initramfs (``tests/stage1/test_stage1_tools.py`` checks the imports).

Users: mmdebstrap, apt-get and dpkg-deb (base, vm assets), pip (packaging),
the QEMU version probe (:func:`hats.vm.qemu.check_stage0_qemu`), stage1's
busybox applets, the demos' ``hats`` steps.

Not run here, on purpose (they are not run-to-completion tools, so they keep
their own ``subprocess`` calls): long-running processes whose output is the
point or which are stopped by us — the orchestrator's container (``runc`` via
``systemd-run``) and the workload process (their exit status is the
orchestrator's), the local demo's orchestrator (its stdout is the workload's
and is shown even when it fails), QEMU guests (the VM demo, the launcher,
the stage0 run and the KVM probe, killed once they printed what we wait for),
syslogd's ``journalctl -f``, and the demos' servers.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hats.errors import HatsError

log = logging.getLogger("hats.toolrun")

#: How many stderr lines a streamed run keeps for its error message.
TAIL_LINES = 20


class ToolError(HatsError):
    """An external tool failed, was missing or timed out (one line: tool, status, its last line)."""


@dataclass(frozen=True)
class ToolResult:
    """A finished run: exit status, stdout and stderr (``str``; ``bytes`` with ``binary``)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str | bytes
    stderr: str | bytes

    @property
    def text(self) -> str:
        """stdout as text (decoded with replacement for a binary run)."""
        if isinstance(self.stdout, bytes):
            return self.stdout.decode("utf-8", "replace")
        return self.stdout


def tool_name(argv: Sequence[str | Path]) -> str:
    """``/usr/bin/dpkg-deb`` → ``dpkg-deb``; ``python -m pip …`` → ``pip``."""
    if len(argv) >= 3 and str(argv[1]) == "-m":
        return str(argv[2])
    return os.path.basename(str(argv[0]))


def last_line(*texts: str | bytes) -> str:
    """The last non-empty line of the first text that has one (at most 300 characters)."""
    for text in texts:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1][:300]
    return "no output"


def failure(
    tool: str,
    returncode: int,
    detail: str,
    *,
    what: str | None = None,
    error: type[HatsError] = ToolError,
) -> HatsError:
    """The one error of a failed tool: ``[WHAT: ]TOOL failed (exit N): DETAIL``."""
    head = f"{what}: " if what else ""
    return error(f"{head}{tool} failed (exit {returncode}): {detail}")


def run(
    argv: Sequence[str | Path],
    *,
    what: str | None = None,
    error: type[HatsError] = ToolError,
    tool: str | None = None,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | str | None = None,
    binary: bool = False,
    timeout: float | None = None,
    check: bool = True,
    explain: Callable[[ToolResult], str] | None = None,
    on_stderr: Callable[[str], None] | None = None,
    stderr_to_terminal: bool = False,
) -> ToolResult:
    """Run ``argv`` to completion; see the module rules.

    ``check=False`` returns a failed run instead of raising (the caller may
    recognise a special failure first, then raise :func:`failure`).
    ``stderr_to_terminal``: the tool's stderr goes straight to ours (its own
    progress stays visible); the detail of a failure is then ``see its output
    above`` when its stdout has nothing to say.
    """
    args = [str(arg) for arg in argv]
    name = tool or tool_name(args)
    head = f"{what}: " if what else ""
    log.debug("running %s", shlex.join(args))
    try:
        if on_stderr is not None:
            result = _streamed(args, cwd, env, on_stderr)
        else:
            done = subprocess.run(
                args,
                cwd=cwd,
                env=None if env is None else dict(env),
                input=input,
                stdin=subprocess.DEVNULL if input is None else None,
                stdout=subprocess.PIPE,
                stderr=None if stderr_to_terminal else subprocess.PIPE,
                text=not binary,
                timeout=timeout,
                check=False,
            )
            empty: str | bytes = b"" if binary else ""
            result = ToolResult(
                tuple(args),
                done.returncode,
                done.stdout,
                empty if done.stderr is None else done.stderr,
            )
    except FileNotFoundError:
        raise error(f"{head}{name} is not installed") from None
    except subprocess.TimeoutExpired:
        raise error(f"{head}{name} timed out after {timeout:g} s") from None
    except OSError as exc:
        raise error(f"{head}cannot run {name}: {exc.strerror or exc}") from None
    log.debug("%s exited with status %d", name, result.returncode)
    if check and result.returncode != 0:
        if explain is not None:
            detail = explain(result)
        elif stderr_to_terminal:
            detail = last_line(result.stdout)
            detail = "see its output above" if detail == "no output" else detail
        else:
            detail = last_line(result.stderr, result.stdout)
        raise failure(name, result.returncode, detail, what=what, error=error)
    return result


def _streamed(
    args: list[str],
    cwd: Path | str | None,
    env: Mapping[str, str] | None,
    on_stderr: Callable[[str], None],
) -> ToolResult:
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    try:
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            tail.append(line)
            on_stderr(line)
    except BaseException:
        # Interrupted (Ctrl-C reaches the tool too) or our side failed: let the
        # tool clean up (unmount, remove its temporary files) before we go on.
        if proc.poll() is None:
            proc.terminate()
        proc.wait()
        raise
    return ToolResult(tuple(args), proc.wait(), "", "\n".join(tail))
