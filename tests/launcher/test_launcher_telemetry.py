"""The launcher's OTLP sinks: logs as JSON lines, the latest metrics, their CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2

from hats.launcher.server import start_server
from hats.launcher.services import LogsService, MetricsService
from hats.launcher.telemetry import (
    JsonLinesFile,
    MetricsStore,
    TelemetryFileError,
    format_metrics,
    log_record_json,
    log_request_json,
    read_metrics_file,
    rfc3339,
    write_metrics_file,
)
from hats.telemetry import otlp_grpc
from hats.telemetry.batching import Outcome
from telemetry_support import LAUNCHER, launcher_process, wait_for

A = common_pb2.AnyValue


def _kv(key: str, value: A) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=value)


def test_rfc3339_keeps_nanoseconds() -> None:
    assert rfc3339(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"
    assert rfc3339(0) is None


def test_log_record_json_every_value_kind() -> None:
    record = logs_pb2.LogRecord(
        time_unix_nano=1_700_000_000_123_456_789,
        observed_time_unix_nano=5,
        severity_number=logs_pb2.SeverityNumber.SEVERITY_NUMBER_WARN,
        body=A(bytes_value=b"\x00\xff"),
        attributes=[
            _kv("_SYSTEMD_UNIT", A(string_value="a.service")),
            _kv("n", A(int_value=-3)),
            _kv("d", A(double_value=float("nan"))),
            _kv("b", A(bool_value=True)),
            _kv("arr", A(array_value=common_pb2.ArrayValue(values=[A(string_value="x")]))),
            _kv(
                "kv",
                A(kvlist_value=common_pb2.KeyValueList(values=[_kv("k", A(int_value=1))])),
            ),
            _kv("none", A()),
        ],
    )
    assert log_record_json(record, "TEE Log", {"service.name": "s"}) == {
        "time": "2023-11-14T22:13:20.123456789Z",
        "time_unix_nano": 1_700_000_000_123_456_789,
        "observed_time_unix_nano": 5,
        "severity": "WARN",  # from the number when the text is empty
        "severity_number": 13,
        "unit": "a.service",
        "body": {"base64": "AP8="},
        "attributes": {
            "_SYSTEMD_UNIT": "a.service",
            "n": -3,
            "d": "nan",
            "b": True,
            "arr": ["x"],
            "kv": {"k": 1},
            "none": None,
        },
        "scope": "TEE Log",
        "resource": {"service.name": "s"},
    }
    assert log_record_json(logs_pb2.LogRecord(severity_text="custom"))["severity"] == "custom"
    assert log_record_json(logs_pb2.LogRecord())["unit"] is None


def _request(
    *bodies: str, unit: str | None = "u.service"
) -> logs_service_pb2.ExportLogsServiceRequest:
    request = logs_service_pb2.ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    scope.scope.name = "TEE Log"
    for body in bodies:
        record = scope.log_records.add()
        record.body.string_value = body
        if unit is not None:
            record.attributes.add(key="_SYSTEMD_UNIT").value.string_value = unit
    return request


def test_logs_service_writes_every_record_and_prints_the_unit_ones(tmp_path: Path) -> None:
    path = tmp_path / "logs.jsonl"
    path.write_text('{"earlier":"run"}\n')
    lines: list[str] = []
    logs_file = JsonLinesFile(path)
    sock = tmp_path / "l.sock"
    server, _ = start_server(f"unix:{sock}", logs=LogsService(lines.append, logs_file))
    try:
        with otlp_grpc.launcher_channel(f"unix:{sock}") as channel:
            call = otlp_grpc.logs_export_call(channel)
            for request in (_request("one\nline", "two"), _request("no unit", unit=None)):
                assert otlp_grpc.export(call, request, 5.0).outcome is Outcome.OK
    finally:
        server.stop(None)
        logs_file.close()
    written = path.read_text(encoding="utf-8").splitlines()
    assert written[0] == '{"earlier":"run"}'  # appended, never truncated
    objects = [json.loads(line) for line in written[1:]]
    assert [o["body"] for o in objects] == ["one\nline", "two", "no unit"]
    assert [o["unit"] for o in objects] == ["u.service", "u.service", None]
    assert lines == ["u.service: one\\x0aline", "u.service: two"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_logs_file_that_cannot_be_written_makes_the_sender_retry(tmp_path: Path) -> None:
    printed: list[str] = []
    errors: list[str] = []
    logs_file = JsonLinesFile(Path("/dev/full"))
    sock = tmp_path / "l.sock"
    server, _ = start_server(
        f"unix:{sock}", logs=LogsService(printed.append, logs_file, on_error=errors.append)
    )
    try:
        with otlp_grpc.launcher_channel(f"unix:{sock}") as channel:
            call = otlp_grpc.logs_export_call(channel)
            for _ in range(3):
                result = otlp_grpc.export(call, _request("kept by the sender"), 5.0)
                assert result.outcome is Outcome.RETRY
                assert result.detail == "UNAVAILABLE: the launcher cannot store logs"
    finally:
        server.stop(None)
    assert printed == []  # not printed either, so a retry does not print twice
    assert len(errors) == 1 and "/dev/full: cannot write" in errors[0]


def test_logs_file_open_error_is_a_hats_error(tmp_path: Path) -> None:
    with pytest.raises(TelemetryFileError, match="cannot open for writing"):
        JsonLinesFile(tmp_path / "missing" / "logs.jsonl")


def _gauge_request(
    name: str, value: int, time_unix_nano: int, **attributes: str
) -> metrics_service_pb2.ExportMetricsServiceRequest:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name=name, unit="By")
    point = metric.gauge.data_points.add(time_unix_nano=time_unix_nano, as_int=value)
    for key, text in attributes.items():
        point.attributes.add(key=key).value.string_value = text
    return request


def test_metrics_store_keeps_the_latest_value_per_series() -> None:
    store = MetricsStore()
    store.update(_gauge_request("mem_free", 10, 100), 1)
    store.update(_gauge_request("mem_free", 5, 300), 2)
    store.update(_gauge_request("mem_free", 7, 200), 3)  # older: ignored
    store.update(_gauge_request("net", 1, 100, device="lo"), 4)
    store.update(_gauge_request("net", 2, 100, device="eth0"), 5)
    histogram = metrics_service_pb2.ExportMetricsServiceRequest()
    metric = histogram.resource_metrics.add().scope_metrics.add().metrics.add(name="latency")
    metric.histogram.data_points.add(time_unix_nano=1, count=4, sum=2.5)
    metric.histogram.data_points.add(time_unix_nano=2, count=6, sum=3.5)
    assert store.update(histogram, 6) == 2
    snapshot = store.snapshot()
    assert snapshot["exports"] == 6
    values = {(m["name"], json.dumps(m["attributes"])): m["value"] for m in snapshot["metrics"]}
    assert values == {
        ("latency", "{}"): {"count": 6, "sum": 3.5},
        ("mem_free", "{}"): 5,
        ("net", '{"device": "eth0"}'): 2,
        ("net", '{"device": "lo"}'): 1,
    }
    assert format_metrics(snapshot)[1:] == [
        'latency {"count":6,"sum":3.5}',
        "mem_free 5",
        'net{device="eth0"} 2',
        'net{device="lo"} 1',
    ]


def test_metrics_file_round_trip_and_errors(tmp_path: Path) -> None:
    store = MetricsStore()
    store.update(_gauge_request("mem_total", 8, 1_700_000_000_000_000_000, z='a"b'), 7)
    path = tmp_path / "m.json"
    write_metrics_file(path, store.snapshot())
    snapshot = read_metrics_file(path)
    assert snapshot["metrics"][0]["time"] == "2023-11-14T22:13:20.000000000Z"
    assert format_metrics(snapshot)[1:] == ['mem_total{z="a\\"b"} 8']
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(TelemetryFileError, match="not a metrics snapshot"):
        read_metrics_file(tmp_path / "bad.json")
    with pytest.raises(TelemetryFileError, match="no 'metrics' list"):
        format_metrics({})
    with pytest.raises(TelemetryFileError, match="cannot read"):
        read_metrics_file(tmp_path / "missing.json")
    with pytest.raises(TelemetryFileError):
        write_metrics_file(tmp_path / "no" / "dir.json", {})


def test_metrics_service_over_a_socket_calls_back(tmp_path: Path) -> None:
    updates: list[int] = []
    service = MetricsService(on_update=lambda store: updates.append(store.exports))
    server, address = start_server("127.0.0.1:0", metrics=service)
    try:
        with grpc.insecure_channel(address.grpc_target()) as channel:
            call = otlp_grpc.metrics_export_call(channel)
            call(_gauge_request("procs_running", 3, 10), timeout=5)
            call(_gauge_request("procs_running", 4, 20), timeout=5)
    finally:
        server.stop(None)
    assert updates == [1, 2]
    assert [p.value for p in service.store.points()] == [4]


def test_serve_metrics_file_sigusr1_and_metrics_command(tmp_path: Path) -> None:
    sock = tmp_path / "l.sock"
    metrics_file = tmp_path / "metrics.json"
    with launcher_process(sock, metrics_file=metrics_file) as launcher:
        with otlp_grpc.launcher_channel(f"unix:{sock}") as channel:
            call = otlp_grpc.metrics_export_call(channel)
            call(_gauge_request("mem_free", 42, 1_000, device="x"), timeout=5)
        assert read_metrics_file(metrics_file)["metrics"][0]["value"] == 42
        launcher.popen.send_signal(signal.SIGUSR1)
        wait_for(lambda: 'mem_free{device="x"} 42' in launcher.out)
    shown = subprocess.run(
        [*LAUNCHER, "metrics", str(metrics_file)], capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0
    assert shown.stdout.splitlines()[1:] == ['mem_free{device="x"} 42']
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    result = subprocess.run(
        [sys.executable, "-m", "hats", "launcher", "metrics", str(broken)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"hats: error: {broken}: not JSON")
    assert len(result.stderr.splitlines()) == 1


def test_serve_refuses_an_unwritable_logs_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hats",
            "launcher",
            "serve",
            "--listen",
            f"unix:{tmp_path / 'l.sock'}",
            "--logs-file",
            str(tmp_path / "nope" / "logs.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"hats: error: {tmp_path / 'nope' / 'logs.jsonl'}: cannot open for writing: "
        "No such file or directory"
    ]


def test_log_request_json_walks_every_resource_and_scope() -> None:
    request = _request("a")
    second = request.resource_logs.add()
    second.resource.attributes.add(key="service.name").value.string_value = "other"
    scope = second.scope_logs.add()
    scope.scope.name = "S2"
    scope.log_records.add().body.string_value = "b"
    objects = log_request_json(request)
    assert [(o["body"], o["scope"], o["resource"]) for o in objects] == [
        ("a", "TEE Log", {}),
        ("b", "S2", {"service.name": "other"}),
    ]


def test_unused_metric_kinds_are_ignored() -> None:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="s")
    metric.summary.data_points.add(count=1)
    metric2 = request.resource_metrics[0].scope_metrics[0].metrics.add(name="e")
    metric2.exponential_histogram.data_points.add(count=1)
    assert MetricsStore().update(request, 1) == 0
