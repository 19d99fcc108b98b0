"""``oak_containers_syslogd``: journal → OTLP logs forwarder (``python3 -m hats.syslogd``).

Reads the systemd journal from the start of the boot and follows it
(:mod:`.journal`: ``journalctl -o json``), drops debug entries, maps each
entry to an OTLP log record (:mod:`hats.telemetry.otlp_logs`) and exports
them in batches with ``LogsService/Export`` to the launcher (vsock, TCP or
unix socket), keeping up to ``--queue-size`` records while the launcher is
unreachable (:mod:`hats.telemetry.batching`). SIGTERM/SIGINT: stop reading,
send what is queued (for up to ``--shutdown-timeout`` seconds), exit 0.

Command line (system-image.md §4.2, plus ours): the positional
``launcher_addr`` (else ``$LAUNCHER_ADDR``, else ``http://10.0.2.100:8080``),
the export flags of :func:`hats.agent_common.add_export_arguments`, and the
journal source (``--journal-directory``, ``--journal-file``, ``--all-boots``,
``--no-follow``, ``--journalctl``).

Errors go to stderr as ``oak-syslogd: …`` lines (the unit sends them to the
serial console): export errors once per outage, never a record's content.
Exit status: 0 after a stop signal, or when the input ended and everything
was delivered; 1 for a user error (one line), a failed journalctl, or
records still undelivered at the end of the input.

Runs inside the image on Debian's ``python3``: standard library only at
module level (the work is in :mod:`.run`, imported when needed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Sequence

from hats.agent_common import (
    DEFAULT_LAUNCHER_ADDR,
    add_export_arguments,
    add_launcher_addr_argument,
    agent_epilog,
    run_agent,
)

PROG = "oak_containers_syslogd"
PREFIX = "oak-syslogd"
DEFAULT_BATCH_SIZE = 512
DEFAULT_BATCH_DELAY = 1.0
DEFAULT_QUEUE_SIZE = 8192

NICE_INCREMENT = 10
"""How much ``python3 -m hats.syslogd`` lowers its CPU priority (and journalctl's) at start."""

__all__ = [
    "DEFAULT_LAUNCHER_ADDR",
    "NICE_INCREMENT",
    "PROG",
    "build_parser",
    "lower_priority",
    "main",
]


def lower_priority(increment: int = NICE_INCREMENT) -> None:
    """Lower this process's CPU priority by ``increment`` (``nice``); no error if refused.

    Run by the image's ``oak_containers_syslogd`` (``python3 -m hats.syslogd``),
    not by ``hats syslogd`` nor :func:`main`: syslogd starts together with the
    orchestrator and would otherwise take an equal share of the guest's vCPUs
    for its imports and the boot's journal backlog while the orchestrator
    attests (issue [boot-fast]). Forwarding is only delayed while the CPU is
    busy; records are not lost for it (the queue bound is unchanged).
    """
    with contextlib.suppress(OSError):  # a seccomp filter or a limit may refuse it
        os.nice(increment)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The syslogd's argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog,
        epilog=agent_epilog(PROG, "hats.syslogd", "hats syslogd"),
        description="Forward the systemd journal to the launcher as OpenTelemetry (OTLP) logs.",
        allow_abbrev=False,
    )
    add_launcher_addr_argument(parser)
    add_export_arguments(
        parser,
        what="records",
        batch_size=DEFAULT_BATCH_SIZE,
        queue_size=DEFAULT_QUEUE_SIZE,
        batch_delay=DEFAULT_BATCH_DELAY,
    )
    journal = parser.add_argument_group("journal")
    source = journal.add_mutually_exclusive_group()
    source.add_argument(
        "--journal-directory",
        metavar="DIR",
        help="read (and follow) the journal files in DIR instead of the system journal",
    )
    source.add_argument(
        "--journal-file",
        metavar="FILE",
        action="append",
        help="read this journal file once (repeatable; journalctl cannot follow files)",
    )
    journal.add_argument(
        "--all-boots",
        action="store_true",
        help="system journal: start at its first entry, not at the current boot's",
    )
    journal.add_argument(
        "--no-follow",
        action="store_true",
        help="stop at the end of the journal instead of waiting for new entries",
    )
    journal.add_argument(
        "--journalctl",
        metavar="PATH",
        default="journalctl",
        help="the journalctl program (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Parse the command line, forward the journal; return the exit status."""
    return run_agent(build_parser(prog).parse_args(argv), PREFIX, "hats.syslogd.run")
