"""The guest's kernel and initramfs, built once and cached under ``<cache>/vm``.

:func:`ensure_guest_assets` returns paths to:

* the kernel: ``vmlinuz`` of Debian's ``linux-image-cloud-amd64`` (the
  release's current version), unpacked into ``<cache>/vm/kernel-<version>``;
* the initramfs (:mod:`hats.vm.initramfs`) in
  ``<cache>/vm/initrd-<key>.cpio.gz``, where ``key`` is a SHA-256 over
  everything that goes into it: the base tar's bytes, the kernel and busybox
  package file names (name, version, architecture), the agents tree's input
  digest, and the initramfs layout version, module list and init script.

A cached file is used only when its name (the key) matches; a build writes
atomically, so an interrupted build leaves nothing to be mistaken for a
result.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hats.base.cache import default_cache_dir
from hats.console import Progress, as_steps
from hats.hashing import file_sha256 as sha256_file
from hats.vm import initramfs
from hats.vm.debian import BUSYBOX_PACKAGE, AptConfig, PackageFetcher, extract_deb


@dataclass(frozen=True)
class GuestAssets:
    kernel: Path
    initrd: Path
    kernel_release: str


def _unpacked(deb: Path, directory: Path) -> Path:
    if not directory.is_dir():
        with tempfile.TemporaryDirectory(dir=directory.parent, prefix=".unpack-") as tmp:
            target = Path(tmp) / "root"
            extract_deb(deb, target)
            target.rename(directory)
    return directory


def initrd_key(*, base_sha256: str, kernel_deb: str, busybox_deb: str, agents: str) -> str:
    description = {
        "layout": initramfs.LAYOUT_VERSION,
        "base": base_sha256,
        "kernel": kernel_deb,
        "busybox": busybox_deb,
        "agents": agents,
        "modules": list(initramfs.GUEST_MODULES),
        "init": initramfs.INIT_SCRIPT,
    }
    text = json.dumps(description, sort_keys=True).encode()
    return hashlib.sha256(text).hexdigest()[:16]


def ensure_guest_assets(
    *,
    base: Path | None = None,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> GuestAssets:
    """Kernel and initramfs paths, building what the cache lacks (see the module rules)."""
    from hats.base.build import ensure_default_base
    from hats.packaging.agents_layer import agents_tree_digest, build_agents_tree

    steps = as_steps(progress)
    cache = (cache_dir or default_cache_dir()) / "vm"
    cache.mkdir(parents=True, exist_ok=True)
    fetcher = PackageFetcher(AptConfig(cache / "apt"))
    with steps.step("guest kernel and busybox (Debian packages)"):
        kernel_package = fetcher.kernel_package()
        kernel_deb = fetcher.download(kernel_package)
        busybox_deb = fetcher.download(BUSYBOX_PACKAGE)
        kernel = initramfs.KernelTree(_unpacked(kernel_deb, cache / kernel_deb.stem))
        busybox_root = _unpacked(busybox_deb, cache / busybox_deb.stem)
        steps.log(f"{kernel_deb.name}, {busybox_deb.name}")
    if base is None:
        with steps.step("default base (with Python)"):
            base = ensure_default_base(with_python=True, cache_dir=cache_dir, progress=steps)
    key = initrd_key(
        base_sha256=sha256_file(base),
        kernel_deb=kernel_deb.name,
        busybox_deb=busybox_deb.name,
        agents=agents_tree_digest(),
    )
    initrd = cache / f"initrd-{key}.cpio.gz"
    if not initrd.is_file():
        with steps.step(f"building the guest initramfs {initrd.name}"):
            with tempfile.TemporaryDirectory(prefix="hats-initrd-agents-") as tmp:
                agents = build_agents_tree(
                    Path(tmp) / "agents", cache_dir=cache_dir, progress=steps.log
                )
                tree = initramfs.build_tree(
                    base=base,
                    kernel=kernel,
                    busybox=busybox_root / "bin" / "busybox",
                    agents_site=agents.site_dir,
                )
            initramfs.write_initramfs(tree, initrd)
            steps.log(
                f"initramfs: {len(tree)} entries, {tree.size() / 1e6:.1f} MB, "
                f"{initrd.stat().st_size / 1e6:.1f} MB compressed"
            )
    return GuestAssets(kernel=kernel.image, initrd=initrd, kernel_release=kernel.release)
