"""CPU and wall time of the in-image agents' Python start, against ``python -c pass``.

Each case is a fresh interpreter (this venv's, or ``--python``) started with
``-I -X frozen_modules=on`` and a private ``-X pycache_prefix`` directory,
warmed once so that every later run loads compiled bytecode, as the image's
agents do (they ship pycs). Cases, run ``--runs`` times each, interleaved:

* ``baseline``: ``pass``;
* ``orchestrator entry``: ``import hats.orchestrator`` (what ``orchestrator_main``
  runs through ``runpy``; ``--help`` needs only this);
* ``orchestrator to TVS``: the entry plus :mod:`hats.orchestrator.startup`,
  what the orchestrator imports before its first message to the launcher;
* ``orchestrator to keys``: plus the IPC services, bundle unpacking and the
  runtime, everything its path to the workload's keys imports;
* ``syslogd``: :mod:`hats.syslogd` and :mod:`hats.syslogd.run`;
* ``workload``: ``hats/demo/workload/get_keys.py`` run as a module that is
  not ``__main__`` (its imports and definitions, no RPC).

Prints the median CPU time (user + system, from ``RUSAGE_CHILDREN``) and
wall time per case, in ms, and each as a ratio to the baseline measured in
the same run. ``--src DIR`` puts DIR first on ``sys.path`` (e.g. the
``src`` of a ``git worktree`` of an older commit, to measure "before").

Usage: .venv/bin/python bench/agent_startup_bench.py [--runs N] [--src DIR] [--python PATH]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKLOAD = "hats/demo/workload/get_keys.py"

CASES: dict[str, str] = {
    "baseline": "pass",
    "orchestrator entry": "import hats.orchestrator",
    "orchestrator to TVS": "import hats.orchestrator, hats.orchestrator.startup",
    "orchestrator to keys": (
        "import hats.orchestrator, hats.orchestrator.startup, hats.orchestrator.services, "
        "hats.orchestrator.bundle, hats.orchestrator.runtime"
    ),
    "syslogd": "import hats.syslogd, hats.syslogd.run",
    "workload": "import runpy; runpy.run_path({workload!r}, run_name='workload')",
}


def command(python: str, pycache: str, src: Path, code: str) -> list[str]:
    """The child's command line: ``src`` first on the path, then ``code``."""
    workload = str(src / WORKLOAD)
    prefix = f"import sys; sys.path.insert(0, {str(src)!r}); "
    body = code.format(workload=workload)
    return [python, "-I", "-X", "frozen_modules=on", "-X", f"pycache_prefix={pycache}", "-c",
            prefix + body]  # fmt: skip


def run_once(args: list[str]) -> tuple[float, float]:
    """(cpu seconds, wall seconds) of one child run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(args, check=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--src", type=Path, default=ROOT / "src")
    parser.add_argument("--python", default=sys.executable)
    options = parser.parse_args()
    src = options.src.resolve()
    with tempfile.TemporaryDirectory(prefix="agent-startup-pyc-") as pycache:
        commands = {
            name: command(options.python, pycache, src, code) for name, code in CASES.items()
        }
        for args in commands.values():  # warm-up: writes the pycs
            run_once(args)
        cpu: dict[str, list[float]] = {name: [] for name in CASES}
        wall: dict[str, list[float]] = {name: [] for name in CASES}
        for _ in range(options.runs):
            for name, args in commands.items():
                c, w = run_once(args)
                cpu[name].append(c)
                wall[name].append(w)
    base_cpu = statistics.median(cpu["baseline"])
    base_wall = statistics.median(wall["baseline"])
    print(f"python {options.python}, src {src}, medians of {options.runs} runs")
    print(f"{'case':<22} {'cpu ms':>8} {'x base':>7} {'wall ms':>8} {'x base':>7}")
    for name in CASES:
        c = statistics.median(cpu[name])
        w = statistics.median(wall[name])
        print(
            f"{name:<22} {c * 1000:8.1f} {c / base_cpu:7.2f} {w * 1000:8.1f} {w / base_wall:7.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
