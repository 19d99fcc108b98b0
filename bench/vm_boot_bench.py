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
  round, runc), seconds, and its ratio to the bare boot.

Usage: ``.venv/bin/python bench/vm_boot_bench.py [--accel auto|tcg|kvm] [--skip-base]``.
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hats.base.build import ensure_default_base
from hats.packaging.agents_layer import build_agents_tree
from hats.vm.assets import ensure_guest_assets
from hats.vm.demo import VmDemoOptions, boot_and_wait, prepare_vm
from hats.vm.initramfs import KernelTree, build_tree, write_initramfs
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accel", default="auto", choices=["auto", "kvm", "tcg"])
    parser.add_argument("--skip-base", action="store_true", help="Do not time a base rebuild.")
    args = parser.parse_args()
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
        options = VmDemoOptions(workdir=work / "demo", accel=accel)
        setup = prepare_vm(options, lambda line: None)
        figures["image (xz -T1) + bundle + policy"] = time.monotonic() - started
        result = boot_and_wait(setup, options, lambda line: None)
        if not result.ok or result.boot_to_keys is None:
            print("the workload got no key", file=sys.stderr)
            return 1
        figures["boot to keys"] = result.boot_to_keys
    width = max(map(len, figures))
    for name, seconds in figures.items():
        print(f"{name:<{width}}  {seconds:7.1f} s")
    ratio = figures["boot to keys"] / figures["bare boot"]
    print(f"{'boot to keys / bare boot':<{width}}  {ratio:7.1f} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
