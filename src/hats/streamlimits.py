"""Limits for streaming gRPC methods of threaded servers: a cap and deadlines.

A synchronous ``grpc.server`` runs each call on a worker thread of its pool
for the call's whole life, and a handler reading its request iterator blocks
until the peer sends something. So a peer that opens streams and sends
nothing holds one worker each, and once the pool is used up every later call
waits forever. The rules here, per kind of stream (one :class:`StreamGate`):

- **cap**: at most ``max_streams`` streams are served at once; the next one
  is refused at once with ``RESOURCE_EXHAUSTED`` (the pool must be larger
  than the sum of the caps, so a worker is always free to refuse; the
  servers also set gRPC's ``maximum_concurrent_rpcs`` to the pool size, so a
  call beyond it is refused by gRPC instead of queued);
- **message deadline**: each request message must arrive within
  ``message_timeout`` seconds of the handler asking for it (a handshake that
  stalls is ended with ``DEADLINE_EXCEEDED``);
- **session deadline**: the whole stream ends with ``DEADLINE_EXCEEDED`` when
  a request is still awaited ``session_timeout`` seconds after it started.

Reading with a deadline: a helper thread per admitted stream takes the next
request from gRPC's iterator only when the handler asks for one (so a peer
cannot make it buffer messages) and hands it over through a queue the
handler waits on with a timeout. When the handler gives up, it aborts the
call; gRPC then ends the helper's pending read.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, TypeVar, cast

from hats.errors import HatsError

if TYPE_CHECKING:  # grpc is imported where a call is refused: CLIs read the limits cheaply
    import grpc

T = TypeVar("T")


class StreamLimitsError(HatsError):
    """A stream limit that cannot be used (not positive)."""


@dataclass(frozen=True)
class StreamLimits:
    """The limits of one kind of stream; times in seconds."""

    max_streams: int
    message_timeout: float
    session_timeout: float

    def __post_init__(self) -> None:
        if self.max_streams < 1:
            raise StreamLimitsError(f"stream cap {self.max_streams}: must be at least 1")
        if not self.message_timeout > 0:
            raise StreamLimitsError(f"message timeout {self.message_timeout}: must be positive")
        if not self.session_timeout > 0:
            raise StreamLimitsError(f"session timeout {self.session_timeout}: must be positive")


def _abort(context: grpc.ServicerContext, code_name: str, details: str) -> NoReturn:
    import grpc

    context.abort(grpc.StatusCode[code_name], details)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


class StreamGate:
    """The cap and deadlines for the streams of one method (or group of methods)."""

    def __init__(self, name: str, limits: StreamLimits, log: logging.Logger | None = None) -> None:
        self.name = name
        self.limits = limits
        self._log = log
        self._lock = threading.Lock()
        self._active = 0

    @property
    def active(self) -> int:
        """How many streams hold a place now."""
        with self._lock:
            return self._active

    def enter(self, context: grpc.ServicerContext) -> StreamTicket:
        """Take a place for this call, or end it with ``RESOURCE_EXHAUSTED``.

        The place is given back by :meth:`StreamTicket.close`, and in any case
        when the call terminates.
        """
        with self._lock:
            admitted = self._active < self.limits.max_streams
            if admitted:
                self._active += 1
        if not admitted:
            self.warn(
                context, "refused: %d streams already open (the cap)", self.limits.max_streams
            )
            _abort(
                context,
                "RESOURCE_EXHAUSTED",
                f"too many concurrent {self.name} streams (at most "
                f"{self.limits.max_streams}); try again later",
            )
        ticket = StreamTicket(self, context)
        if not context.add_callback(ticket.close):
            ticket.close()  # the call already ended
        return ticket

    def _release(self) -> None:
        with self._lock:
            self._active -= 1

    def warn(self, context: grpc.ServicerContext, message: str, *args: object) -> None:
        if self._log is not None:
            self._log.warning("%s stream from %s: " + message, self.name, context.peer(), *args)


_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class StreamTicket:
    """One admitted stream: its place under the cap and its deadlines."""

    def __init__(self, gate: StreamGate, context: grpc.ServicerContext) -> None:
        self._gate = gate
        self._context = context
        self._lock = threading.Lock()
        self._closed = False
        self.started = time.monotonic()

    @property
    def session_deadline(self) -> float:
        """When the whole stream must be over (``time.monotonic`` clock)."""
        return self.started + self._gate.limits.session_timeout

    def remaining(self) -> float:
        """Seconds left before the session deadline (at least 0)."""
        return max(0.0, self.session_deadline - time.monotonic())

    def close(self) -> None:
        """Give the place back (once; later calls do nothing)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._gate._release()

    def requests(self, request_iterator: Iterator[T]) -> Iterator[T]:
        """The request messages, each within the message and session deadlines.

        A missed deadline aborts the call with ``DEADLINE_EXCEEDED``; the
        end of the peer's messages ends the iteration; a cancelled call
        raises what gRPC's iterator raised.
        """
        limits = self._gate.limits
        demand = threading.Semaphore(0)
        stop = threading.Event()
        handoff: queue.SimpleQueue[object] = queue.SimpleQueue()

        def pump() -> None:
            while True:
                demand.acquire()
                if stop.is_set():
                    return
                try:
                    item: object = next(request_iterator)
                except StopIteration:
                    handoff.put(_END)
                    return
                except BaseException as exc:  # grpc.RpcError when the call is cancelled
                    handoff.put(_Failed(exc))
                    return
                handoff.put(item)

        reader = threading.Thread(target=pump, name=f"{self._gate.name}-reader", daemon=True)
        reader.start()
        try:
            while True:
                remaining = self.session_deadline - time.monotonic()
                wait = min(limits.message_timeout, remaining)
                if wait <= 0:
                    self._expired(f"the stream is not over after {limits.session_timeout:g} s")
                demand.release()
                try:
                    item = handoff.get(timeout=wait)
                except queue.Empty:
                    if wait < limits.message_timeout:
                        self._expired(f"the stream is not over after {limits.session_timeout:g} s")
                    self._expired(f"no message within {limits.message_timeout:g} s")
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield cast(T, item)
        finally:
            stop.set()
            demand.release()

    def _expired(self, reason: str) -> NoReturn:
        self._gate.warn(self._context, "ended: %s", reason)
        _abort(self._context, "DEADLINE_EXCEEDED", f"{self._gate.name}: {reason}")


def server_options(max_receive_message_length: int) -> list[tuple[str, int]]:
    """gRPC server options bounding what one request message may be."""
    return [("grpc.max_receive_message_length", max_receive_message_length)]
