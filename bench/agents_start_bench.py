"""Benchmark the agents' Python start-up from an agents tree, with and without pycs.

Builds the agents tree once (``hats.packaging.agents_layer``), copies it and
removes every ``__pycache__`` directory from the copy (the tree as it was
before it shipped bytecode), then times, ``--runs`` times each and
alternately, with the image's interpreter (``/usr/bin/python3`` when it is
3.11, else this one) under ``-IS`` and with bytecode writing off, as the
launchers run it:

* ``orchestrator_main --help``: process start to exit (the help text is its
  only output, written just before exit);
* ``import hats.orchestrator.startup``: what the orchestrator imports before
  its first message to the launcher and the TVS (gRPC, protobuf, the
  generated messages, cryptography, the handshake);
* ``import hats.orchestrator.services``: what it imports to serve the
  workload's IPC socket before runc starts the workload.

Medians of wall-clock times, in ms.

Usage: .venv/bin/python bench/agents_start_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hats.packaging.agents_layer import build_agents_tree

HOST_PYTHON = Path("/usr/bin/python3")


def interpreter() -> str:
    if HOST_PYTHON.exists():
        probe = subprocess.run(
            [str(HOST_PYTHON), "-c", "import sys; print(sys.version_info[:2] == (3, 11))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.strip() == "True":
            return str(HOST_PYTHON)
    return sys.executable


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True, env={}, cwd="/")
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per case (default: 15)")
    args = parser.parse_args()
    python = interpreter()
    with tempfile.TemporaryDirectory(prefix="hats-start-bench-") as work:
        with_pyc = build_agents_tree(Path(work) / "with").root
        without = Path(work) / "without"
        shutil.copytree(with_pyc, without, symlinks=True)
        for cache in sorted(without.rglob("__pycache__"), reverse=True):
            shutil.rmtree(cache)
        cases: dict[str, list[str]] = {
            "orchestrator_main --help": ["{root}/usr/bin/orchestrator_main", "--help"],
        }
        for module in ("hats.orchestrator.startup", "hats.orchestrator.services"):
            cases[f"import {module}"] = [
                "-c",
                "import sys; sys.dont_write_bytecode = True; "
                "sys.path.insert(0, '{root}/usr/lib/hats/python'); " + f"import {module}",
            ]
        print(f"interpreter: {python}; {args.runs} runs per case; median ms")
        print(f"{'case':<36} {'no pyc':>8} {'pyc':>8} {'ratio':>6}")
        for name, template in cases.items():
            times: dict[str, list[float]] = {"no pyc": [], "pyc": []}
            for _ in range(args.runs):
                for label, root in (("no pyc", without), ("pyc", with_pyc)):
                    argv = [part.replace("{root}", str(root)) for part in template]
                    times[label].append(timed([python, "-IS", *argv]))
            before = statistics.median(times["no pyc"])
            after = statistics.median(times["pyc"])
            print(f"{name:<36} {before:8.1f} {after:8.1f} {before / after:5.1f}x")
        leftovers = list(without.rglob("__pycache__"))
        print(f"pycache directories written at run time: {len(leftovers)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
