"""LauncherService.VerifyReport: the lock-step proxy against fake TVSs on unix sockets."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from hats.launcher.server import start_server
from hats.launcher.services import HatsLauncherService, build_metadata, make_tvs_channels
from hats.pb.pcit.client import launcher_pb2, launcher_pb2_grpc
from hats.pb.pcit.tvs import tvs_pb2, tvs_pb2_grpc


class FakeTvs(tvs_pb2_grpc.TeeVerificationServiceServicer):
    """Replies ``<tag>:<reversed message>`` to each message, after a short delay.

    A reader thread takes requests as soon as they arrive, so ``events`` shows
    whether the proxy sent message i+1 before it had read reply i.
    ``b"fail"`` aborts the stream; ``b"quit"`` ends it without a reply.
    """

    def __init__(self, tag: bytes, delay: float = 0.05) -> None:
        self.tag = tag
        self.delay = delay
        self.events: list[str] = []
        self.streams = 0
        self.finished = threading.Event()

    def VerifyReport(
        self, request_iterator: Iterator[tvs_pb2.OpaqueMessage], context: grpc.ServicerContext
    ) -> Iterator[tvs_pb2.OpaqueMessage]:
        self.streams += 1
        inbox: queue.Queue[tvs_pb2.OpaqueMessage | None] = queue.Queue()

        def read() -> None:
            for message in request_iterator:
                self.events.append(f"recv {message.binary_message.decode()}")
                inbox.put(message)
            self.events.append("half-close")
            inbox.put(None)

        threading.Thread(target=read, daemon=True).start()
        try:
            while (message := inbox.get()) is not None:
                data = message.binary_message
                if data == b"fail":
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad report from the CVM")
                if data == b"quit":
                    return
                time.sleep(self.delay)
                self.events.append(f"send {data.decode()}")
                yield tvs_pb2.OpaqueMessage(binary_message=self.tag + b":" + data[::-1])
        finally:
            self.finished.set()


@pytest.fixture
def proxy(sock_dir: Path) -> Iterator[tuple[launcher_pb2_grpc.LauncherServiceStub, list[FakeTvs]]]:
    tvss = [FakeTvs(b"tvs0"), FakeTvs(b"tvs1")]
    servers = []
    addresses = []
    for index, tvs in enumerate(tvss):
        server = grpc.server(futures.ThreadPoolExecutor(4))
        tvs_pb2_grpc.add_TeeVerificationServiceServicer_to_server(tvs, server)
        target = f"unix:{sock_dir / f'tvs{index}.sock'}"
        server.add_insecure_port(target)
        server.start()
        servers.append(server)
        addresses.append(target)
    channels = make_tvs_channels(addresses)
    launcher, address = start_server(
        f"unix:{sock_dir / 'launcher.sock'}",
        hats=HatsLauncherService(build_metadata(), channels),
    )
    channel = grpc.insecure_channel(address.grpc_target())
    try:
        yield launcher_pb2_grpc.LauncherServiceStub(channel), tvss
    finally:
        channel.close()
        launcher.stop(None)
        for tvs_channel in channels.values():
            tvs_channel.close()
        for server in servers:
            server.stop(None)


def _forward(tvs_id: int, *messages: bytes) -> list[launcher_pb2.ForwardingTvsMessage]:
    return [
        launcher_pb2.ForwardingTvsMessage(
            tvs_id=tvs_id, opaque_message=tvs_pb2.OpaqueMessage(binary_message=m)
        )
        for m in messages
    ]


Proxy = tuple[launcher_pb2_grpc.LauncherServiceStub, list[FakeTvs]]


def test_lock_step_order(proxy: Proxy) -> None:
    stub, tvss = proxy
    # All three requests are available at once: the proxy must still wait.
    replies = [r.binary_message for r in stub.VerifyReport(iter(_forward(0, b"ab", b"cd", b"ef")))]
    assert replies == [b"tvs0:ba", b"tvs0:dc", b"tvs0:fe"]
    assert tvss[0].finished.wait(5)
    assert tvss[0].events == [
        "recv ab",
        "send ab",
        "recv cd",
        "send cd",
        "recv ef",
        "send ef",
        "half-close",
    ]
    assert tvss[1].streams == 0


def test_first_tvs_id_picks_the_tvs(proxy: Proxy) -> None:
    stub, tvss = proxy
    messages = _forward(1, b"x") + _forward(0, b"y") + _forward(9, b"z")
    replies = [r.binary_message for r in stub.VerifyReport(iter(messages))]
    assert replies == [b"tvs1:x", b"tvs1:y", b"tvs1:z"]
    assert (tvss[0].streams, tvss[1].streams) == (0, 1)


def test_interactive_exchange(proxy: Proxy) -> None:
    """Like the orchestrator: send one, read one, then send the next."""
    stub, _ = proxy
    outbox: queue.Queue[launcher_pb2.ForwardingTvsMessage | None] = queue.Queue()
    responses = stub.VerifyReport(iter(outbox.get, None))
    outbox.put(_forward(0, b"init")[0])
    assert next(responses).binary_message == b"tvs0:tini"
    outbox.put(_forward(0, b"report")[0])
    assert next(responses).binary_message == b"tvs0:troper"
    outbox.put(None)
    assert list(responses) == []
    assert responses.code() == grpc.StatusCode.OK


def test_unknown_tvs_id(proxy: Proxy) -> None:
    stub, tvss = proxy
    with pytest.raises(grpc.RpcError) as info:
        list(stub.VerifyReport(iter(_forward(2, b"x"))))
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    assert info.value.details() == "Failed to find tvs_id 2"
    with pytest.raises(grpc.RpcError) as info:
        list(stub.VerifyReport(iter(_forward(-1, b"x"))))
    assert info.value.details() == "Failed to find tvs_id -1"
    assert tvss[0].streams == tvss[1].streams == 0


def test_tvs_error(proxy: Proxy) -> None:
    stub, tvss = proxy
    responses = stub.VerifyReport(iter(_forward(0, b"ok", b"fail", b"never")))
    assert next(responses).binary_message == b"tvs0:ko"
    with pytest.raises(grpc.RpcError) as info:
        next(responses)
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    assert info.value.details() == "Failed to read from stream. bad report from the CVM"
    assert "recv never" not in tvss[0].events


def test_tvs_ends_without_reply(proxy: Proxy) -> None:
    stub, _ = proxy
    with pytest.raises(grpc.RpcError) as info:
        list(stub.VerifyReport(iter(_forward(0, b"quit"))))
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    assert (info.value.details() or "").startswith("Failed to read from stream. ")


def test_empty_stream_is_ok(proxy: Proxy) -> None:
    stub, tvss = proxy
    responses = stub.VerifyReport(iter([]))
    assert list(responses) == []
    assert responses.code() == grpc.StatusCode.OK
    assert tvss[0].streams == 0


def test_unreachable_tvs(sock_dir: Path) -> None:
    channels = make_tvs_channels([f"unix:{sock_dir / 'nobody.sock'}"])
    launcher, address = start_server(
        f"unix:{sock_dir / 'l.sock'}", hats=HatsLauncherService(build_metadata(), channels)
    )
    channel = grpc.insecure_channel(address.grpc_target())
    try:
        stub = launcher_pb2_grpc.LauncherServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.VerifyReport(iter(_forward(0, b"x"))))
        assert info.value.code() == grpc.StatusCode.UNKNOWN
        # Whether the failure shows on the write or on the read is a race.
        details = info.value.details() or ""
        assert details.startswith(("Failed to write to stream. ", "Failed to read from stream. "))
        assert "nobody.sock" in details
    finally:
        channel.close()
        launcher.stop(None)
        channels[0].close()
