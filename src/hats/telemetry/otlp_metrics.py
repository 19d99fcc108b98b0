"""/proc snapshots → OTLP metrics (spec system-image §4.3), pure.

Names and attributes are the reference agent's; the values are corrected:

- ``cpu_seconds_total{cpu,mode}``: Sum, double, seconds (ticks / USER_HZ;
  the reference sends the ticks);
- ``context_switches_total``, ``forks_total``: Sum, int (``ctxt``, ``processes``);
- ``procs_running``, ``procs_blocked``: Gauge, int;
- ``network_{receive,transmit}_{bytes,packets,errors}{device}``: Sum, int;
- ``mem_total``, ``mem_free``, ``mem_available``, ``mem_buffers``,
  ``mem_cached``, ``mem_slab``: Gauge, int, bytes.

Sums are monotonic and cumulative since boot (``start_time_unix_nano`` =
``btime``). Units are the reference's strings (``seconds``, ``bytes``).
Scope ``oak_agent``; resource ``service.name=unknown_service``.

:func:`metrics_request` merges several snapshots (a batch sent after an
outage) into one request: one ``Metric`` per name, with the data points of
every snapshot in order.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from hats.telemetry.otlp_logs import resource
from hats.telemetry.procfs import Snapshot

SCOPE_NAME = "oak_agent"
CUMULATIVE = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE

Metrics = tuple[metrics_pb2.Metric, ...]
"""The metrics of one snapshot: the agents' batch item."""

_NET = (
    ("network_receive_bytes", "receive_bytes", "bytes"),
    ("network_receive_packets", "receive_packets", ""),
    ("network_receive_errors", "receive_errors", ""),
    ("network_transmit_bytes", "transmit_bytes", "bytes"),
    ("network_transmit_packets", "transmit_packets", ""),
    ("network_transmit_errors", "transmit_errors", ""),
)
_MEM = ("mem_total", "mem_free", "mem_available", "mem_buffers", "mem_cached", "mem_slab")


def _sum(name: str, unit: str = "") -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name=name, unit=unit)
    metric.sum.is_monotonic = True
    metric.sum.aggregation_temporality = CUMULATIVE
    return metric


def _gauge(name: str, unit: str = "") -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name=name, unit=unit)
    metric.gauge.SetInParent()
    return metric


def _point(
    container: metrics_pb2.Sum | metrics_pb2.Gauge,
    time_unix_nano: int,
    start_unix_nano: int,
    attributes: Sequence[tuple[str, str]] = (),
) -> metrics_pb2.NumberDataPoint:
    point = container.data_points.add(time_unix_nano=time_unix_nano)
    if start_unix_nano:
        point.start_time_unix_nano = start_unix_nano
    for key, value in attributes:
        point.attributes.add(key=key).value.string_value = value
    return point


def snapshot_metrics(snapshot: Snapshot, time_unix_nano: int, clock_ticks: int) -> Metrics:
    """The metrics of one snapshot taken at ``time_unix_nano``; ``clock_ticks`` = USER_HZ."""
    if clock_ticks <= 0:
        raise ValueError(f"clock ticks per second must be positive, not {clock_ticks}")
    metrics: list[metrics_pb2.Metric] = []
    stat = snapshot.stat
    start = stat.boot_time * 1_000_000_000 if stat and stat.boot_time else 0
    if stat is not None:
        if stat.cpu_ticks:
            cpu = _sum("cpu_seconds_total", "seconds")
            for index in sorted(stat.cpu_ticks):
                for mode, ticks in stat.cpu_ticks[index].items():
                    point = _point(
                        cpu.sum, time_unix_nano, start, (("cpu", str(index)), ("mode", mode))
                    )
                    point.as_double = ticks / clock_ticks
            metrics.append(cpu)
        for name, value in (
            ("context_switches_total", stat.context_switches),
            ("forks_total", stat.forks),
        ):
            if value is not None:
                metric = _sum(name)
                _point(metric.sum, time_unix_nano, start).as_int = value
                metrics.append(metric)
        for name, value in (
            ("procs_blocked", stat.procs_blocked),
            ("procs_running", stat.procs_running),
        ):
            if value is not None:
                metric = _gauge(name)
                _point(metric.gauge, time_unix_nano, 0).as_int = value
                metrics.append(metric)
    if snapshot.net:
        for name, attribute, unit in _NET:
            metric = _sum(name, unit)
            for device in sorted(snapshot.net):
                point = _point(metric.sum, time_unix_nano, start, (("device", device),))
                point.as_int = getattr(snapshot.net[device], attribute)
            metrics.append(metric)
    for name in _MEM:
        if name in snapshot.meminfo:
            metric = _gauge(name, "bytes")
            _point(metric.gauge, time_unix_nano, 0).as_int = snapshot.meminfo[name]
            metrics.append(metric)
    return tuple(metrics)


def metrics_size(metrics: Metrics) -> int:
    """Serialized size of one snapshot's metrics (the batch byte budget)."""
    return sum(metric.ByteSize() for metric in metrics)


def metrics_request(
    snapshots: Sequence[Metrics],
) -> metrics_service_pb2.ExportMetricsServiceRequest:
    """One request for several snapshots: one ``Metric`` per name, points in order."""
    merged: dict[str, metrics_pb2.Metric] = {}
    for metrics in snapshots:
        for metric in metrics:
            into = merged.get(metric.name)
            if into is None:
                merged[metric.name] = into = metrics_pb2.Metric()
                into.CopyFrom(metric)
                continue
            kind = metric.WhichOneof("data")
            if kind == "sum":
                into.sum.data_points.extend(metric.sum.data_points)
            elif kind == "gauge":
                into.gauge.data_points.extend(metric.gauge.data_points)
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.CopyFrom(resource())
    scope_metrics = resource_metrics.scope_metrics.add()
    scope_metrics.scope.name = SCOPE_NAME
    scope_metrics.metrics.extend(merged.values())
    return request
