"""``oak_containers_agent``: VM metrics → OTLP exporter (``python3 -m hats.agent``).

Every ``--interval`` seconds (60 by default, the reference's period; the
first reading at start) it reads ``stat``, ``meminfo`` and ``net/dev`` under
``--proc-root`` (:mod:`hats.telemetry.procfs`), turns them into the
reference's metrics (:mod:`hats.telemetry.otlp_metrics`) and exports them
with ``MetricsService/Export`` to the launcher. The same batching and retry
rules as the syslogd (:mod:`hats.telemetry.batching`): snapshots are kept
while the launcher is unreachable, up to ``--queue-size`` (the oldest are
dropped first, counted and said on stderr — the journal, hence the
syslogd, sees it). SIGTERM/SIGINT: send what is queued, exit 0.

Command line (system-image.md §4.3, plus ours): the positional
``launcher_addr`` (else ``$LAUNCHER_ADDR``, else ``http://10.0.2.100:8080``),
``--interval``, ``--proc-root``, ``--once`` and the export flags of
:func:`hats.agent_common.add_export_arguments`. Messages: ``oak-agent: …``
on stderr. Exit status: 0 after a stop signal or a delivered ``--once``; 1
for a user error or an undelivered ``--once``.

Runs inside the image on Debian's ``python3``: standard library only at
module level (the work is in :mod:`.run`, imported when needed).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from hats.agent_common import (
    DEFAULT_LAUNCHER_ADDR,
    add_export_arguments,
    add_launcher_addr_argument,
    agent_epilog,
    positive_seconds,
    run_agent,
)

PROG = "oak_containers_agent"
PREFIX = "oak-agent"
DEFAULT_INTERVAL = 60.0
DEFAULT_PROC_ROOT = "/proc"
DEFAULT_BATCH_SIZE = 16
DEFAULT_QUEUE_SIZE = 120

__all__ = ["DEFAULT_LAUNCHER_ADDR", "PROG", "build_parser", "main"]


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The containers agent's argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog,
        epilog=agent_epilog(PROG, "hats.agent", "hats agent"),
        description="Export VM metrics to the launcher as OpenTelemetry (OTLP) metrics.",
        allow_abbrev=False,
    )
    add_launcher_addr_argument(parser)
    parser.add_argument(
        "--interval",
        metavar="SECONDS",
        type=positive_seconds,
        default=DEFAULT_INTERVAL,
        help="seconds between two readings of /proc (default: %(default)s)",
    )
    parser.add_argument(
        "--proc-root",
        metavar="DIR",
        default=DEFAULT_PROC_ROOT,
        help="where stat, meminfo and net/dev are read (default: %(default)s)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="take one reading, send it, exit (0 if it was delivered)",
    )
    add_export_arguments(
        parser,
        what="snapshots",
        batch_size=DEFAULT_BATCH_SIZE,
        queue_size=DEFAULT_QUEUE_SIZE,
        batch_delay=None,
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Parse the command line, export metrics; return the exit status."""
    return run_agent(build_parser(prog).parse_args(argv), PREFIX, "hats.agent.run")
