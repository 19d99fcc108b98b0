"""The launcher's OTLP sinks: log records as JSON lines, the latest metric values.

Pure parts: :func:`log_record_json` (one OTLP log record → one JSON object),
:class:`MetricsStore` (the latest point per metric name and attributes) and
:func:`format_metrics` (a snapshot as ``name{k="v"} value`` lines). I/O:
:class:`JsonLinesFile` (append, flushed per export) and
:func:`write_metrics_file` / :func:`read_metrics_file`.

A log line (``hats launcher serve --logs-file``) has ``time`` (RFC 3339, UTC,
nanoseconds; null when the record has none), ``time_unix_nano``,
``observed_time_unix_nano``, ``severity`` (the record's text, or the
number's OTLP name), ``severity_number``, ``unit`` (the ``_SYSTEMD_UNIT``
attribute or null), ``body``, ``attributes`` (name → value; arrays as
lists, bytes as ``{"base64": …}``), ``scope`` and ``resource``. Every record
is written, also those the console line (``<unit>: <body>``) leaves out.

The metrics file (``--metrics-file``) is JSON: ``updated`` (RFC 3339),
``exports`` (how many Export calls so far) and ``metrics``, a list of
``{name, type, unit, attributes, value, time, time_unix_nano}`` sorted by
name and attributes; it is rewritten atomically after every export.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import errno
import json
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from hats.errors import HatsError
from hats.fsio import write_bytes_atomic

SYSTEMD_UNIT = "_SYSTEMD_UNIT"
JsonValue = Any
"""What :mod:`json` makes of a value (dict, list, str, int, float, bool, None)."""


class TelemetryFileError(HatsError):
    """A logs or metrics file that cannot be written or read."""


# --------------------------------------------------------------------------- values


def rfc3339(unix_nano: int) -> str | None:
    """``2023-11-14T22:13:20.000000001Z`` (None for 0, "not set")."""
    if unix_nano <= 0:
        return None
    seconds, nanos = divmod(unix_nano, 1_000_000_000)
    try:
        when = dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return f"{when:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


def any_value_json(value: common_pb2.AnyValue) -> JsonValue:
    """An OTLP ``AnyValue`` as JSON (bytes as ``{"base64": …}``, NaN/inf as strings)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else str(number)
    if kind == "bytes_value":
        return {"base64": base64.b64encode(value.bytes_value).decode("ascii")}
    if kind == "array_value":
        return [any_value_json(v) for v in value.array_value.values]
    return {kv.key: any_value_json(kv.value) for kv in value.kvlist_value.values}


def attributes_json(attributes: Iterable[common_pb2.KeyValue]) -> dict[str, JsonValue]:
    """``KeyValue`` list → object (a repeated key: the last wins)."""
    return {kv.key: any_value_json(kv.value) for kv in attributes}


def _severity_name(number: int) -> str:
    try:
        name = logs_pb2.SeverityNumber.Name(logs_pb2.SeverityNumber.ValueType(number))
    except ValueError:
        return str(number)
    return name.removeprefix("SEVERITY_NUMBER_")


def log_record_json(
    record: logs_pb2.LogRecord, scope: str = "", resource: Mapping[str, JsonValue] | None = None
) -> dict[str, JsonValue]:
    """One log record as the JSON object of a ``--logs-file`` line."""
    attributes = attributes_json(record.attributes)
    unit = attributes.get(SYSTEMD_UNIT)
    return {
        "time": rfc3339(record.time_unix_nano),
        "time_unix_nano": record.time_unix_nano,
        "observed_time_unix_nano": record.observed_time_unix_nano,
        "severity": record.severity_text or _severity_name(record.severity_number),
        "severity_number": int(record.severity_number),
        "unit": unit if isinstance(unit, str) else None,
        "body": any_value_json(record.body),
        "attributes": attributes,
        "scope": scope,
        "resource": dict(resource or {}),
    }


def log_request_json(
    request: logs_service_pb2.ExportLogsServiceRequest,
) -> list[dict[str, JsonValue]]:
    """Every record of an export, in order, as :func:`log_record_json` objects."""
    objects: list[dict[str, JsonValue]] = []
    for resource_logs in request.resource_logs:
        resource = attributes_json(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                objects.append(log_record_json(record, scope_logs.scope.name, resource))
    return objects


def json_line(value: JsonValue) -> str:
    """Compact JSON on one line (UTF-8 kept, newlines escaped by JSON)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class JsonLinesFile:
    """An append-only JSON-lines file, written unbuffered per export; thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._handle: BinaryIO = open(path, "ab", buffering=0)  # noqa: SIM115
        except OSError as exc:
            raise TelemetryFileError(f"{path}: cannot open for writing: {exc.strerror}") from None
        self._lock = threading.Lock()

    def write(self, objects: Iterable[JsonValue]) -> None:
        """Append one line per object (raises TelemetryFileError)."""
        data = "".join(json_line(obj) + "\n" for obj in objects).encode("utf-8")
        with self._lock:
            view = memoryview(data)
            try:
                while view:
                    written = self._handle.write(view)
                    if not written:
                        raise OSError(errno.EIO, "nothing written")
                    view = view[written:]
            except OSError as exc:
                raise TelemetryFileError(f"{self.path}: cannot write: {exc.strerror}") from None

    def close(self) -> None:
        with self._lock, contextlib.suppress(OSError):
            self._handle.close()


# -------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class MetricPoint:
    """The latest value of one series (metric name + attributes)."""

    name: str
    type: str  # sum, gauge, histogram
    unit: str
    attributes: tuple[tuple[str, JsonValue], ...]
    value: JsonValue
    time_unix_nano: int

    def json(self) -> dict[str, JsonValue]:
        return {
            "name": self.name,
            "type": self.type,
            "unit": self.unit,
            "attributes": dict(self.attributes),
            "value": self.value,
            "time": rfc3339(self.time_unix_nano),
            "time_unix_nano": self.time_unix_nano,
        }


def _number(point: metrics_pb2.NumberDataPoint) -> JsonValue:
    kind = point.WhichOneof("value")
    if kind == "as_int":
        return point.as_int
    if kind == "as_double":
        value = point.as_double
        return value if math.isfinite(value) else str(value)
    return None


def _points(metric: metrics_pb2.Metric) -> Iterable[tuple[str, Any, JsonValue]]:
    kind = metric.WhichOneof("data")
    if kind == "sum":
        for point in metric.sum.data_points:
            yield "sum", point, _number(point)
    elif kind == "gauge":
        for point in metric.gauge.data_points:
            yield "gauge", point, _number(point)
    elif kind == "histogram":
        for hist in metric.histogram.data_points:
            yield "histogram", hist, {"count": hist.count, "sum": hist.sum}


class MetricsStore:
    """The latest point per (name, attributes) over every export; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], MetricPoint] = {}
        self.exports = 0
        self.updated_unix_nano = 0

    def update(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, now_unix_nano: int
    ) -> int:
        """Keep the newer points of ``request``; how many points it had."""
        count = 0
        with self._lock:
            self.exports += 1
            self.updated_unix_nano = now_unix_nano
            for resource_metrics in request.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        for kind, point, value in _points(metric):
                            count += 1
                            attributes = tuple(sorted(attributes_json(point.attributes).items()))
                            key = (metric.name, json_line(attributes))
                            old = self._series.get(key)
                            if old is not None and old.time_unix_nano > point.time_unix_nano:
                                continue
                            self._series[key] = MetricPoint(
                                name=metric.name,
                                type=kind,
                                unit=metric.unit,
                                attributes=attributes,
                                value=value,
                                time_unix_nano=point.time_unix_nano,
                            )
        return count

    def points(self) -> list[MetricPoint]:
        with self._lock:
            return [self._series[key] for key in sorted(self._series)]

    def snapshot(self) -> dict[str, JsonValue]:
        """The metrics file's content."""
        points = self.points()
        with self._lock:
            updated, exports = self.updated_unix_nano, self.exports
        return {
            "updated": rfc3339(updated),
            "exports": exports,
            "metrics": [point.json() for point in points],
        }


def _label(value: JsonValue) -> str:
    text = value if isinstance(value, str) else json_line(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_metrics(snapshot: Mapping[str, JsonValue]) -> list[str]:
    """A metrics snapshot as ``name{k="v",…} value`` lines, after a header line."""
    metrics = snapshot.get("metrics")
    if not isinstance(metrics, list):
        raise TelemetryFileError("not a metrics snapshot: no 'metrics' list")
    lines = [
        f"# {len(metrics)} series, {snapshot.get('exports', 0)} exports, "
        f"updated {snapshot.get('updated') or 'never'}"
    ]
    for item in metrics:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise TelemetryFileError("not a metrics snapshot: a series has no name")
        attributes = item.get("attributes") or {}
        labels = ",".join(f'{k}="{_label(v)}"' for k, v in sorted(attributes.items()))
        value = item.get("value")
        shown = json_line(value) if not isinstance(value, int | float) else repr(value)
        lines.append(f"{item['name']}{{{labels}}} {shown}" if labels else f"{item['name']} {shown}")
    return lines


def write_metrics_file(path: Path, snapshot: Mapping[str, JsonValue]) -> None:
    """Write the snapshot atomically (temporary file, rename)."""
    data = (json.dumps(snapshot, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    try:
        write_bytes_atomic(path, data)
    except HatsError as exc:
        raise TelemetryFileError(str(exc)) from None
    except OSError as exc:
        raise TelemetryFileError(f"{path}: cannot write: {exc.strerror}") from None


def read_metrics_file(path: Path) -> dict[str, JsonValue]:
    """Read a metrics file written by :func:`write_metrics_file`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TelemetryFileError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        snapshot = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TelemetryFileError(f"{path}: not JSON: {exc}") from None
    if not isinstance(snapshot, dict):
        raise TelemetryFileError(f"{path}: not a metrics snapshot")
    return snapshot
