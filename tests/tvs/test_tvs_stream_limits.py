"""The TVS under idle, unauthenticated streams: a cap, deadlines, a message size bound.

Issue "[hardening]" item 6: 16 idle ``VerifyReport`` streams used to hold
all 16 workers, so the 17th caller waited forever.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from tvs_testing import Client, Stream, config, full_session

from hats.pb.pcit.tvs import tvs_pb2, tvs_pb2_grpc
from hats.streamlimits import StreamLimits, StreamLimitsError
from hats.tvs.server import DEFAULT_LIMITS, TvsServicer, serve_servicer

SECRET = [("64", "some public key", b"secret")]


class IdleStream:
    """A ``VerifyReport`` stream that sends nothing until told to stop."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._requests: queue.Queue[tvs_pb2.OpaqueMessage | None] = queue.Queue()
        stub = tvs_pb2_grpc.TeeVerificationServiceStub(channel)
        self.call = stub.VerifyReport(iter(self._requests.get, None), timeout=60)

    def status(self) -> grpc.StatusCode:
        """Wait for the end of the stream; its status code."""
        try:
            for _ in self.call:
                pass
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    def send(self, message: bytes) -> None:
        self._requests.put(tvs_pb2.OpaqueMessage(binary_message=message))

    def stop(self) -> None:
        self._requests.put(None)
        self.call.cancel()


@contextmanager
def tvs(tmp_path: Path, limits: StreamLimits) -> Iterator[tuple[TvsServicer, str]]:
    servicer = TvsServicer(config().new_handler, limits)
    server, target = serve_servicer(f"unix:{tmp_path / 'tvs.sock'}", servicer)
    try:
        yield servicer, target
    finally:
        server.stop(None).wait()


def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def readers() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "VerifyReport-reader")


def test_100_idle_streams_do_not_keep_a_real_client_from_its_secret(tmp_path: Path) -> None:
    limits = StreamLimits(max_streams=101, message_timeout=30.0, session_timeout=60.0)
    with tvs(tmp_path, limits) as (servicer, target):
        channel = grpc.insecure_channel(target)
        idle = [IdleStream(channel) for _ in range(100)]
        try:
            wait_until(lambda: servicer.gate.active == 100)
            start = time.monotonic()
            assert full_session(target) == SECRET
            assert time.monotonic() - start < 1.0
            # The real client gave its place back: one more idle stream fits,
            # the next is refused at once, not queued.
            wait_until(lambda: servicer.gate.active == 100)
            idle.append(IdleStream(channel))
            wait_until(lambda: servicer.gate.active == 101)
            extra = IdleStream(channel)
            start = time.monotonic()
            assert extra.status() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert time.monotonic() - start < 1.0
            assert servicer.gate.active == 101
        finally:
            for stream in idle:
                stream.stop()
            channel.close()
        wait_until(lambda: servicer.gate.active == 0)
    wait_until(lambda: readers() == 0)


def test_the_default_cap_leaves_room_for_100_idle_streams() -> None:
    assert DEFAULT_LIMITS.max_streams > 100
    assert DEFAULT_LIMITS.message_timeout <= 10.0


def test_an_idle_stream_ends_after_the_message_deadline(tmp_path: Path) -> None:
    limits = StreamLimits(max_streams=4, message_timeout=0.3, session_timeout=30.0)
    with tvs(tmp_path, limits) as (servicer, target):
        channel = grpc.insecure_channel(target)
        try:
            stream = IdleStream(channel)
            start = time.monotonic()
            try:
                next(iter(stream.call))
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert "no message within 0.3 s" in (exc.details() or "")
            else:
                pytest.fail("the idle stream got an answer")
            assert 0.25 < time.monotonic() - start < 3.0
            stream.stop()
            wait_until(lambda: servicer.gate.active == 0)
        finally:
            channel.close()
    wait_until(lambda: readers() == 0)


def test_a_stalled_handshake_ends_after_the_message_deadline(tmp_path: Path) -> None:
    limits = StreamLimits(max_streams=4, message_timeout=0.3, session_timeout=30.0)
    with tvs(tmp_path, limits) as (servicer, target):
        channel = grpc.insecure_channel(target)
        try:
            client = Client()
            stream = IdleStream(channel)
            stream.send(client.init_request())
            client.process_init_response(next(stream.call).binary_message)
            # The verify request never comes.
            start = time.monotonic()
            with pytest.raises(grpc.RpcError) as caught:
                next(stream.call)
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert 0.25 < time.monotonic() - start < 3.0
            stream.stop()
            wait_until(lambda: servicer.gate.active == 0)
        finally:
            channel.close()


def test_a_stream_ends_after_the_session_deadline(tmp_path: Path) -> None:
    limits = StreamLimits(max_streams=4, message_timeout=5.0, session_timeout=0.3)
    with tvs(tmp_path, limits) as (servicer, target):
        channel = grpc.insecure_channel(target)
        try:
            stream = IdleStream(channel)
            start = time.monotonic()
            with pytest.raises(grpc.RpcError) as caught:
                next(iter(stream.call))
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "not over after 0.3 s" in (caught.value.details() or "")
            assert time.monotonic() - start < 3.0
            stream.stop()
            wait_until(lambda: servicer.gate.active == 0)
        finally:
            channel.close()


def test_a_full_session_still_works_under_short_deadlines(tmp_path: Path) -> None:
    limits = StreamLimits(max_streams=1, message_timeout=2.0, session_timeout=5.0)
    with tvs(tmp_path, limits) as (servicer, target):
        assert full_session(target) == SECRET
        assert full_session(target) == SECRET
        wait_until(lambda: servicer.gate.active == 0)


def test_a_request_larger_than_the_bound_is_refused(tmp_path: Path) -> None:
    with tvs(tmp_path, DEFAULT_LIMITS) as (servicer, target):
        stream = Stream(target)
        with pytest.raises(grpc.RpcError) as caught:
            stream.exchange(b"\x00" * (1 << 20))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        stream.channel.close()
        wait_until(lambda: servicer.gate.active == 0)


@pytest.mark.parametrize(
    ("streams", "message", "session"), [(0, 1.0, 1.0), (1, 0.0, 1.0), (1, 1.0, -1.0)]
)
def test_limits_must_be_positive(streams: int, message: float, session: float) -> None:
    with pytest.raises(StreamLimitsError):
        StreamLimits(max_streams=streams, message_timeout=message, session_timeout=session)
