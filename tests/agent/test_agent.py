"""``hats agent`` as a process: /proc metrics to a real launcher over a socket."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from hats.launcher.server import start_server
from hats.launcher.services import LogsService, MetricsService
from hats.launcher.telemetry import read_metrics_file
from telemetry_support import (
    AGENT,
    LAUNCHER,
    Process,
    launcher_process,
    wait_for,
)

FIXTURE = Path(__file__).parent / "proc"
FAST = ["--max-retry-delay", "0.2", "--rpc-timeout", "2"]


class RecordingMetrics(MetricsService):
    """A MetricsService that also keeps every request."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.lock = threading.Lock()

    def Export(
        self,
        request: metrics_service_pb2.ExportMetricsServiceRequest,
        context: grpc.ServicerContext,
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        with self.lock:
            self.requests.append(request)
        return super().Export(request, context)


def _series(service: MetricsService) -> dict[tuple[str, tuple[tuple[str, object], ...]], object]:
    return {(p.name, p.attributes): p.value for p in service.store.points()}


def _forks_times(request: metrics_service_pb2.ExportMetricsServiceRequest) -> list[int]:
    metrics = request.resource_metrics[0].scope_metrics[0].metrics
    forks = next(m for m in metrics if m.name == "forks_total")
    return [p.time_unix_nano for p in forks.sum.data_points]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LAUNCHER_ADDR"}
    return subprocess.run(
        [*AGENT, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_once_from_the_fixture_tree(work: Path) -> None:
    service = RecordingMetrics()
    server, _ = start_server(f"unix:{work / 'l.sock'}", metrics=service)
    try:
        before = time.time_ns()
        result = _run(f"unix:{work / 'l.sock'}", "--once", "--proc-root", str(FIXTURE), *FAST)
    finally:
        server.stop(None)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "oak-agent: stopped: 1 snapshots sent, 0 dropped at the queue bound, 0 refused, "
        "0 undelivered"
    ]
    (request,) = service.requests
    assert request.resource_metrics[0].scope_metrics[0].scope.name == "oak_agent"
    series = _series(service)
    assert series[("cpu_seconds_total", (("cpu", "0"), ("mode", "user")))] == pytest.approx(6.81)
    assert series[("context_switches_total", ())] == 612345
    assert series[("procs_blocked", ())] == 1
    assert series[("network_transmit_bytes", (("device", "enp0s1"),))] == 4567890
    assert series[("mem_available", ())] == 7200000 * 1024
    assert before <= _forks_times(request)[0] <= time.time_ns()


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc")
def test_once_from_the_live_proc(work: Path) -> None:
    service = MetricsService()
    server, _ = start_server(f"unix:{work / 'l.sock'}", metrics=service)
    try:
        result = _run(f"unix:{work / 'l.sock'}", "--once", *FAST)
    finally:
        server.stop(None)
    assert result.returncode == 0, result.stderr
    series = _series(service)
    assert series[("mem_total", ())] == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cpus = {dict(attrs)["cpu"] for name, attrs in series if name == "cpu_seconds_total"}
    assert 1 <= len(cpus) <= (os.cpu_count() or 1)
    assert series[("network_receive_bytes", (("device", "lo"),))] >= 0  # type: ignore[operator]
    with open("/proc/uptime") as handle:
        uptime = float(handle.read().split()[0])
    idle = sum(
        v  # type: ignore[misc]
        for (name, attrs), v in series.items()
        if name == "cpu_seconds_total" and dict(attrs)["mode"] == "idle"
    )
    # idle seconds summed over the CPUs cannot exceed uptime × CPUs (ticks read as seconds would)
    assert 0 < idle <= uptime * len(cpus) + 1


def test_every_interval_to_a_real_launcher_then_sigterm(work: Path) -> None:
    metrics_file = work / "metrics.json"
    with launcher_process(work / "l.sock", metrics_file=metrics_file):
        agent = Process(
            [
                *AGENT,
                f"unix:{work / 'l.sock'}",
                "--interval",
                "0.2",
                "--proc-root",
                str(FIXTURE),
                *FAST,
            ]
        )
        try:
            wait_for(
                lambda: metrics_file.exists() and read_metrics_file(metrics_file)["exports"] >= 3
            )
            assert agent.stop() == 0
        finally:
            agent.kill()
    snapshot = read_metrics_file(metrics_file)
    names = {m["name"] for m in snapshot["metrics"]}
    assert {"cpu_seconds_total", "mem_total", "network_receive_bytes"} <= names
    shown = subprocess.run(
        [*LAUNCHER, "metrics", str(metrics_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"# {len(snapshot['metrics'])} series, ")
    assert 'cpu_seconds_total{cpu="0",mode="user"} 6.81' in lines
    assert "mem_total 8192000000" in lines
    assert 'network_receive_bytes{device="enp0s1"} 123456789' in lines
    assert agent.err[-1].startswith("oak-agent: stopped: ")


def test_launcher_down_keeps_the_latest_snapshots_up_to_the_bound(work: Path) -> None:
    sock = work / "l.sock"
    agent = Process(
        [
            *AGENT,
            f"unix:{sock}",
            "--interval",
            "0.1",
            "--queue-size",
            "3",
            "--proc-root",
            str(FIXTURE),
            *FAST,
        ]
    )
    service = RecordingMetrics()
    server = None
    try:
        wait_for(lambda: any("OTLP error" in line for line in agent.err))
        time.sleep(1.0)  # about 10 snapshots for a queue of 3
        server, _ = start_server(f"unix:{sock}", metrics=service)
        wait_for(lambda: len(service.requests) >= 2)
        assert agent.stop() == 0
    finally:
        agent.kill()
        if server is not None:
            server.stop(None)
    first, second = (_forks_times(r) for r in service.requests[:2])
    # the batch being retried is kept; of the rest, only the newest two
    assert len(first) == 1 and len(second) == 2
    assert second[0] - first[0] > 500_000_000  # snapshots in between were dropped
    assert second == sorted(second)
    dropped = [line for line in agent.err if "snapshots were dropped" in line]
    assert len(dropped) == 1 and "(the queue holds 3)" in dropped[0], agent.err
    assert sum("OTLP error" in line for line in agent.err) == 1


def test_a_launcher_without_metrics_service_refuses(work: Path) -> None:
    server, _ = start_server(f"unix:{work / 'l.sock'}", logs=LogsService(lambda _: None))
    try:
        result = _run(f"unix:{work / 'l.sock'}", "--once", "--proc-root", str(FIXTURE), *FAST)
    finally:
        server.stop(None)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("oak-agent: OTLP error: UNIMPLEMENTED")
    assert "1 snapshots refused by the launcher and dropped" in lines[0]
    assert lines[-1].endswith("1 refused, 0 undelivered")


def test_user_errors_are_one_line(work: Path) -> None:
    result = _run("unix:/x", "--proc-root", str(work / "nope"))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"oak-agent: --proc-root {work / 'nope'}: no such directory"
    ]
    result = _run("unix:/x", "--interval", "0")
    assert result.returncode == 2 and "expected a number of seconds above 0" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "hats", "agent", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Issue 15: the help names the command typed, and the binary in the image.
    assert result.returncode == 0 and result.stdout.startswith("usage: hats agent ")
    assert "/usr/bin/oak_containers_agent" in result.stdout
