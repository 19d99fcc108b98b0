"""Debian's Python, cut out of a base root filesystem: the guest's stage1 and workload runtime.

:func:`python_runtime` reads a base tar (the default base built
``--with-python``, so bookworm's ``python3.11``) once and returns a
:class:`~hats.vm.tree.Tree` holding:

* the interpreter (``usr/bin/python3.X`` and the ``python3`` link) and the
  dynamic loader it names (``/lib64/ld-linux-x86-64.so.2``);
* the standard library ``usr/lib/python3.X`` with its compiled
  ``__pycache__`` files, minus :data:`STDLIB_EXCLUDED` (tests, GUI, tools
  a service never imports) and minus the extension modules in
  :data:`DYNLOAD_EXCLUDED` (their libraries are not in a minimal base);
* every shared library those ELF files need, found by following
  ``DT_NEEDED`` (:mod:`hats.vm.elf`) through ``usr/lib/x86_64-linux-gnu``
  and ``usr/lib``, with the symbolic links that name them;
* the base's top-level merged-``/usr`` links (``bin``, ``lib``, ``lib64``,
  ``sbin``), so paths such as ``/lib64/ld-linux-x86-64.so.2`` resolve.

:func:`add_elf_closure` adds the libraries other ELF files (a wheel's
extension modules) need, from the same base. A needed library the base does
not have is a :class:`RuntimeTreeError`: the guest would fail to start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from hats.archive.compress import open_decompressed
from hats.archive.tarstream import TarReader
from hats.errors import HatsError
from hats.vm.elf import ElfError, is_elf, needed_libraries
from hats.vm.tree import Tree

LIBRARY_DIRS = ("usr/lib/x86_64-linux-gnu", "usr/lib")
LOADER = "usr/lib64/ld-linux-x86-64.so.2"
TOP_LEVEL_LINKS = ("bin", "lib", "lib64", "sbin")
#: Standard library parts a headless service never imports.
STDLIB_EXCLUDED = frozenset(
    {
        "test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "ensurepip",
        "lib2to3",
        "pydoc_data",
        "venv",
        "unittest",
        "curses",
        "dbm",
        "sqlite3",
        "distutils",
    }
)
#: Extension modules left out (tests, or libraries a minimal base lacks).
DYNLOAD_EXCLUDED = re.compile(
    r"^(_test|_xx|xxlimited|_ctypes_test|_curses|_dbm|_gdbm|readline|nis|_sqlite3|"
    r"ossaudiodev|_tkinter|audioop)"
)
_PYTHON = re.compile(r"^usr/bin/python3\.\d+$")
_LIBRARY = re.compile(r"\.so(\.\d+)*$")


class RuntimeTreeError(HatsError):
    """The base lacks something the guest's Python needs."""


@dataclass
class _BaseFiles:
    """What is kept of the base tar: candidate files and every symbolic link."""

    files: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)


def _wanted(name: str) -> bool:
    if _PYTHON.match(name) or name == "usr/bin/python3":
        return True
    if name.startswith("usr/lib/python3.") and name.count("/") >= 3:
        return True
    directory = name.rsplit("/", 1)[0]
    return directory in LIBRARY_DIRS and bool(_LIBRARY.search(name))


def _read_base(base: Path) -> _BaseFiles:
    kept = _BaseFiles()
    with open_decompressed(base) as stream:
        reader = TarReader(stream, str(base))
        for member in reader:
            name = "/".join(p for p in PurePosixPath(member.name).parts if p not in (".", "/"))
            if not name:
                continue
            if member.kind == "symlink":
                kept.links[name] = member.linkname
            elif member.is_regular and _wanted(name):
                kept.files[name] = (member.mode & 0o7777, b"".join(reader.chunks()))
    return kept


def _stdlib_included(relative: str) -> bool:
    parts = relative.split("/")
    if parts[0] in STDLIB_EXCLUDED or parts[0].startswith("config-"):
        return False
    if parts[0] == "lib-dynload" and len(parts) == 2:
        return not DYNLOAD_EXCLUDED.match(parts[1])
    if parts[0] == "__pycache__" and len(parts) == 2:
        module = parts[1].split(".", 1)[0]
        return module not in STDLIB_EXCLUDED
    return parts[0] != "site-packages" and parts[0] != "dist-packages"


class _Closure:
    """Adds files and the libraries they need from a read base."""

    def __init__(self, base: _BaseFiles, tree: Tree) -> None:
        self.base = base
        self.tree = tree
        self._done: set[str] = set()

    def _canonical(self, path: str, depth: int = 0) -> str:
        """``path`` with every symbolic link among its directories resolved."""
        if depth > 16:
            raise RuntimeTreeError(f"{path}: too many levels of symbolic links in the base")
        parts: list[str] = []
        for part in PurePosixPath(path).parts:
            if part in (".", "/"):
                continue
            if part == "..":
                if parts:
                    parts.pop()
                continue
            parts.append(part)
            prefix = "/".join(parts)
            if prefix in self.base.links and len(parts) < len(PurePosixPath(path).parts):
                target = self.base.links[prefix]
                parent = "/".join(parts[:-1])
                joined = target if target.startswith("/") else f"{parent}/{target}"
                parts = self._canonical(joined, depth + 1).split("/")
        return "/".join(parts)

    def _resolve_link(self, name: str) -> str:
        target = self.base.links[name]
        parent = PurePosixPath(name).parent.as_posix()
        joined = target if target.startswith("/") else f"{parent}/{target}"
        return self._canonical(joined)

    def add_path(self, name: str) -> str:
        """Add ``name`` (following symbolic links, which are added too); the file's path."""
        seen = 0
        while name in self.base.links:
            self.tree.symlink(name, self.base.links[name])
            name = self._resolve_link(name)
            seen += 1
            if seen > 16:
                raise RuntimeTreeError(f"{name}: too many levels of symbolic links in the base")
        if name not in self.base.files:
            raise RuntimeTreeError(f"the base has no {name}")
        mode, data = self.base.files[name]
        self.tree.file(name, data, mode)
        return name

    def _find_library(self, library: str) -> str:
        for directory in LIBRARY_DIRS:
            candidate = f"{directory}/{library}"
            if candidate in self.base.links or candidate in self.base.files:
                return candidate
        raise RuntimeTreeError(f"the base has no shared library {library}")

    def add_needs(self, origin: str, data: bytes) -> None:
        """Add (recursively) every library ``data`` (an ELF file) needs."""
        try:
            needed = needed_libraries(data)
        except ElfError as exc:
            raise RuntimeTreeError(f"{origin}: {exc}") from None
        for library in needed:
            if library in self._done:
                continue
            self._done.add(library)
            path = self.add_path(self._find_library(library))
            self.add_needs(path, self.base.files[path][1])


@dataclass
class PythonRuntime:
    """The runtime tree and what is needed to add more ELF files to it."""

    tree: Tree
    version: str  # "3.11"
    _closure: _Closure

    @property
    def interpreter(self) -> str:
        return f"/usr/bin/python{self.version}"

    def add_elf_closure(self, files: Iterable[tuple[str, bytes]]) -> None:
        """Add the base's libraries that the given ELF files (e.g. wheel modules) need."""
        for name, data in files:
            if is_elf(data):
                self._closure.add_needs(name, data)


def python_runtime(base: Path) -> PythonRuntime:
    """The module's runtime tree, cut out of the base tar at ``base``."""
    files = _read_base(base)
    pythons = sorted(name for name in files.files if _PYTHON.match(name))
    if not pythons:
        raise RuntimeTreeError(f"{base}: no usr/bin/python3.X (build the base --with-python)")
    interpreter = pythons[-1]
    version = interpreter.rsplit("python", 1)[1]
    tree = Tree()
    closure = _Closure(files, tree)
    for link in TOP_LEVEL_LINKS:
        if link in files.links:
            tree.symlink(link, files.links[link])
    if "usr/bin/python3" in files.links:
        tree.symlink("usr/bin/python3", files.links["usr/bin/python3"])
    closure.add_path(interpreter)
    closure.add_path(LOADER)
    closure.add_needs(interpreter, files.files[interpreter][1])
    stdlib = f"usr/lib/python{version}/"
    for name in sorted(files.files):
        if name.startswith(stdlib) and _stdlib_included(name[len(stdlib) :]):
            mode, data = files.files[name]
            tree.file(name, data, mode)
            if name.endswith(".so"):
                closure.add_needs(name, data)
    for name, target in sorted(files.links.items()):
        if name.startswith(stdlib) and _stdlib_included(name[len(stdlib) :]):
            tree.symlink(name, target)
    return PythonRuntime(tree=tree, version=version, _closure=closure)
