"""``oak_containers_syslogd``: journal → OTLP logs forwarder (``python3 -m hats.syslogd``).

Only the command line exists so far (system-image.md §4.2): one optional
positional ``launcher_addr``. Until the agent is written :func:`main` parses
the arguments and exits with :data:`EXIT_NOT_IMPLEMENTED` after one line on
stderr.

Runs inside the image on Debian's ``python3``: standard library only at
module level.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from hats.agent_common import (
    DEFAULT_LAUNCHER_ADDR,
    EXIT_NOT_IMPLEMENTED,
    add_launcher_addr_argument,
    not_implemented,
)

PROG = "oak_containers_syslogd"

__all__ = ["DEFAULT_LAUNCHER_ADDR", "EXIT_NOT_IMPLEMENTED", "PROG", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The syslogd's argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Forward the systemd journal to the launcher as OpenTelemetry (OTLP) logs.",
        allow_abbrev=False,
    )
    add_launcher_addr_argument(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line; return the exit status."""
    build_parser().parse_args(argv)
    return not_implemented(PROG, "syslogd")
