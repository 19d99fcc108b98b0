"""One gRPC server hosting the launcher's services (spec system-image §5.1).

Listen addresses (:func:`hats.transport.parse_address`): ``vsock://CID:PORT``,
``HOST:PORT`` (port 0 = chosen by the OS; the chosen port is reported) or
``unix:PATH``. Insecure credentials, as the reference.

vsock limitation: the reference listens on ``vsock:2:<VMADDR_PORT_ANY>`` and
recovers the kernel-chosen port with ``getsockname`` through a gRPC socket
mutator, because gRPC reports port 1 for vsock (system-image §3.2). Python's
``grpcio`` has no socket mutator, so here a vsock listen address needs an
explicit port (0 and ``VMADDR_PORT_ANY`` are refused).
"""

from __future__ import annotations

from concurrent import futures
from dataclasses import replace

import grpc

from hats.errors import HatsError
from hats.launcher.services import HatsLauncherService, LogsService, MetricsService, OakLauncher
from hats.pb.oak.containers import interfaces_pb2_grpc
from hats.pb.pcit.client import launcher_pb2_grpc
from hats.transport import Address, parse_address

VMADDR_PORT_ANY = 0xFFFFFFFF


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
    max_workers: int = 32,
) -> tuple[grpc.Server, Address]:
    """Start a server with the given services; return it and the bound address."""
    address, target = listen_target(listen)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
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
    if address.kind == "tcp" and address.port == 0:
        address = replace(address, port=port)
    server.start()
    return server, address


def serve(
    listen: str,
    *,
    oak: OakLauncher | None = None,
    hats: HatsLauncherService | None = None,
    logs: LogsService | None = None,
    metrics: MetricsService | None = None,
    max_workers: int = 32,
) -> grpc.Server:
    """Start a server on a fixed address (see :func:`start_server` for port 0)."""
    return start_server(
        listen, oak=oak, hats=hats, logs=logs, metrics=metrics, max_workers=max_workers
    )[0]
