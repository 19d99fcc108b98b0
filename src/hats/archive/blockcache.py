"""A content-addressed cache of encoded xz blocks, for incremental rebuilds.

Rules:
- an entry is one encoded block (header, LZMA2 data, padding, CRC64), keyed
  by the SHA-256 of the block's uncompressed bytes and of everything else
  its bytes depend on: the encoder settings (filter, check, block size,
  this module's layout version) and a fingerprint of the liblzma in use
  (the bytes it produces for a fixed probe), so a different liblzma never
  reuses another one's blocks;
- an entry carries its own key, its sizes and the SHA-256 of the block; on
  reading, all of them and the block's header (CRC32, sizes, padding) are
  checked. A corrupt, truncated or misplaced entry is deleted and reported
  as a miss: it is recomputed, never used;
- entries are written to a temporary file and renamed (readers see a whole
  entry or none; two builds sharing the cache at most write the same entry
  twice); a hit refreshes the entry's mtime, and :meth:`BlockCache.prune`
  deletes the least recently used entries until the cache fits its limit;
- a failure to *write* the cache never fails a build: it is counted and
  reported, and the block is used from memory.

Layout: ``<dir>/<first two hex digits of the key>/<key>.xzblock``; the
default directory is ``xz-blocks`` in the hats cache directory
(``$HATS_CACHE_DIR`` or ``~/.cache/hats``, like the base cache).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import lzma
import os
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from hats.archive import xzformat
from hats.archive.xzformat import Block, XzFormatError
from hats.cachedir import default_cache_dir
from hats.errors import HatsError

LAYOUT_VERSION = b"hats-xz-block-v1"
MAGIC = b"HATSXZB1"
_HEAD = struct.Struct("<8s32sQQ32s")  # magic, key, uncompressed size, unpadded size, sha256
SUFFIX = ".xzblock"
DEFAULT_MAX_SIZE = 1 << 30
# Temporary files older than this are left-overs of killed builds.
STALE_TMP_SECONDS = 3600


class BlockCacheError(HatsError):
    """The block cache directory cannot be used."""


def default_block_cache_dir(cache_dir: Path | None = None) -> Path:
    """``xz-blocks`` in ``cache_dir``, or in the hats cache directory."""
    if cache_dir is None:
        cache_dir = default_cache_dir()
    return cache_dir / "xz-blocks"


@functools.cache
def encoder_fingerprint(filters_id: str) -> str:
    """A digest of what this process's liblzma makes of a fixed probe.

    Compressing 64 KiB of fixed, partly compressible bytes takes a few
    milliseconds; any change in the encoder's output changes the digest.
    """
    probe = bytearray()
    state = 0x9E3779B97F4A7C15
    while len(probe) < 1 << 16:
        state = (state * 6364136223846793005 + 1442695040888963407) & (1 << 64) - 1
        word = state >> 40
        probe += b"%d %s\n" % (word % 997, b"abcdefgh"[: word % 8])
    xz = lzma.compress(
        bytes(probe),
        format=lzma.FORMAT_XZ,
        check=lzma.CHECK_CRC64,
        filters=[{"id": lzma.FILTER_LZMA2, "preset": 6}],
    )
    return hashlib.sha256(filters_id.encode() + b"\0" + xz).hexdigest()[:32]


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    stored: int = 0
    evicted: int = 0
    write_errors: list[str] = field(default_factory=list)


class BlockCache:
    """Encoded blocks on disk, keyed by content and settings (see the module rules)."""

    def __init__(self, root: Path, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size < 0:
            raise BlockCacheError("the block cache size limit cannot be negative")
        self.root = root
        self.max_size = max_size
        self.stats = CacheStats()
        self._lock = threading.Lock()  # get and put run in worker threads
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BlockCacheError(
                f"{root}: cannot create the block cache directory: {exc.strerror}"
            ) from None
        if not os.access(root, os.W_OK | os.X_OK):
            raise BlockCacheError(f"{root}: the block cache directory is not writable")

    @staticmethod
    def key(settings_id: str, data_sha256: bytes) -> bytes:
        """The 32-byte key of a block with these uncompressed bytes and settings."""
        return hashlib.sha256(
            LAYOUT_VERSION + b"\0" + settings_id.encode() + b"\0" + data_sha256
        ).digest()

    def path(self, key: bytes) -> Path:
        name = key.hex()
        return self.root / name[:2] / (name + SUFFIX)

    def get(self, key: bytes, uncompressed_size: int) -> Block | None:
        """The verified block for ``key``, or None (missing or corrupt: deleted)."""
        path = self.path(key)
        try:
            with path.open("rb") as handle:
                raw = handle.read()
        except OSError:  # missing (or unreadable): a miss
            self._count("misses")
            return None
        block = _decode_entry(raw, key, uncompressed_size)
        if block is None:
            self._count("corrupt", "misses")
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        self._count("hits")
        with contextlib.suppress(OSError):
            os.utime(path)
        return block

    def put(self, key: bytes, block: Block) -> None:
        """Store ``block`` under ``key`` (atomically; failures are only counted)."""
        path = self.path(key)
        head = _HEAD.pack(
            MAGIC,
            key,
            block.uncompressed_size,
            block.unpadded_size,
            hashlib.sha256(block.data).digest(),
        )
        try:
            path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(head)
                    handle.write(block.data)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            with self._lock:
                if len(self.stats.write_errors) < 3:
                    self.stats.write_errors.append(f"{path}: {exc.strerror}")
            return
        self._count("stored")

    def _count(self, *names: str) -> None:
        with self._lock:
            for name in names:
                setattr(self.stats, name, getattr(self.stats, name) + 1)

    def prune(self) -> int:
        """Delete least recently used entries until the cache fits; return the bytes freed."""
        entries: list[tuple[float, int, Path]] = []
        now = time.time()
        for sub in self.root.iterdir():
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for item in sub.iterdir():
                try:
                    st = item.stat()
                except OSError:
                    continue
                if item.name.startswith(".tmp-"):
                    if now - st.st_mtime > STALE_TMP_SECONDS:
                        with contextlib.suppress(OSError):
                            item.unlink()
                    continue
                if item.name.endswith(SUFFIX):
                    entries.append((st.st_mtime, st.st_size, item))
        total = sum(size for _, size, _ in entries)
        freed = 0
        for _, size, item in sorted(entries, key=lambda e: (e[0], e[2].name)):
            if total <= self.max_size:
                break
            with contextlib.suppress(OSError):
                item.unlink()
                total -= size
                freed += size
                self._count("evicted")
        return freed


def _decode_entry(raw: bytes, key: bytes, uncompressed_size: int) -> Block | None:
    if len(raw) < _HEAD.size:
        return None
    magic, stored_key, uncompressed, unpadded, digest = _HEAD.unpack_from(raw)
    data = raw[_HEAD.size :]
    if magic != MAGIC or stored_key != key or uncompressed != uncompressed_size:
        return None
    if hashlib.sha256(data).digest() != digest:
        return None
    try:
        block = xzformat.parse_block(data)
    except XzFormatError:
        return None
    if block.uncompressed_size != uncompressed or block.unpadded_size != unpadded:
        return None
    return block
