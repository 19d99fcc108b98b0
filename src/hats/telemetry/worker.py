"""The thread that drives a :class:`~hats.telemetry.batching.BatchQueue`.

Producers call :meth:`ExportWorker.submit` (never blocks on the network: a
full queue drops, as the queue's rules say). One worker thread asks the
queue what to do, calls the exporter outside the lock, and reports the
outcome. :meth:`ExportWorker.close` flushes: everything still held is
exported, with retries, until a deadline; what is left then is counted as
lost and said once.

Messages go to ``say`` (the agents print them on stderr with their
``oak-syslogd:``/``oak-agent:`` prefix): the first error of an outage, the
recovery, the first refusal after a success, losses at shutdown — never one
line per retry and never an item's content.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from hats.telemetry.batching import BatchQueue, Done, Export, Outcome, Transition, Wait

T = TypeVar("T")


@dataclass(frozen=True)
class ExportResult:
    """What one export call returned: the outcome and, for failures, a one-line reason."""

    outcome: Outcome
    detail: str = ""


Exporter = Callable[[Sequence[T], float], ExportResult]
"""``export(items, timeout_seconds)``; must not raise for transport failures."""


class ExportWorker(Generic[T]):
    """Runs the export loop in a daemon thread (module docstring)."""

    def __init__(
        self,
        queue: BatchQueue[T],
        export: Exporter[T],
        *,
        say: Callable[[str], None],
        what: str = "items",
        rpc_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        name: str = "otlp-export",
    ) -> None:
        self._queue = queue
        self._export = export
        self._say = say
        self._what = what
        self._rpc_timeout = rpc_timeout
        self._clock = clock
        self._rand = rand
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._rejecting = False
        self._lost = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def queue(self) -> BatchQueue[T]:
        return self._queue

    def start(self) -> None:
        self._thread.start()

    def submit(self, item: T) -> bool:
        """Queue ``item``; False if the bound made it drop (it is counted and reported)."""
        with self._cond:
            accepted = self._queue.offer(item, self._clock())
            self._cond.notify()
        return accepted

    def close(self, timeout: float) -> int:
        """Flush for at most ``timeout`` seconds, stop; how many items were lost."""
        with self._cond:
            self._queue.flush()
            self._deadline = self._clock() + max(timeout, 0.0)
            self._cond.notify()
        if self._thread.is_alive():
            # The loop ends by itself at the deadline (its calls are bounded by it).
            self._thread.join()
        with self._cond:
            lost = self._lost + self._queue.abandon()
            self._lost = 0
            unreported = self._queue.pending_loss()
        if unreported is not None:
            self._say(
                f"not reported to the launcher: {unreported.dropped} {self._what} dropped at "
                f"the queue bound, {unreported.rejected} refused"
            )
        if lost:
            self._say(
                f"{lost} {self._what} not sent: the launcher was unreachable until the "
                "shutdown deadline"
            )
        return lost

    # ------------------------------------------------------------------ loop

    def _run(self) -> None:
        while True:
            with self._cond:
                action = self._next_export()
                if action is None:
                    return
                timeout = self._call_timeout()
            try:
                result = self._export(action.items, timeout)
            except Exception as exc:  # a bug in the exporter: never retry it forever
                result = ExportResult(Outcome.REJECT, f"{type(exc).__name__}: {exc}")
            with self._cond:
                transition = self._queue.on_result(result.outcome, self._clock(), self._rand())
            self._tell(result, transition, action)

    def _next_export(self) -> Export[T] | None:
        """Under the lock: wait until there is a batch to export; None to stop."""
        while True:
            now = self._clock()
            if self._deadline is not None and now >= self._deadline:
                self._lost += self._queue.abandon()
                return None
            action = self._queue.next_action(now)
            if isinstance(action, Done):
                return None
            if isinstance(action, Export):
                return action
            assert isinstance(action, Wait)
            until = action.until
            if self._deadline is not None:
                until = self._deadline if until is None else min(until, self._deadline)
            self._cond.wait(None if until is None else max(until - now, 0.0))

    def _call_timeout(self) -> float:
        if self._deadline is None:
            return self._rpc_timeout
        return max(min(self._rpc_timeout, self._deadline - self._clock()), 0.05)

    def _tell(self, result: ExportResult, transition: Transition, action: Export[T]) -> None:
        if transition is Transition.OUTAGE_STARTED:
            self._say(
                f"OTLP error: {result.detail}; retrying with backoff (up to "
                f"{self._queue.backoff.maximum:g} s apart), keeping up to "
                f"{self._queue.settings.max_queue} {self._what}"
            )
        elif transition is Transition.RECOVERED:
            self._say(
                f"OTLP: the launcher is reachable again after {action.attempt - 1} failed attempts"
            )
        if result.outcome is Outcome.REJECT:
            if not self._rejecting:
                self._say(
                    f"OTLP error: {result.detail}; {len(action.items)} {self._what} refused "
                    "by the launcher and dropped (counted)"
                )
            self._rejecting = True
        elif result.outcome is Outcome.OK:
            self._rejecting = False
