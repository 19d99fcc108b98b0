"""The pure export pipeline: batches, the bound, retries, loss reports, outages."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hats.telemetry.batching import (
    Backoff,
    BatchQueue,
    BatchSettings,
    BatchSettingsError,
    Done,
    Export,
    LossReport,
    Outcome,
    Overflow,
    Transition,
    Wait,
)

NO_JITTER = Backoff(initial=1.0, multiplier=2.0, maximum=8.0, jitter=0.0)


def _queue(
    max_batch: int = 3,
    max_delay: float = 1.0,
    max_queue: int = 10,
    overflow: Overflow = Overflow.DROP_NEWEST,
    max_batch_bytes: int = 1 << 20,
    report: bool = True,
) -> BatchQueue[str]:
    return BatchQueue(
        BatchSettings(
            max_batch=max_batch,
            max_delay=max_delay,
            max_queue=max_queue,
            overflow=overflow,
            max_batch_bytes=max_batch_bytes,
        ),
        NO_JITTER,
        size=len,
        report=(lambda loss: f"lost {loss.dropped}/{loss.rejected}/{loss.bound}")
        if report
        else None,
    )


def _export(queue: BatchQueue[str], now: float) -> Export[str]:
    action = queue.next_action(now)
    assert isinstance(action, Export), action
    return action


def test_batch_leaves_when_full_or_when_the_oldest_is_due() -> None:
    queue = _queue(max_batch=3, max_delay=1.0)
    assert queue.next_action(0.0) == Wait(None)
    queue.offer("a", 0.0)
    queue.offer("b", 0.2)
    assert queue.next_action(0.5) == Wait(1.0)  # due one delay after the oldest
    assert _export(queue, 1.0).items == ("a", "b")
    queue.on_result(Outcome.OK, 1.1)
    for item in "cdef":
        queue.offer(item, 2.0)
    assert _export(queue, 2.0).items == ("c", "d", "e")  # full: at once, at most 3
    queue.on_result(Outcome.OK, 2.0)
    assert queue.next_action(2.0) == Wait(3.0)
    assert queue.exported == 5 and len(queue) == 1


def test_byte_budget_splits_batches_and_a_big_item_travels_alone() -> None:
    queue = _queue(max_batch=10, max_batch_bytes=5)
    for item in ("aa", "bb", "cc", "dddddddd", "e"):
        queue.offer(item, 0.0)
    batches = []
    while len(queue):
        action = _export(queue, 5.0)
        batches.append(action.items)
        queue.on_result(Outcome.OK, 5.0)
    assert batches == [("aa", "bb"), ("cc",), ("dddddddd",), ("e",)]


def test_retry_resends_the_same_batch_after_the_backoff_and_keeps_order() -> None:
    queue = _queue(max_batch=2, max_delay=0.0)
    for item in "abc":
        queue.offer(item, 0.0)
    first = _export(queue, 0.0)
    assert first == Export(("a", "b"), 1)
    assert queue.on_result(Outcome.RETRY, 0.0) is Transition.OUTAGE_STARTED
    assert queue.next_action(0.5) == Wait(1.0)  # 1 s after the first failure
    assert _export(queue, 1.0) == Export(("a", "b"), 2)
    assert queue.on_result(Outcome.RETRY, 1.0) is Transition.NONE  # said once per outage
    assert queue.next_action(1.0) == Wait(3.0)  # then 2 s
    assert _export(queue, 3.0) == Export(("a", "b"), 3)
    assert queue.on_result(Outcome.OK, 3.0) is Transition.RECOVERED
    assert _export(queue, 3.0) == Export(("c",), 1)
    assert queue.on_result(Outcome.OK, 3.0) is Transition.NONE
    assert queue.exported == 3 and not queue.in_outage


def test_bound_counts_the_batch_in_flight_and_drops_newest() -> None:
    queue = _queue(max_batch=2, max_delay=0.0, max_queue=3)
    for item in "abc":
        assert queue.offer(item, 0.0)
    _export(queue, 0.0)  # a, b in flight
    queue.on_result(Outcome.RETRY, 0.0)
    assert not queue.offer("d", 0.1)
    assert not queue.offer("e", 0.1)
    assert len(queue) == 3 and queue.dropped_total == 2
    assert queue.pending_loss() == LossReport(dropped=2, rejected=0, bound=3)
    # Reachable again: the report goes first after the batch that got through.
    assert _export(queue, 5.0).items == ("a", "b")
    queue.on_result(Outcome.OK, 5.0)
    assert queue.pending_loss() is None
    assert _export(queue, 5.0).items == ("lost 2/0/3", "c")
    queue.on_result(Outcome.OK, 5.0)
    assert queue.next_action(5.0) == Wait(None)


def test_drop_oldest_keeps_the_latest_waiting_items() -> None:
    queue = _queue(max_batch=1, max_delay=0.0, max_queue=3, overflow=Overflow.DROP_OLDEST)
    for item in "abc":
        queue.offer(item, 0.0)
    _export(queue, 0.0)  # a in flight, never dropped from under the exporter
    queue.on_result(Outcome.RETRY, 0.0)
    assert queue.offer("d", 0.1) and queue.offer("e", 0.1)
    assert queue.dropped_total == 2
    delivered: list[str] = []
    now = 10.0
    while len(queue):
        action = _export(queue, now)
        delivered.extend(action.items)
        queue.on_result(Outcome.OK, now)
    assert delivered == ["a", "lost 2/0/3", "d", "e"]


def test_drop_oldest_never_drops_the_loss_report() -> None:
    # found by the property below: the report sits beyond the bound
    queue = _queue(max_batch=2, max_delay=0.5, max_queue=1, overflow=Overflow.DROP_OLDEST)
    queue.offer("a", 0.0)
    queue.offer("b", 0.0)  # drops a
    assert _export(queue, 1.0).items == ("b",)
    queue.on_result(Outcome.OK, 1.0)  # queues the report
    assert queue.offer("c", 1.0)  # the report does not count, c fits
    assert len(queue) == 2 and queue.dropped_total == 1
    assert queue.offer("d", 1.0)  # drops c, not the report
    assert _export(queue, 2.0).items == ("lost 1/0/1", "d")
    assert queue.dropped_total == 2


def test_rejected_batches_are_dropped_counted_and_reported() -> None:
    queue = _queue(max_batch=2, max_delay=0.0)
    for item in "abc":
        queue.offer(item, 0.0)
    _export(queue, 0.0)
    assert queue.on_result(Outcome.REJECT, 0.0) is Transition.NONE
    assert queue.rejected_total == 2
    assert _export(queue, 0.0).items == ("c",)
    queue.on_result(Outcome.OK, 0.0)
    assert _export(queue, 0.0).items == ("lost 0/2/10",)


def test_reject_after_failures_ends_the_outage() -> None:
    queue = _queue(max_delay=0.0)
    queue.offer("a", 0.0)
    _export(queue, 0.0)
    assert queue.on_result(Outcome.RETRY, 0.0) is Transition.OUTAGE_STARTED
    _export(queue, 5.0)
    assert queue.on_result(Outcome.REJECT, 5.0) is Transition.RECOVERED


def test_report_callback_may_queue_nothing() -> None:
    seen: list[LossReport] = []

    def report(loss: LossReport) -> str | None:
        seen.append(loss)
        return None

    queue: BatchQueue[str] = BatchQueue(
        BatchSettings(max_batch=1, max_delay=0.0, max_queue=1), NO_JITTER, report=report
    )
    queue.offer("a", 0.0)
    assert not queue.offer("b", 0.0)
    _export(queue, 0.0)
    queue.on_result(Outcome.OK, 0.0)
    assert seen == [LossReport(1, 0, 1)]
    assert queue.next_action(0.0) == Wait(None)


def test_flush_exports_at_once_then_done_and_abandon_counts() -> None:
    queue = _queue(max_batch=2, max_delay=60.0)
    for item in "ab":
        queue.offer(item, 0.0)
    _export(queue, 0.0)
    queue.on_result(Outcome.OK, 0.0)
    for item in "abc":
        queue.offer(item, 1.0)
    # a full batch leaves at once; a lone item waits for the delay
    assert _export(queue, 1.0).items == ("a", "b")
    queue.on_result(Outcome.OK, 1.0)
    assert queue.next_action(1.0) == Wait(61.0)
    for item in "de":
        queue.offer(item, 2.0)
    queue.flush()
    assert _export(queue, 2.0).items == ("c", "d")
    queue.on_result(Outcome.RETRY, 2.0)
    assert queue.next_action(2.0) == Wait(3.0)  # still backs off while flushing
    assert queue.abandon() == 3
    assert queue.next_action(4.0) == Done()


def test_misuse_is_a_bug_not_silence() -> None:
    queue = _queue(max_delay=0.0)
    with pytest.raises(RuntimeError):
        queue.on_result(Outcome.OK, 0.0)
    queue.offer("a", 0.0)
    _export(queue, 0.0)
    with pytest.raises(RuntimeError):
        queue.next_action(0.0)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_batch": 0}, {"max_queue": 0}, {"max_batch_bytes": 0}, {"max_delay": -1.0}],
)
def test_settings_are_checked(kwargs: dict[str, float]) -> None:
    with pytest.raises(BatchSettingsError):
        BatchSettings(**kwargs)  # type: ignore[arg-type]


def test_backoff_schedule_is_exponential_capped_and_jittered() -> None:
    backoff = Backoff(initial=0.5, multiplier=2.0, maximum=10.0, jitter=0.2)
    assert [backoff.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.delay(10**9) == 10.0  # no overflow, still capped
    assert backoff.delay(1, rand=0.0) == pytest.approx(0.4)
    assert backoff.delay(1, rand=1.0) == pytest.approx(0.6)
    assert backoff.delay(6, rand=1.0) == 10.0  # jitter never exceeds the cap
    for bad in (
        {"initial": 0.0},
        {"initial": 20.0},
        {"multiplier": 0.5},
        {"jitter": 1.0},
        {"maximum": float("inf")},
    ):
        with pytest.raises(BatchSettingsError):
            Backoff(**bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------- properties

_steps = st.lists(
    st.one_of(
        st.tuples(st.just("offer"), st.integers(0, 3)),
        st.tuples(st.just("tick"), st.floats(0.0, 3.0)),
        st.tuples(st.just("result"), st.sampled_from(list(Outcome))),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(
    steps=_steps,
    max_batch=st.integers(1, 4),
    max_queue=st.integers(1, 6),
    overflow=st.sampled_from(list(Overflow)),
    max_delay=st.sampled_from([0.0, 0.5, 2.0]),
)
def test_every_item_is_delivered_once_in_order_or_counted(
    steps: list[tuple[str, object]],
    max_batch: int,
    max_queue: int,
    overflow: Overflow,
    max_delay: float,
) -> None:
    """Nothing is lost silently, nothing twice, order kept, the bound holds."""
    queue: BatchQueue[int] = BatchQueue(
        BatchSettings(
            max_batch=max_batch, max_delay=max_delay, max_queue=max_queue, overflow=overflow
        ),
        Backoff(initial=0.1, maximum=1.0, jitter=0.0),
        report=lambda loss: -(loss.dropped + loss.rejected),  # reports are negative
    )
    now = 0.0
    offered = 0
    delivered: list[int] = []
    rejected: list[int] = []
    in_flight: Export[int] | None = None

    def finish(outcome: Outcome) -> None:
        nonlocal in_flight
        assert in_flight is not None
        queue.on_result(outcome, now)
        if outcome is Outcome.OK:
            delivered.extend(in_flight.items)
        elif outcome is Outcome.REJECT:
            rejected.extend(in_flight.items)
        in_flight = None

    for kind, value in steps:
        if kind == "offer":
            assert isinstance(value, int)
            for _ in range(value):
                queue.offer(offered, now)
                offered += 1
        elif kind == "tick":
            assert isinstance(value, float)
            now += value
        elif in_flight is not None:
            assert isinstance(value, Outcome)
            finish(value)
        if in_flight is None:
            action = queue.next_action(now)
            if isinstance(action, Export):
                in_flight = action
                assert 1 <= len(action.items) <= max_batch
        assert len(queue) <= max_queue + 1  # + one loss report beyond the bound
    # Then the launcher is reachable for good: flush everything.
    queue.flush()
    while True:
        if in_flight is not None:
            finish(Outcome.OK)
        action = queue.next_action(now + 100.0)
        if isinstance(action, Done):
            break
        assert isinstance(action, Export)
        in_flight = action

    data = [i for i in delivered if i >= 0]
    assert data == sorted(data) and len(set(data)) == len(data)
    rejected_data = [i for i in rejected if i >= 0]
    # every offered item: delivered, dropped at the bound, or refused — once
    assert len(data) + queue.dropped_total + len(rejected_data) == offered
    assert not set(data) & set(rejected_data)
    # and the reports (sent, or still pending when nothing got through since) add up
    reported = -sum(i for i in delivered + rejected if i < 0)
    pending = queue.pending_loss()
    unreported = pending.dropped + pending.rejected if pending else 0
    assert reported + unreported == queue.dropped_total + queue.rejected_total
