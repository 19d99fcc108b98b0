"""The export pipeline of both agents, as a pure state machine (no clock, no I/O).

A :class:`BatchQueue` holds the items (log records, metric snapshots) that
are not yet delivered, and tells its driver what to do next
(:meth:`BatchQueue.next_action`): export this batch, wait until a time, wait
for more items, or stop (everything delivered after :meth:`BatchQueue.flush`).
The driver (:mod:`hats.telemetry.worker`) reports each export's outcome with
:meth:`BatchQueue.on_result`; times are plain floats from the driver's
monotonic clock, randomness (jitter) is passed in.

Rules:

- **bound**: at most ``max_queue`` items are held, the batch being exported
  included. An item offered to a full queue is dropped (``drop-newest``: the
  oldest records, e.g. the start of the boot, are kept) or makes room by
  dropping the oldest waiting item (``drop-oldest``: for metrics, where the
  latest values matter). Drops are counted; the order of what is exported is
  always the order of the offers;
- **batches**: a batch leaves when ``max_batch`` items or ``max_batch_bytes``
  bytes are waiting, when the oldest waiting item is ``max_delay`` seconds
  old, or at once while flushing. A batch holds at most ``max_batch`` items
  and ``max_batch_bytes`` bytes, except that one item larger than the byte
  budget travels alone;
- **retries**: a batch whose export failed with a retryable error
  (:attr:`Outcome.RETRY`) stays at the head and is exported again, unchanged,
  after :meth:`Backoff.delay` (exponential, capped, jittered); items keep
  their order. A batch the receiver refused (:attr:`Outcome.REJECT`, e.g.
  ``UNIMPLEMENTED``) is dropped and counted, as OTLP prescribes;
- **loss report**: after the next successful export, the counts of dropped
  and rejected items since the last report go to the ``report`` callback;
  the item it returns (if any) is put first in the queue, beyond the bound,
  so it is never itself dropped. Counts not reported yet (nothing got through
  since) are in :meth:`BatchQueue.pending_loss`;
- **outages**: :meth:`BatchQueue.on_result` says when an outage starts (the
  first failure after a success) and ends, so errors are printed once per
  outage, not once per retry.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from hats.errors import HatsError

T = TypeVar("T")


class BatchSettingsError(HatsError):
    """A batching or retry setting out of range."""


class Overflow(enum.Enum):
    """What a full queue does with one more item."""

    DROP_NEWEST = "drop-newest"
    DROP_OLDEST = "drop-oldest"


@dataclass(frozen=True)
class BatchSettings:
    """Batch size, delay and the queue bound (see the module docstring)."""

    max_batch: int = 512
    max_delay: float = 1.0
    max_queue: int = 8192
    max_batch_bytes: int = 1 << 20
    overflow: Overflow = Overflow.DROP_NEWEST

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise BatchSettingsError(f"batch size {self.max_batch}: must be at least 1")
        if self.max_queue < 1:
            raise BatchSettingsError(f"queue size {self.max_queue}: must be at least 1")
        if self.max_batch_bytes < 1:
            raise BatchSettingsError(f"batch bytes {self.max_batch_bytes}: must be at least 1")
        if not math.isfinite(self.max_delay) or self.max_delay < 0:
            raise BatchSettingsError(f"batch delay {self.max_delay}: must be 0 or more seconds")


@dataclass(frozen=True)
class Backoff:
    """Retry delays: ``initial * multiplier**(n-1)`` capped at ``maximum``, ± ``jitter``.

    ``jitter`` is a fraction: with ``rand`` in [0, 1) the delay is scaled by
    ``1 - jitter + 2 * jitter * rand`` and never exceeds ``maximum``.
    """

    initial: float = 0.5
    multiplier: float = 2.0
    maximum: float = 10.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        for name, value in (("initial", self.initial), ("maximum", self.maximum)):
            if not math.isfinite(value) or value <= 0:
                raise BatchSettingsError(f"retry delay {name} {value}: must be above 0 seconds")
        if self.initial > self.maximum:
            raise BatchSettingsError(
                f"retry delay: initial {self.initial} s is above the maximum {self.maximum} s"
            )
        if not math.isfinite(self.multiplier) or self.multiplier < 1:
            raise BatchSettingsError(f"retry multiplier {self.multiplier}: must be at least 1")
        if not 0 <= self.jitter < 1:
            raise BatchSettingsError(f"retry jitter {self.jitter}: must be in [0, 1)")

    def delay(self, failures: int, rand: float = 0.5) -> float:
        """The wait after the ``failures``-th consecutive failure (``failures`` ≥ 1)."""
        base = self.initial
        for _ in range(max(failures, 1) - 1):  # stops at the cap: no overflow
            base *= self.multiplier
            if base >= self.maximum:
                break
        base = min(base, self.maximum)
        scaled = base * (1 - self.jitter + 2 * self.jitter * min(max(rand, 0.0), 1.0))
        return min(scaled, self.maximum)


class Outcome(enum.Enum):
    """How one export ended."""

    OK = "ok"
    RETRY = "retry"  # not delivered, try again later (launcher unreachable, …)
    REJECT = "reject"  # the receiver refused it for good; drop the batch


class Transition(enum.Enum):
    """What an export result changed, for the driver's messages."""

    NONE = "none"
    OUTAGE_STARTED = "outage-started"  # first failure after a success (or at start)
    RECOVERED = "recovered"  # first success after failures


@dataclass(frozen=True)
class LossReport:
    """Items lost since the last report: dropped at the bound, rejected by the receiver."""

    dropped: int
    rejected: int
    bound: int


@dataclass(frozen=True)
class Export(Generic[T]):
    """Export these items now (a retry sends the same tuple again)."""

    items: tuple[T, ...]
    attempt: int  # 1 for the first try


@dataclass(frozen=True)
class Wait:
    """Nothing to do until ``until`` (None: until an item arrives or a flush)."""

    until: float | None


@dataclass(frozen=True)
class Done:
    """Flushing and nothing is left: the driver may stop."""


Action = Export[T] | Wait | Done


@dataclass
class _Held(Generic[T]):
    item: T
    size: int
    since: float
    report: bool = False  # a loss report: beyond the bound, never dropped


class BatchQueue(Generic[T]):
    """The pure export pipeline (module docstring). Not thread-safe: lock around it."""

    def __init__(
        self,
        settings: BatchSettings,
        backoff: Backoff,
        *,
        size: Callable[[T], int] | None = None,
        report: Callable[[LossReport], T | None] | None = None,
    ) -> None:
        self.settings = settings
        self.backoff = backoff
        self._size = size
        self._report = report
        self._waiting: deque[_Held[T]] = deque()
        self._waiting_bytes = 0
        self._in_flight: tuple[T, ...] | None = None
        self._reports_held = 0  # loss reports among the held items
        self._reports_in_flight = 0
        self._in_flight_sent = False  # Export returned, result not yet known
        self._failures = 0
        self._retry_at: float | None = None
        self._flushing = False
        self._outage = False
        self._dropped = 0
        self._rejected = 0
        self.offered = 0
        self.exported = 0
        self.dropped_total = 0
        self.rejected_total = 0

    # ------------------------------------------------------------------ state

    def __len__(self) -> int:
        """Items held: waiting plus the batch being exported or retried."""
        return len(self._waiting) + (len(self._in_flight) if self._in_flight else 0)

    @property
    def flushing(self) -> bool:
        return self._flushing

    @property
    def in_outage(self) -> bool:
        """Between a failed export and the next successful one."""
        return self._outage

    @property
    def failures(self) -> int:
        """Consecutive failed attempts of the current batch."""
        return self._failures

    def pending_loss(self) -> LossReport | None:
        """The counts the next report will carry (None when nothing was lost)."""
        if not self._dropped and not self._rejected:
            return None
        return LossReport(self._dropped, self._rejected, self.settings.max_queue)

    # ------------------------------------------------------------------ input

    def offer(self, item: T, now: float) -> bool:
        """Queue ``item``; False if it was dropped (counted) because the queue is full."""
        self.offered += 1
        if len(self) - self._reports_held >= self.settings.max_queue:
            self._count_dropped(1)
            if self.settings.overflow is Overflow.DROP_NEWEST:
                return False
            # The oldest waiting item that is not a loss report (never the batch in flight).
            oldest = next((i for i, held in enumerate(self._waiting) if not held.report), None)
            if oldest is None:
                return False
            self._waiting_bytes -= self._waiting[oldest].size
            del self._waiting[oldest]
        self._append(item, now)
        return True

    def flush(self) -> None:
        """Export everything now, batch after batch, then report :class:`Done`."""
        self._flushing = True

    def abandon(self) -> int:
        """Give up on every held item (shutdown deadline); how many there were."""
        lost = len(self)
        self._waiting.clear()
        self._waiting_bytes = 0
        self._reports_held = 0
        self._reports_in_flight = 0
        self._in_flight = None
        self._in_flight_sent = False
        self._retry_at = None
        return lost

    # ----------------------------------------------------------------- output

    def next_action(self, now: float) -> Action[T]:
        """What the driver should do now."""
        if self._in_flight_sent:
            raise RuntimeError("next_action before on_result of the previous export")
        if self._in_flight is not None:
            if self._retry_at is not None and now < self._retry_at:
                return Wait(self._retry_at)
            self._in_flight_sent = True
            return Export(self._in_flight, self._failures + 1)
        if not self._waiting:
            return Done() if self._flushing else Wait(None)
        settings = self.settings
        oldest = self._waiting[0].since
        due = (
            self._flushing
            or len(self._waiting) >= settings.max_batch
            or self._waiting_bytes >= settings.max_batch_bytes
            or now >= oldest + settings.max_delay
        )
        if not due:
            return Wait(oldest + settings.max_delay)
        self._in_flight = self._take_batch()
        self._in_flight_sent = True
        self._failures = 0
        self._retry_at = None
        return Export(self._in_flight, 1)

    def on_result(self, outcome: Outcome, now: float, rand: float = 0.5) -> Transition:
        """Record how the last :class:`Export` ended; what changed about the outage."""
        if not self._in_flight_sent or self._in_flight is None:
            raise RuntimeError("on_result without an export in flight")
        self._in_flight_sent = False
        batch = self._in_flight
        if outcome is not Outcome.RETRY:
            self._reports_held -= self._reports_in_flight
            self._reports_in_flight = 0
        if outcome is Outcome.RETRY:
            self._failures += 1
            self._retry_at = now + self.backoff.delay(self._failures, rand)
            if not self._outage:
                self._outage = True
                return Transition.OUTAGE_STARTED
            return Transition.NONE
        self._in_flight = None
        self._failures = 0
        self._retry_at = None
        if outcome is Outcome.REJECT:
            self._rejected += len(batch)
            self.rejected_total += len(batch)
            # A refusal is an answer: the receiver is reachable, the outage (if any) is over.
            return self._end_outage()
        self.exported += len(batch)
        self._queue_report(now)
        return self._end_outage()

    # -------------------------------------------------------------- internals

    def _append(self, item: T, now: float, report: bool = False) -> None:
        size = self._size(item) if self._size is not None else 0
        if report:
            # First in line; the head's age decides when the next batch is due: keep the oldest.
            since = min(now, self._waiting[0].since) if self._waiting else now
            self._waiting.appendleft(_Held(item, size, since, report=True))
            self._reports_held += 1
        else:
            self._waiting.append(_Held(item, size, now))
        self._waiting_bytes += size

    def _count_dropped(self, count: int) -> None:
        self._dropped += count
        self.dropped_total += count

    def _take_batch(self) -> tuple[T, ...]:
        settings = self.settings
        batch: list[T] = []
        total = 0
        while self._waiting and len(batch) < settings.max_batch:
            head = self._waiting[0]
            if batch and total + head.size > settings.max_batch_bytes:
                break
            self._waiting.popleft()
            self._waiting_bytes -= head.size
            self._reports_in_flight += head.report
            batch.append(head.item)
            total += head.size
        return tuple(batch)

    def _queue_report(self, now: float) -> None:
        loss = self.pending_loss()
        if loss is None or self._report is None:
            return
        self._dropped = 0
        self._rejected = 0
        item = self._report(loss)
        if item is not None:
            self._append(item, now, report=True)

    def _end_outage(self) -> Transition:
        if self._outage:
            self._outage = False
            return Transition.RECOVERED
        return Transition.NONE
