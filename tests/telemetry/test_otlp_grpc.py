"""OTLP over real gRPC sockets: outcomes by status, the typed calls, addresses."""

from __future__ import annotations

import threading
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from hats.launcher.server import start_server
from hats.launcher.services import LogsService, MetricsService
from hats.telemetry import otlp_grpc
from hats.telemetry.batching import Outcome
from hats.telemetry.otlp_logs import logs_request
from hats.transport import AddressError, parse_address


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (grpc.StatusCode.UNAVAILABLE, Outcome.RETRY),
        (grpc.StatusCode.DEADLINE_EXCEEDED, Outcome.RETRY),
        (grpc.StatusCode.CANCELLED, Outcome.RETRY),
        (grpc.StatusCode.ABORTED, Outcome.RETRY),
        (grpc.StatusCode.OUT_OF_RANGE, Outcome.RETRY),
        (grpc.StatusCode.DATA_LOSS, Outcome.RETRY),
        (grpc.StatusCode.UNIMPLEMENTED, Outcome.REJECT),
        (grpc.StatusCode.INVALID_ARGUMENT, Outcome.REJECT),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, Outcome.REJECT),
        (grpc.StatusCode.PERMISSION_DENIED, Outcome.REJECT),
        (grpc.StatusCode.INTERNAL, Outcome.REJECT),
    ],
)
def test_classify_follows_the_otlp_spec(code: grpc.StatusCode, outcome: Outcome) -> None:
    assert otlp_grpc.classify(code) is outcome


def test_describe_is_one_bounded_line() -> None:
    code = grpc.StatusCode.UNAVAILABLE
    assert otlp_grpc.describe(code, "a\n  b") == "UNAVAILABLE: a b"
    assert otlp_grpc.describe(code, None) == "UNAVAILABLE"
    long = otlp_grpc.describe(code, "x" * 1000)
    assert len(long) < 320 and long.endswith("…")


def test_exports_to_a_real_server_ok_then_unimplemented(work: Path) -> None:
    lines: list[str] = []
    server, _address = start_server(f"unix:{work / 'l.sock'}", logs=LogsService(lines.append))
    try:
        channel = otlp_grpc.launcher_channel(f"unix:{work / 'l.sock'}")
        with channel:
            request = logs_request([])
            record = request.resource_logs[0].scope_logs[0].log_records.add()
            record.body.string_value = "hello"
            record.attributes.add(key="_SYSTEMD_UNIT").value.string_value = "u"
            result = otlp_grpc.export(otlp_grpc.logs_export_call(channel), request, 5.0)
            assert result.outcome is Outcome.OK and result.detail == ""
            # this server has no MetricsService: refused for good, not retried
            refused = otlp_grpc.export(
                otlp_grpc.metrics_export_call(channel),
                metrics_service_pb2.ExportMetricsServiceRequest(),
                5.0,
            )
            assert refused.outcome is Outcome.REJECT
            assert refused.detail.startswith("UNIMPLEMENTED")
    finally:
        server.stop(None)
    assert lines == ["u: hello"]


def test_no_listener_is_retried(work: Path) -> None:
    with otlp_grpc.launcher_channel(f"unix:{work / 'nobody.sock'}") as channel:
        result = otlp_grpc.export(
            otlp_grpc.logs_export_call(channel), logs_service_pb2.ExportLogsServiceRequest(), 2.0
        )
    assert result.outcome is Outcome.RETRY
    assert result.detail.startswith("UNAVAILABLE")


def test_tcp_address_forms_reach_the_server() -> None:
    server, address = start_server("127.0.0.1:0", metrics=MetricsService())
    try:
        for text in (f"http://127.0.0.1:{address.port}/", f"127.0.0.1:{address.port}"):
            with otlp_grpc.launcher_channel(text) as channel:
                result = otlp_grpc.export(
                    otlp_grpc.metrics_export_call(channel),
                    metrics_service_pb2.ExportMetricsServiceRequest(),
                    5.0,
                )
            assert result.outcome is Outcome.OK, (text, result)
    finally:
        server.stop(None)


def test_a_slow_server_is_a_retryable_deadline(work: Path) -> None:
    release = threading.Event()

    def slow(request: bytes, context: grpc.ServicerContext) -> bytes:
        release.wait(5)
        return b""

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.logs.v1.LogsService",
        {"Export": grpc.unary_unary_rpc_method_handler(slow)},
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"unix:{work / 's.sock'}")
    server.start()
    try:
        with otlp_grpc.launcher_channel(f"unix:{work / 's.sock'}") as channel:
            result = otlp_grpc.export(
                otlp_grpc.logs_export_call(channel),
                logs_service_pb2.ExportLogsServiceRequest(),
                0.3,
            )
        assert result.outcome is Outcome.RETRY
        assert result.detail.startswith("DEADLINE_EXCEEDED")
    finally:
        release.set()
        server.stop(None)


def test_vsock_address_path() -> None:
    """No vsock here: the address becomes gRPC's vsock target, and a call is retryable."""
    assert parse_address("vsock://2:8080/").grpc_target() == "vsock:2:8080"
    with otlp_grpc.launcher_channel("vsock://2:8080/") as channel:
        result = otlp_grpc.export(
            otlp_grpc.logs_export_call(channel), logs_service_pb2.ExportLogsServiceRequest(), 0.5
        )
    assert result.outcome is Outcome.RETRY
    with pytest.raises(AddressError):
        otlp_grpc.launcher_channel("vsock://2:port")


def test_channel_options_cap_grpc_reconnection() -> None:
    options = dict(otlp_grpc.channel_options(2.5))
    assert options["grpc.max_reconnect_backoff_ms"] == 2500
    assert options["grpc.initial_reconnect_backoff_ms"] == 1000
    assert options["grpc.enable_retries"] == 0
    assert dict(otlp_grpc.channel_options(0.05))["grpc.max_reconnect_backoff_ms"] == 100
