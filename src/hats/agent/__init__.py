"""``oak_containers_agent``: VM metrics → OTLP exporter (``python3 -m hats.agent``).

Only the command line exists so far (system-image.md §4.3): one optional
positional ``launcher_addr``. Until the agent is written :func:`main` parses
the arguments and exits with :data:`EXIT_NOT_IMPLEMENTED` after one line on
stderr.

Runs inside the image on Debian's ``python3``: standard library only at
module level.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

PROG = "oak_containers_agent"
DEFAULT_LAUNCHER_ADDR = "http://10.0.2.100:8080"

#: 78 = EX_CONFIG (sysexits.h): the image carries a placeholder agent.
EXIT_NOT_IMPLEMENTED = os.EX_CONFIG


def build_parser() -> argparse.ArgumentParser:
    """The containers agent's argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Export VM metrics to the launcher as OpenTelemetry (OTLP) metrics.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "launcher_addr",
        nargs="?",
        default=DEFAULT_LAUNCHER_ADDR,
        help="address of the launcher, vsock://CID:PORT or http://HOST:PORT (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line; return the exit status."""
    build_parser().parse_args(argv)
    print(
        f"{PROG}: the HATs containers agent is not implemented yet in this version of hats; "
        "build the image with your own oak_containers_agent",
        file=sys.stderr,
    )
    return EXIT_NOT_IMPLEMENTED
