"""The agents tree: the Python agents and their locked dependencies, as files.

:func:`build_agents_tree` writes, into an empty directory::

    usr/bin/orchestrator_main          launcher → python3 -m hats.orchestrator
    usr/bin/oak_containers_agent       launcher → python3 -m hats.agent
    usr/bin/oak_containers_syslogd     launcher → python3 -m hats.syslogd
    usr/lib/hats/python/               site directory: the locked wheels
                                       (see hats.packaging.wheels) and the
                                       ``hats`` package's sources

The image builder packs this tree into a layer when the user does not supply
their own agent binaries.

Determinism: the output depends only on the lock file, the wheels it pins
(by sha256), the ``hats`` sources and this module. Paths are processed in
sorted order; files are 0644, launchers and directories 0755 (set explicitly,
so the umask does not matter); every file and directory written gets the
mtime :data:`TREE_MTIME` (2000-01-01T00:00:00Z, the reference layers'
``portable_mtime``); nothing depends on locale, time zone or directory
listing order. The launchers stop the interpreter from writing bytecode at
run time.

Bytecode: every ``.py`` of the site directory (the wheels' and the
``hats`` package's) gets its ``__pycache__/NAME.cpython-311.pyc``, so no
agent compiles its imports when it starts (:func:`compile_bytecode`). The
pycs are PEP 552 *unchecked-hash* pycs: the interpreter loads them without
looking at the source's mtime or hash. That is safe here because each pyc
and its source are both inside the measured image (the image digest covers
both, so neither can change without changing the measurement) and the tree
is read-only at run time; an mtime-based pyc would instead tie the bytes to
a build-time clock. They are compiled deterministically: in one child
interpreter with ``PYTHONHASHSEED=0`` (nothing hash-ordered can reach the
bytes; 3.11's marshal already sorts frozenset constants, earlier versions
wrote them in hash order), files in sorted order, each with its in-image path
(``/usr/lib/hats/python/…``) as ``co_filename``, never the build
machine's. Bytecode is tied to the interpreter's minor version, so pycs are
only written when the building interpreter is CPython
:data:`~hats.packaging.lockfile.TARGET_PYTHON_VERSION`; another interpreter
builds the tree without them (and says so), never with another version's.

Two digests let callers cache:

* :func:`agents_tree_digest` — of the *inputs*, cheap (no download, no
  unpacking): equal input digests produce byte-identical trees;
* :attr:`AgentsTree.digest` — of the *output* (every path, mode and content
  hash), the same value :func:`tree_digest` computes from a tree on disk.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import hats
from hats import toolrun
from hats.errors import HatsError
from hats.packaging.fetch import default_cache_dir, fetch_wheels, sha256_file
from hats.packaging.lockfile import (
    LOCK_PATH,
    TARGET_ABI,
    TARGET_PLATFORMS,
    TARGET_PYTHON_VERSION,
    read_lock,
)
from hats.packaging.wheels import unpack_wheel_bytes
from hats.reproducible import EPOCH

#: Bumped whenever this module changes what it writes for the same inputs.
LAYOUT_VERSION = "2"
#: mtime of every file and directory written (2000-01-01T00:00:00Z).
TREE_MTIME = EPOCH
FILE_MODE = 0o644
EXEC_MODE = 0o755
DIR_MODE = 0o755

SITE_DIR = "usr/lib/hats/python"
BIN_DIR = "usr/bin"
#: Installed binary name → module it runs.
AGENTS: dict[str, str] = {
    "oak_containers_agent": "hats.agent",
    "oak_containers_syslogd": "hats.syslogd",
    "orchestrator_main": "hats.orchestrator",
}
#: Files of the ``hats`` package that go into the tree (besides ``*.py``);
#: mirrors ``[tool.setuptools.package-data]`` in pyproject.toml.
HATS_DATA_SUFFIXES = frozenset({".py", ".pyi", ".lock", ".txt", ".toml"})
HATS_DATA_NAMES = frozenset({"py.typed"})
_SKIPPED_DIRS = frozenset({"__pycache__", "tests", "test"})
#: PEP 552 flags word of an unchecked hash-based pyc (hash-based, not checked).
PYC_FLAGS_UNCHECKED_HASH = 0b01
#: Run by a child interpreter with PYTHONHASHSEED=0: reads (marshalled, on
#: stdin) a list of ``(in-image path, source bytes)`` and writes (marshalled,
#: on stdout) a list of PEP 552 unchecked-hash pycs, ``None`` for a source
#: that does not compile.
_COMPILER = f"""\
import importlib.util, marshal, sys
out = []
for dfile, source in marshal.loads(sys.stdin.buffer.read()):
    try:
        code = compile(source, dfile, "exec", dont_inherit=True, optimize=0)
    except (SyntaxError, ValueError):
        out.append(None)
        continue
    out.append(
        importlib.util.MAGIC_NUMBER
        + ({PYC_FLAGS_UNCHECKED_HASH}).to_bytes(4, "little")
        + importlib.util.source_hash(source)
        + marshal.dumps(code)
    )
sys.stdout.buffer.write(marshal.dumps(out))
"""

_LAUNCHER = """\
#!/usr/bin/python3 -IS
# {name}: launcher written by hats.packaging.agents_layer; runs
# `python3 -m {module}` from the HATs agents tree. -I: ignore PYTHON*
# variables and the user site; -S: no site-packages, so only the standard
# library and the tree's own site directory are importable.
import os
import runpy
import sys

sys.dont_write_bytecode = True
# <tree>/usr/bin/{name} -> <tree>/usr/lib/hats/python, wherever <tree> is.
_bin = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(_bin), "lib", "hats", "python"))
del _bin
runpy.run_module("{module}", run_name="__main__", alter_sys=True)
"""


class AgentsTreeError(HatsError):
    """The agents tree cannot be built."""


@dataclass(frozen=True, order=True)
class TreeFile:
    """One regular file of the tree: POSIX path relative to the root, mode, content."""

    path: str
    mode: int
    sha256: str
    size: int


@dataclass(frozen=True)
class AgentsTree:
    """What :func:`build_agents_tree` wrote."""

    root: Path
    site_dir: Path
    orchestrator_main: Path
    oak_containers_agent: Path
    oak_containers_syslogd: Path
    #: every regular file written, sorted by path
    files: tuple[TreeFile, ...]
    #: every directory created (relative POSIX paths), sorted; all DIR_MODE
    directories: tuple[str, ...]
    #: :func:`agents_tree_digest` of the inputs this tree was built from
    input_digest: str

    @property
    def binaries(self) -> dict[str, Path]:
        """Installed name → absolute path of the three launchers."""
        return {
            "oak_containers_agent": self.oak_containers_agent,
            "oak_containers_syslogd": self.oak_containers_syslogd,
            "orchestrator_main": self.orchestrator_main,
        }

    @property
    def digest(self) -> str:
        """sha256 of the tree's manifest (paths, modes, content hashes)."""
        return manifest_digest(self.files, self.directories)

    @property
    def size(self) -> int:
        """Total bytes of all files."""
        return sum(item.size for item in self.files)


def launcher_script(name: str) -> bytes:
    """The launcher written to ``usr/bin/<name>``."""
    if name not in AGENTS:
        raise KeyError(name)
    return _LAUNCHER.format(name=name, module=AGENTS[name]).encode("utf-8")


def default_hats_source() -> Path:
    """The directory of the installed ``hats`` package."""
    return Path(hats.__file__).resolve().parent


def hats_source_files(source: Path | None = None) -> list[tuple[str, Path]]:
    """``(path in the site directory, source file)`` for the ``hats`` package, sorted."""
    source = default_hats_source() if source is None else source
    if not (source / "__init__.py").is_file():
        raise AgentsTreeError(f"{source}: not a package directory (no __init__.py)")
    selected: list[tuple[str, Path]] = []
    for path in source.rglob("*"):
        relative = path.relative_to(source)
        if any(part in _SKIPPED_DIRS or part.startswith(".") for part in relative.parts):
            continue
        if path.is_symlink() or not path.is_file():
            continue
        if path.suffix in HATS_DATA_SUFFIXES or path.name in HATS_DATA_NAMES:
            selected.append(((PurePosixPath("hats") / relative.as_posix()).as_posix(), path))
    selected.sort()
    return selected


def bytecode_interpreter() -> str | None:
    """The building interpreter's version when it can compile the tree's bytecode, else None.

    Only CPython of the target's minor version (:data:`TARGET_PYTHON_VERSION`)
    writes pycs the image's interpreter loads (same magic number, same
    ``cpython-311`` cache tag).
    """
    target = tuple(int(part) for part in TARGET_PYTHON_VERSION.split("."))
    if sys.implementation.name != "cpython" or sys.version_info[:2] != target:
        return None
    return platform.python_version()


def pyc_path(source: str) -> str:
    """Where the pyc of the tree's ``source`` (a POSIX path ending ``.py``) goes."""
    path = PurePosixPath(source)
    tag = "cpython-" + TARGET_PYTHON_VERSION.replace(".", "")
    return (path.parent / "__pycache__" / f"{path.stem}.{tag}.pyc").as_posix()


def compile_bytecode(sources: dict[str, bytes]) -> dict[str, bytes]:
    """Unchecked-hash pycs of ``sources`` (tree path → source): tree path of the pyc → pyc.

    Compiled by a child of the building interpreter with ``PYTHONHASHSEED=0``,
    in sorted order, each with ``/<tree path>`` as its file name. A source
    that does not compile gets no pyc (the interpreter would fail on it
    either way). Call only when :func:`bytecode_interpreter` is not None.
    """
    order = sorted(sources)
    payload = marshal.dumps([("/" + path, sources[path]) for path in order])
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0"}
    result = toolrun.run(
        # Not -I: it would ignore PYTHONHASHSEED. The environment is
        # replaced instead; -P -s -S keep cwd and site-packages out of sys.path.
        [sys.executable, "-P", "-s", "-S", "-c", _COMPILER],
        what="compiling the agents' bytecode",
        error=AgentsTreeError,
        input=payload,
        binary=True,
        env=env,
        cwd="/",
    )
    assert isinstance(result.stdout, bytes)
    pycs: list[bytes | None] = marshal.loads(result.stdout)
    return {pyc_path(path): pyc for path, pyc in zip(order, pycs, strict=True) if pyc is not None}


def agents_tree_digest(*, lock_file: Path | None = None, hats_source: Path | None = None) -> str:
    """Digest of everything the tree is built from; equal digests → identical trees.

    Covers the layout version, the target interpreter, the building
    interpreter's version when it compiles the bytecode (pycs may differ
    between patch releases), the lock file's bytes (hence every wheel, by
    sha256), the launchers and every ``hats`` source file that is copied.
    Needs no network.
    """
    lock_path = LOCK_PATH if lock_file is None else lock_file
    digest = hashlib.sha256()
    digest.update(f"hats-agents-tree layout {LAYOUT_VERSION}\n".encode())
    digest.update(
        f"target {TARGET_PYTHON_VERSION} {TARGET_ABI} {' '.join(TARGET_PLATFORMS)}\n".encode()
    )
    digest.update(f"bytecode {bytecode_interpreter() or 'none'}\n".encode())
    try:
        digest.update(f"lock {sha256_file(lock_path)}\n".encode())
    except OSError as exc:
        raise AgentsTreeError(f"{lock_path}: cannot read lock file: {exc.strerror}") from None
    for name in sorted(AGENTS):
        launcher = hashlib.sha256(launcher_script(name)).hexdigest()
        digest.update(f"launcher {name} {launcher}\n".encode())
    for relative, path in hats_source_files(hats_source):
        digest.update(f"hats {sha256_file(path)} {relative}\n".encode())
    return digest.hexdigest()


def manifest_lines(files: Iterable[TreeFile], directories: Iterable[str]) -> list[str]:
    """The canonical manifest: one line per directory and file, sorted by path."""
    entries = [(f"{directory}/", f"d {DIR_MODE:04o} - {directory}/") for directory in directories]
    entries += [(f.path, f"f {f.mode:04o} {f.sha256} {f.path}") for f in files]
    return [line for _, line in sorted(entries)]


def manifest_digest(files: Iterable[TreeFile], directories: Iterable[str]) -> str:
    """sha256 of :func:`manifest_lines`."""
    text = "".join(line + "\n" for line in manifest_lines(files, directories))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def scan_tree(root: Path) -> tuple[tuple[TreeFile, ...], tuple[str, ...]]:
    """Read back a tree from disk: its files (with their real modes) and directories."""
    files: list[TreeFile] = []
    directories: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in dirnames:
            directories.append((base / name).relative_to(root).as_posix())
        for name in sorted(filenames):
            path = base / name
            info = path.lstat()
            files.append(
                TreeFile(
                    path=path.relative_to(root).as_posix(),
                    mode=info.st_mode & 0o7777,
                    sha256=sha256_file(path),
                    size=info.st_size,
                )
            )
    return tuple(sorted(files)), tuple(sorted(directories))


def tree_digest(root: Path) -> str:
    """:attr:`AgentsTree.digest` recomputed from the tree on disk."""
    files, directories = scan_tree(root)
    return manifest_digest(files, directories)


def _collect(
    lock_file: Path | None,
    hats_source: Path | None,
    cache_dir: Path,
    progress: Callable[[str], None],
) -> dict[str, tuple[bytes, int]]:
    """Every file of the tree: relative path → (content, mode). Nothing is written yet."""
    lock_path = LOCK_PATH if lock_file is None else lock_file
    requirements = read_lock(lock_path)
    wheels = fetch_wheels(requirements, cache_dir, progress)

    contents: dict[str, tuple[bytes, int]] = {}
    owners: dict[str, str] = {}

    def add(relative: str, data: bytes, mode: int, owner: str) -> None:
        if relative in contents and contents[relative][0] != data:
            raise AgentsTreeError(f"{relative}: installed by both {owners[relative]} and {owner}")
        contents[relative] = (data, mode)
        owners[relative] = owner

    for requirement in requirements:
        wheel_path = wheels[requirement.key]
        try:
            data = wheel_path.read_bytes()
        except OSError as exc:
            raise AgentsTreeError(f"{wheel_path}: cannot read wheel: {exc.strerror}") from None
        # Hash the bytes that are about to be unpacked (not just the file as it was).
        if hashlib.sha256(data).hexdigest() not in requirement.sha256:
            raise AgentsTreeError(
                f"{wheel_path}: sha256 does not match the locked hash of {requirement} "
                "(it changed while in use); not using it"
            )
        unpacked = unpack_wheel_bytes(wheel_path.name, data)
        if (unpacked.name, unpacked.version) != (requirement.key, requirement.version):
            raise AgentsTreeError(
                f"{wheel_path}: contains {unpacked.name} {unpacked.version}, "
                f"the lock pins {requirement}"
            )
        progress(f"installing {requirement} ({len(unpacked.files)} files)")
        for skipped in unpacked.skipped:
            progress(f"  skipped {skipped} (not a site-packages scheme)")
        for item in unpacked.files:
            add(f"{SITE_DIR}/{item.path}", item.data, FILE_MODE, str(requirement))

    sources = hats_source_files(hats_source)
    progress(f"copying the hats package ({len(sources)} files)")
    for relative, path in sources:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise AgentsTreeError(f"{path}: cannot read: {exc.strerror}") from None
        add(f"{SITE_DIR}/{relative}", data, FILE_MODE, "the hats package")

    compiler = bytecode_interpreter()
    if compiler is None:
        progress(
            f"no bytecode: this is Python {platform.python_version()}, the image's is "
            f"{TARGET_PYTHON_VERSION}; the agents will compile their imports when they start"
        )
    else:
        modules = {
            relative: data
            for relative, (data, _) in contents.items()
            if relative.startswith(f"{SITE_DIR}/") and relative.endswith(".py")
        }
        pycs = compile_bytecode(modules)
        progress(f"compiled {len(pycs)} of {len(modules)} modules with Python {compiler}")
        for relative, pyc in sorted(pycs.items()):
            add(relative, pyc, FILE_MODE, "the bytecode compiler")

    for name in sorted(AGENTS):
        add(f"{BIN_DIR}/{name}", launcher_script(name), EXEC_MODE, "the launchers")
    return contents


def _prepare_root(root: Path) -> None:
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        raise AgentsTreeError(f"{root}: not a directory")
    if not root.exists():
        try:
            root.mkdir()
        except OSError as exc:
            raise AgentsTreeError(f"{root}: cannot create: {exc.strerror}") from None
    elif any(root.iterdir()):
        raise AgentsTreeError(f"{root}: the agents tree must be written into an empty directory")


def _write(root: Path, contents: dict[str, tuple[bytes, int]]) -> tuple[str, ...]:
    directories: set[str] = set()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    for relative in sorted(contents):
        data, mode = contents[relative]
        parent = PurePosixPath(relative).parent
        for depth in range(1, len(parent.parts) + 1):
            directory = "/".join(parent.parts[:depth])
            if directory in directories:
                continue
            path = root / directory
            path.mkdir()
            os.chmod(path, DIR_MODE)
            directories.add(directory)
        fd = os.open(root / relative, flags, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.utime(root / relative, ns=(TREE_MTIME * 10**9, TREE_MTIME * 10**9))
    # Deepest first: setting a directory's mtime must come after its last change.
    for directory in sorted(directories, key=lambda d: (-d.count("/"), d)):
        os.utime(root / directory, ns=(TREE_MTIME * 10**9, TREE_MTIME * 10**9))
    return tuple(sorted(directories))


def build_agents_tree(
    root: Path,
    *,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    lock_file: Path | None = None,
    hats_source: Path | None = None,
) -> AgentsTree:
    """Write the agents tree into the empty (or missing) directory ``root``.

    ``cache_dir`` defaults to ``$HATS_CACHE_DIR`` or ``~/.cache/hats``; wheels
    missing from it are downloaded with pip (network errors raise a one-line
    :class:`~hats.errors.HatsError` naming the wheel; a wheel whose sha256
    does not match the lock raises one naming the file, and is never used).
    ``lock_file`` and ``hats_source`` default to the packaged lock file and
    the installed ``hats`` package. Every wheel is verified and every file's
    content computed before the first byte is written to ``root``.
    """
    report: Callable[[str], None] = progress if progress is not None else (lambda _: None)
    cache = default_cache_dir() if cache_dir is None else cache_dir
    started = time.monotonic()
    input_digest = agents_tree_digest(lock_file=lock_file, hats_source=hats_source)
    contents = _collect(lock_file, hats_source, cache, report)
    _prepare_root(root)
    try:
        directories = _write(root, contents)
    except OSError as exc:
        raise AgentsTreeError(f"{root}: cannot write the agents tree: {exc}") from None
    files = tuple(
        sorted(
            TreeFile(
                path=relative,
                mode=mode,
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
            )
            for relative, (data, mode) in contents.items()
        )
    )
    total = sum(item.size for item in files)
    report(
        f"agents tree: {len(files)} files, {total / 1e6:.1f} MB "
        f"in {time.monotonic() - started:.1f} s"
    )
    return AgentsTree(
        root=root,
        site_dir=root / SITE_DIR,
        orchestrator_main=root / BIN_DIR / "orchestrator_main",
        oak_containers_agent=root / BIN_DIR / "oak_containers_agent",
        oak_containers_syslogd=root / BIN_DIR / "oak_containers_syslogd",
        files=files,
        directories=directories,
        input_digest=input_digest,
    )
