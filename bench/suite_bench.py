"""The fast test suite (``-m "not slow"``) against a baseline commit, in one run.

    .venv/bin/python bench/suite_bench.py [--baseline 1d7d6eb] [--current-args "-n 0"]

The baseline is checked out into a temporary git worktree and run with this
checkout's virtualenv (``PYTHONPATH`` points at the worktree's ``src``, so its
``hats`` is imported, also by the ``python -m hats`` subprocesses); then this
checkout runs. Prints the wall time and the CPU time (user + system, of pytest
and everything it started) of each, and the ratios. The machine's other work
counts in both: compare figures from one run only.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"


def run_suite(label: str, checkout: Path, extra: list[str]) -> tuple[float, float]:
    """Run the fast suite in ``checkout``; (wall seconds, CPU seconds)."""
    env = dict(os.environ)
    if checkout != ROOT:
        env["PYTHONPATH"] = str(checkout / "src")
    argv = [str(PYTHON), "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    result = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = [
        line for line in result.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)
    ]
    print(f"{label}: wall {wall:.1f} s, CPU {cpu:.1f} s; {summary[-1] if summary else '?'}")
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="1d7d6eb", help="commit to compare with")
    parser.add_argument("--baseline-args", default="", help="extra pytest arguments (baseline)")
    parser.add_argument("--current-args", default="", help="extra pytest arguments (this tree)")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    with tempfile.TemporaryDirectory(prefix="suite-bench-") as tmp:
        worktree = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(worktree), args.baseline],
            cwd=ROOT,
            check=True,
        )
        try:
            (worktree / ".venv").symlink_to(ROOT / ".venv")  # the README test runs .venv/bin/hats
            base_wall, base_cpu = run_suite(
                f"baseline {args.baseline}", worktree, shlex.split(args.baseline_args)
            )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT)
    wall, cpu = run_suite("this tree", ROOT, shlex.split(args.current_args))
    print(
        f"this tree / baseline: wall {wall / base_wall:.2f} ({1 - wall / base_wall:+.0%} faster), "
        f"CPU {cpu / base_cpu:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
