"""The export thread: flush on close, the shutdown deadline, one message per outage."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from hats.telemetry.batching import Backoff, BatchQueue, BatchSettings, Outcome
from hats.telemetry.worker import ExportResult, ExportWorker


class FakeLauncher:
    """An exporter whose reachability the test switches; records what it got."""

    def __init__(self, up: bool = True) -> None:
        self.up = up
        self.refuse = False
        self.batches: list[tuple[str, ...]] = []
        self.calls = 0
        self.timeouts: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, items: Sequence[str], timeout: float) -> ExportResult:
        with self.lock:
            self.calls += 1
            self.timeouts.append(timeout)
            if self.refuse:
                return ExportResult(Outcome.REJECT, "UNIMPLEMENTED: no such service")
            if not self.up:
                return ExportResult(Outcome.RETRY, "UNAVAILABLE: connection refused")
            self.batches.append(tuple(items))
            return ExportResult(Outcome.OK)

    def items(self) -> list[str]:
        with self.lock:
            return [item for batch in self.batches for item in batch]


def _worker(
    launcher: FakeLauncher,
    said: list[str],
    *,
    max_batch: int = 4,
    max_delay: float = 0.05,
    max_queue: int = 100,
    maximum: float = 0.05,
) -> ExportWorker[str]:
    queue: BatchQueue[str] = BatchQueue(
        BatchSettings(max_batch=max_batch, max_delay=max_delay, max_queue=max_queue),
        Backoff(initial=0.01, maximum=maximum, jitter=0.0),
        report=lambda loss: f"report {loss.dropped}",
    )
    worker = ExportWorker(queue, launcher, say=said.append, what="records", rpc_timeout=2.0)
    worker.start()
    return worker


def _wait(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_close_flushes_what_the_delay_still_held() -> None:
    launcher, said = FakeLauncher(), list[str]()
    worker = _worker(launcher, said, max_delay=60.0, max_batch=100)
    for i in range(10):
        assert worker.submit(f"r{i}")
    time.sleep(0.1)
    assert launcher.items() == []  # waiting for the 60 s delay
    started = time.monotonic()
    assert worker.close(5.0) == 0
    assert time.monotonic() - started < 2.0
    assert launcher.items() == [f"r{i}" for i in range(10)]
    assert said == []


def test_outage_said_once_then_recovery_and_nothing_lost() -> None:
    launcher, said = FakeLauncher(up=False), list[str]()
    worker = _worker(launcher, said)
    for i in range(12):
        worker.submit(f"r{i}")
    _wait(lambda: launcher.calls >= 5)
    launcher.up = True
    _wait(lambda: len(launcher.items()) == 12)
    assert worker.close(1.0) == 0
    assert launcher.items() == [f"r{i}" for i in range(12)]
    errors = [line for line in said if line.startswith("OTLP error")]
    assert len(errors) == 1, said
    assert "UNAVAILABLE: connection refused" in errors[0]
    assert "keeping up to 100 records" in errors[0]
    assert len([line for line in said if "reachable again after" in line]) == 1


def test_drops_beyond_the_bound_are_reported_once_reachable() -> None:
    launcher, said = FakeLauncher(up=False), list[str]()
    worker = _worker(launcher, said, max_queue=5, max_batch=2)
    accepted = [worker.submit(f"r{i}") for i in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    launcher.up = True
    _wait(lambda: len(launcher.items()) == 6)
    worker.close(1.0)
    items = launcher.items()
    assert [i for i in items if not i.startswith("report")] == [f"r{i}" for i in range(5)]
    assert items.count("report 3") == 1


def test_shutdown_deadline_bounds_the_flush_and_counts_the_lost() -> None:
    launcher, said = FakeLauncher(up=False), list[str]()
    worker = _worker(launcher, said, maximum=0.05)
    for i in range(7):
        worker.submit(f"r{i}")
    started = time.monotonic()
    assert worker.close(0.3) == 7
    assert 0.25 < time.monotonic() - started < 2.0
    assert launcher.items() == []
    assert said[-1] == (
        "7 records not sent: the launcher was unreachable until the shutdown deadline"
    )
    # export calls made while closing never outlive the deadline
    assert max(launcher.timeouts[1:]) <= 0.3


def test_refusals_are_dropped_and_said_once_until_a_success() -> None:
    launcher, said = FakeLauncher(), list[str]()
    launcher.refuse = True
    worker = _worker(launcher, said, max_batch=1, max_delay=0.0)
    for i in range(3):
        worker.submit(f"r{i}")
    _wait(lambda: worker.queue.rejected_total == 3)
    launcher.refuse = False
    worker.submit("ok")
    _wait(lambda: "report 0" in launcher.items() or len(launcher.items()) >= 2)
    worker.close(1.0)
    refused = [line for line in said if "refused by the launcher" in line]
    assert len(refused) == 1 and "UNIMPLEMENTED" in refused[0]
    assert launcher.items()[0] == "ok"


def test_unreported_losses_are_said_at_close() -> None:
    launcher, said = FakeLauncher(), list[str]()
    launcher.refuse = True
    worker = _worker(launcher, said, max_batch=1, max_delay=0.0)
    worker.submit("r0")
    _wait(lambda: worker.queue.rejected_total == 1)
    worker.close(0.5)
    assert (
        said[-1] == "not reported to the launcher: 0 records dropped at the queue bound, 1 refused"
    )


def test_an_exporter_bug_rejects_the_batch_instead_of_killing_the_thread() -> None:
    said: list[str] = []
    calls: list[int] = []

    def broken(items: Sequence[str], timeout: float) -> ExportResult:
        calls.append(len(items))
        if len(calls) == 1:
            raise ValueError("boom")
        return ExportResult(Outcome.OK)

    queue: BatchQueue[str] = BatchQueue(
        BatchSettings(max_batch=1, max_delay=0.0), Backoff(), report=lambda _: None
    )
    worker = ExportWorker(queue, broken, say=said.append)
    worker.start()
    worker.submit("a")
    worker.submit("b")
    assert worker.close(2.0) == 0
    assert queue.exported == 1 and queue.rejected_total == 1
    assert any("ValueError: boom" in line for line in said)
