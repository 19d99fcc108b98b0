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
  anyone else, not even while it is being written.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from hats.errors import HatsError

PRIVATE_MODE = 0o600
"""The mode of files holding key material or secrets."""


class OutputError(HatsError):
    """The output path cannot be written."""


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
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path, mode) as handle:
        handle.write(data)
