"""What the three in-image agents share at their command line.

Runs inside the image on Debian's ``python3``: standard library only.
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_LAUNCHER_ADDR = "http://10.0.2.100:8080"
"""The agents' default launcher address (Oak's guest-forwarded TCP address)."""

EXIT_NOT_IMPLEMENTED = os.EX_CONFIG
"""78 = EX_CONFIG (sysexits.h): the image carries a placeholder agent."""


def add_launcher_addr_argument(parser: argparse.ArgumentParser) -> None:
    """The one optional positional argument of syslogd and the agent."""
    parser.add_argument(
        "launcher_addr",
        nargs="?",
        default=DEFAULT_LAUNCHER_ADDR,
        help="address of the launcher, vsock://CID:PORT or http://HOST:PORT (default: %(default)s)",
    )


def not_implemented(prog: str, what: str) -> int:
    """Say on stderr that this agent is a placeholder; return the exit status."""
    print(
        f"{prog}: the HATs {what} is not implemented yet in this version of hats; "
        f"build the image with your own {prog}",
        file=sys.stderr,
    )
    return EXIT_NOT_IMPLEMENTED
