"""The services of the HATs launcher's gRPC server (spec system-image §5.1).

- :class:`OakLauncher` — ``oak.containers.Launcher``: streams the system image
  and the container bundle in 3 MiB chunks read lazily from disk (one more,
  short or empty, chunk at the end: a file whose size is a multiple of 3 MiB,
  including 0, ends with an empty chunk); keeps the evidence sent with
  ``SendAttestationEvidence`` (the reference discards it); ``NotifyAppReady``
  sets :attr:`OakLauncher.app_ready`; ``GetApplicationConfig`` and
  ``GetEndorsements`` are ``UNIMPLEMENTED``.
- :class:`HatsLauncherService` — ``pcit.client.LauncherService``:
  ``FetchOrchestratorMetadata`` from the flags, and ``VerifyReport``, a strict
  lock-step proxy to ``pcit.tvs.TeeVerificationService/VerifyReport`` on the
  TVS chosen by the first message's ``tvs_id`` (wire-protocol §3.2).
- :class:`LogsService` — OTLP ``LogsService.Export``: ``<unit>: <body>`` for
  each record with a string body and a ``_SYSTEMD_UNIT`` attribute, and
  optionally every record as a JSON line in a file.
- :class:`MetricsService` — OTLP ``MetricsService.Export`` (the reference
  HATs launcher has none, Oak's has): the latest value per series.

Secrets: the metadata holds the orchestrator's private key; nothing here logs
or formats it. TVS error messages are passed on as the reference does.

Limits (:mod:`hats.streamlimits`), so that no caller can hold every worker
of the server: ``VerifyReport`` streams follow :data:`PROXY_LIMITS` (at most
128 at once, each guest message within 10 s, the whole stream within 30 s;
the call to the TVS gets what is left of the 30 s as its deadline), and at
most :data:`MAX_IMAGE_STREAMS` (8) image streams (``GetOakSystemImage`` and
``GetContainerBundle`` together) run at once; beyond a cap the call is
refused with ``RESOURCE_EXHAUSTED``. An image stream whose reader stops
reading still holds its place: the launcher must only be reachable by the
guest and its operator (see :mod:`hats.launcher.cli`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, NoReturn

import grpc
from google.protobuf import empty_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from hats.errors import HatsError
from hats.launcher.telemetry import (
    JsonLinesFile,
    MetricsStore,
    TelemetryFileError,
    log_request_json,
)
from hats.pb.oak.attestation.v1 import endorsement_pb2, evidence_pb2
from hats.pb.oak.containers import interfaces_pb2, interfaces_pb2_grpc
from hats.pb.pcit.client import launcher_pb2, launcher_pb2_grpc
from hats.pb.pcit.tvs import tvs_pb2, tvs_pb2_grpc
from hats.streamlimits import StreamGate, StreamLimits
from hats.textsafe import printable as _printable

CHUNK_SIZE = 3 * 1024 * 1024
"""``kMaxGrpcResponseSize``: under gRPC's default 4 MiB receive limit."""

LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
METRICS_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"
SYSTEMD_UNIT = "_SYSTEMD_UNIT"

PROXY_LIMITS = StreamLimits(max_streams=128, message_timeout=10.0, session_timeout=30.0)
"""The cap and deadlines of ``LauncherService/VerifyReport`` streams."""
MAX_IMAGE_STREAMS = 8
"""Image streams (system image and container bundle together) served at once."""
LOG = logging.getLogger("hats.launcher")


class LauncherFlagError(HatsError):
    """A launcher flag value that cannot be used."""


# --------------------------------------------------------------------------- chunks


def iter_chunks(stream: BinaryIO, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The reference's chunking: full chunks, then one final short (maybe empty) chunk.

    ``n`` bytes give ``n // size + 1`` chunks.
    """
    while True:
        chunk = stream.read(size)
        yield chunk
        if len(chunk) < size:
            return


def chunk_count(length: int, size: int = CHUNK_SIZE) -> int:
    """How many chunks :func:`iter_chunks` yields for ``length`` bytes."""
    return length // size + 1


# ----------------------------------------------------------------- oak.containers.Launcher


class OakLauncher(interfaces_pb2_grpc.LauncherServicer):
    """``oak.containers.Launcher`` serving files from disk."""

    def __init__(
        self,
        system_image: Path | None = None,
        container_bundle: Path | None = None,
        *,
        on_evidence: Callable[[evidence_pb2.Evidence], None] | None = None,
        on_app_ready: Callable[[], None] | None = None,
        chunk_size: int = CHUNK_SIZE,
        max_image_streams: int = MAX_IMAGE_STREAMS,
    ) -> None:
        self.system_image = system_image
        self.container_bundle = container_bundle
        self.chunk_size = chunk_size
        self.app_ready = threading.Event()
        self.evidence_received = threading.Event()
        self._on_evidence = on_evidence
        self._on_app_ready = on_app_ready
        self._lock = threading.Lock()
        self._evidence: evidence_pb2.Evidence | None = None
        # Server-streaming: the one request is read before the handler runs,
        # so only the cap applies (the deadlines are for reading requests).
        self.image_gate = StreamGate(
            "image",
            StreamLimits(max_streams=max_image_streams, message_timeout=1.0, session_timeout=1.0),
            LOG,
        )

    @property
    def evidence(self) -> evidence_pb2.Evidence | None:
        """The evidence of the last ``SendAttestationEvidence`` (None before any)."""
        with self._lock:
            return self._evidence

    def _stream(
        self, path: Path | None, what: str, context: grpc.ServicerContext
    ) -> Iterator[interfaces_pb2.GetImageResponse]:
        if path is None:
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"the launcher has no {what}")
        ticket = self.image_gate.enter(context)
        try:
            try:
                stream = open(path, "rb")  # noqa: SIM115 - closed by the with below
            except OSError as exc:
                _abort(context, grpc.StatusCode.INTERNAL, f"cannot open the {what}: {exc.strerror}")
            with stream:
                try:
                    for chunk in iter_chunks(stream, self.chunk_size):
                        yield interfaces_pb2.GetImageResponse(image_chunk=chunk)
                except OSError as exc:
                    _abort(context, grpc.StatusCode.INTERNAL, f"cannot read the {what}: {exc}")
        finally:
            ticket.close()

    def GetOakSystemImage(
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> Iterator[interfaces_pb2.GetImageResponse]:
        return self._stream(self.system_image, "system image", context)

    def GetContainerBundle(
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> Iterator[interfaces_pb2.GetImageResponse]:
        return self._stream(self.container_bundle, "container bundle", context)

    def GetApplicationConfig(
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> interfaces_pb2.GetApplicationConfigResponse:
        _abort(context, grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")

    def GetEndorsements(
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> endorsement_pb2.Endorsements:
        _abort(context, grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")

    def SendAttestationEvidence(
        self, request: interfaces_pb2.SendAttestationEvidenceRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        evidence = evidence_pb2.Evidence()
        evidence.CopyFrom(request.dice_evidence)
        with self._lock:
            self._evidence = evidence
        self.evidence_received.set()
        if self._on_evidence is not None:
            self._on_evidence(evidence)
        return empty_pb2.Empty()

    def NotifyAppReady(
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        first = not self.app_ready.is_set()
        self.app_ready.set()
        if first and self._on_app_ready is not None:
            self._on_app_ready()
        return empty_pb2.Empty()


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    context.abort(code, details)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


# ----------------------------------------------------------------- pcit.client.LauncherService


def _hex(value: str, flag: str) -> bytes:
    text = value.strip()
    try:
        return bytes.fromhex(text)
    except ValueError:
        # Never echo the value: it may be key material.
        raise LauncherFlagError(
            f"{flag}: not a hex string ({len(text)} characters given)"
        ) from None


def build_metadata(
    tvs_authentication_key: str = "",
    private_key_wrapping_keys: str = "",
    tee_certificate: bytes = b"",
) -> launcher_pb2.FetchOrchestratorMetadataResponse:
    """``FetchOrchestratorMetadataResponse`` from the reference flags' texts.

    ``tvs_authentication_key`` is hex; ``private_key_wrapping_keys`` is a comma
    list of hex keys, the first is ``primary``, the rest ``active``; the
    ``private_key_wrapping_keys`` field is always present.
    """
    response = launcher_pb2.FetchOrchestratorMetadataResponse(
        tee_certificate=tee_certificate,
        tvs_authentication_key=_hex(tvs_authentication_key, "--tvs_authentication_key"),
    )
    keys = [
        _hex(part, f"--private_key_wrapping_keys (key {index + 1})")
        for index, part in enumerate(private_key_wrapping_keys.split(","))
    ]
    wrapping = response.private_key_wrapping_keys
    wrapping.SetInParent()
    wrapping.primary = keys[0]
    wrapping.active.extend(keys[1:])
    return response


def split_tvs_addresses(text: str) -> list[str]:
    """The ``--tvs_addresses`` comma list; the position is the ``tvs_id``."""
    if not text.strip():
        return []
    addresses = [part.strip() for part in text.split(",")]
    for index, address in enumerate(addresses):
        if not address:
            raise LauncherFlagError(f"--tvs_addresses: entry {index} is empty")
    return addresses


def tvs_channel_credentials(
    use_tls: bool, root_certificates: bytes | None = None, access_token: str | None = None
) -> grpc.ChannelCredentials | None:
    """The TVS channel credentials (None = insecure), as the reference builds them."""
    if access_token and not use_tls:
        raise LauncherFlagError("--tvs_access_token needs --use_tls (a bearer token over TLS only)")
    if not use_tls:
        return None
    credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
    if access_token:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(access_token)
        )
    return credentials


def make_tvs_channels(
    addresses: Sequence[str], credentials: grpc.ChannelCredentials | None = None
) -> dict[int, grpc.Channel]:
    """One channel per TVS address, keyed by its 0-based position."""
    channels: dict[int, grpc.Channel] = {}
    for index, address in enumerate(addresses):
        if credentials is None:
            channels[index] = grpc.insecure_channel(address)
        else:
            channels[index] = grpc.secure_channel(address, credentials)
    return channels


_END = object()


class HatsLauncherService(launcher_pb2_grpc.LauncherServiceServicer):
    """``pcit.client.LauncherService``: orchestrator metadata and the TVS proxy."""

    def __init__(
        self,
        metadata: launcher_pb2.FetchOrchestratorMetadataResponse,
        tvs_channels: Mapping[int, grpc.Channel],
        limits: StreamLimits = PROXY_LIMITS,
    ) -> None:
        self._metadata = metadata
        self._channels = dict(tvs_channels)
        self.gate = StreamGate("VerifyReport", limits, LOG)

    def FetchOrchestratorMetadata(
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> launcher_pb2.FetchOrchestratorMetadataResponse:
        response = launcher_pb2.FetchOrchestratorMetadataResponse()
        response.CopyFrom(self._metadata)
        return response

    def VerifyReport(
        self,
        request_iterator: Iterator[launcher_pb2.ForwardingTvsMessage],
        context: grpc.ServicerContext,
    ) -> Iterator[tvs_pb2.OpaqueMessage]:
        ticket = self.gate.enter(context)
        try:
            yield from self._proxy(ticket.requests(request_iterator), ticket.remaining, context)
        finally:
            ticket.close()

    def _proxy(
        self,
        request_iterator: Iterator[launcher_pb2.ForwardingTvsMessage],
        remaining: Callable[[], float],
        context: grpc.ServicerContext,
    ) -> Iterator[tvs_pb2.OpaqueMessage]:
        first = next(request_iterator, None)
        if first is None:
            return
        channel = self._channels.get(first.tvs_id)
        if channel is None:
            _abort(context, grpc.StatusCode.UNKNOWN, f"Failed to find tvs_id {first.tvs_id}")
        outbound: queue.SimpleQueue[object] = queue.SimpleQueue()

        def requests() -> Iterator[tvs_pb2.OpaqueMessage]:
            while True:
                item = outbound.get()
                if item is _END or not isinstance(item, tvs_pb2.OpaqueMessage):
                    return
                yield item

        call = tvs_pb2_grpc.TeeVerificationServiceStub(channel).VerifyReport(
            requests(), timeout=max(remaining(), 0.001)
        )

        finished = threading.Event()

        def cancel_tvs_call() -> None:
            # Runs when our RPC terminates, also after a clean end: then the TVS
            # has been half-closed and must be left to finish on its own.
            if not finished.is_set():
                call.cancel()

        context.add_callback(cancel_tvs_call)
        try:
            message: launcher_pb2.ForwardingTvsMessage | None = first
            while message is not None:
                if not call.is_active():
                    _abort(context, grpc.StatusCode.UNKNOWN, _failure("write", call))
                outbound.put(message.opaque_message)
                try:
                    reply = next(call)
                except StopIteration:
                    _abort(context, grpc.StatusCode.UNKNOWN, _failure("read", call))
                except grpc.RpcError:
                    _abort(context, grpc.StatusCode.UNKNOWN, _failure("read", call))
                yield reply
                message = next(request_iterator, None)
            finished.set()
            # Half-close and wait for the TVS to end its side (as a C++ Finish()):
            # dropping an unfinished call would cancel it. Its status is not ours.
            outbound.put(_END)
            with contextlib.suppress(grpc.RpcError):
                for _ in call:
                    pass
        finally:
            # Half-close towards the TVS; on any failure, cancel its call too.
            outbound.put(_END)
            if not finished.is_set() and call.is_active():
                call.cancel()


def _failure(operation: str, call: grpc.Call) -> str:
    """The reference's error text; ``call`` has ended, so ``details()`` does not block."""
    details = call.details() or "the TVS ended the stream"
    preposition = "to" if operation == "write" else "from"
    return f"Failed to {operation} {preposition} stream. {details}"


# --------------------------------------------------------------------------- OTLP LogsService


def log_lines(request: logs_service_pb2.ExportLogsServiceRequest) -> list[str]:
    """``<unit>: <body>`` for each record with a string body and a ``_SYSTEMD_UNIT``."""
    lines: list[str] = []
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                if record.body.WhichOneof("value") != "string_value":
                    continue
                unit = next(
                    (a.value.string_value for a in record.attributes if a.key == SYSTEMD_UNIT),
                    None,
                )
                if unit is None:
                    continue
                lines.append(f"{_printable(unit)}: {_printable(record.body.string_value)}")
    return lines


class LogsService:
    """OTLP ``LogsService.Export``: each kept record goes to ``emit``.

    With ``logs_file``, every record of the export is first appended to it as
    a JSON line (:func:`hats.launcher.telemetry.log_record_json`); if that
    fails the call ends ``UNAVAILABLE`` (the sender keeps the batch and tries
    again) and ``on_error`` is told once until a write succeeds again.
    Otherwise the answer is always OK.
    """

    def __init__(
        self,
        emit: Callable[[str], None],
        logs_file: JsonLinesFile | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._emit = emit
        self._file = logs_file
        self._on_error = on_error
        self._failing = False
        self._lock = threading.Lock()

    def Export(
        self, request: logs_service_pb2.ExportLogsServiceRequest, context: grpc.ServicerContext
    ) -> logs_service_pb2.ExportLogsServiceResponse:
        if self._file is not None:
            try:
                self._file.write(log_request_json(request))
            except TelemetryFileError as exc:
                with self._lock:
                    first, self._failing = not self._failing, True
                if first and self._on_error is not None:
                    self._on_error(f"hats launcher: logs file: {exc}")
                _abort(context, grpc.StatusCode.UNAVAILABLE, "the launcher cannot store logs")
            with self._lock:
                self._failing = False
        for line in log_lines(request):
            self._emit(line)
        return logs_service_pb2.ExportLogsServiceResponse()

    def generic_handler(self) -> grpc.GenericRpcHandler:
        """The handler serving this object as ``…collector.logs.v1.LogsService``."""
        handler = grpc.unary_unary_rpc_method_handler(
            self.Export,
            request_deserializer=logs_service_pb2.ExportLogsServiceRequest.FromString,
            response_serializer=logs_service_pb2.ExportLogsServiceResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(LOGS_SERVICE, {"Export": handler})


# ------------------------------------------------------------------------ OTLP MetricsService


class MetricsService:
    """OTLP ``MetricsService.Export``: keeps the latest value of every series.

    ``on_update`` is called after each export (the CLI rewrites the metrics
    file there); the answer is always OK.
    """

    def __init__(
        self,
        store: MetricsStore | None = None,
        on_update: Callable[[MetricsStore], None] | None = None,
    ) -> None:
        self.store = MetricsStore() if store is None else store
        self._on_update = on_update

    def Export(
        self,
        request: metrics_service_pb2.ExportMetricsServiceRequest,
        context: grpc.ServicerContext,
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self.store.update(request, time.time_ns())
        if self._on_update is not None:
            self._on_update(self.store)
        return metrics_service_pb2.ExportMetricsServiceResponse()

    def generic_handler(self) -> grpc.GenericRpcHandler:
        """The handler serving this object as ``…collector.metrics.v1.MetricsService``."""
        handler = grpc.unary_unary_rpc_method_handler(
            self.Export,
            request_deserializer=metrics_service_pb2.ExportMetricsServiceRequest.FromString,
            response_serializer=metrics_service_pb2.ExportMetricsServiceResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(METRICS_SERVICE, {"Export": handler})
