"""Benchmark fast image builds: reference xz, parallel multi-block xz, and a key-change rebuild.

All measured in one run, on a real Debian base made by ``hats base build``
(cached), in the reference layout (three 4 MiB incompressible binaries, as
``build_bench.py``), each build a fresh ``hats image build`` process:

- reference: ``hats image build`` (xz -T1 -6, the default);
- parallel:  ``--xz-block-size 8MiB --no-block-cache`` (all CPUs);
- cold:      ``--xz-block-size 8MiB`` with an empty block cache (fills it);
- rebuild:   the same with only the key file changed (a fresh key; median of 3);
- unchanged: the same inputs again (every block from the cache).

Prints the times, reference/parallel (goal >= 1.8 on 2 cores) and
rebuild/parallel (goal <= 0.05), and checks the bytes: parallel, cold and
unchanged builds are identical, and parallel and rebuild outputs equal
``xz -T2 --block-size=8MiB -6`` of their tars (``--quick`` skips the xz runs).

Usage: .venv/bin/python bench/fast_build_bench.py [--base BASE] [--with-python]
       [--block-size 8MiB] [--jobs N] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], **kwargs: object) -> tuple[float, int]:
    """Run ``cmd``; return (seconds, peak RSS in bytes)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, **kwargs)  # type: ignore[call-overload]
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"bench: {' '.join(cmd[:6])} … failed with exit code {code}")
    return elapsed, usage.ru_maxrss * 1024


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def key_file(path: Path) -> Path:
    from hats.keys.keygen import generate_key_pair

    path.write_text("".join(f"{i}:{generate_key_pair()[1].hex()}\n" for i in range(2)))
    return path


class Builder:
    def __init__(self, base: Path, binaries: dict[str, Path], tmp: Path) -> None:
        self.base = base
        self.binaries = binaries
        self.tmp = tmp

    def build(
        self, name: str, keys: Path, *extra: str
    ) -> tuple[Path, float, int, dict[str, object]]:
        out = self.tmp / f"{name}.tar.xz"
        summary = self.tmp / f"{name}.json"
        cmd = [
            sys.executable,
            "-m",
            "hats",
            "image",
            "build",
            "-q",
            "--json",
            "--base",
            str(self.base),
            "--tvs-keys",
            str(keys),
            "--secret-share-type",
            "xor",
            "--orchestrator",
            str(self.binaries["orchestrator"]),
            "--agent",
            str(self.binaries["agent"]),
            "--syslogd",
            str(self.binaries["syslogd"]),
            "-o",
            str(out),
            *extra,
        ]
        with summary.open("w") as handle:
            seconds, rss = timed(cmd, stdout=handle)
        doc: dict[str, object] = json.loads(summary.read_text().splitlines()[-1])
        return out, seconds, rss, doc


def xz_t2(tar: Path, block_size: str, out: Path) -> float:
    with tar.open("rb") as src, out.open("wb") as dst:
        seconds, _ = timed(
            ["xz", "-T2", f"--block-size={block_size}", "-6", "-c"], stdin=src, stdout=dst
        )
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, help="base image (default: hats base build)")
    parser.add_argument("--with-python", action="store_true", help="default base with python3")
    parser.add_argument("--block-size", default="8MiB", help="--xz-block-size (default 8MiB)")
    parser.add_argument("--jobs", type=int, help="--jobs (default: all CPUs)")
    parser.add_argument("--quick", action="store_true", help="skip the xz -T2 byte checks")
    args = parser.parse_args()
    from hats.archive.xzparallel import parse_size

    if args.base is None:
        from hats.base.build import ensure_default_base

        args.base = ensure_default_base(with_python=args.with_python)
    jobs = ["--jobs", str(args.jobs)] if args.jobs else []
    multi = ["--xz-block-size", args.block_size, *jobs]
    with tempfile.TemporaryDirectory(prefix="hats-fast-bench-") as tmp_name:
        tmp = Path(tmp_name)
        rnd = random.Random(2026)
        binaries = {}
        for name in ("orchestrator", "agent", "syslogd"):
            path = tmp / name
            path.write_bytes(b"#!/bin/sh\n" + rnd.randbytes(4 << 20))  # incompressible, like ELF
            binaries[name] = path
        builder = Builder(args.base, binaries, tmp)
        keys = key_file(tmp / "keys.txt")
        cache = ["--block-cache", str(tmp / "blocks")]

        ref, t_ref, rss_ref, _ = builder.build("reference", keys)
        par, t_par, rss_par, par_doc = builder.build("parallel", keys, *multi, "--no-block-cache")
        cold, t_cold, _, _ = builder.build(
            "cold", keys, *multi, *cache, "--tar", str(tmp / "a.tar")
        )
        # Rebuilds are short and so noisy: the median of three, each with a fresh key.
        runs = []
        for attempt in range(3):
            new_keys = key_file(tmp / f"keys-{attempt}.txt")
            runs.append((builder.build(f"rebuild-{attempt}", new_keys, *multi, *cache), new_keys))
        runs.sort(key=lambda run: run[0][1])
        (rebuild, t_rebuild, rss_rebuild, rebuild_doc), keys2 = runs[1]
        rebuild_times = [run[0][1] for run in runs]
        same, t_same, _, _ = builder.build(
            "unchanged", keys2, *multi, *cache, "--tar", str(tmp / "b.tar")
        )
        identical = sha256(par) == sha256(cold)
        rebuild_same = sha256(rebuild) == sha256(same)
        checks: list[str] = []
        t_xz = None
        if not args.quick:
            t_xz = xz_t2(tmp / "a.tar", args.block_size, tmp / "a.xz-t2.xz")
            checks.append(f"parallel == xz -T2: {sha256(tmp / 'a.xz-t2.xz') == sha256(par)}")
            xz_t2(tmp / "b.tar", args.block_size, tmp / "b.xz-t2.xz")
            checks.append(f"rebuild == xz -T2: {sha256(tmp / 'b.xz-t2.xz') == sha256(rebuild)}")

        tar_mb = (tmp / "a.tar").stat().st_size / 1e6
        xz = par_doc["xz"]
        assert isinstance(xz, dict)
        rxz = rebuild_doc["xz"]
        assert isinstance(rxz, dict)
        cpus = len(os.sched_getaffinity(0))
        mb = 1e6
        print(f"base: {args.base} (image tar {tar_mb:.1f} MB)")
        print(f"{cpus} CPUs, block size {args.block_size}")
        print(
            f"reference  {t_ref:7.2f} s   xz -T1 -6, one block: {ref.stat().st_size / mb:.1f} MB, "
            f"peak RSS {rss_ref / mb:.0f} MB"
        )
        print(
            f"parallel   {t_par:7.2f} s   {xz['blocks']} blocks, no cache: "
            f"{par.stat().st_size / mb:.1f} MB, peak RSS {rss_par / mb:.0f} MB"
        )
        print(f"cold cache {t_cold:7.2f} s   (fills the block cache, writes the tar)")
        tail = (tmp / "a.tar").stat().st_size % parse_size(args.block_size, "--block-size")
        print(
            f"rebuild    {t_rebuild:7.2f} s   new key: {rxz['compressed']} block(s) compressed, "
            f"{rxz['reused']} reused, peak RSS {rss_rebuild / mb:.0f} MB "
            f"(runs: {', '.join(f'{t:.2f}' for t in rebuild_times)} s; "
            f"the last block, recompressed, holds {tail / mb:.2f} MB)"
        )
        print(f"unchanged  {t_same:7.2f} s   (every block reused, writes the tar)")
        if t_xz is not None:
            print(f"xz -T2     {t_xz:7.2f} s   (the xz CLI on the same tar, for comparison)")
        print(f"reference/parallel = {t_ref / t_par:.2f}x  (goal >= 1.8 on 2 cores)")
        print(f"rebuild/parallel   = {t_rebuild / t_par:.3f}  (goal <= 0.05)")
        print(f"parallel == cold cache: {identical}; rebuild == unchanged: {rebuild_same}")
        for check in checks:
            print(check)
        ok = identical and rebuild_same and all(c.endswith("True") for c in checks)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
