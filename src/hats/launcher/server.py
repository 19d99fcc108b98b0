"""One gRPC server hosting the launcher's services (spec system-image §5.1).

Listen addresses (:func:`hats.transport.parse_address`): ``vsock://CID:PORT``,
``HOST:PORT`` (port 0 = chosen by the OS; the chosen port is reported) or
``unix:PATH``. Insecure credentials, as the reference.

vsock limitation: the reference listens on ``vsock:2:<VMADDR_PORT_ANY>`` and
recovers the kernel-chosen port with ``getsockname`` through a gRPC socket
mutator, because gRPC reports port 1 for vsock (system-image §3.2). Python's
``grpcio`` has no socket mutator, so here a vsock listen address needs an
explicit port (0 and ``VMADDR_PORT_ANY`` are refused).

Workers: the pool has a thread for every stream the services' caps allow
(:data:`hats.launcher.services.PROXY_LIMITS`,
:data:`~hats.launcher.services.MAX_IMAGE_STREAMS`) plus
:data:`UNARY_WORKERS` for the unary calls, and gRPC refuses
(``RESOURCE_EXHAUSTED``) a call beyond the pool instead of queueing it. A
request message is at most :data:`MAX_MESSAGE_BYTES` (4 MiB, gRPC's default:
an OTLP batch is at most about 1 MiB). A unix socket is made mode 0600
before the server starts (only the launcher's user, and root, may connect).
"""

from __future__ import annotations

import os
from concurrent import futures
from dataclasses import replace

import grpc

from hats.errors import HatsError
from hats.launcher.services import HatsLauncherService, LogsService, MetricsService, OakLauncher
from hats.pb.oak.containers import interfaces_pb2_grpc
from hats.pb.pcit.client import launcher_pb2_grpc
from hats.streamlimits import server_options
from hats.transport import Address, parse_address

VMADDR_PORT_ANY = 0xFFFFFFFF
UNARY_WORKERS = 16
"""Worker threads beyond the streams' caps, for unary calls (and refusals)."""
MAX_MESSAGE_BYTES = 4 << 20
"""The largest request message the launcher receives."""


class ListenError(HatsError):
    """The server cannot listen on the requested address."""


def listen_target(listen: str) -> tuple[Address, str]:
    """``(address, grpc target)`` for a listen address; pure."""
    address = parse_address(listen)
    if address.kind == "vsock" and address.port in (0, VMADDR_PORT_ANY):
        raise ListenError(
            f"{listen!r}: listening on vsock needs an explicit port "
            "(gRPC reports port 1 for a kernel-chosen vsock port)"
        )
    return address, address.grpc_target()


def start_server(
    listen: str,
    *,
    oak: OakLauncher | None = None,
    hats: HatsLauncherService | None = None,
    logs: LogsService | None = None,
    metrics: MetricsService | None = None,
    max_workers: int | None = None,
) -> tuple[grpc.Server, Address]:
    """Start a server with the given services; return it and the bound address.

    ``max_workers``: the pool size (default: the streams' caps plus
    :data:`UNARY_WORKERS`); also the most calls served at once.
    """
    address, target = listen_target(listen)
    if max_workers is None:
        max_workers = UNARY_WORKERS
        if oak is not None:
            max_workers += oak.image_gate.limits.max_streams
        if hats is not None:
            max_workers += hats.gate.limits.max_streams
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="launcher"),
        options=server_options(MAX_MESSAGE_BYTES),
        maximum_concurrent_rpcs=max_workers,
    )
    if oak is not None:
        interfaces_pb2_grpc.add_LauncherServicer_to_server(oak, server)
    if hats is not None:
        launcher_pb2_grpc.add_LauncherServiceServicer_to_server(hats, server)
    if logs is not None:
        server.add_generic_rpc_handlers((logs.generic_handler(),))
    if metrics is not None:
        server.add_generic_rpc_handlers((metrics.generic_handler(),))
    try:
        port = server.add_insecure_port(target)
    except RuntimeError as exc:
        raise ListenError(f"cannot listen on {address}: {exc}") from None
    if port == 0 and address.kind != "unix":
        raise ListenError(f"cannot listen on {address}")
    if address.kind == "unix":
        _private_socket(server, address.path)
    if address.kind == "tcp" and address.port == 0:
        address = replace(address, port=port)
    server.start()
    return server, address


def _private_socket(server: grpc.Server, path: str) -> None:
    """Make the (bound, not yet serving) socket at ``path`` mode 0600."""
    try:
        os.chmod(path, 0o600)
    except OSError as exc:
        server.stop(None)
        raise ListenError(f"unix:{path}: cannot restrict the socket: {exc.strerror}") from None


def serve(
    listen: str,
    *,
    oak: OakLauncher | None = None,
    hats: HatsLauncherService | None = None,
    logs: LogsService | None = None,
    metrics: MetricsService | None = None,
    max_workers: int | None = None,
) -> grpc.Server:
    """Start a server on a fixed address (see :func:`start_server` for port 0)."""
    return start_server(
        listen, oak=oak, hats=hats, logs=logs, metrics=metrics, max_workers=max_workers
    )[0]
