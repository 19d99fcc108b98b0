"""OTLP over gRPC to the launcher: the channel, the two ``Export`` calls, outcomes.

The channel takes any address :func:`hats.transport.parse_address` accepts
(``vsock://CID:PORT``, ``http://HOST:PORT``, ``HOST:PORT``, ``unix:PATH``),
like the orchestrator's. gRPC's own reconnection backoff (120 s at most by
default) is capped at the agents' retry cap, so a launcher that comes back
is reached within about one retry period.

The generated ``*_pb2_grpc`` modules of opentelemetry-proto have no type
stubs; :func:`logs_export_call` and :func:`metrics_export_call` build the
typed callables from the channel directly (same method paths, same
serializers).

Outcomes follow the OTLP/gRPC specification: ``CANCELLED``,
``DEADLINE_EXCEEDED``, ``ABORTED``, ``OUT_OF_RANGE``, ``UNAVAILABLE`` and
``DATA_LOSS`` are retried; any other status (``UNIMPLEMENTED`` from a
launcher without the service, ``RESOURCE_EXHAUSTED`` for a message over its
size limit, …) rejects the batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import grpc
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from hats.telemetry.batching import Outcome
from hats.telemetry.worker import ExportResult
from hats.transport import parse_address

LOGS_EXPORT_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
METRICS_EXPORT_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"

RETRYABLE = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_MAX_DETAIL = 300

Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)

if TYPE_CHECKING:  # grpcio's classes are not subscriptable at run time
    # At run time the metrics messages are imported by metrics_export_call:
    # syslogd, which starts next to the orchestrator, never needs them.
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

    LogsExportCall = grpc.UnaryUnaryMultiCallable[
        logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse
    ]
    MetricsExportCall = grpc.UnaryUnaryMultiCallable[
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
    ]


def classify(code: grpc.StatusCode) -> Outcome:
    """Retry or reject, for a failed call's status code."""
    return Outcome.RETRY if code in RETRYABLE else Outcome.REJECT


def describe(code: grpc.StatusCode, details: str | None) -> str:
    """``CODE: details`` on one line, bounded in length."""
    text = " ".join((details or "").split())
    if len(text) > _MAX_DETAIL:
        text = text[: _MAX_DETAIL - 1] + "…"
    return f"{code.name}: {text}" if text else code.name


def channel_options(max_reconnect_backoff: float) -> list[tuple[str, int]]:
    """gRPC channel options: reconnection backoff capped, no transparent retries."""
    cap_ms = max(int(max_reconnect_backoff * 1000), 100)
    return [
        ("grpc.initial_reconnect_backoff_ms", min(1000, cap_ms)),
        ("grpc.min_reconnect_backoff_ms", min(1000, cap_ms)),
        ("grpc.max_reconnect_backoff_ms", cap_ms),
        # Retries are ours (the batch stays queued); no hidden transparent retries.
        ("grpc.enable_retries", 0),
    ]


def launcher_channel(address: str, max_reconnect_backoff: float = 10.0) -> grpc.Channel:
    """An insecure channel to the launcher at ``address`` (raises AddressError)."""
    target = parse_address(address).grpc_target()
    return grpc.insecure_channel(target, options=channel_options(max_reconnect_backoff))


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def logs_export_call(channel: grpc.Channel) -> LogsExportCall:
    """``LogsService.Export`` on ``channel``."""
    return channel.unary_unary(
        LOGS_EXPORT_METHOD,
        request_serializer=_serialize,
        response_deserializer=logs_service_pb2.ExportLogsServiceResponse.FromString,
    )


def metrics_export_call(channel: grpc.Channel) -> MetricsExportCall:
    """``MetricsService.Export`` on ``channel``."""
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

    return channel.unary_unary(
        METRICS_EXPORT_METHOD,
        request_serializer=_serialize,
        response_deserializer=metrics_service_pb2.ExportMetricsServiceResponse.FromString,
    )


def export(
    call: grpc.UnaryUnaryMultiCallable[Request, Response], request: Request, timeout: float
) -> ExportResult:
    """Make one ``Export`` call; its outcome (never raises for gRPC failures)."""
    try:
        call(request, timeout=timeout)
    except grpc.RpcError as exc:
        if isinstance(exc, grpc.Call):
            code, details = exc.code(), exc.details()
        else:  # pragma: no cover - grpcio's unary errors are always Calls
            code, details = grpc.StatusCode.UNKNOWN, str(exc)
        return ExportResult(classify(code), describe(code, details))
    return ExportResult(Outcome.OK)
