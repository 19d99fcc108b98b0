"""The syslogd's I/O shell: journalctl → mapping → export worker, until stopped.

The main thread reads journalctl's output line by line, maps each entry
(:func:`hats.telemetry.otlp_logs.entry_to_record`) and hands the record to
the export worker (:class:`hats.telemetry.worker.ExportWorker`), which never
blocks the reader: a full queue drops and counts. A stop signal terminates
journalctl; the lines it already wrote are still read and queued (its end of
output is the end of the loop), then the worker flushes.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry.proto.logs.v1 import logs_pb2

from hats.errors import HatsError
from hats.syslogd.journal import (
    JournalFormatError,
    JournalSource,
    journalctl_command,
    parse_json_entry,
)
from hats.telemetry import otlp_grpc
from hats.telemetry.batching import LossReport, Overflow
from hats.telemetry.otlp_logs import entry_to_record, logs_request, loss_record
from hats.telemetry.runtime import export_options, exporting, stop_signals

UNIT = "oak-syslogd.service"
IDENTIFIER = "oak_containers_syslogd"
_CLEAN_ENDS = (0, -signal.SIGTERM, -signal.SIGINT, 128 + signal.SIGTERM)


class SyslogdError(HatsError):
    """The journal cannot be read."""


def journal_source(args: argparse.Namespace) -> JournalSource:
    """The journal source from the flags; named files must exist."""
    files = tuple(args.journal_file or ())
    for name in files:
        if not Path(name).is_file():
            raise SyslogdError(f"--journal-file {name}: no such file")
    if args.journal_directory is not None and not Path(args.journal_directory).is_dir():
        raise SyslogdError(f"--journal-directory {args.journal_directory}: no such directory")
    return JournalSource(
        files=files,
        directory=args.journal_directory,
        all_boots=args.all_boots,
        follow=not args.no_follow,
        journalctl=args.journalctl,
    )


def _start_journalctl(command: Sequence[str]) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            # journalctl's own complaints go to our stderr (the serial console).
            env={**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""},
        )
    except OSError as exc:
        raise SyslogdError(f"cannot run {command[0]}: {exc.strerror}") from None


def run(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    """Forward the journal until it ends or a stop signal; the exit status."""
    source = journal_source(args)
    options = export_options(args, max_delay=args.batch_delay, overflow=Overflow.DROP_NEWEST)

    def report(loss: LossReport) -> logs_pb2.LogRecord:
        return loss_record(loss, time.time_ns(), UNIT, IDENTIFIER)

    reading: list[subprocess.Popen[bytes]] = []

    def stop_reading() -> None:
        for journalctl in reading:
            if journalctl.poll() is None:
                journalctl.terminate()

    status = 0
    # The handlers stay until the flush is over: a second SIGTERM must not cut it short.
    with (
        stop_signals(stop_reading) as stopped,
        exporting(
            options,
            call=otlp_grpc.logs_export_call,
            request=logs_request,
            size=lambda record: record.ByteSize(),
            report=report,
            say=say,
            what="records",
        ) as running,
    ):
        journalctl = _start_journalctl(journalctl_command(source))
        reading.append(journalctl)
        if stopped.is_set():  # signalled while it started
            stop_reading()
        unreadable = forward(journalctl, running.worker.submit)
        returncode = journalctl.wait()
        if unreadable:
            say(f"skipped {unreadable} lines from journalctl that were not journal entries")
        if not stopped.is_set() and returncode not in _CLEAN_ENDS:
            say(f"journalctl exited with status {returncode}")
            status = 1
    if running.lost and not stopped.is_set():
        status = 1
    return status


def forward(
    journalctl: subprocess.Popen[bytes], submit: Callable[[logs_pb2.LogRecord], bool]
) -> int:
    """Read journalctl's output to its end; how many lines were not entries."""
    assert journalctl.stdout is not None
    unreadable = 0
    with journalctl.stdout:
        for line in journalctl.stdout:
            try:
                entry = parse_json_entry(line)
            except JournalFormatError:
                unreadable += 1
                continue
            record = entry_to_record(entry)
            if record is not None:
                submit(record)
    return unreadable
