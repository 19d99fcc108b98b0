"""The gRPC transport of the TVS: ``pcit.tvs.TeeVerificationService/VerifyReport``.

A thin shell over :class:`hats.tvs.session.RequestHandler`, as the
reference's standalone server: one handler per stream; ``while read and not
terminated: write(handle(message))``; a rejected request ends the stream with
``INVALID_ARGUMENT "Invalid or malformed command. UNKNOWN: <error>"``. After the
verify request the next read ends the stream with OK (whatever it was).

Each request's outcome is logged (logger ``hats.tvs``): accepted, or
rejected with the reference text and the detailed reason. Logs never contain
secrets or private keys.

Limits (:mod:`hats.streamlimits`; a TVS faces the network, its callers are
not authenticated before the handshake), defaults in :data:`DEFAULT_LIMITS`:

- at most ``max_streams`` (128) streams at once; one more is refused with
  ``RESOURCE_EXHAUSTED``; the worker pool has :data:`SPARE_WORKERS` more
  threads than the cap, and gRPC refuses calls beyond the pool;
- each request must arrive within ``message_timeout`` (10 s) and the stream
  must be over within ``session_timeout`` (30 s), else ``DEADLINE_EXCEEDED``;
- a request message is at most :data:`MAX_MESSAGE_BYTES` (1 MiB; the
  evidence and certificate of a session are a few KiB), else gRPC answers
  ``RESOURCE_EXHAUSTED``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc

from hats.errors import HatsError
from hats.pb.pcit.tvs import tvs_pb2, tvs_pb2_grpc
from hats.streamlimits import StreamGate, StreamLimits, server_options
from hats.transport import Address, parse_address
from hats.tvs.limits import DEFAULT_LIMITS, MAX_MESSAGE_BYTES, SPARE_WORKERS
from hats.tvs.session import RequestHandler, TvsRequestError

LOG = logging.getLogger("hats.tvs")

ERROR_PREFIX = "Invalid or malformed command. UNKNOWN: "
"""Prefix of the ``INVALID_ARGUMENT`` details of a rejected request (upstream-facts F8: the
reference's handler errors are ``absl::UnknownError``s, appended with ``Status::ToString``)."""

HandlerFactory = Callable[[], RequestHandler]


class ServeError(HatsError):
    """The server cannot listen on the address."""


class TvsServicer(tvs_pb2_grpc.TeeVerificationServiceServicer):
    """``VerifyReport``: one :class:`RequestHandler` per stream."""

    def __init__(
        self, handler_factory: HandlerFactory, limits: StreamLimits = DEFAULT_LIMITS
    ) -> None:
        self._factory = handler_factory
        self._streams = itertools.count(1)
        self.gate = StreamGate("VerifyReport", limits, LOG)

    def VerifyReport(
        self,
        request_iterator: Iterator[tvs_pb2.OpaqueMessage],
        context: grpc.ServicerContext,
    ) -> Iterator[tvs_pb2.OpaqueMessage]:
        ticket = self.gate.enter(context)
        try:
            stream = next(self._streams)
            handler = self._factory()
            peer = context.peer()
            for request in ticket.requests(request_iterator):
                if handler.terminated:
                    break
                try:
                    response = handler.handle(request.binary_message)
                except TvsRequestError as exc:
                    detail = f" ({exc.detail})" if exc.detail else ""
                    LOG.warning(
                        "stream %d from %s: rejected: %s%s", stream, peer, exc.message, detail
                    )
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, ERROR_PREFIX + exc.message)
                LOG.info("stream %d from %s: %s", stream, peer, handler.outcome)
                yield tvs_pb2.OpaqueMessage(binary_message=response)
        finally:
            ticket.close()


def _listen_address(address: Address, port: int) -> str:
    if address.kind == "tcp":
        return str(Address(kind="tcp", host=address.host, port=port))
    return str(address)


def serve_bound(
    address: str,
    handler_factory: HandlerFactory,
    *,
    limits: StreamLimits = DEFAULT_LIMITS,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> tuple[grpc.Server, str]:
    """Start a threaded gRPC server on ``address``; return it and the address it listens on.

    ``address`` is anything :func:`hats.transport.parse_address` takes
    (``HOST:PORT``, ``unix:PATH``, ``vsock://CID:PORT``); TCP port 0 picks a
    free port, reported in the returned address. ``limits``: the stream cap
    and deadlines (the pool gets :data:`SPARE_WORKERS` more threads).
    """
    return serve_servicer(
        address, TvsServicer(handler_factory, limits), max_message_bytes=max_message_bytes
    )


def serve_servicer(
    address: str, servicer: TvsServicer, *, max_message_bytes: int = MAX_MESSAGE_BYTES
) -> tuple[grpc.Server, str]:
    """:func:`serve_bound` with a servicer made by the caller (tests watch its gate)."""
    parsed = parse_address(address)
    workers = servicer.gate.limits.max_streams + SPARE_WORKERS
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tvs"),
        options=server_options(max_message_bytes),
        maximum_concurrent_rpcs=workers,
    )
    tvs_pb2_grpc.add_TeeVerificationServiceServicer_to_server(servicer, server)
    try:
        port = server.add_insecure_port(parsed.grpc_target())
    except RuntimeError as exc:
        raise ServeError(f"cannot listen on {address}: {exc}") from None
    if parsed.kind == "tcp" and port == 0:
        raise ServeError(f"cannot listen on {address}")
    server.start()
    return server, _listen_address(parsed, port)


def serve(address: str, handler_factory: HandlerFactory) -> grpc.Server:
    """Start the TVS on ``address`` (see :func:`serve_bound`); stop it with ``server.stop``."""
    return serve_bound(address, handler_factory)[0]
