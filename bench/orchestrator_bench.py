"""Benchmark the orchestrator: time-to-keys (1 TVS vs 3 TVSes) and GetKeys over the IPC socket.

Both parts are measured in one run on this machine.

1. **time-to-keys**, the ``hats demo`` flow, with ``hats.demo``'s own pieces
   (``prepare``, ``start_tvs``, ``start_launcher``, ``orchestrator_args``): per
   configuration, the image, DICE data, sample bundle, policy and keys are
   made and the TVS processes and the launcher started (not timed), then
   ``hats orchestrator --runtime process`` is run ``--runs`` times (plus one
   warm-up run that is not counted) against them, each from the same DICE
   file and an empty container directory:

   - 1 TVS, ``no-split`` (the baseline);
   - 3 TVSes, ``shamir`` 2-of-3.

   Clock: from just before the orchestrator process is spawned to the moment
   the sample workload's ``key_id=64 ...`` line arrives on the orchestrator's
   stdout ("keys": secrets fetched from every TVS, recombined, served over the
   IPC socket and read by the workload). Also shown: the arrival of the
   orchestrator's ``first attestation round done`` log line ("round done"),
   and the attestation round alone ("round": from the ``evidence extended``
   log line to ``first attestation round done`` -- SendAttestationEvidence to
   the launcher plus one handshake + GetSecrets per TVS through the launcher
   proxy, and the recombination). Medians; the ratio 3-TVS / 1-TVS is the
   figure to watch (goal <= 1.3; the reference attests to the TVSes one after
   the other, so it pays about 3x the round).

2. **GetKeys over the unix socket**: the orchestrator's IPC services started
   in-process with ``hats.orchestrator.services.serve_ipc`` and a stub state
   (two secrets, as ``tests/orchestrator/orch_ipc_support.py`` builds it);
   ``--requests`` sequential calls of ``HatsOrchestrator/GetKeys`` from one gRPC
   client (p50, p99, requests/s), then the same number from ``--threads``
   client threads at once (requests/s). Baseline: a gRPC server with the same
   thread pool serving one unary method ``Empty -> Empty`` on a unix socket,
   hammered the same way. The two are measured alternately ``--repeats``
   times; each figure is the best of its repeats. Client and server share one
   process (and its GIL) in both cases, so the ratios are fair, the absolute
   rates are pessimistic.

Usage: .venv/bin/python bench/orchestrator_bench.py [--runs N] [--requests N] [--threads N]
       [--repeats N] [--skip-flow]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import empty_pb2

from hats.demo import (
    KEY_ID,
    DemoOptions,
    DemoSetup,
    orchestrator_args,
    prepare,
    processes,
    start_launcher,
    start_tvs,
)
from hats.orchestrator.services import MAX_WORKERS, serve_ipc
from hats.pb.pcit.server_common import orchestrator_pb2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "orchestrator"))

import orch_ipc_support  # noqa: E402

GET_KEYS = "/pcit.server_common.HatsOrchestrator/GetKeys"
PING = "/bench.Empty/Ping"
KEYS_MARKER = f"key_id={KEY_ID}"
ROUND_START_MARKER = "evidence extended with the container layer"
ROUND_DONE_MARKER = "first attestation round done"


# ---------------------------------------------------------------- time-to-keys


@dataclass
class Timing:
    keys: float
    round_done: float
    round: float


@dataclass
class Stamps:
    """perf_counter times at which marker lines arrived."""

    seen: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def pump(self, stream: object, markers: tuple[str, ...]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            now = time.perf_counter()
            self.lines.append(line.rstrip("\n"))
            for marker in markers:
                if marker in line and marker not in self.seen:
                    self.seen[marker] = now


def run_orchestrator(setup: DemoSetup, dice: bytes) -> Timing:
    """One orchestrator run, ``hats demo``'s command line, timed from spawn to keys."""
    # the orchestrator clears its DICE file after reading it, and a run leaves its
    # container directory and IPC socket behind: start each run from the same state
    setup.dice.write_bytes(dice)
    for leftover in (setup.work / "container", setup.work / "ipc"):
        shutil.rmtree(leftover, ignore_errors=True)
    out, err = Stamps(), Stamps()
    start = time.perf_counter()
    proc = subprocess.Popen(
        orchestrator_args(setup),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=setup.env,
    )
    pumps = [
        threading.Thread(target=out.pump, args=(proc.stdout, (KEYS_MARKER,))),
        threading.Thread(
            target=err.pump, args=(proc.stderr, (ROUND_START_MARKER, ROUND_DONE_MARKER))
        ),
    ]
    for pump in pumps:
        pump.start()
    try:
        code = proc.wait(300)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = -9
    for pump in pumps:
        pump.join(10)
    missing = [
        marker
        for marker, stamps in (
            (KEYS_MARKER, out),
            (ROUND_DONE_MARKER, err),
            (ROUND_START_MARKER, err),
        )
        if marker not in stamps.seen
    ]
    if code != 0 or missing:
        tail = (err.lines or ["no output"])[-1]
        raise SystemExit(f"bench: orchestrator exited {code}, missing {missing}: {tail}")
    if not any(f"private_key_sha256={setup.expected_fingerprint}" in x for x in out.lines):
        raise SystemExit(f"bench: the workload printed a wrong fingerprint: {out.lines}")
    return Timing(
        keys=out.seen[KEYS_MARKER] - start,
        round_done=err.seen[ROUND_DONE_MARKER] - start,
        round=err.seen[ROUND_DONE_MARKER] - err.seen[ROUND_START_MARKER],
    )


def time_to_keys(work: Path, tvs: int, share: str, runs: int) -> list[Timing]:
    """Start ``tvs`` TVSes and a launcher, run the orchestrator ``runs`` (+1 warm-up) times."""
    setup = prepare(DemoOptions(tvs=tvs, share=share), work, lambda _: None)
    dice = setup.dice.read_bytes()
    timings = []
    with processes() as running:
        for index in range(tvs):
            start_tvs(setup, index, running)
        start_launcher(setup, running)
        for index in range(runs + 1):
            timing = run_orchestrator(setup, dice)
            if index:  # the first run warms the TVSes, the launcher and the page cache
                timings.append(timing)
    return timings


# ---------------------------------------------------------------- GetKeys over IPC


def serve_empty(path: Path) -> grpc.Server:
    """The baseline: one unary ``Empty -> Empty`` method on a unix socket, same pool size."""

    def ping(request: empty_pb2.Empty, context: grpc.ServicerContext) -> empty_pb2.Empty:
        return empty_pb2.Empty()

    handler = grpc.method_handlers_generic_handler(
        "bench.Empty",
        {
            "Ping": grpc.unary_unary_rpc_method_handler(
                ping,
                request_deserializer=empty_pb2.Empty.FromString,
                response_serializer=empty_pb2.Empty.SerializeToString,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_WORKERS))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"unix:{path}")
    server.start()
    return server


@dataclass
class Load:
    p50: float
    p99: float
    sequential_rps: float
    concurrent_rps: float


def hammer(
    path: Path, method: str, decode: Callable[[bytes], object], requests: int, threads: int
) -> Load:
    # target and :authority as the workload SDKs (and examples/workload/get_keys.py) use them
    channel = grpc.insecure_channel(f"unix:{path}", options=[("grpc.default_authority", "[::]:0")])
    call = channel.unary_unary(
        method, request_serializer=empty_pb2.Empty.SerializeToString, response_deserializer=decode
    )
    request = empty_pb2.Empty()
    try:
        for _ in range(min(200, requests)):  # warm up: connection, thread pool
            call(request, timeout=10)
        latencies = []
        start = time.perf_counter()
        for _ in range(requests):
            before = time.perf_counter()
            call(request, timeout=10)
            latencies.append(time.perf_counter() - before)
        sequential = requests / (time.perf_counter() - start)

        def worker(count: int) -> None:
            for _ in range(count):
                call(request, timeout=10)

        share = [requests // threads + (i < requests % threads) for i in range(threads)]
        pool = [threading.Thread(target=worker, args=(n,)) for n in share]
        start = time.perf_counter()
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        concurrent = requests / (time.perf_counter() - start)
    finally:
        channel.close()
    latencies.sort()
    return Load(
        p50=statistics.median(latencies),
        p99=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        sequential_rps=sequential,
        concurrent_rps=concurrent,
    )


def best(loads: list[Load]) -> Load:
    """Per figure, the best of the repeats (the least disturbed by the rest of the machine)."""
    return Load(
        p50=min(load.p50 for load in loads),
        p99=min(load.p99 for load in loads),
        sequential_rps=max(load.sequential_rps for load in loads),
        concurrent_rps=max(load.concurrent_rps for load in loads),
    )


def ipc_load(requests: int, threads: int, repeats: int) -> tuple[Load, Load]:
    """GetKeys and the baseline, alternately ``repeats`` times each; the best of each."""
    with tempfile.TemporaryDirectory(prefix="hats-ipc-bench-") as tmp:
        ipc_path = Path(tmp) / "ipc" / "orchestrator_ipc"
        empty_path = Path(tmp) / "empty.sock"
        server = serve_ipc(
            str(ipc_path),
            orch_ipc_support.make_state(),
            enable_instance_signing=False,
            runtime_uid=None,
            runtime_gid=None,
            notify_app_ready=lambda: None,
        )
        baseline_server = serve_empty(empty_path)
        try:
            with grpc.insecure_channel(f"unix:{ipc_path}") as channel:
                response = channel.unary_unary(
                    GET_KEYS,
                    request_serializer=empty_pb2.Empty.SerializeToString,
                    response_deserializer=orchestrator_pb2.GetKeysResponse.FromString,
                )(empty_pb2.Empty(), timeout=10)
            if len(response.keys) != len(orch_ipc_support.SECRETS):
                raise SystemExit(f"bench: GetKeys returned {len(response.keys)} keys")
            ours, baseline = [], []
            for _ in range(repeats):
                decode = orchestrator_pb2.GetKeysResponse.FromString
                ours.append(hammer(ipc_path, GET_KEYS, decode, requests, threads))
                baseline.append(
                    hammer(empty_path, PING, empty_pb2.Empty.FromString, requests, threads)
                )
        finally:
            server.stop(None)
            baseline_server.stop(None)
    return best(ours), best(baseline)


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="orchestrator runs per configuration")
    parser.add_argument("--requests", type=int, default=2000, help="GetKeys calls per measurement")
    parser.add_argument("--threads", type=int, default=8, help="client threads (concurrent part)")
    parser.add_argument("--repeats", type=int, default=3, help="GetKeys measurements (best)")
    parser.add_argument("--skip-flow", action="store_true", help="only the GetKeys part")
    args = parser.parse_args()

    ms = 1000.0
    if not args.skip_flow:
        with tempfile.TemporaryDirectory(prefix="hats-orch-bench-") as tmp:
            one = time_to_keys(Path(tmp) / "one", 1, "no-split", args.runs)
            three = time_to_keys(Path(tmp) / "three", 3, "shamir", args.runs)

        def med(timings: list[Timing], attr: str) -> float:
            return statistics.median(getattr(t, attr) for t in timings)

        print(
            f"time-to-keys, orchestrator spawn -> workload prints its keys "
            f"(median of {args.runs}, after 1 warm-up):"
        )
        print(f"  {'':<22}{'keys':>10}{'round done':>12}{'round':>10}")
        for label, timings in (("1 TVS, no-split", one), ("3 TVSes, shamir 2/3", three)):
            print(
                f"  {label:<22}{med(timings, 'keys') * ms:8.0f}ms"
                f"{med(timings, 'round_done') * ms:10.0f}ms{med(timings, 'round') * ms:8.1f}ms"
            )
        print(
            f"  {'ratio 3/1 (goal<=1.3)':<22}"
            f"{med(three, 'keys') / med(one, 'keys'):9.2f}x"
            f"{med(three, 'round_done') / med(one, 'round_done'):11.2f}x"
            f"{med(three, 'round') / med(one, 'round'):9.2f}x"
        )
        print(
            "  all runs, keys ms: 1 TVS "
            + " ".join(f"{t.keys * ms:.0f}" for t in one)
            + " | 3 TVSes "
            + " ".join(f"{t.keys * ms:.0f}" for t in three)
        )

    ours, baseline = ipc_load(args.requests, args.threads, args.repeats)
    print(
        f"GetKeys over the unix socket ({args.requests} calls, best of {args.repeats}, "
        "stub state with 2 secrets):"
    )
    print(f"  {'':<24}{'p50':>9}{'p99':>10}{'seq req/s':>11}{f'{args.threads} thr req/s':>13}")
    for label, load in (("GetKeys (serve_ipc)", ours), ("empty unary (baseline)", baseline)):
        print(
            f"  {label:<24}{load.p50 * 1e6:7.0f}us{load.p99 * 1e6:8.0f}us"
            f"{load.sequential_rps:11.0f}{load.concurrent_rps:13.0f}"
        )
    print(
        f"  {'ratio GetKeys/baseline':<24}{ours.p50 / baseline.p50:8.2f}x"
        f"{ours.p99 / baseline.p99:9.2f}x"
        f"{baseline.sequential_rps / ours.sequential_rps:10.2f}x"
        f"{baseline.concurrent_rps / ours.concurrent_rps:12.2f}x  (time per call)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
