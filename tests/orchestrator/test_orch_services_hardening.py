"""The orchestrator's servers refuse calls beyond their pool instead of queueing them.

A unary call holds a worker from its start until its one request message
arrives, so callers that never send it could make every later call wait
forever; with ``maximum_concurrent_rpcs`` the later call is refused at once.
"""

from __future__ import annotations

import queue
import time

import grpc

from hats.orchestrator import services
from hats.pb.oak.key_provisioning.v1 import key_provisioning_pb2

METHOD = "/oak.key_provisioning.v1.KeyProvisioning/GetGroupKeys"


def test_key_provisioning_refuses_calls_beyond_its_pool() -> None:
    running = services.serve_key_provisioning("127.0.0.1:0")
    assert running is not None
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    stalled: list[queue.Queue[bytes | None]] = []
    try:
        # Two calls that never send their request message hold both workers.
        silent: grpc.StreamUnaryMultiCallable[bytes, bytes] = channel.stream_unary(METHOD)
        futures = []
        for _ in range(2):
            pending: queue.Queue[bytes | None] = queue.Queue()
            stalled.append(pending)
            futures.append(silent.future(iter(pending.get, None), timeout=30))
        time.sleep(0.5)
        call: grpc.UnaryUnaryMultiCallable[key_provisioning_pb2.GetGroupKeysRequest, bytes] = (
            channel.unary_unary(
                METHOD,
                request_serializer=key_provisioning_pb2.GetGroupKeysRequest.SerializeToString,
            )
        )
        start = time.monotonic()
        try:
            call(key_provisioning_pb2.GetGroupKeysRequest(), timeout=5)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        else:  # pragma: no cover - the server always fails this call
            raise AssertionError("the call was answered")
        assert time.monotonic() - start < 2.0
        for future in futures:
            future.cancel()
    finally:
        for pending in stalled:
            pending.put(None)
        channel.close()
        running.stop(None)
