"""The agents' shared shell: export settings from flags, the worker, stop signals."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Generic, TypeVar

import grpc
from google.protobuf.message import Message

from hats.agent_common import resolve_launcher_addr
from hats.telemetry import otlp_grpc
from hats.telemetry.batching import Backoff, BatchQueue, BatchSettings, LossReport, Overflow
from hats.telemetry.worker import ExportResult, ExportWorker

T = TypeVar("T")
Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)


@dataclass(frozen=True)
class ExportOptions:
    """Where and how an agent exports (from its flags)."""

    launcher_addr: str
    settings: BatchSettings
    backoff: Backoff
    rpc_timeout: float
    shutdown_timeout: float


def export_options(
    args: argparse.Namespace, *, max_delay: float, overflow: Overflow
) -> ExportOptions:
    """The options of :func:`hats.agent_common.add_export_arguments` (raises HatsError)."""
    maximum = args.max_retry_delay
    return ExportOptions(
        launcher_addr=resolve_launcher_addr(args.launcher_addr),
        settings=BatchSettings(
            max_batch=args.batch_size,
            max_delay=max_delay,
            max_queue=args.queue_size,
            overflow=overflow,
        ),
        backoff=Backoff(initial=min(0.5, maximum), maximum=maximum),
        rpc_timeout=args.rpc_timeout,
        shutdown_timeout=args.shutdown_timeout,
    )


@dataclass
class Exporting(Generic[T]):
    """The running worker of :func:`exporting`; ``lost`` is set when it is closed."""

    worker: ExportWorker[T]
    lost: int = 0


@contextmanager
def exporting(
    options: ExportOptions,
    *,
    call: Callable[[grpc.Channel], grpc.UnaryUnaryMultiCallable[Request, Response]],
    request: Callable[[Sequence[T]], Request],
    size: Callable[[T], int],
    report: Callable[[LossReport], T | None],
    say: Callable[[str], None],
    what: str,
) -> Iterator[Exporting[T]]:
    """A worker exporting batches of ``T`` as ``request``s while inside.

    On leaving: the worker flushes for up to ``shutdown_timeout`` (``lost`` is
    what it could not deliver), the channel closes, and, unless an error
    is on its way out, one line says ``stopped: N WHAT sent, D dropped at the
    queue bound, R refused, L undelivered``.
    """
    channel = otlp_grpc.launcher_channel(options.launcher_addr, options.backoff.maximum)
    method = call(channel)

    def export(items: Sequence[T], timeout: float) -> ExportResult:
        return otlp_grpc.export(method, request(items), timeout)

    queue: BatchQueue[T] = BatchQueue(options.settings, options.backoff, size=size, report=report)
    worker = ExportWorker(queue, export, say=say, what=what, rpc_timeout=options.rpc_timeout)
    worker.start()
    running = Exporting(worker)
    try:
        yield running
    finally:
        try:
            running.lost = worker.close(options.shutdown_timeout)
        finally:
            channel.close()
    say(
        f"stopped: {queue.exported} {what} sent, {queue.dropped_total} dropped at the "
        f"queue bound, {queue.rejected_total} refused, {running.lost} undelivered"
    )


@contextmanager
def stop_signals(on_stop: Callable[[], None] | None = None) -> Iterator[threading.Event]:
    """SIGTERM/SIGINT set the yielded event (and call ``on_stop``) while inside."""
    event = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        event.set()
        if on_stop is not None:
            on_stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield event
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
