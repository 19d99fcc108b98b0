"""The container bundle download: hashed as it arrives, bounded by the guest's memory."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2
from orch_testing import FakeLauncher, serve

from hats.orchestrator.startup import (
    FALLBACK_BUNDLE_SIZE_LIMIT,
    BundleTooLargeError,
    RetryPolicy,
    bundle_size_limit,
    fetch_bundle,
)
from hats.pb.oak.containers import interfaces_pb2, interfaces_pb2_grpc


class EndlessLauncher(FakeLauncher):
    """A hostile launcher: its bundle never ends."""

    def __init__(self) -> None:
        super().__init__({})
        self.ended = threading.Event()

    def GetContainerBundle(
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> Iterator[interfaces_pb2.GetImageResponse]:
        context.add_callback(self.ended.set)
        while context.is_active():
            yield interfaces_pb2.GetImageResponse(image_chunk=b"x" * 65536)


def _stub(socket: Path) -> tuple[grpc.Channel, interfaces_pb2_grpc.LauncherStub]:
    channel = grpc.insecure_channel(f"unix:{socket}")
    return channel, interfaces_pb2_grpc.LauncherStub(channel)


def test_the_bundle_and_its_digest_come_from_the_same_bytes(tmp_path: Path) -> None:
    launcher = FakeLauncher({})
    launcher.bundle = bytes(range(256)) * 1000  # several of the fake's 100 kB chunks
    server = serve(launcher, tmp_path / "l.sock")
    channel, stub = _stub(tmp_path / "l.sock")
    try:
        data, digest = fetch_bundle(stub, timeout=10, retry=RetryPolicy(budget=5))
    finally:
        channel.close()
        server.stop(None)
    assert data == launcher.bundle
    assert digest == hashlib.sha256(launcher.bundle).digest()


def test_an_endless_bundle_is_refused_at_the_limit_and_the_call_cancelled(
    tmp_path: Path,
) -> None:
    launcher = EndlessLauncher()
    server = serve(launcher, tmp_path / "l.sock")
    channel, stub = _stub(tmp_path / "l.sock")
    try:
        with pytest.raises(BundleTooLargeError) as caught:
            fetch_bundle(stub, timeout=30, retry=RetryPolicy(budget=5), max_size=1 << 20)
        assert launcher.ended.wait(10), "the launcher's stream was not cancelled"
    finally:
        channel.close()
        server.stop(None)
    message = str(caught.value)
    assert "\n" not in message
    assert "larger than 1048576 bytes" in message


@pytest.mark.parametrize(
    ("meminfo", "limit"),
    [
        ("MemTotal:        2030000 kB\nMemAvailable:    1800000 kB\n", 1800000 * 1024 // 2),
        ("MemAvailable: 4 kB", 2048),
        (None, FALLBACK_BUNDLE_SIZE_LIMIT),
        ("", FALLBACK_BUNDLE_SIZE_LIMIT),
        ("MemTotal: 2030000 kB\n", FALLBACK_BUNDLE_SIZE_LIMIT),
        ("MemAvailable: 0 kB\n", FALLBACK_BUNDLE_SIZE_LIMIT),
        ("MemAvailable: lots kB\n", FALLBACK_BUNDLE_SIZE_LIMIT),
        ("MemAvailable: \u00b2 kB\n", FALLBACK_BUNDLE_SIZE_LIMIT),
        ("MemAvailable: 1800000 MB\n", FALLBACK_BUNDLE_SIZE_LIMIT),
    ],
)
def test_the_limit_is_half_the_available_memory(meminfo: str | None, limit: int) -> None:
    assert bundle_size_limit(meminfo) == limit
