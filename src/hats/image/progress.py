"""Progress of a build's compression, for terminals and for logs.

Rules:
- the total is the exact size of the uncompressed tar, known from the plan
  (:class:`hats.image.build.BuildPlan`) before compression starts; the
  count is of tar bytes the compressor has consumed;
- on a terminal, a rich bar (total, percentage, ETA) shares one console with
  the log lines, which are printed above it (the CLI does that);
- without a terminal (CI logs), :class:`PlainProgress` prints one plain line
  at each 10% step or after ``interval`` seconds without one, whichever
  comes first, and never two for the same step; the last at 100%.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def human_size(size: float) -> str:
    """``240.3 MB`` (decimal units, as the build's other messages)."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class PlainProgress:
    """Plain progress lines for logs (see the module rules); thread-safe."""

    def __init__(
        self,
        total: int,
        emit: Callable[[str], None],
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
