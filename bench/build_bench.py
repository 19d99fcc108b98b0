"""Benchmark ``hats image build`` against the reference pipeline and the xz floor.

All three are measured in one run on the same machine, from a real Debian base
made by ``hats base build`` (cached):

- ours:      ``hats image build`` (decompress base, compose, xz -T1 -6), one process;
- reference: ``xz -dc base | <pkg_tar merge, as rules_pkg does it with tarfile>``
             then ``xz -T1 -6`` on the tar — the Bazel + build-lib.sh pipeline;
- floor:     ``xz -T1 -6 < our-output.tar`` — compression alone, which no
             single-stream build can beat.

Prints the times, the ratios ours/floor (goal <= 1.05) and ours/reference, the
peak RSS of our build (goal <= 256 MB) and whether the three outputs agree.

``--profile`` instead runs our build in this process and accounts for CPU
time, which a loaded machine does not distort the way it distorts wall-clock
ratios (we use two threads, ``xz -T1`` one): the CPU of every thread (sampled
from ``/proc/self/task``), the compressing thread's busy share and the seconds
it was starved of input, the work before its first input and after its last
output, the hand-offs to it, and the floor's CPU. On a quiet 2-core machine
ours/floor is about (before + compressor CPU + starved + after) / floor CPU,
which the profile prints as the "CPU-path estimate". ``--cprofile`` adds the
main thread's hottest functions.

Usage: .venv/bin/python bench/build_bench.py [--base BASE] [--with-python]
       [--profile [--cprofile]]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "image"))

import oracle  # noqa: E402


def timed(cmd: list[str], **kwargs: object) -> tuple[float, int]:
    """Run ``cmd``; return (seconds, peak RSS in bytes)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, **kwargs)  # type: ignore[call-overload]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench: {cmd[0]} failed with exit code {proc.returncode}")
    return elapsed, usage.ru_maxrss * 1024


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, help="base image (default: hats base build)")
    parser.add_argument("--with-python", action="store_true", help="default base with python3")
    parser.add_argument("--profile", action="store_true", help="CPU accounting of our build only")
    parser.add_argument(
        "--cprofile", action="store_true", help="with --profile: main thread hot spots"
    )
    args = parser.parse_args()
    if args.base is None:
        from hats.base.build import ensure_default_base

        args.base = ensure_default_base(with_python=args.with_python)
    keys = ROOT / "examples" / "keys" / "test_xor_2.txt"
    with tempfile.TemporaryDirectory(prefix="hats-bench-") as tmp_name:
        tmp = Path(tmp_name)
        base_xz = tmp / "base.tar.xz"
        if args.base.suffix == ".xz":
            base_xz = args.base
        else:
            with base_xz.open("wb") as out:
                subprocess.run(["xz", "-T0", "-c", str(args.base)], stdout=out, check=True)
        binaries = {}
        for name in ("orchestrator", "agent", "syslogd"):
            path = tmp / name
            path.write_bytes(b"#!/bin/sh\n" + os.urandom(4 << 20))  # incompressible, like ELF
            binaries[name] = path
        ours = tmp / "ours.tar.xz"
        ours_tar = tmp / "ours.tar"
        if args.profile:
            return profile(base_xz, binaries, keys, ours, ours_tar, args.cprofile)
        t_ours, rss = timed(
            [
                sys.executable,
                "-m",
                "hats",
                "image",
                "build",
                "-q",
                "--base",
                str(base_xz),
                "--tvs-keys",
                str(keys),
                "--secret-share-type",
                "xor",
                "--allow-test-keys",
                "--orchestrator",
                str(binaries["orchestrator"]),
                "--agent",
                str(binaries["agent"]),
                "--syslogd",
                str(binaries["syslogd"]),
                "-o",
                str(ours),
                "--tar",
                str(ours_tar),
            ],
            stdout=subprocess.DEVNULL,
        )
        # the reference: tarfile merge (build_tar's rules), then xz -T1 -6
        start = time.perf_counter()
        work = tmp / "ref"
        work.mkdir()
        deps = [base_xz]
        oracle_tar = work / "reference.tar"
        _merge_reference(work, deps, binaries, keys, oracle_tar)
        t_merge = time.perf_counter() - start
        ref_xz = tmp / "ref.tar.xz"
        with oracle_tar.open("rb") as src, ref_xz.open("wb") as dst:
            t_xz_ref, _ = timed(["xz", "-T1", "-6", "-c"], stdin=src, stdout=dst)
        floor_xz = tmp / "floor.tar.xz"
        with ours_tar.open("rb") as src, floor_xz.open("wb") as dst:
            t_floor, _ = timed(["xz", "-T1", "-6", "-c"], stdin=src, stdout=dst)
        t_ref = t_merge + t_xz_ref
        same = sha256(ours) == sha256(ref_xz) == sha256(floor_xz)
        tar_mb = ours_tar.stat().st_size / 1e6
        print(
            f"base: {args.base} ({base_xz.stat().st_size / 1e6:.1f} MB xz, "
            f"image tar {tar_mb:.1f} MB)"
        )
        print(f"ours      {t_ours:7.2f} s   peak RSS {rss / 1e6:.0f} MB")
        print(
            f"reference {t_ref:7.2f} s   (tarfile merge {t_merge:.2f} s + xz -T1 -6 "
            f"{t_xz_ref:.2f} s)"
        )
        print(f"floor     {t_floor:7.2f} s   (xz -T1 -6 on our tar)")
        print(f"ours/floor     = {t_ours / t_floor:.3f}  (goal <= 1.05)")
        print(f"ours/reference = {t_ours / t_ref:.3f}")
        print(f"identical bytes (ours, reference, floor): {same}")
    return 0


class ThreadSampler:
    """Per-thread CPU seconds of this process, sampled from ``/proc/self/task``.

    Threads are named from :func:`threading.enumerate`; a thread's last
    sample is kept after it ends (up to one period of its CPU is missed).
    """

    def __init__(self, period: float = 0.2) -> None:
        self._period = period
        self._tick = os.sysconf("SC_CLK_TCK")
        self.cpu: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def __enter__(self) -> ThreadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self._sample()

    def _sample(self) -> None:
        for thread in threading.enumerate():
            if thread.native_id is not None:
                self.names.setdefault(thread.native_id, thread.name)
        for task in Path("/proc/self/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime and stime are fields 14 and 15 of stat(5); 11 and 12 after ")"
            self.cpu[int(task.name)] = (int(fields[11]) + int(fields[12])) / self._tick

    def by_thread(self) -> list[tuple[str, float]]:
        rows = [(self.names.get(tid, f"tid {tid}"), cpu) for tid, cpu in self.cpu.items()]
        return sorted(rows, key=lambda row: -row[1])


def profile(
    base_xz: Path,
    binaries: dict[str, Path],
    keys: Path,
    ours: Path,
    ours_tar: Path,
    cprofile: bool,
) -> int:
    """Build in this process and print where the CPU time goes (see the docstring)."""
    import cProfile
    import pstats

    from hats.archive import compress
    from hats.image import build

    sinks: list[compress.XzSink] = []

    class RecordedSink(compress.XzSink):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            sinks.append(self)

    build.XzSink = RecordedSink  # type: ignore[misc]
    from hats.image import settings

    options = settings.BuildOptions(
        keys=settings.KeyInputs(tvs_keys=keys, secret_share_type="xor"),
        outputs=settings.Outputs(image=ours, tar=ours_tar),
        base=base_xz,
        agents=settings.AgentInputs(
            orchestrator=binaries["orchestrator"],
            agent=binaries["agent"],
            syslogd=binaries["syslogd"],
        ),
        lint=settings.LintOptions(allow_test_keys=True),
    )
    marks: dict[str, float] = {}
    profiler = cProfile.Profile() if cprofile else None
    with ThreadSampler() as sampler:
        start, main_cpu = time.perf_counter(), time.thread_time()
        start_cpu = time.process_time()
        if profiler is not None:
            profiler.enable()
        build.build_image(
            options,
            on_plan=lambda _plan: marks.update(plan=time.perf_counter(), cpu=time.process_time()),
        )
        if profiler is not None:
            profiler.disable()
        end, main_cpu = time.perf_counter(), time.thread_time() - main_cpu
    with ours_tar.open("rb") as src, (ours_tar.parent / "floor.tar.xz").open("wb") as dst:
        floor_start = time.perf_counter()
        proc = subprocess.Popen(["xz", "-T1", "-6", "-c"], stdin=src, stdout=dst)
        _, _, usage = os.wait4(proc.pid, 0)
        floor_wall = time.perf_counter() - floor_start
    floor_cpu = usage.ru_utime + usage.ru_stime
    same = sha256(ours) == sha256(ours_tar.parent / "floor.tar.xz")
    with open("/proc/loadavg") as handle:
        load = " ".join(handle.read().split()[:3])
    stats = sinks[0].stats
    assert stats.first_input is not None and stats.finished is not None
    before = stats.first_input - start
    after = end - stats.finished
    span = stats.finished - stats.first_input
    print(f"load average at the end: {load} (2 cores)")
    print(f"ours (in process) {end - start:7.2f} s wall; floor xz -T1 -6 {floor_wall:.2f} s wall")
    print(f"  plan pass (compose without output, lint): {marks['plan'] - start:.2f} s")
    plan_cpu = marks["cpu"] - start_cpu
    print(f"  its CPU, all threads (a bound on its quiet wall time): {plan_cpu:.2f} s")
    print(f"  before the compressor's first input:      {before:.2f} s")
    print(f"  after its last output:                    {after:.2f} s")
    print(
        f"compressor: {stats.cpu:.2f} s CPU over {span:.2f} s = {100 * stats.cpu / span:.1f}% busy;"
        f" starved {stats.starved:.2f} s; {stats.chunks} hand-offs of "
        f"{stats.tar_bytes / max(stats.chunks, 1) / 2**20:.2f} MiB"
    )
    print(f"producer blocked on the full queue: {stats.producer_blocked:.2f} s (ahead: good)")
    print(
        f"floor xz CPU {floor_cpu:.2f} s; compressor CPU / floor CPU = {stats.cpu / floor_cpu:.3f}"
    )
    # a loaded machine stretches the wall time before compression; its CPU bounds it
    estimate = (
        min(before, plan_cpu + (before - (marks["plan"] - start)))
        + stats.cpu
        + stats.starved
        + after
    )
    print(f"CPU-path estimate ours/floor = {estimate / floor_cpu:.3f}  (goal <= 1.05)")
    print(f"main thread CPU {main_cpu:.2f} s; process CPU by thread:")
    for name, cpu in sampler.by_thread():
        print(f"  {cpu:7.2f} s  {name}")
    print(f"identical bytes (ours, floor): {same}")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    return 0


def _merge_reference(
    work: Path, deps: list[Path], binaries: dict[str, Path], keys: Path, out: Path
) -> None:
    from hats.image.units import render_orchestrator_unit, render_syslogd_unit

    parts = [
        oracle.sub_tar(
            work / "admin_bin.tar",
            [
                ("usr/bin/orchestrator_main", binaries["orchestrator"].read_bytes(), 0o755),
                ("usr/bin/oak_containers_agent", binaries["agent"].read_bytes(), 0o755),
                ("usr/bin/oak_containers_syslogd", binaries["syslogd"].read_bytes(), 0o755),
            ],
        ),
        oracle.sub_tar(
            work / "interface.tar", [("etc/systemd/network/10-enp0s1.network", b"", 0o555)]
        ),
        oracle.sub_tar(
            work / "services.tar",
            [
                (
                    "etc/systemd/system/oak-orchestrator.service",
                    render_orchestrator_unit("xor"),
                    0o555,
                ),
                ("etc/systemd/system/oak-syslogd.service", render_syslogd_unit(), 0o555),
            ],
        ),
        oracle.sub_tar(work / "keys.tar", [("hats/tvs_public_keys.txt", keys.read_bytes(), 0o555)]),
    ]
    oracle.merge(out, [*deps, *parts])


if __name__ == "__main__":
    sys.exit(main())
