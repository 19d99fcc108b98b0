"""/proc snapshot → OTLP metrics, and merging snapshots into one request."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from hats.telemetry.otlp_metrics import metrics_request, metrics_size, snapshot_metrics
from hats.telemetry.procfs import Snapshot, read_snapshot

FIXTURE = Path(__file__).parent.parent / "agent" / "proc"
T = 1_700_000_100_000_000_000
BOOT = 1_700_000_000 * 1_000_000_000
CUMULATIVE = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


def _by_name(metrics: tuple[metrics_pb2.Metric, ...]) -> dict[str, metrics_pb2.Metric]:
    return {m.name: m for m in metrics}


def _points(metric: metrics_pb2.Metric) -> dict[tuple[tuple[str, str], ...], float]:
    data = metric.sum if metric.WhichOneof("data") == "sum" else metric.gauge
    out = {}
    for point in data.data_points:
        key = tuple((kv.key, kv.value.string_value) for kv in point.attributes)
        out[key] = point.as_double if point.WhichOneof("value") == "as_double" else point.as_int
    return out


def test_reference_names_kinds_and_values() -> None:
    metrics = _by_name(snapshot_metrics(read_snapshot(FIXTURE), T, clock_ticks=100))
    assert sorted(metrics) == sorted(
        [
            "cpu_seconds_total",
            "context_switches_total",
            "forks_total",
            "procs_blocked",
            "procs_running",
            "network_receive_bytes",
            "network_receive_packets",
            "network_receive_errors",
            "network_transmit_bytes",
            "network_transmit_packets",
            "network_transmit_errors",
            "mem_total",
            "mem_free",
            "mem_available",
            "mem_buffers",
            "mem_cached",
            "mem_slab",
        ]
    )
    cpu = metrics["cpu_seconds_total"]
    assert cpu.unit == "seconds" and cpu.sum.is_monotonic
    assert cpu.sum.aggregation_temporality == CUMULATIVE
    cpu_points = _points(cpu)
    assert len(cpu_points) == 2 * 8
    assert cpu_points[(("cpu", "0"), ("mode", "user"))] == pytest.approx(6.81)  # 681 ticks
    assert cpu_points[(("cpu", "1"), ("mode", "idle"))] == pytest.approx(471.95)
    assert cpu_points[(("cpu", "1"), ("mode", "steal"))] == pytest.approx(0.03)
    for point in cpu.sum.data_points:
        assert (point.time_unix_nano, point.start_time_unix_nano) == (T, BOOT)
    assert _points(metrics["context_switches_total"]) == {(): 612345}
    assert _points(metrics["forks_total"]) == {(): 4321}
    assert metrics["forks_total"].sum.is_monotonic
    assert _points(metrics["procs_running"]) == {(): 2}
    assert _points(metrics["procs_blocked"]) == {(): 1}
    assert metrics["procs_running"].WhichOneof("data") == "gauge"
    assert _points(metrics["network_receive_bytes"]) == {
        (("device", "enp0s1"),): 123456789,
        (("device", "lo"),): 53412,
    }
    assert metrics["network_receive_bytes"].unit == "bytes"
    assert _points(metrics["network_transmit_errors"])[(("device", "enp0s1"),)] == 2
    assert _points(metrics["network_receive_errors"])[(("device", "enp0s1"),)] == 3
    assert _points(metrics["network_transmit_packets"])[(("device", "enp0s1"),)] == 34567
    assert _points(metrics["mem_total"]) == {(): 8000000 * 1024}
    assert _points(metrics["mem_slab"]) == {(): 90000 * 1024}
    assert metrics["mem_total"].unit == "bytes"
    assert metrics["mem_total"].WhichOneof("data") == "gauge"


def test_clock_ticks_scale_cpu_seconds() -> None:
    metrics = _by_name(snapshot_metrics(read_snapshot(FIXTURE), T, clock_ticks=1000))
    assert _points(metrics["cpu_seconds_total"])[(("cpu", "0"), ("mode", "user"))] == 0.681
    with pytest.raises(ValueError):
        snapshot_metrics(read_snapshot(FIXTURE), T, clock_ticks=0)


def test_empty_snapshot_has_no_metrics() -> None:
    assert snapshot_metrics(Snapshot(stat=None, meminfo={}, net={}), T, 100) == ()


def test_snapshots_merge_into_one_metric_per_name() -> None:
    snapshot = read_snapshot(FIXTURE)
    first = snapshot_metrics(snapshot, T, 100)
    second = snapshot_metrics(snapshot, T + 60_000_000_000, 100)
    request = metrics_request([first, second])
    (resource_metrics,) = request.resource_metrics
    assert resource_metrics.resource.attributes[0].value.string_value == "unknown_service"
    (scope_metrics,) = resource_metrics.scope_metrics
    assert scope_metrics.scope.name == "oak_agent"
    names = [m.name for m in scope_metrics.metrics]
    assert len(names) == len(set(names)) == len(first)
    merged = {m.name: m for m in scope_metrics.metrics}
    forks = merged["forks_total"].sum.data_points
    assert [p.time_unix_nano for p in forks] == [T, T + 60_000_000_000]
    assert len(merged["mem_free"].gauge.data_points) == 2
    assert len(merged["cpu_seconds_total"].sum.data_points) == 32
    assert metrics_size(first) == sum(m.ByteSize() for m in first) > 0
    # the inputs are not changed by merging
    assert len(_by_name(first)["forks_total"].sum.data_points) == 1
