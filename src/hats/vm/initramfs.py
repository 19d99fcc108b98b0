"""The guest's initramfs: our stage1 (Python) with busybox, kernel modules and Debian's Python.

Layout of the archive (a gzip-compressed newc cpio, see :mod:`hats.vm.cpio`)::

    init                        busybox sh script: mounts /proc, /sys, /dev,
                                loads the modules, execs the stage1 program
    dev/console                 character device 5:1 (the kernel opens it for init)
    proc/ sys/ rootfs/ run/ tmp/
    usr/bin/busybox             from Debian's busybox-static
    usr/bin/hats-stage1         launcher: python3 -IS, site dir below, runs hats.stage1
    usr/bin/python3.11 …        Debian's Python, cut out of the base (hats.vm.pyruntime)
    usr/lib/hats/python/        the agents' site directory (hats + locked wheels)
    usr/lib/modules/NAME.ko     the kernel modules stage1 needs, and their dependencies
    etc/hats/modules.load       their load order (dependencies first)

Module rules: :data:`GUEST_MODULES` are what the guest needs before the
system image runs — the virtio PCI transport and network driver (stage1
fetches the image over the network), the vsock transport (for launchers on
hosts with vhost-vsock), the ACPI power button and evdev (so systemd-logind
powers the guest off cleanly when the launcher presses the button).
Dependencies come from each module's ``.modinfo`` ``depends=`` field,
loaded depth-first so every module follows what it needs. Modules stay
loaded after stage1 hands over to the image's systemd.

Determinism: entries are sorted, owned by 0:0 with mtime 0; gzip's header
has no name and mtime 0. The archive depends only on its inputs (base,
kernel and busybox packages, agents tree, this module).
"""

from __future__ import annotations

import gzip
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from hats.errors import HatsError
from hats.fsio import atomic_output
from hats.packaging.agents_layer import SITE_DIR
from hats.vm.pyruntime import python_runtime
from hats.vm.tree import Device, Tree

LAYOUT_VERSION = "1"
GUEST_MODULES = ("virtio_net", "virtio_pci", "vmw_vsock_virtio_transport", "button", "evdev")
STAGE1_MODULE = "hats.stage1"
STAGE1_LAUNCHER = "usr/bin/hats-stage1"
MODULES_DIR = "usr/lib/modules"
MODULES_LIST = "etc/hats/modules.load"
BUSYBOX = "usr/bin/busybox"
_DEPENDS = re.compile(rb"(?:^|\0)depends=([^\0]*)\0")

INIT_SCRIPT = """\
#!/bin/busybox sh
# hats stage1 init (written by hats.vm.initramfs): mount the kernel file
# systems, load the modules the guest needs, then run the stage1 program
# with the arguments the kernel passed (everything after "--").
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
while read -r module; do
  /bin/busybox insmod "/usr/lib/modules/$module.ko" || echo "hats-stage1: cannot load $module" >&2
done < /etc/hats/modules.load
exec /usr/bin/hats-stage1 "$@"
"""


class InitramfsError(HatsError):
    """The initramfs cannot be built from the given inputs."""


def module_name(path: Path) -> str:
    """The kernel's name for a module file (``virtio-rng.ko`` → ``virtio_rng``)."""
    return path.name.removesuffix(".ko").replace("-", "_")


def module_depends(data: bytes) -> list[str]:
    """A module's ``depends=`` list, from its ``.modinfo`` strings."""
    match = _DEPENDS.search(data)
    if match is None:
        return []
    return [name for name in match.group(1).decode("ascii", "replace").split(",") if name]


def load_order(wanted: Iterable[str], depends: Callable[[str], list[str] | None]) -> list[str]:
    """Modules to load, dependencies first (depth-first, in the order given).

    ``depends(name)`` is a module's dependency list, ``None`` for an unknown
    module. :class:`InitramfsError` if a module (or a dependency) is unknown
    or the dependencies form a cycle.
    """
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in visiting:
            raise InitramfsError(f"kernel modules depend on each other: {' → '.join(chain)}")
        needs = depends(name)
        if needs is None:
            raise InitramfsError(f"kernel module {name} is not in the kernel package")
        visiting.add(name)
        for dependency in needs:
            visit(dependency, (*chain, dependency))
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        visit(name, (name,))
    return order


@dataclass(frozen=True)
class KernelTree:
    """An unpacked Debian kernel package."""

    root: Path

    @property
    def release(self) -> str:
        releases = sorted(p.name for p in (self.root / "lib/modules").iterdir() if p.is_dir())
        if not releases:
            raise InitramfsError(f"{self.root}: no lib/modules/<release> directory")
        return releases[-1]

    @property
    def image(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    def module_files(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for path in sorted((self.root / "lib/modules" / self.release).rglob("*.ko")):
            found[module_name(path)] = path
        return found


def add_modules(tree: Tree, kernel: KernelTree, wanted: Iterable[str]) -> list[str]:
    """Copy the wanted modules and their dependencies; return the load order."""
    files = kernel.module_files()
    contents: dict[str, bytes] = {}

    def depends(name: str) -> list[str] | None:
        if name not in files:
            return None
        contents[name] = files[name].read_bytes()  # only the modules the guest loads
        return module_depends(contents[name])

    order = load_order(wanted, depends)
    for name in order:
        tree.file(f"{MODULES_DIR}/{name}.ko", contents[name], 0o644)
    tree.file(MODULES_LIST, ("\n".join(order) + "\n").encode())
    return order


def build_tree(*, base: Path, kernel: KernelTree, busybox: Path, agents_site: Path) -> Tree:
    """The initramfs contents (see the module docstring)."""
    runtime = python_runtime(base)
    tree = runtime.tree
    site = Tree()
    site.add_directory_from_disk(agents_site, SITE_DIR)
    runtime.add_elf_closure(
        (name, entry.data) for name, entry in site.items() if entry.kind == "file"
    )
    tree.merge(site)
    tree.file(BUSYBOX, busybox.read_bytes(), 0o755)
    add_modules(tree, kernel, GUEST_MODULES)
    tree.file("init", INIT_SCRIPT.encode(), 0o755)
    tree.file(STAGE1_LAUNCHER, _stage1_launcher(runtime.interpreter), 0o755)
    for directory in ("proc", "sys", "dev", "rootfs", "run", "tmp"):
        tree.directory(directory, 0o755)
    return tree


def _stage1_launcher(interpreter: str) -> bytes:
    return (
        f"#!{interpreter} -IS\n"
        "# hats-stage1: written by hats.vm.initramfs; runs the hats.stage1 program\n"
        "# from the agents' site directory (standard library + locked wheels only).\n"
        "import runpy\n"
        "import sys\n\n"
        f'sys.path.insert(0, "/{SITE_DIR}")\n'
        f'runpy.run_module("{STAGE1_MODULE}", run_name="__main__", alter_sys=True)\n'
    ).encode()


CONSOLE = Device("dev/console", stat.S_IFCHR | 0o600, 5, 1)


def write_initramfs(tree: Tree, out: Path) -> None:
    """Write ``tree`` as a deterministic gzip-compressed newc archive (atomically)."""
    with (
        atomic_output(out) as handle,
        gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0, compresslevel=6) as gz,
    ):
        tree.write_cpio(gz, devices=[CONSOLE])
