"""The in-image agents' Python start: CPU and wall per agent, and what the shipped pycs save.

Two tables, one shared timing helper (every case is a fresh child process,
timed from start to exit; CPU = user + system from ``RUSAGE_CHILDREN``; one
unrecorded warm-up round, then ``--runs`` rounds with the cases interleaved;
medians, in ms). ``--only cpu`` or ``--only bytecode`` runs one table.

1. ``cpu``: each agent's start against ``python -c pass`` run in the same
   rounds, with ``--python`` (default: this interpreter) under
   ``-I -X frozen_modules=on`` and a private ``-X pycache_prefix`` that the
   warm-up fills, so that every recorded run loads compiled bytecode, as the
   image's agents do (they ship pycs):

   * ``orchestrator entry``: ``import hats.orchestrator`` (what
     ``orchestrator_main`` runs through ``runpy``; ``--help`` needs only this);
   * ``orchestrator to TVS``: plus :mod:`hats.orchestrator.startup`, what the
     orchestrator imports before its first message to the launcher and TVS;
   * ``orchestrator to keys``: plus the IPC services, bundle unpacking and the
     runtime, everything its path to the workload's keys imports;
   * ``syslogd``: :mod:`hats.syslogd` and :mod:`hats.syslogd.run`;
   * ``workload``: ``hats/demo/workload/get_keys.py`` run as a module that is
     not ``__main__`` (its imports and definitions, no RPC).

2. ``bytecode``: builds the agents tree (``hats.packaging.agents_layer``),
   copies it without any ``__pycache__`` directory (the tree as it was before
   it shipped bytecode) and times the same cases from both copies, with the
   image's interpreter (``/usr/bin/python3`` when it is 3.11, else
   ``--python``) under ``-IS`` and with bytecode writing off, as the launchers
   run it: ``python -c pass`` (the baseline), ``orchestrator_main --help``,
   ``import hats.orchestrator.startup`` and ``import hats.orchestrator.services``.
   Prints the ratio "no pyc" / "pyc" and how many ``__pycache__`` directories
   appeared in the copy at run time (expected: none).

``--src DIR`` takes the ``hats`` package from ``DIR/hats`` for both tables
(e.g. the ``src`` of an older commit, from ``git archive``, to measure "before").

Usage: .venv/bin/python bench/agents_start_bench.py [--runs N] [--src DIR]
       [--python PATH] [--only cpu|bytecode]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hats.packaging.agents_layer import build_agents_tree

ROOT = Path(__file__).resolve().parent.parent
IMAGE_PYTHON = Path("/usr/bin/python3")
WORKLOAD = "hats/demo/workload/get_keys.py"

CPU_CASES: dict[str, str] = {
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

SITE = "{root}/usr/lib/hats/python"
BYTECODE_CASES: dict[str, list[str]] = {
    "python -c pass (baseline)": ["-c", "pass"],
    "orchestrator_main --help": ["{root}/usr/bin/orchestrator_main", "--help"],
    **{
        f"import {module}": [
            "-c",
            f"import sys; sys.dont_write_bytecode = True; sys.path.insert(0, {SITE!r}); "
            f"import {module}",
        ]
        for module in ("hats.orchestrator.startup", "hats.orchestrator.services")
    },
}

Timing = tuple[float, float]  # (cpu ms, wall ms)


def run_once(argv: list[str]) -> Timing:
    """CPU and wall ms of one child run to completion (empty environment, cwd ``/``)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env={}, cwd="/"
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu * 1000, wall * 1000


def medians(commands: dict[str, list[str]], runs: int) -> dict[str, Timing]:
    """Median (cpu, wall) ms per command: one warm-up round, then ``runs`` interleaved."""
    for argv in commands.values():
        run_once(argv)
    samples: dict[str, list[Timing]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            samples[name].append(run_once(argv))
    return {
        name: (statistics.median(c for c, _ in got), statistics.median(w for _, w in got))
        for name, got in samples.items()
    }


def cpu_table(python: str, src: Path, runs: int) -> None:
    """Table 1: each agent's CPU and wall, and their ratios to ``pass``."""
    with tempfile.TemporaryDirectory(prefix="hats-start-bench-pyc-") as pycache:
        prefix = f"import sys; sys.path.insert(0, {str(src)!r}); "
        commands = {
            name: [python, "-I", "-X", "frozen_modules=on", "-X", f"pycache_prefix={pycache}",
                   "-c", prefix + code.format(workload=str(src / WORKLOAD))]
            for name, code in CPU_CASES.items()
        }  # fmt: skip
        result = medians(commands, runs)
    base_cpu, base_wall = result["baseline"]
    print(f"== per agent: python {python} -I, src {src}, medians of {runs} runs ==")
    print(f"{'case':<22} {'cpu ms':>8} {'x base':>7} {'wall ms':>8} {'x base':>7}")
    for name, (cpu, wall) in result.items():
        print(f"{name:<22} {cpu:8.1f} {cpu / base_cpu:7.2f} {wall:8.1f} {wall / base_wall:7.2f}")


def image_interpreter(fallback: str) -> str:
    """``/usr/bin/python3`` when it is 3.11 (the image's Debian bookworm), else ``fallback``."""
    if IMAGE_PYTHON.exists():
        probe = subprocess.run(
            [str(IMAGE_PYTHON), "-c", "import sys; print(sys.version_info[:2] == (3, 11))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.strip() == "True":
            return str(IMAGE_PYTHON)
    return fallback


def bytecode_table(python: str, src: Path, runs: int) -> None:
    """Table 2: the agents tree without its ``__pycache__`` directories against with them."""
    with tempfile.TemporaryDirectory(prefix="hats-start-bench-") as work:
        with_pyc = build_agents_tree(Path(work) / "with", hats_source=src / "hats").root
        without = Path(work) / "without"
        shutil.copytree(with_pyc, without, symlinks=True)
        for cache in sorted(without.rglob("__pycache__"), reverse=True):
            shutil.rmtree(cache)
        trees = {"no pyc": without, "pyc": with_pyc}
        commands = {
            f"{name}|{label}": [
                python,
                "-IS",
                *(part.replace("{root}", str(tree)) for part in args),
            ]
            for name, args in BYTECODE_CASES.items()
            for label, tree in trees.items()
        }
        result = medians(commands, runs)
        leftovers = list(without.rglob("__pycache__"))
    print(f"== bytecode: agents tree, python {python} -IS, medians of {runs} runs ==")
    print(
        f"{'case':<34} {'wall ms no pyc':>14} {'pyc':>7} {'ratio':>6}"
        f" {'cpu ms no pyc':>14} {'pyc':>7} {'ratio':>6}"
    )
    for name in BYTECODE_CASES:
        (cpu_before, wall_before), (cpu_after, wall_after) = (
            result[f"{name}|{label}"] for label in trees
        )
        print(
            f"{name:<34} {wall_before:14.1f} {wall_after:7.1f} {wall_before / wall_after:5.2f}x"
            f" {cpu_before:14.1f} {cpu_after:7.1f} {cpu_before / cpu_after:5.2f}x"
        )
    print(f"pycache directories written at run time: {len(leftovers)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="recorded rounds (default: 15)")
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="holds the hats package")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the cpu table")
    parser.add_argument("--only", choices=("cpu", "bytecode"), help="run one table")
    options = parser.parse_args()
    src = options.src.resolve()
    if options.only != "bytecode":
        cpu_table(options.python, src, options.runs)
    if options.only != "cpu":
        if options.only is None:
            print()
        bytecode_table(image_interpreter(options.python), src, options.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
