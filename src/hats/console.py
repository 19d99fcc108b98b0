"""Progress: the one way long operations report their steps (like mkosi's ``complete_step``).

Rules:

- a *step* is a context manager (:meth:`Steps.step`); steps nest, and the API
  numbers them: top-level steps ``[1/N]`` (``[1]`` when the caller gave no
  total), nested ones ``[1.1]``, ``[1.2]``…, never numbered by hand;
- every step is timed: when it ends after at least :attr:`Steps.report_after`
  seconds (or fails), one line says so with its duration;
- :meth:`Steps.log` writes one line inside the current step, indented under
  it (6 spaces a level, the width of ``[1/8] ``);
- **plain lines** when the output is not a terminal (logs, tests, pipes), each
  with the caller's ``prefix``: exactly the lines described above, nothing
  else; :class:`PlainProgress` reports a known-size operation every 10% or
  ~10 s;
- **rich** on a terminal (``rich=None`` decides by ``isatty``): the same lines
  printed above a live display with a spinner and the elapsed time of each
  open step, and a bar for a known-size operation (:meth:`Steps.progress`);
  :meth:`Steps.suspended` stops the display while a child process writes to
  the terminal itself;
- thread-safe: :meth:`log` and progress may be called from worker threads;
  steps are opened and closed by one thread.

Secrets never go through here: callers write fingerprints, not keys.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

INDENT = " " * 6
"""One level of indentation: the width of ``[1/8] ``."""

Emit = Callable[[str], None]


def human_size(size: float) -> str:
    """``240.3 MB`` (decimal units, as the build's other messages)."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """``7s``, ``2m05s`` (whole seconds)."""
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def step_duration(seconds: float) -> str:
    """A step's duration: ``0.4 s``, ``12 s``, ``2m05s``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return human_duration(seconds)


class PlainProgress:
    """Plain progress lines for logs: one at each 10% step or after ``interval`` s; thread-safe.

    Never two lines for the same step; the last at 100%.
    """

    def __init__(
        self,
        total: int,
        emit: Emit,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 10.0,
        step: int = 10,
        label: str = "compressing",
    ) -> None:
        self.total = max(total, 1)
        self.done = 0
        self._emit = emit
        self._clock = clock
        self._interval = interval
        self._step = step
        self._label = label
        self._start = clock()
        self._last_time = self._start
        self._last_step = 0
        self._lock = threading.Lock()

    def line(self) -> str:
        percent = min(100, self.done * 100 // self.total)
        text = f"{self._label}: {percent}% ({human_size(self.done)} of {human_size(self.total)})"
        elapsed = self._clock() - self._start
        if 0 < self.done < self.total and elapsed > 0:
            left = elapsed * (self.total - self.done) / self.done
            text += f", {human_duration(left)} left"
        elif self.done >= self.total:
            text += f", {human_duration(elapsed)}"
        return text

    def advance(self, size: int) -> None:
        with self._lock:
            self.done += size
            now = self._clock()
            step = min(100, self.done * 100 // self.total) // self._step
            if step > self._last_step or now - self._last_time >= self._interval:
                self._last_step = max(step, self._last_step)
                self._last_time = now
                self._emit(self.line())


class Advance(Protocol):
    def advance(self, size: int) -> None: ...


@dataclass
class Step:
    """One open step: its number (``1/8``, ``1.2``), title, depth and start time."""

    number: str
    title: str
    depth: int
    started: float
    children: int = 0
    task: Any = field(default=None, repr=False)

    @property
    def header(self) -> str:
        return f"{INDENT * self.depth}[{self.number}] {self.title}"


class Steps:
    """Numbered, nested, timed steps and log lines (see the module rules).

    ``stream``: where lines go (default stderr); ``emit``: a line callback
    instead of a stream (always plain). ``rich``: force the terminal display
    on or off (default: when ``stream`` is a terminal).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        emit: Emit | None = None,
        total: int | None = None,
        prefix: str = "",
        rich: bool | None = None,
        quiet: bool = False,
        clock: Callable[[], float] = time.monotonic,
        report_after: float = 1.0,
    ) -> None:
        self._stream = stream
        self._emit = emit
        self.total = total
        self.prefix = prefix
        self.quiet = quiet
        self.clock = clock
        self.report_after = report_after
        if rich is None:
            target = stream if stream is not None else sys.stderr
            rich = emit is None and not quiet and _isatty(target)
        self.rich = rich
        self._stack: list[Step] = []
        self._count = 0
        self._lock = threading.RLock()
        self._live: Any = None  # rich.progress.Progress while a step is open

    # -- output ---------------------------------------------------------------

    def _line(self, text: str, *, style: str | None = None) -> None:
        if self.quiet:
            return
        line = f"{self.prefix}{text}"
        with self._lock:
            if self._emit is not None:
                self._emit(line)
            elif self._live is not None:
                self._live.console.print(line, markup=False, highlight=False, style=style)
            else:
                stream = self._stream if self._stream is not None else sys.stderr
                stream.write(line + "\n")
                stream.flush()

    def log(self, message: str) -> None:
        """One line inside the current step (indented under it)."""
        depth = len(self._stack)
        self._line(f"{INDENT * depth}{message}" if message else message)

    __call__ = log  # a Steps is also a plain ``progress(message)`` callback

    # -- steps ----------------------------------------------------------------

    def _next_number(self) -> str:
        if not self._stack:
            self._count += 1
            return f"{self._count}/{self.total}" if self.total else str(self._count)
        parent = self._stack[-1]
        parent.children += 1
        return f"{parent.number.split('/')[0]}.{parent.children}"

    @contextmanager
    def step(self, title: str) -> Iterator[Step]:
        """Open a step: its header now; its duration at the end (if long, or on failure)."""
        current = Step(self._next_number(), title, len(self._stack), self.clock())
        self._line(current.header, style="bold")
        self._stack.append(current)
        self._start_task(current)
        failed = True
        try:
            yield current
            failed = False
        finally:
            self._stack.pop()
            self._stop_task(current)
            elapsed = self.clock() - current.started
            if failed:
                self._line(f"{current.header}: failed after {step_duration(elapsed)}", style="red")
            elif elapsed >= self.report_after:
                self._line(f"{current.header}: done in {step_duration(elapsed)}", style="green")

    @contextmanager
    def progress(self, total: int, label: str) -> Iterator[Advance]:
        """A known-size operation: a rich bar on a terminal, else :class:`PlainProgress` lines."""
        if self.quiet:
            yield _NoProgress()
            return
        if not self.rich:
            yield PlainProgress(total, self.log, clock=self.clock, label=label)
            return
        live = self._ensure_live()
        task = live.add_task(f"{self.prefix}{INDENT * len(self._stack)}{label}", total=total)
        try:
            yield _RichAdvance(live, task)
        finally:
            live.remove_task(task)
            if not self._stack:
                self._close_live()

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """No live display while a child process writes to the terminal itself."""
        with self._lock:
            live = self._live
            if live is not None:
                live.stop()
        try:
            yield
        finally:
            if live is not None:
                with self._lock:
                    live.start()

    # -- the rich display ------------------------------------------------------

    def _ensure_live(self) -> Any:
        with self._lock:
            if self._live is None:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    Progress,
                    SpinnerColumn,
                    TaskProgressColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )

                stream = self._stream if self._stream is not None else sys.stderr
                self._live = Progress(
                    SpinnerColumn(),
                    TextColumn("{task.description}"),
                    BarColumn(),
                    TaskProgressColumn(),
                    TimeElapsedColumn(),
                    console=Console(file=stream),
                    transient=True,
                )
                self._live.start()
            return self._live

    def _close_live(self) -> None:
        with self._lock:
            if self._live is not None:
                self._live.stop()
                self._live = None

    def _start_task(self, current: Step) -> None:
        if self.rich and not self.quiet:
            live = self._ensure_live()
            current.task = live.add_task(f"{self.prefix}{current.header}", total=None)

    def _stop_task(self, current: Step) -> None:
        if current.task is not None and self._live is not None:
            self._live.remove_task(current.task)
            if not self._stack:
                self._close_live()


class _NoProgress:
    def advance(self, size: int) -> None:
        pass


class _RichAdvance:
    def __init__(self, live: Any, task: Any) -> None:
        self._live = live
        self._task = task

    def advance(self, size: int) -> None:
        self._live.advance(self._task, size)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


Progress = Emit | Steps
"""What a long operation takes as ``progress``: a :class:`Steps` (its steps nest in the
caller's current one) or a plain line callback (see :func:`as_steps`)."""


def as_steps(progress: Progress | None) -> Steps:
    """A :class:`Steps` for a caller's ``progress``: itself, plain lines to a callback, or quiet."""
    if isinstance(progress, Steps):
        return progress
    if progress is None:
        return Steps(emit=lambda _line: None, quiet=True)
    return Steps(emit=progress)
