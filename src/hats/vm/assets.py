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
atomically (to a hidden ``.initrd-….part`` temporary file, renamed when
complete), so an interrupted build leaves nothing to be mistaken for a
result.

Every change of the inputs (a hats source edit changes the agents digest)
makes a new ~30 MB initramfs, so the cache keeps only the
:data:`KEEP_INITRDS` most recently used ``initrd-*.cpio.gz`` files: using
one (cached or just built) refreshes its mtime and then removes all but the
newest :data:`KEEP_INITRDS` by mtime, never the one being returned. Both
happen under an exclusive lock on ``<cache>/vm/.lock`` (held for
milliseconds, not during a build), so a concurrent user's refresh is never
overtaken by a removal decided on an older mtime; a file that vanishes
meanwhile is ignored, temporary files being written are never candidates
(other names), and neither are the kernel, busybox and apt entries. A
process still holding the path of an initramfs that has since become older
than the :data:`KEEP_INITRDS` newest may find it gone: call
:func:`ensure_guest_assets` again (removing a file QEMU already opened is
harmless).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hats.base.cache import default_cache_dir
from hats.console import Progress, as_steps
from hats.errors import HatsError
from hats.fsio import exclusive_lock
from hats.hashing import file_sha256 as sha256_file
from hats.vm import initramfs
from hats.vm.debian import BUSYBOX_PACKAGE, AptConfig, PackageFetcher, extract_deb

KEEP_INITRDS = 4
"""How many ``initrd-*.cpio.gz`` files ``<cache>/vm`` keeps: the most recently used."""

_INITRD_PREFIX = "initrd-"
_INITRD_SUFFIX = ".cpio.gz"


class GuestAssetsError(HatsError):
    """The VM cache directory cannot be used."""


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


@contextlib.contextmanager
def _cache_lock(cache: Path) -> Iterator[None]:
    """Hold the exclusive lock of the VM cache directory ``cache``; none when the
    lock file cannot be made (a read-only shared cache: its initramfs files
    are used as they are, and nothing can be removed from it either)."""
    with exclusive_lock(cache / ".lock", optional=True):
        yield


def prune_initrds(cache: Path, keep: Path, limit: int = KEEP_INITRDS) -> list[Path]:
    """Remove all but the ``limit`` newest (by mtime) ``initrd-*.cpio.gz`` files of ``cache``.

    ``keep`` (the file being returned) is never removed, even when it is not
    among the newest. Only regular files named ``initrd-*.cpio.gz`` are
    candidates; files that vanish meanwhile or cannot be removed are skipped.
    Returns the removed files. Call with :func:`_cache_lock` held.
    """
    if limit < 1:
        raise ValueError("the number of initramfs files to keep must be at least 1")
    entries: list[tuple[int, str, Path]] = []
    for item in cache.iterdir():
        name = item.name
        if not (name.startswith(_INITRD_PREFIX) and name.endswith(_INITRD_SUFFIX)):
            continue
        try:
            st = item.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            entries.append((st.st_mtime_ns, name, item))
    entries.sort(reverse=True)
    removed: list[Path] = []
    for _, name, item in entries[limit:]:
        if name == keep.name:
            continue
        try:
            item.unlink()
        except OSError:  # vanished meanwhile (FileNotFoundError) or not ours to remove
            continue
        removed.append(item)
    return removed


def _use_and_prune(cache: Path, initrd: Path) -> list[Path] | None:
    """Refresh ``initrd``'s mtime and prune the others; None if there is no ``initrd``."""
    with _cache_lock(cache):
        if not initrd.is_file():
            return None
        try:
            os.utime(initrd)
        except FileNotFoundError:
            return None
        except OSError:  # not ours (a shared read-only cache): used without refreshing
            pass
        return prune_initrds(cache, keep=initrd)


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
    initrd = cache / f"{_INITRD_PREFIX}{key}{_INITRD_SUFFIX}"
    removed = _use_and_prune(cache, initrd)
    if removed is None:
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
        removed = _use_and_prune(cache, initrd)
        if removed is None:
            raise GuestAssetsError(f"{initrd}: removed by another process right after the build")
    if removed:
        steps.log(
            f"removed {len(removed)} old initramfs file(s) from {cache} "
            f"(keeping the {KEEP_INITRDS} most recently used)"
        )
    return GuestAssets(kernel=kernel.image, initrd=initrd, kernel_release=kernel.release)
