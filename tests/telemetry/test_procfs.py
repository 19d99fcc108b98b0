"""/proc parsing: a fixture tree, the live /proc, hypothesis round trips, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hats.telemetry.procfs import (
    CPU_MODES,
    NetDevice,
    ProcFormatError,
    parse_meminfo,
    parse_net_dev,
    parse_stat,
    read_snapshot,
)

FIXTURE = Path(__file__).parent.parent / "agent" / "proc"


def test_fixture_tree_values() -> None:
    snapshot = read_snapshot(FIXTURE)
    assert snapshot.problems == ()
    stat = snapshot.stat
    assert stat is not None
    assert dict(stat.cpu_ticks[0]) == {
        "user": 681,
        "nice": 0,
        "system": 301,
        "idle": 47215,
        "iowait": 31,
        "irq": 0,
        "softirq": 20,
        "steal": 4,
    }
    assert sorted(stat.cpu_ticks) == [0, 1]  # the total "cpu" line is not a CPU
    assert (stat.context_switches, stat.boot_time, stat.forks) == (612345, 1700000000, 4321)
    assert (stat.procs_running, stat.procs_blocked) == (2, 1)
    assert snapshot.meminfo == {
        "mem_total": 8000000 * 1024,
        "mem_free": 6500000 * 1024,
        "mem_available": 7200000 * 1024,
        "mem_buffers": 12000 * 1024,
        "mem_cached": 600000 * 1024,
        "mem_slab": 90000 * 1024,
    }
    assert snapshot.net == {
        "lo": NetDevice(53412, 612, 0, 53412, 612, 0),
        "enp0s1": NetDevice(123456789, 98765, 3, 4567890, 34567, 2),
    }


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc")
def test_live_proc() -> None:
    snapshot = read_snapshot(Path("/proc"))
    assert snapshot.problems == ()
    assert snapshot.stat is not None
    assert 1 <= len(snapshot.stat.cpu_ticks) <= (os.cpu_count() or 1)
    for ticks in snapshot.stat.cpu_ticks.values():
        assert set(ticks) <= set(CPU_MODES) and {"user", "system", "idle"} <= set(ticks)
    assert snapshot.stat.context_switches and snapshot.stat.forks
    assert snapshot.stat.procs_running is not None and snapshot.stat.procs_running >= 1
    # MemTotal in bytes is the kernel's physical page count times the page size
    assert snapshot.meminfo["mem_total"] == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < snapshot.meminfo["mem_free"] <= snapshot.meminfo["mem_total"]
    assert "lo" in snapshot.net
    with open("/proc/stat") as handle:  # a second reading never goes backwards
        later = parse_stat(handle.read())
    assert later.forks is not None and later.forks >= snapshot.stat.forks


def test_missing_and_broken_files_are_problems_not_failures(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("cpu0 1 2\n")
    (tmp_path / "meminfo").write_text((FIXTURE / "meminfo").read_text())
    snapshot = read_snapshot(tmp_path)
    assert snapshot.stat is None and snapshot.net == {}
    assert snapshot.meminfo["mem_total"] == 8000000 * 1024
    assert snapshot.problems == (
        f"{tmp_path / 'stat'}:1: cpu0 has 2 fields, expected at least 4",
        f"{tmp_path / 'net' / 'dev'}: cannot read: No such file or directory",
    )


@pytest.mark.parametrize(
    ("parser", "text", "message"),
    [
        (parse_stat, "cpu0 1 2 x 4\n", "1: 'x' is not a number"),
        (parse_stat, "cpu0 1 2 3 4\ncpu0 1 2 3 4\n", "2: cpu0 appears twice"),
        (parse_stat, "ctxt 1 2\n", "1: ctxt should have one value"),
        (parse_stat, "cpuX 1 2 3 4\n", "1: 'X' is not a number"),
        (parse_meminfo, "MemTotal 5 kB\n", "1: no ':'"),
        (parse_meminfo, "MemTotal: 5 MB\n", "1: MemTotal: unexpected '5 MB'"),
        (parse_meminfo, "MemFree: -5 kB\n", "1: '-5' is not a number"),
        (parse_net_dev, "h\nh\neth0 1 2\n", "3: expected 'DEVICE: counters'"),
        (parse_net_dev, "h\nh\neth0: 1 2\n", "3: eth0 has 2 counters, not 16"),
    ],
)
def test_format_errors_name_the_line(parser: object, text: str, message: str) -> None:
    with pytest.raises(ProcFormatError, match=f"^src:{message}"):
        parser(text, "src")  # type: ignore[operator]


_count = st.integers(0, 2**64 - 1)


@settings(max_examples=200, deadline=None)
@given(
    cpus=st.lists(st.lists(_count, min_size=4, max_size=10), min_size=1, max_size=4),
    singles=st.fixed_dictionaries(
        {},
        optional={
            k: _count for k in ("ctxt", "btime", "processes", "procs_running", "procs_blocked")
        },
    ),
)
def test_stat_round_trip(cpus: list[list[int]], singles: dict[str, int]) -> None:
    total = [sum(col) for col in zip(*cpus, strict=False)]
    lines = ["cpu  " + " ".join(map(str, total))]
    lines += [f"cpu{i} " + " ".join(map(str, values)) for i, values in enumerate(cpus)]
    lines += ["intr 1 2 3"] + [f"{k} {v}" for k, v in singles.items()]
    stat = parse_stat("\n".join(lines) + "\n")
    assert {i: dict(t) for i, t in stat.cpu_ticks.items()} == {
        i: dict(zip(CPU_MODES, values, strict=False)) for i, values in enumerate(cpus)
    }
    assert stat.context_switches == singles.get("ctxt")
    assert stat.forks == singles.get("processes")
    assert stat.procs_blocked == singles.get("procs_blocked")


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text("abcdefghijklmnopqrstuvwxyz0123456789.-_@", min_size=1, max_size=15),
        st.lists(_count, min_size=16, max_size=16),
        max_size=5,
    )
)
def test_net_dev_round_trip(devices: dict[str, list[int]]) -> None:
    text = "Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n"
    text += "".join(f"{name:>7}: " + " ".join(map(str, v)) + "\n" for name, v in devices.items())
    parsed = parse_net_dev(text)
    assert parsed == {
        name: NetDevice(v[0], v[1], v[2], v[8], v[9], v[10]) for name, v in devices.items()
    }


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["MemTotal", "MemFree", "Slab", "Other"]), _count))
def test_meminfo_round_trip(values: dict[str, int]) -> None:
    text = "".join(f"{name}: {value:>12} kB\n" for name, value in values.items())
    parsed = parse_meminfo(text)
    names = {"MemTotal": "mem_total", "MemFree": "mem_free", "Slab": "mem_slab"}
    assert parsed == {names[k]: v * 1024 for k, v in values.items() if k in names}
