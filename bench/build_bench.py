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

Usage: .venv/bin/python bench/build_bench.py [--base BASE] [--with-python]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
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
