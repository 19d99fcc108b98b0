"""Atomic file output: write to a temporary file beside the target, then rename.

Rules:
- the target appears complete or not at all; on any failure the temporary
  file is removed and the previous target (if any) is left untouched;
- the temporary file lives in the target's directory so the rename is atomic;
- the final file gets mode 0644 (minus umask is *not* applied: outputs are
  build artefacts whose bytes, not permissions, are what matters), or the
  mode given;
- the temporary file is created mode 0600 (``mkstemp``) and its final mode is
  set on the open file before the rename, so a file written with
  :data:`PRIVATE_MODE` (private keys, secrets, shares) is never readable by
  anyone else, not even while it is being written;
- SIGTERM and SIGHUP leave no temporary file behind, as Ctrl-C (SIGINT)
  does not: while a temporary file exists, a handler for each signal whose
  disposition is the default removes every live temporary file at once and
  raises :class:`Terminated` (a ``SystemExit`` with code 128 + the signal
  number), so the program unwinds (workers stopped, temporary directories
  removed). The handlers are installed by the outermost
  :func:`atomic_output` (or :func:`unwind_on_signals`) of the main thread
  and the previous dispositions restored when it ends; a program with its
  own handlers keeps them.

Also here: :func:`exclusive_lock`, the one ``flock`` helper of the caches.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from hats.errors import HatsError

PRIVATE_MODE = 0o600
"""The mode of files holding key material or secrets."""


class OutputError(HatsError):
    """The output path cannot be written."""


CLEANUP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""The signals after which no temporary output file is left (SIGINT: KeyboardInterrupt)."""

_live: set[Path] = set()
_saved: dict[signal.Signals, object] = {}
_depth = 0


class Terminated(SystemExit):
    """The process got a clean-up signal; partial outputs are already removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


def _remove_live() -> None:
    for path in list(_live):
        with contextlib.suppress(OSError):
            path.unlink()
        _live.discard(path)


def _on_signal(signum: int, _frame: object) -> None:
    _remove_live()
    # Once: a second signal during the unwinding ends the process the default way.
    for number in CLEANUP_SIGNALS:
        with contextlib.suppress(ValueError, OSError):
            signal.signal(number, signal.SIG_DFL)
    raise Terminated(signum)


@contextlib.contextmanager
def unwind_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` for the duration of the block.

    Only in the main thread and only for signals whose disposition is the
    default; nested uses share the outermost one's handlers. The CLI wraps a
    whole build in it, so temporary directories are removed as well.
    """
    global _depth
    main = threading.current_thread() is threading.main_thread()
    if main and _depth == 0:
        for number in CLEANUP_SIGNALS:
            if signal.getsignal(number) is signal.SIG_DFL:
                _saved[number] = signal.signal(number, _on_signal)
    _depth += main
    try:
        yield
    finally:
        _depth -= main
        if main and _depth == 0:
            for number, previous in list(_saved.items()):
                if signal.getsignal(number) is _on_signal:
                    signal.signal(number, previous)  # type: ignore[arg-type]
                del _saved[number]


@contextlib.contextmanager
def _tracked(tmp: Path) -> Iterator[None]:
    _live.add(tmp)
    try:
        with unwind_on_signals():
            yield
    finally:
        _live.discard(tmp)


@contextlib.contextmanager
def atomic_output(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``path`` only if the block succeeds."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise OutputError(f"{path}: output directory {directory} does not exist")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write output: {exc.strerror}") from None
    tmp = Path(tmp_name)
    try:
        with _tracked(tmp), os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def check_parent_dirs(path: Path) -> None:
    """Fail early, as :func:`make_parent_dirs` would, when a file is in the way of ``path``."""
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{path}: cannot create its directory: {parent} is not a directory")


def make_parent_dirs(path: Path) -> None:
    """Create ``path``'s missing parent directories (every ``-o`` does, as ``image build``).

    Raises :class:`OutputError` (one line) when a file is in the way or the
    directory cannot be made.
    """
    parent = path.parent
    if parent.is_dir():
        return
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = "a file is in the way" if isinstance(exc, FileExistsError) else exc.strerror
        raise OutputError(f"{path}: cannot create its directory {parent}: {reason}") from None


def write_bytes_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path, mode) as handle:
        handle.write(data)


class LockFileError(HatsError):
    """A lock file cannot be opened (or created)."""


@contextlib.contextmanager
def exclusive_lock(path: Path, *, optional: bool = False) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` (created when missing) for the block.

    Yields ``True``. When the file cannot be opened: :class:`LockFileError`
    (one line, naming it), or with ``optional`` the block runs unlocked and
    gets ``False`` (a read-only shared cache, where nothing is written anyway).
    """
    try:
        handle = open(path, "a+b")  # noqa: SIM115 - closed below
    except OSError as exc:
        if not optional:
            raise LockFileError(f"{path}: cannot open lock file: {exc.strerror}") from None
        yield False
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
