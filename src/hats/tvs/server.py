"""The gRPC transport of the TVS: ``pcit.tvs.TeeVerificationService/VerifyReport``.

A thin shell over :class:`hats.tvs.session.RequestHandler`, as the
reference's standalone server: one handler per stream; ``while read and not
terminated: write(handle(message))``; a rejected request ends the stream with
``INVALID_ARGUMENT "Invalid or malformed command. <error>"``. After the
verify request the next read ends the stream with OK (whatever it was).

Each request's outcome is logged (logger ``hats.tvs``): accepted, or
rejected with the reference text and the detailed reason. Logs never contain
secrets or private keys.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc

from hats.errors import HatsError
from hats.pb.pcit.tvs import tvs_pb2, tvs_pb2_grpc
from hats.transport import Address, parse_address
from hats.tvs.session import RequestHandler, TvsRequestError

LOG = logging.getLogger("hats.tvs")

ERROR_PREFIX = "Invalid or malformed command. "
"""Prefix of the ``INVALID_ARGUMENT`` details of a rejected request."""

HandlerFactory = Callable[[], RequestHandler]


class ServeError(HatsError):
    """The server cannot listen on the address."""


class TvsServicer(tvs_pb2_grpc.TeeVerificationServiceServicer):
    """``VerifyReport``: one :class:`RequestHandler` per stream."""

    def __init__(self, handler_factory: HandlerFactory) -> None:
        self._factory = handler_factory
        self._streams = itertools.count(1)

    def VerifyReport(
        self,
        request_iterator: Iterator[tvs_pb2.OpaqueMessage],
        context: grpc.ServicerContext,
    ) -> Iterator[tvs_pb2.OpaqueMessage]:
        stream = next(self._streams)
        handler = self._factory()
        peer = context.peer()
        for request in request_iterator:
            if handler.terminated:
                break
            try:
                response = handler.handle(request.binary_message)
            except TvsRequestError as exc:
                detail = f" ({exc.detail})" if exc.detail else ""
                LOG.warning("stream %d from %s: rejected: %s%s", stream, peer, exc.message, detail)
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, ERROR_PREFIX + exc.message)
            LOG.info("stream %d from %s: %s", stream, peer, handler.outcome)
            yield tvs_pb2.OpaqueMessage(binary_message=response)


def _listen_address(address: Address, port: int) -> str:
    if address.kind == "tcp":
        return str(Address(kind="tcp", host=address.host, port=port))
    return str(address)


def serve_bound(
    address: str, handler_factory: HandlerFactory, *, max_workers: int = 16
) -> tuple[grpc.Server, str]:
    """Start a threaded gRPC server on ``address``; return it and the address it listens on.

    ``address`` is anything :func:`hats.transport.parse_address` takes
    (``HOST:PORT``, ``unix:PATH``, ``vsock://CID:PORT``); TCP port 0 picks a
    free port, reported in the returned address.
    """
    parsed = parse_address(address)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
    tvs_pb2_grpc.add_TeeVerificationServiceServicer_to_server(TvsServicer(handler_factory), server)
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
