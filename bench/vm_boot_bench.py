"""Time the [vm-boot] chain on this machine: base, image, initramfs, boot to keys.

Prints, measured in one run:

* ``base``: ``hats base build --with-python --rebuild`` (packages from the
  apt cache, so no download), seconds;
* ``image``: ``hats image build`` of a one-TVS image on that base, reference
  compression (``xz -T1``), with the workload bundle and the policy, seconds;
* ``initramfs``: building the stage1 initramfs from scratch, seconds;
* ``bare boot``: the baseline — the same kernel with a busybox-only
  initramfs that powers off at once (the emulator's floor for reaching
  userspace), seconds;
* ``boot to keys``: from QEMU's start to the workload's key line at the
  launcher (stage1 fetch + measure + unpack, systemd, orchestrator, TVS
  round, runc), seconds, and its ratio to the bare boot;
* the split of ``boot to keys``, from the guest console (tailed by a thread
  here, every line stamped on arrival) and the launcher's lines (stamped
  when the demo's loop passes them on, every 0.5 s):
  QEMU start → stage1's first line; stage1's own figures (``fetched N bytes
  in X s``, hashing, decompressing — summed over the decoding threads —,
  unpacking, and the whole image from request to done); stage1 → switch to
  systemd; systemd → the orchestrator's first line at the launcher (which
  includes syslogd's forwarding delay); orchestrator → the key line;
* the guest's systemd timeline, from the journal records syslogd forwarded
  to the launcher's ``--logs-file``: when each start-up unit the orchestrator
  waits on finished, and the orchestrator's first record, in seconds after
  the first record of the switched-to system (the guest's journal clock, so
  no host/guest clock offset enters it); and how long the orchestrator's
  first record took from the guest's journal to the launcher (host wall
  clock against the guest's, so it includes any offset between the clocks).

``--xz-block-size 8MiB`` (the default) boots a multi-block image, whose
blocks stage1 decodes in parallel; ``--xz-block-size reference`` boots the
single-stream ``xz -T1`` image. ``--guest-kernel-arg ARG`` (repeatable) boots
with ARG added to the guest's kernel command line (the demo's opt-in: the
policy is made for that line; printed in the header).

Usage: ``.venv/bin/python bench/vm_boot_bench.py [--accel auto|tcg|kvm] [--skip-base]
[--xz-block-size 8MiB|reference] [--guest-kernel-arg ARG …]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from hats.base.build import ensure_default_base
from hats.packaging.agents_layer import build_agents_tree
from hats.vm.assets import ensure_guest_assets
from hats.vm.demo import VmDemoOptions, boot_and_wait, guest_cmdline, prepare_vm
from hats.vm.initramfs import KernelTree, build_tree, write_initramfs
from hats.vm.kernelargs import check_kernel_args
from hats.vm.qemu import bare_argv, choose_accel
from hats.vm.tree import Tree


def _timed(argv: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def _bare_boot(kernel: Path, busybox: Path, accel: str, work: Path) -> float:
    tree = Tree()
    tree.file("bin/busybox", busybox.read_bytes(), 0o755)
    tree.file("init", b"#!/bin/busybox sh\n/bin/busybox poweroff -f\n", 0o755)
    initrd = work / "bare.cpio.gz"
    with gzip.GzipFile(initrd, "wb", mtime=0) as handle:
        tree.write_cpio(handle)
    argv = bare_argv(kernel, accel, initrd=initrd)
    return _timed(argv)


class ConsoleTail:
    """Stamps each new line of the guest's console log with the monotonic time it appeared."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        offset = 0
        pending = b""
        while not self._stop.is_set():
            try:
                with open(self.path, "rb") as handle:
                    handle.seek(offset)
                    data = handle.read()
            except OSError:
                data = b""
            if data:
                offset += len(data)
                now = time.monotonic()
                *complete, pending = (pending + data).split(b"\n")
                for line in complete:
                    self.lines.append((now, line.decode("utf-8", "replace").rstrip("\r")))
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def first(self, pattern: str) -> tuple[float, re.Match[str]] | None:
        for stamp, line in self.lines:
            match = re.search(pattern, line)
            if match:
                return stamp, match
        return None


class Stamped:
    """The demo's echo: each line with the monotonic time it was passed on."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []
        self.wall: list[float] = []

    def __call__(self, line: str) -> None:
        self.lines.append((time.monotonic(), line))
        self.wall.append(time.time())

    def first(self, pattern: str) -> float | None:
        return next((stamp for stamp, line in self.lines if re.search(pattern, line)), None)


def split_of_boot(console: ConsoleTail, echo: Stamped) -> dict[str, float]:
    """The parts of boot to keys that the console and the launcher's lines show."""
    split: dict[str, float] = {}
    start = echo.first(r"TVS and launcher up")
    stage1 = console.first(r"hats-stage1: launcher ")
    switch = console.first(r"hats-stage1: switching to the system image")
    orchestrator = echo.first(r"oak-orchestrator")
    qemu = echo.first(r"vm: started")
    keys = echo.first(r"key_id=\S+ public_key=")
    if start is not None and qemu is not None:
        split["launcher up -> QEMU started ('vm: started', 0.5 s steps)"] = qemu - start
    if start is not None and stage1 is not None:
        split["launcher up -> stage1 starts (firmware, kernel, initramfs)"] = stage1[0] - start
    number = r"([0-9.]+) s"
    for name, pattern in (
        ("stage1: fetch (request -> last chunk)", rf"hats-stage1: fetched \d+ bytes in {number}"),
        ("stage1: SHA-256 (in the fetch)", rf"hats-stage1: sha256 .* hashing {number}"),
        (
            "stage1: decompress (thread-seconds)",
            rf"hats-stage1: decompressed \d+ bytes in {number}",
        ),
        ("stage1: unpack (busy)", rf"hats-stage1: unpacked .* in {number} \(waited"),
        ("stage1: image request -> unpacked", rf"image done {number} after the request"),
    ):
        found = console.first(pattern)
        if found is not None:
            split[name] = float(found[1].group(1))
    if stage1 is not None and switch is not None:
        split["stage1 start -> switch_root"] = switch[0] - stage1[0]
    if switch is not None and orchestrator is not None:
        split["switch_root -> orchestrator's first line at the launcher"] = orchestrator - switch[0]
    if orchestrator is not None and keys is not None:
        split["orchestrator's first line -> key line"] = keys - orchestrator
    return split


#: Journal messages of the units on the orchestrator's path, in boot order.
TIMELINE = re.compile(
    r"^(Started|Finished|Reached target|Starting|Listening on) .*("
    r"Journal|udev|Network|network|Login|D-Bus|Multi-User|Basic System|System Initialization"
    r"|Sockets|Log Forwarder|Orchestrator|Wait for|Remount|Create|Load|Apply|Flush|Record)"
    # systemd-networkd's link states (what network-online.target waits for)
    r"|^(enp|eth)\w*: |^systemd-networkd-wait-online"
)


def journal_timeline(logs_file: Path, echo: Stamped) -> list[tuple[float, str]]:
    """(seconds, what): the guest's start-up from the journal records at the launcher.

    Times are the journal's ``__REALTIME_TIMESTAMP`` (a record's
    ``observed_time_unix_nano``) after the first record of systemd in the
    system image; the last line is how long the orchestrator's first record
    took from the guest's journal to the launcher's output.
    """
    try:
        records = [json.loads(line) for line in logs_file.read_text().splitlines() if line]
    except (OSError, ValueError):
        return []
    origin: float | None = None
    out: list[tuple[float, str]] = []
    orchestrator_seen = False
    for record in records:
        when = record.get("observed_time_unix_nano", 0) / 1e9
        body = str(record.get("body") or "")
        unit = record.get("unit") or ""
        attributes = record.get("attributes") or {}
        if origin is None and attributes.get("_TRANSPORT") != "kernel":
            origin = when
        if origin is None:
            continue
        if unit == "oak-orchestrator.service" and not orchestrator_seen:
            orchestrator_seen = True
            out.append((when - origin, f"orchestrator's first record: {body[:80]}"))
            seen = echo.first(r"oak-orchestrator")
            if seen is not None:
                host = echo.wall[[s for s, _ in echo.lines].index(seen)]
                out.append((host - when, "  that record: guest journal -> launcher (wall clocks)"))
        elif TIMELINE.search(body):
            out.append((when - origin, body[:100]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accel", default="auto", choices=["auto", "kvm", "tcg"])
    parser.add_argument("--skip-base", action="store_true", help="Do not time a base rebuild.")
    parser.add_argument(
        "--xz-block-size",
        default="8MiB",
        help="The image's xz block size, or 'reference' for xz -T1 (default: 8MiB).",
    )
    parser.add_argument(
        "--guest-kernel-arg",
        dest="guest_kernel_args",
        action="append",
        default=[],
        metavar="ARG",
        help="Add ARG to the guest's kernel command line (repeatable; policy made for it).",
    )
    args = parser.parse_args()
    kernel_args = check_kernel_args(args.guest_kernel_args)
    print(f"guest kernel command line: {guest_cmdline(kernel_args).strip()}")
    if kernel_args:
        print(f"  (not the reference's: adds {' '.join(kernel_args)})")
    block_size = None if args.xz_block_size == "reference" else args.xz_block_size
    hats = [sys.executable, "-m", "hats"]
    figures: dict[str, float] = {}
    if not args.skip_base:
        figures["base"] = _timed([*hats, "base", "build", "--with-python", "--rebuild", "-q"])
    with tempfile.TemporaryDirectory(prefix="hats-vm-bench-") as tmp:
        work = Path(tmp)
        assets = ensure_guest_assets()
        busybox = next(assets.kernel.parents[2].glob("busybox-static_*/bin/busybox"))
        started = time.monotonic()
        agents = build_agents_tree(work / "agents")
        tree = build_tree(
            base=ensure_default_base(with_python=True),
            kernel=KernelTree(assets.kernel.parents[1]),
            busybox=busybox,
            agents_site=agents.site_dir,
        )
        write_initramfs(tree, work / "initrd.cpio.gz")
        figures["initramfs"] = time.monotonic() - started
        accel, reason = choose_accel(args.accel, assets.kernel)
        print(f"accelerator: {accel} ({reason})")
        figures["bare boot"] = _bare_boot(assets.kernel, busybox, accel, work)
        started = time.monotonic()
        options = VmDemoOptions(
            workdir=work / "demo",
            accel=accel,
            xz_block_size=block_size,
            guest_kernel_args=kernel_args,
        )
        setup = prepare_vm(options, lambda line: None)
        figures[f"image (xz {block_size or '-T1'}) + bundle + policy"] = time.monotonic() - started
        echo = Stamped()
        console = ConsoleTail(setup.work / "console.log")
        try:
            result = boot_and_wait(setup, options, echo)
        finally:
            console.stop()
        if not result.ok or result.boot_to_keys is None:
            print("the workload got no key", file=sys.stderr)
            return 1
        figures["boot to keys"] = result.boot_to_keys
        split = split_of_boot(console, echo)
        timeline = journal_timeline(setup.work / "console.logs.jsonl", echo)
        stage1_lines = [line for _, line in console.lines if line.startswith("hats-stage1:")]
    width = max(map(len, figures))
    for name, seconds in figures.items():
        print(f"{name:<{width}}  {seconds:7.1f} s")
    ratio = figures["boot to keys"] / figures["bare boot"]
    print(f"{'boot to keys / bare boot':<{width}}  {ratio:7.1f} x")
    print("split of boot to keys:")
    width = max(map(len, split), default=0)
    for name, seconds in split.items():
        print(f"  {name:<{width}}  {seconds:7.2f} s")
    print(f"load average at the end: {Path('/proc/loadavg').read_text().split()[:3]}")
    print("the guest's systemd, from its journal (s after the first non-kernel record):")
    for seconds, what in timeline:
        print(f"  {seconds:7.2f}  {what}")
    print("stage1's console lines:")
    for line in stage1_lines:
        print(f"  {line[:160]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
