"""The sample workload as a self-contained runc bundle for the guest.

The host demo runs ``hats/demo/workload/get_keys.py`` with the host's Python
(the ``process`` runtime). In the guest the orchestrator runs it with runc,
so its bundle carries its own root filesystem::

    config.json                     the sample config (hats.demo.sample_bundle),
                                    process.args = [/usr/bin/python3, get_keys.py]
    rootfs/app/get_keys.py
    rootfs/usr/bin/python3.11 …     Debian's Python from the base (hats.vm.pyruntime)
    rootfs/usr/lib/python3/dist-packages/grpc/ …   grpcio (and typing_extensions)
    rootfs/dev/ rootfs/proc/ rootfs/tmp/            mount points

``dist-packages`` is on Debian Python's default path, so the script runs
without flags. The tar is deterministic (sorted, 0:0, mtime 2000-01-01).

Bytecode: every ``.py`` of those packages (``typing_extensions.py`` too) gets
its ``__pycache__/NAME.cpython-311.pyc``, compiled here as the agents layer
compiles its own (:func:`hats.packaging.agents_layer.compile_bytecode`:
PEP 552 unchecked-hash, ``PYTHONHASHSEED=0``, sorted) with the bundle's
paths (``/usr/lib/python3/dist-packages/…``) as file names, so the
workload's Python compiles nothing when it starts and the bundle's bytes
stay reproducible. The agents site's own pycs (which name
``/usr/lib/hats/python/…``) are not copied. Unchecked pycs are safe for the
same reason as in the image: the bundle's digest is in the policy, so a pyc
cannot change without its source's measurement changing too. When the
building interpreter is not CPython 3.11 the bundle has no pycs (bytecode
is tied to the interpreter's minor version).
"""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

from hats.demo.sample_bundle import DEFAULT_SCRIPT, SCRIPT_NAME, sample_config
from hats.errors import HatsError
from hats.fsio import atomic_output
from hats.vm.pyruntime import python_runtime
from hats.vm.tree import Tree

DIST_PACKAGES = "usr/lib/python3/dist-packages"
#: Distributions of the agents' site directory the workload needs (grpcio and
#: what it imports), by their top-level names and dist-info prefixes.
WORKLOAD_PACKAGES = ("grpc", "typing_extensions.py")
WORKLOAD_DIST_INFO = ("grpcio-", "typing_extensions-")


class WorkloadBundleError(HatsError):
    """The workload bundle cannot be made."""


def _add_from_disk(tree: Tree, source: Path, prefix: str) -> None:
    """Files, directories and symlinks below ``source``, without ``__pycache__``."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if "__pycache__" in relative.parts:
            continue
        name = f"{prefix}/{relative.as_posix()}"
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            tree.symlink(name, str(path.readlink()))
        elif stat.S_ISDIR(info.st_mode):
            tree.directory(name, info.st_mode)
        elif stat.S_ISREG(info.st_mode):
            tree.file(name, path.read_bytes(), info.st_mode)


def workload_packages(agents_site: Path) -> Tree:
    """grpcio and typing_extensions from the agents' site directory, with their bytecode."""
    from hats.packaging.agents_layer import bytecode_interpreter, compile_bytecode

    packages = Tree()
    for name in WORKLOAD_PACKAGES:
        source = agents_site / name
        if source.is_dir():
            _add_from_disk(packages, source, f"{DIST_PACKAGES}/{name}")
        elif source.is_file():
            packages.file(f"{DIST_PACKAGES}/{name}", source.read_bytes())
        else:
            raise WorkloadBundleError(f"{agents_site}: has no {name}")
    for prefix in WORKLOAD_DIST_INFO:
        for info in sorted(agents_site.glob(f"{prefix}*.dist-info")):
            _add_from_disk(packages, info, f"{DIST_PACKAGES}/{info.name}")
    if bytecode_interpreter() is not None:
        sources = {
            name: entry.data
            for name, entry in packages.items()
            if entry.kind == "file" and name.endswith(".py")
        }
        for name, pyc in sorted(compile_bytecode(sources).items()):
            packages.file(name, pyc)
    return packages


def workload_rootfs(base: Path, agents_site: Path, script: Path | None = None) -> Tree:
    runtime = python_runtime(base)
    tree = runtime.tree
    packages = workload_packages(agents_site)
    runtime.add_elf_closure(
        (name, entry.data) for name, entry in packages.items() if entry.kind == "file"
    )
    tree.merge(packages)
    source = script or DEFAULT_SCRIPT
    try:
        tree.file(f"app/{SCRIPT_NAME}", source.read_bytes())
    except OSError as exc:
        raise WorkloadBundleError(f"{source}: cannot read: {exc.strerror}") from None
    for directory in ("dev", "proc", "tmp", "oak_utils"):
        tree.directory(directory)
    return tree


def make_workload_bundle(
    out: Path, *, base: Path, agents_site: Path, script: Path | None = None
) -> Path:
    """Write the bundle tar to ``out`` atomically; return ``out``."""
    rootfs = workload_rootfs(base, agents_site, script)
    bundle = Tree()
    config = json.dumps(sample_config("/usr/bin/python3"), indent=2) + "\n"
    bundle.file("config.json", config.encode())
    bundle.merge(rootfs, "rootfs")
    buffer = io.BytesIO()
    bundle.write_tar(buffer)
    with atomic_output(out) as handle:
        handle.write(buffer.getvalue())
    return out
