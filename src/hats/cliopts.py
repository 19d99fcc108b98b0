"""Click options that several commands share, defined once.

:func:`stream_limit_options` adds ``--max-streams``, ``--message-timeout`` and
``--session-timeout`` to a server command (the TVS, the launcher) and hands
the command one :class:`~hats.streamlimits.StreamLimits` as ``limits``;
:func:`log_to_stderr` gives a server's logger one prefixed stderr handler.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from hats.streamlimits import StreamLimits

F = TypeVar("F", bound=Callable[..., Any])


def stream_limit_options(
    defaults: StreamLimits, *, what: str = "stream", session_help: str = ""
) -> Callable[[F], F]:
    """The three stream-limit options, with ``defaults``; the command gets ``limits=``.

    Put it closest to the function (below the other ``click.option``s).
    """

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(
            *args: Any, max_streams: int, message_timeout: float, session_timeout: float, **kw: Any
        ) -> Any:
            limits = StreamLimits(
                max_streams=max_streams,
                message_timeout=message_timeout,
                session_timeout=session_timeout,
            )
            return command(*args, limits=limits, **kw)

        options = [
            click.option(
                "--max-streams",
                "max_streams",
                type=click.IntRange(min=1),
                default=defaults.max_streams,
                show_default=True,
                help=f"Concurrent {what}s; more are refused (RESOURCE_EXHAUSTED).",
            ),
            click.option(
                "--message-timeout",
                "message_timeout",
                type=click.FloatRange(min=0, min_open=True),
                default=defaults.message_timeout,
                show_default=True,
                help=f"Seconds a {what} may wait for its next message (then DEADLINE_EXCEEDED).",
            ),
            click.option(
                "--session-timeout",
                "session_timeout",
                type=click.FloatRange(min=0, min_open=True),
                default=defaults.session_timeout,
                show_default=True,
                help=f"Seconds a whole {what} may last{session_help} (then DEADLINE_EXCEEDED).",
            ),
        ]
        decorated: Callable[..., Any] = wrapper
        for option in reversed(options):
            decorated = option(decorated)
        return decorated  # type: ignore[return-value]

    return decorate


def log_to_stderr(name: str, prefix: str) -> logging.Logger:
    """Logger ``name`` at INFO, each record one ``TIME PREFIX: message`` line on stderr."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"%(asctime)s {prefix}: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


class Digest(click.ParamType[str]):
    """A digest option: ``HEX`` or ``ALGO:HEX`` (``sha256:…``, ``sha384:…``), lowercased."""

    def __init__(self, algorithm: str = "sha256") -> None:
        self.algorithm = algorithm
        self.digits = {"sha256": 64, "sha384": 96}[algorithm]
        self.name = f"{algorithm} digest"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return f"[{self.algorithm}:]HEX"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        prefix = f"{self.algorithm}:"
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
        if len(text) != self.digits or any(c not in "0123456789abcdefABCDEF" for c in text):
            self.fail(
                f"expected {self.digits} hex digits or {prefix}HEX (a {self.algorithm.upper()}"
                f" digest), got {len(text)} characters",
                param,
                ctx,
            )
        return text.lower()
