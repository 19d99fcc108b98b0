"""What the three in-image agents share at their command line.

The launcher address of syslogd and the agent: the positional argument if
given and not empty, else the ``LAUNCHER_ADDR`` environment variable if not
empty, else :data:`DEFAULT_LAUNCHER_ADDR` (newer Oak's ``#[arg(env)]``). An
empty positional is what systemd passes for ``${LAUNCHER_ADDR}`` when the
variable is unset.

Runs inside the image on Debian's ``python3``: standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import threading
from collections.abc import Callable, Mapping

DEFAULT_LAUNCHER_ADDR = "http://10.0.2.100:8080"
"""The agents' default launcher address (Oak's guest-forwarded TCP address)."""

LAUNCHER_ADDR_ENV = "LAUNCHER_ADDR"

EXIT_NOT_IMPLEMENTED = os.EX_CONFIG
"""78 = EX_CONFIG (sysexits.h): kept for compatibility; no agent is a placeholder now."""


def agent_epilog(image_name: str, module: str, hats_name: str) -> str:
    """The ``--help`` epilog: where the agent is in the image, and how else to run it."""
    return (
        f"In the system image: /usr/bin/{image_name} (python3 -m {module})."
        f" On a host: {hats_name} (the same flags)."
    )


def add_launcher_addr_argument(parser: argparse.ArgumentParser) -> None:
    """The one optional positional argument of syslogd and the agent."""
    parser.add_argument(
        "launcher_addr",
        nargs="?",
        default=None,
        help="address of the launcher: vsock://CID:PORT, http://HOST:PORT, HOST:PORT or "
        f"unix:PATH (default: ${LAUNCHER_ADDR_ENV}, else {DEFAULT_LAUNCHER_ADDR})",
    )


def resolve_launcher_addr(value: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The launcher address: the argument, else ``$LAUNCHER_ADDR``, else the default."""
    if value is not None and value.strip():
        return value.strip()
    env = os.environ if environ is None else environ
    from_env = env.get(LAUNCHER_ADDR_ENV, "").strip()
    return from_env or DEFAULT_LAUNCHER_ADDR


def positive_int(text: str) -> int:
    """A whole number above 0."""
    if not text.isascii() or not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number above 0")
    return int(text)


def seconds(text: str, *, allow_zero: bool = False) -> float:
    """A finite number of seconds above 0 (or 0 itself with ``allow_zero``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        floor = "0 or more" if allow_zero else "above 0"
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds {floor}")
    return value


def positive_seconds(text: str) -> float:
    """``seconds`` above 0."""
    return seconds(text)


def non_negative_seconds(text: str) -> float:
    """``seconds``, 0 allowed."""
    return seconds(text, allow_zero=True)


def add_export_arguments(
    parser: argparse.ArgumentParser,
    *,
    what: str,
    batch_size: int,
    queue_size: int,
    batch_delay: float | None,
) -> None:
    """Batching, retry and shutdown flags (``batch_delay`` None: no ``--batch-delay``)."""
    group = parser.add_argument_group("export")
    group.add_argument(
        "--batch-size",
        metavar="N",
        type=positive_int,
        default=batch_size,
        help=f"most {what} in one export (default: %(default)s)",
    )
    if batch_delay is not None:
        group.add_argument(
            "--batch-delay",
            metavar="SECONDS",
            type=non_negative_seconds,
            default=batch_delay,
            help=f"longest a {what[:-1]} waits for its batch to fill (default: %(default)s)",
        )
    group.add_argument(
        "--queue-size",
        metavar="N",
        type=positive_int,
        default=queue_size,
        help=f"most {what} kept while the launcher is unreachable; more are dropped "
        "and counted (default: %(default)s)",
    )
    group.add_argument(
        "--max-retry-delay",
        metavar="SECONDS",
        type=positive_seconds,
        default=10.0,
        help="longest wait between two export attempts (default: %(default)s)",
    )
    group.add_argument(
        "--rpc-timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=10.0,
        help="deadline of one export call (default: %(default)s)",
    )
    group.add_argument(
        "--shutdown-timeout",
        metavar="SECONDS",
        type=non_negative_seconds,
        default=10.0,
        help=f"on SIGTERM, how long to keep trying to send the queued {what} "
        "(default: %(default)s)",
    )


def make_say(prefix: str) -> Callable[[str], None]:
    """A thread-safe ``print(f"{prefix}: {message}", file=sys.stderr)`` with a flush."""
    lock = threading.Lock()

    def say(message: str) -> None:
        # stderr closed: nothing else to tell.
        with lock, contextlib.suppress(OSError, ValueError):
            print(f"{prefix}: {message}", file=sys.stderr, flush=True)

    return say


EXIT_FAILURE = 1
"""An agent's exit status for a user error (one line on stderr, no traceback)."""


def run_agent(args: argparse.Namespace, prefix: str, module: str) -> int:
    """An agent's ``main`` after parsing: ``module.run(args, say)``; a HatsError is one line.

    ``module`` (``hats.agent.run``, ``hats.syslogd.run``) is imported only here,
    so the agent's package imports the standard library only at module level.
    """
    import importlib

    from hats.errors import HatsError

    say = make_say(prefix)
    try:
        status: int = importlib.import_module(module).run(args, say)
    except HatsError as exc:
        say(" ".join(str(exc).split()))
        return EXIT_FAILURE
    return status
