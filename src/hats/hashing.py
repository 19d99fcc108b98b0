"""SHA-256 of a file's content, read in chunks: the one file-hashing helper.

Every module that hashes a whole file (wheels, images, the initrd, firmware,
``SHA256SUMS`` checks) calls :func:`file_sha256` or :func:`file_sha256_sized`.
They raise :class:`OSError` unchanged: each caller words the one-line error
its users see (``{path}: cannot read: …`` or its own form), so this module
stays free of any error policy.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: Bytes read per call (1 MiB): constant memory for any file size.
CHUNK = 1 << 20


def file_sha256_sized(path: str | Path) -> tuple[str, int]:
    """The hex SHA-256 of the file at ``path`` and the number of bytes hashed.

    Raises :class:`OSError` if the file cannot be opened or read.
    """
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def file_sha256(path: str | Path) -> str:
    """The hex SHA-256 of the file at ``path``. Raises :class:`OSError` if it cannot be read."""
    return file_sha256_sized(path)[0]


def read_failure(exc: OSError) -> str:
    """Why a read failed, for a one-line message: the OS's words, else the exception's name."""
    return exc.strerror or type(exc).__name__
