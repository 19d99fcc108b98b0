"""The agent's I/O shell: read /proc every interval, hand the snapshot to the worker."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

from hats.errors import HatsError
from hats.telemetry import otlp_grpc
from hats.telemetry.batching import LossReport, Overflow
from hats.telemetry.otlp_metrics import Metrics, metrics_request, metrics_size, snapshot_metrics
from hats.telemetry.procfs import read_snapshot
from hats.telemetry.runtime import export_options, exporting, stop_signals
from hats.telemetry.worker import ExportWorker


class AgentError(HatsError):
    """The agent cannot start."""


def clock_ticks() -> int:
    """USER_HZ, the unit of /proc/stat's CPU times (100 on Linux)."""
    try:
        value = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return 100
    return value if value > 0 else 100


def collect(
    root: Path, worker: ExportWorker[Metrics], told: set[str], say: Callable[[str], None]
) -> None:
    """Take one reading and queue it; each distinct problem is said once."""
    snapshot = read_snapshot(root)
    for problem in snapshot.problems:
        if problem not in told:
            told.add(problem)
            say(problem)
    metrics = snapshot_metrics(snapshot, time.time_ns(), clock_ticks())
    if metrics:
        worker.submit(metrics)


def run(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    """Export a snapshot every interval until a stop signal (or once); the exit status."""
    root = Path(args.proc_root)
    if not root.is_dir():
        raise AgentError(f"--proc-root {root}: no such directory")
    options = export_options(args, max_delay=0.0, overflow=Overflow.DROP_OLDEST)

    def report(loss: LossReport) -> None:
        if loss.dropped:
            say(
                f"{loss.dropped} metric snapshots were dropped while the launcher was "
                f"unreachable (the queue holds {loss.bound})"
            )
        if loss.rejected:
            say(f"{loss.rejected} metric snapshots were refused by the launcher")

    told: set[str] = set()
    # The handlers stay until the flush is over: a second SIGTERM must not cut it short.
    with (
        stop_signals() as stopped,
        exporting(
            options,
            call=otlp_grpc.metrics_export_call,
            request=metrics_request,
            size=metrics_size,
            report=report,
            say=say,
            what="snapshots",
        ) as running,
    ):
        due = time.monotonic()
        while not stopped.is_set():
            collect(root, running.worker, told, say)
            if args.once:
                break
            # Fixed schedule; after a stall (suspend), start again from now.
            due = max(due + args.interval, time.monotonic())
            stopped.wait(max(due - time.monotonic(), 0.0))
    rejected = running.worker.queue.rejected_total
    return 1 if (running.lost or rejected) and not stopped.is_set() else 0
