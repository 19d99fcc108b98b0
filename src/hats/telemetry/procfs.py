"""The reference agent's /proc metrics (spec system-image §4.3): parsing, and reading.

The parsers are pure (text in, values out) and strict: a line that does not
have the expected shape is a :class:`ProcFormatError` naming the file and
line. :func:`read_snapshot` reads the three files under a root directory
(``/proc``, or a fixture tree in tests); a missing or broken file leaves its
part of the snapshot empty and is reported in :attr:`Snapshot.problems`, so
one unreadable file does not stop the others.

- ``stat``: per-CPU times (the ``cpuN`` lines; the total ``cpu`` line is
  skipped, as the reference's ``KernelStats.cpu_time``) in clock ticks for
  the modes user, nice, system, idle, iowait, irq, softirq, steal (the last
  four when the kernel has them); ``ctxt``, ``btime``, ``processes``,
  ``procs_running``, ``procs_blocked``;
- ``meminfo``: ``MemTotal``, ``MemFree``, ``MemAvailable``, ``Buffers``,
  ``Cached``, ``Slab``, in bytes (the file's ``kB`` are KiB);
- ``net/dev``: per device, received and transmitted bytes, packets, errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hats.errors import HatsError

CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
MEMINFO_FIELDS = {
    "MemTotal": "mem_total",
    "MemFree": "mem_free",
    "MemAvailable": "mem_available",
    "Buffers": "mem_buffers",
    "Cached": "mem_cached",
    "Slab": "mem_slab",
}
_UNITS = {"kB": 1024, "": 1}


class ProcFormatError(HatsError):
    """A /proc file whose content does not have the expected shape."""


@dataclass(frozen=True)
class KernelStats:
    """What ``/proc/stat`` says."""

    #: cpu index → mode → clock ticks
    cpu_ticks: Mapping[int, Mapping[str, int]]
    context_switches: int | None = None
    boot_time: int | None = None  # seconds since the epoch
    forks: int | None = None
    procs_running: int | None = None
    procs_blocked: int | None = None


@dataclass(frozen=True)
class NetDevice:
    """One line of ``/proc/net/dev``."""

    receive_bytes: int
    receive_packets: int
    receive_errors: int
    transmit_bytes: int
    transmit_packets: int
    transmit_errors: int


@dataclass(frozen=True)
class Snapshot:
    """One reading of the three files; ``problems`` names what could not be read."""

    stat: KernelStats | None
    meminfo: Mapping[str, int]
    net: Mapping[str, NetDevice]
    problems: tuple[str, ...] = field(default=())


def _number(text: str, source: str, line: int) -> int:
    if not text.isascii() or not text.isdigit():
        raise ProcFormatError(f"{source}:{line}: {text[:40]!r} is not a number")
    return int(text)


def parse_stat(content: str, source: str = "/proc/stat") -> KernelStats:
    """Parse ``/proc/stat``."""
    cpus: dict[int, dict[str, int]] = {}
    singles: dict[str, int] = {}
    wanted = {"ctxt", "btime", "processes", "procs_running", "procs_blocked"}
    for number, line in enumerate(content.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        if key.startswith("cpu") and key != "cpu":
            index_text = key[3:]
            index = _number(index_text, source, number)
            values = [_number(v, source, number) for v in parts[1:]]
            if len(values) < 4:
                raise ProcFormatError(
                    f"{source}:{number}: {key} has {len(values)} fields, expected at least 4"
                )
            if index in cpus:
                raise ProcFormatError(f"{source}:{number}: {key} appears twice")
            cpus[index] = dict(zip(CPU_MODES, values, strict=False))
        elif key in wanted:
            if len(parts) != 2:
                raise ProcFormatError(f"{source}:{number}: {key} should have one value")
            singles[key] = _number(parts[1], source, number)
    return KernelStats(
        cpu_ticks=cpus,
        context_switches=singles.get("ctxt"),
        boot_time=singles.get("btime"),
        forks=singles.get("processes"),
        procs_running=singles.get("procs_running"),
        procs_blocked=singles.get("procs_blocked"),
    )


def parse_meminfo(content: str, source: str = "/proc/meminfo") -> dict[str, int]:
    """Parse ``/proc/meminfo``: ``mem_*`` name → bytes, for the fields present."""
    values: dict[str, int] = {}
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        name, colon, rest = line.partition(":")
        if not colon:
            raise ProcFormatError(f"{source}:{number}: no ':' in {line[:40]!r}")
        metric = MEMINFO_FIELDS.get(name.strip())
        if metric is None:
            continue
        parts = rest.split()
        if not 1 <= len(parts) <= 2 or (len(parts) == 2 and parts[1] not in _UNITS):
            raise ProcFormatError(f"{source}:{number}: {name.strip()}: unexpected {rest.strip()!r}")
        unit = _UNITS[parts[1]] if len(parts) == 2 else 1
        values[metric] = _number(parts[0], source, number) * unit
    return values


def parse_net_dev(content: str, source: str = "/proc/net/dev") -> dict[str, NetDevice]:
    """Parse ``/proc/net/dev`` (two header lines, then ``name: 16 numbers``)."""
    devices: dict[str, NetDevice] = {}
    for number, line in enumerate(content.splitlines(), 1):
        if number <= 2 or not line.strip():
            continue
        name, colon, rest = line.partition(":")
        name = name.strip()
        if not colon or not name:
            raise ProcFormatError(f"{source}:{number}: expected 'DEVICE: counters'")
        values = [_number(v, source, number) for v in rest.split()]
        if len(values) != 16:
            raise ProcFormatError(f"{source}:{number}: {name} has {len(values)} counters, not 16")
        devices[name] = NetDevice(
            receive_bytes=values[0],
            receive_packets=values[1],
            receive_errors=values[2],
            transmit_bytes=values[8],
            transmit_packets=values[9],
            transmit_errors=values[10],
        )
    return devices


def _read(path: Path, problems: list[str]) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        problems.append(f"{path}: cannot read: {exc.strerror}")
        return None


def read_snapshot(root: Path) -> Snapshot:
    """Read ``stat``, ``meminfo`` and ``net/dev`` under ``root`` (e.g. ``/proc``)."""
    problems: list[str] = []
    stat: KernelStats | None = None
    meminfo: dict[str, int] = {}
    net: dict[str, NetDevice] = {}
    text = _read(root / "stat", problems)
    if text is not None:
        try:
            stat = parse_stat(text, str(root / "stat"))
        except ProcFormatError as exc:
            problems.append(str(exc))
    text = _read(root / "meminfo", problems)
    if text is not None:
        try:
            meminfo = parse_meminfo(text, str(root / "meminfo"))
        except ProcFormatError as exc:
            problems.append(str(exc))
    text = _read(root / "net" / "dev", problems)
    if text is not None:
        try:
            net = parse_net_dev(text, str(root / "net" / "dev"))
        except ProcFormatError as exc:
            problems.append(str(exc))
    return Snapshot(stat=stat, meminfo=meminfo, net=net, problems=tuple(problems))
