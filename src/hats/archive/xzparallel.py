"""Deterministic parallel multi-block xz: the bytes of ``xz -T2 --block-size=B -6``.

Rules:
- the tar stream is cut into blocks of exactly ``B`` bytes (the last one
  shorter, none for an empty input); each block is compressed on its own
  (raw LZMA2 preset 6 and its CRC64 from liblzma, the container from
  :mod:`hats.archive.xzformat`) and written in order. The output is a
  standard single-stream ``.xz`` equal to ``xz -T2 --block-size=B -6 -c``
  of the same bytes (liblzma 5.4.x), whatever the number of workers;
- blocks are compressed by ``jobs`` worker threads. liblzma runs without
  Python's GIL, so they use that many cores; unlike worker processes they
  need no start-up, no copying of blocks between processes and no
  re-import of the caller's main module (measured: no slower);
- at most ``2 * jobs`` blocks are in flight (queued, compressing or waiting
  to be written in order), so memory is bounded by the number of workers
  and the block size, not by the image size;
- with a :class:`~hats.archive.blockcache.BlockCache`, a block whose
  uncompressed bytes (and settings) were compressed before is taken from
  the cache, verified; only the other blocks are compressed. The output
  bytes are the same with or without the cache.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import lzma
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from hats.archive import xzformat
from hats.archive.blockcache import BlockCache, encoder_fingerprint
from hats.archive.xzformat import Block
from hats.errors import HatsError

PRESET = 6
DICT_SIZE = 8 << 20  # preset 6's dictionary, recorded in every block header
FILTERS_ID = "lzma2-preset6-crc64"
RECOMMENDED_BLOCK_SIZE = 8 << 20
MIN_BLOCK_SIZE = 64 << 10
MAX_BLOCK_SIZE = 256 << 20
_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": PRESET}]
_UNITS = {
    "": 1,
    "k": 1 << 10,
    "kb": 1 << 10,
    "ki": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mb": 1 << 20,
    "mi": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gb": 1 << 30,
    "gi": 1 << 30,
    "gib": 1 << 30,
}


class XzOptionError(HatsError):
    """A multi-block xz option has an invalid value."""


class CompressionError(HatsError):
    """A compression worker failed."""


def parse_size(value: str | int, where: str) -> int:
    """A byte count such as ``8MiB``, ``512KiB``, ``1G`` or ``8388608`` (binary units, as xz)."""
    if isinstance(value, bool):
        raise XzOptionError(f"{where}: {value!r} is not a size like 8MiB")
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", value)
    if match is None or match.group(2).lower() not in _UNITS:
        raise XzOptionError(f"{where}: {value!r} is not a size like 8MiB")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def check_block_size(size: int, where: str = "--xz-block-size") -> int:
    """``size`` if it is a sensible block size, else a one-line error."""
    if not MIN_BLOCK_SIZE <= size <= MAX_BLOCK_SIZE:
        low, high = f"{MIN_BLOCK_SIZE >> 10}KiB", f"{MAX_BLOCK_SIZE >> 20}MiB"
        raise XzOptionError(
            f"{where}: {size} bytes is outside {low}..{high} "
            f"(recommended: {RECOMMENDED_BLOCK_SIZE >> 20}MiB)"
        )
    return size


def default_jobs() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def settings_id(block_size: int) -> str:
    """What an encoded block's bytes depend on besides its data (cache keys)."""
    return f"{FILTERS_ID}-bs{block_size}-enc{encoder_fingerprint(FILTERS_ID)}"


def compress_block(data: bytes, block_size: int) -> Block:
    """The block ``xz -T2 --block-size=block_size -6`` writes for ``data`` (a worker task)."""
    single = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=_FILTERS)
    lzma2, check = xzformat.split_single_block(single)
    return xzformat.mt_block(block_size, data, lzma2, check, DICT_SIZE)


def encode_block(data: bytes, block_size: int, cache: BlockCache | None) -> tuple[Block, bool]:
    """A worker task: the block for ``data``, from ``cache`` when it holds it; (block, reused)."""
    if cache is None:
        return compress_block(data, block_size), False
    key = BlockCache.key(settings_id(block_size), hashlib.sha256(data).digest())
    cached = cache.get(key, len(data))
    if cached is not None:
        return cached, True
    block = compress_block(data, block_size)
    cache.put(key, block)
    return block, False


@dataclass
class XzStats:
    blocks: int = 0
    reused: int = 0
    compressed: int = 0


class ParallelXzSink:
    """Compress written bytes as multi-block xz in worker threads, optionally cached.

    The same interface as :class:`~hats.archive.compress.XzSink`: ``write``,
    ``close`` (then ``tar_sha256``/``xz_sha256``/sizes are final), ``abort``.
    ``out`` None computes the tar digest only (and compresses nothing).
    """

    def __init__(
        self,
        out: BinaryIO | None,
        block_size: int,
        jobs: int | None = None,
        tar_out: BinaryIO | None = None,
        progress: Callable[[int], None] | None = None,
        cache: BlockCache | None = None,
    ) -> None:
        if block_size < 1:
            raise XzOptionError(f"block size {block_size} is not a number of bytes")
        self.block_size = block_size
        self.jobs = jobs if jobs is not None else default_jobs()
        if self.jobs < 1:
            raise XzOptionError(f"--jobs: {self.jobs} is not a number of workers (1 or more)")
        self._out = out
        self._tar_out = tar_out
        self._progress = progress
        self._cache = cache if out is not None else None
        self._pieces: list[bytes] = []
        self._piece_size = 0
        self._pending: collections.deque[tuple[int, concurrent.futures.Future[tuple[Block, bool]]]]
        self._pending = collections.deque()
        self._max_pending = 2 * self.jobs
        self._stream = xzformat.StreamAssembler()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.stats = XzStats()
        self.tar_size = 0
        self.xz_size = 0
        self.tar_sha256 = hashlib.sha256()
        self.xz_sha256 = hashlib.sha256()
        if out is not None:
            self._emit(self._stream.start())
            self._start_pool()

    # -- input ------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.tar_size += len(data)
        self._pieces.append(data)
        self._piece_size += len(data)
        if self._piece_size >= self.block_size:
            joined = b"".join(self._pieces)
            view = memoryview(joined)
            start = 0
            while len(joined) - start >= self.block_size:
                self._block(bytes(view[start : start + self.block_size]))
                start += self.block_size
            rest = bytes(view[start:])
            self._pieces = [rest] if rest else []
            self._piece_size = len(rest)

    def close(self) -> None:
        """Compress the rest, write everything in order, then the index and footer."""
        try:
            if self._piece_size:
                self._block(b"".join(self._pieces))
                self._pieces, self._piece_size = [], 0
            while self._pending:
                self._write_head()
            if self._out is not None:
                self._emit(self._stream.finish())
        except BaseException:
            self.abort()
            raise
        self._shutdown(cancel=False)
        if self._cache is not None:
            self._cache.prune()

    def abort(self) -> None:
        """Stop after an error elsewhere; output is discarded."""
        self._pieces, self._piece_size = [], 0
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        self._shutdown(cancel=True)

    # -- blocks -----------------------------------------------------------

    def _block(self, data: bytes) -> None:
        self.stats.blocks += 1
        self.tar_sha256.update(data)
        if self._tar_out is not None:
            self._tar_out.write(data)
        if self._out is None:
            if self._progress is not None:
                self._progress(len(data))
            return
        assert self._pool is not None
        # Digest, cache lookup, compression and cache write all run in a worker,
        # in parallel with the composition of the next blocks.
        future = self._pool.submit(encode_block, data, self.block_size, self._cache)
        self._pending.append((len(data), future))
        while self._pending and self._pending[0][1].done():
            self._write_head()
        while len(self._pending) > self._max_pending:
            self._write_head()

    def _write_head(self) -> None:
        size, future = self._pending[0]
        try:
            block, reused = future.result()
        except MemoryError:
            raise CompressionError(
                "out of memory compressing a block; use fewer --jobs or a smaller --xz-block-size"
            ) from None
        self._pending.popleft()
        if reused:
            self.stats.reused += 1
        else:
            self.stats.compressed += 1
        self._emit(self._stream.add(block))
        if self._progress is not None:
            self._progress(size)

    def _emit(self, data: bytes) -> None:
        if self._out is not None and data:
            self._out.write(data)
            self.xz_sha256.update(data)
            self.xz_size += len(data)

    # -- workers ----------------------------------------------------------

    def _start_pool(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.jobs, thread_name_prefix="xz-block"
        )

    def _shutdown(self, cancel: bool) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
            self._pool = None


def xz_multiblock(
    data: bytes, block_size: int, jobs: int = 1, cache: BlockCache | None = None
) -> bytes:
    """``data`` as multi-block xz, in memory (for tests and small inputs)."""
    import io

    out = io.BytesIO()
    sink = ParallelXzSink(out, block_size, jobs, cache=cache)
    try:
        sink.write(data)
    except BaseException:
        sink.abort()
        raise
    sink.close()
    return out.getvalue()
