"""Input detection, threaded decompression and the reference xz compression.

Rules:
- an input's format is detected from its first bytes, never from its name:
  xz (``FD 37 7A 58 5A 00``), gzip (``1F 8B``), zstd (``28 B5 2F FD``),
  bzip2 (``BZh``), otherwise a tar (a valid header checksum is required);
  directories are recognised as such;
- the reference compression is ``xz -T1``, preset 6, CRC64, one stream, one
  block: byte-identical to liblzma's single-threaded encoder, which Python's
  ``lzma`` uses. The promise holds for the same liblzma version (checked
  here with 5.4.1); a different liblzma may compress differently. The
  parallel multi-block mode (``--xz-block-size``) is
  :class:`hats.archive.xzparallel.ParallelXzSink`, with the same interface;
- decompression and compression each run in a thread of their own, fed
  through bounded queues, so reading the base, composing the tar and
  compressing overlap (liblzma, zlib, zstd and hashlib release the GIL) and
  memory stays bounded whatever the image size;
- decompression is bounded whatever the compression ratio (a few KB of bzip2
  can claim gigabytes): xz, bzip2 and gzip are decompressed in steps of at
  most :data:`OUTPUT_STEP` (1 MiB) of output with ``max_length``; zstd, whose
  Python binding has no such bound, is fed :data:`ZSTD_INPUT_STEP` (64) bytes
  at a time, and 64 bytes of zstd decode to at most 2 MiB (a 4-byte RLE block
  gives 128 KiB). With :data:`QUEUE_DEPTH` (8) chunks in flight, the
  decompressed data held in memory stays under about 16 MiB;
- decoder memory is capped too: an xz stream needing more than
  :data:`XZ_MEMLIMIT` (128 MiB; ``xz -9`` needs 65 MiB, the reference's
  ``-6`` 9 MiB) and a zstd frame with a window over
  :data:`ZSTD_MAX_WINDOW` (128 MiB, zstd's own default limit; ``--long=27``)
  are rejected as corrupt input rather than allocated.
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import queue
import threading
import time
import zlib
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from hats.archive import tarformat as tf
from hats.errors import HatsError

XZ_MAGIC = b"\xfd7zXZ\x00"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BZIP2_MAGIC = b"BZh"

XZ_PRESET = 6
QUEUE_DEPTH = 8
CHUNK = 1 << 20
#: Bytes handed to the compressing thread at a time, and how many may wait.
SINK_CHUNK = 4 << 20
SINK_QUEUE_DEPTH = 4
# Compressed input is read in pieces of this size; each is decompressed in
# bounded steps (below), whatever its ratio.
COMPRESSED_CHUNK = 128 << 10
#: Largest piece of output one decompression step yields (xz, bzip2, gzip).
OUTPUT_STEP = 1 << 20
#: Compressed bytes given to the zstd decoder at a time (output <= 2 MiB).
ZSTD_INPUT_STEP = 64
#: Memory the xz decoder may use (a larger dictionary is refused).
XZ_MEMLIMIT = 128 << 20
#: Largest zstd window accepted.
ZSTD_MAX_WINDOW = 128 << 20


class InputError(HatsError):
    """An input file is missing, unreadable or in an unknown format."""


def sniff_format(head: bytes) -> str | None:
    """The format the first bytes of a file show, or None when unknown."""
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(GZIP_MAGIC):
        return "gz"
    if head.startswith(ZSTD_MAGIC):
        return "zst"
    if head.startswith(BZIP2_MAGIC):
        return "bz2"
    if len(head) >= tf.BLOCK:
        try:
            tf.decode_header(head[: tf.BLOCK])
        except HatsError:
            return None
        return "tar"
    return None


def detect_format(path: Path) -> str:
    """Return ``dir``, ``tar``, ``xz``, ``gz``, ``zst`` or ``bz2`` for ``path``."""
    if path.is_dir():
        return "dir"
    try:
        with path.open("rb") as handle:
            head = handle.read(tf.BLOCK)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    fmt = sniff_format(head)
    if fmt is not None:
        return fmt
    if not head:
        raise InputError(f"{path}: file is empty")
    raise InputError(f"{path}: not a tar archive (nor xz, gzip, zstd or bzip2 compressed)")


def _new_stream(fmt: str) -> Any:
    if fmt == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT)
    if fmt == "gz":
        return zlib.decompressobj(wbits=47)
    if fmt == "bz2":
        return bz2.BZ2Decompressor()
    import zstandard

    return zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).decompressobj()


class _Decompressor:
    """Decompress one format in bounded steps; concatenated streams are read in turn.

    :meth:`feed` yields the output of the data given, in pieces of at most
    :data:`OUTPUT_STEP` bytes (2 MiB for zstd), whatever the compression
    ratio: nothing is decompressed ahead of the consumer.
    """

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self._stream = _new_stream(fmt)

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            if self._stream.eof:
                if self.fmt == "xz":
                    # xz allows NUL stream padding between and after streams.
                    data = data.lstrip(b"\x00")
                    if not data:
                        return
                self._stream = _new_stream(self.fmt)
            data = yield from self._run(data)

    def _run(self, data: bytes) -> Generator[bytes, None, bytes]:
        """Decompress ``data`` with the current stream; the input left after its end."""
        stream = self._stream
        if self.fmt == "zst":
            view = memoryview(data)
            for pos in range(0, len(view), ZSTD_INPUT_STEP):
                out = stream.decompress(view[pos : pos + ZSTD_INPUT_STEP])
                if out:
                    yield out
                if stream.eof:
                    return bytes(stream.unused_data) + bytes(view[pos + ZSTD_INPUT_STEP :])
            return b""
        if self.fmt == "gz":
            while True:
                out = stream.decompress(data, OUTPUT_STEP)
                if out:
                    yield out
                if stream.eof:
                    return bytes(stream.unused_data)
                before, data = len(data), stream.unconsumed_tail
                if not data and len(out) < OUTPUT_STEP:
                    return b""
                if not out and len(data) >= before:
                    raise zlib.error("the gzip decoder makes no progress")
        while True:  # xz, bzip2: input beyond max_length is buffered by the stream
            out = stream.decompress(data, OUTPUT_STEP)
            data = b""
            if out:
                yield out
            if stream.eof:
                return bytes(stream.unused_data)
            if stream.needs_input:
                return b""

    def finished(self) -> bool:
        return bool(self._stream.eof)


_END = object()


class _QueueReader:
    """A ``read(n)`` view over chunks produced by a worker thread."""

    def __init__(self, chunks: queue.Queue[object], source: str) -> None:
        self._chunks = chunks
        self._buf = b""
        self._pos = 0
        self._done = False
        self.source = source

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._buf) - self._pos < size):
            item = self._chunks.get()
            if item is _END:
                self._done = True
                break
            if isinstance(item, BaseException):
                self._done = True
                raise item
            assert isinstance(item, bytes)
            self._buf = self._buf[self._pos :] + item
            self._pos = 0
        if size < 0:
            size = len(self._buf) - self._pos
        data = self._buf[self._pos : self._pos + size]
        self._pos += len(data)
        return data


@contextmanager
def open_decompressed(path: Path) -> Iterator[_QueueReader | BinaryIO]:
    """Yield a reader of ``path``'s tar bytes, decompressing in a thread."""
    fmt = detect_format(path)
    if fmt == "dir":
        raise InputError(f"{path}: is a directory, not an archive")
    if fmt == "tar":
        with path.open("rb", buffering=CHUNK) as handle:
            yield handle
        return
    chunks: queue.Queue[object] = queue.Queue(QUEUE_DEPTH)
    stop = threading.Event()

    def work() -> None:
        decoder = _Decompressor(fmt)
        try:
            with path.open("rb") as handle:
                while not stop.is_set():
                    data = handle.read(COMPRESSED_CHUNK)
                    if not data:
                        break
                    for out in decoder.feed(data):
                        if out:
                            chunks.put(out)
            if not decoder.finished():
                raise InputError(f"{path}: {fmt} data is truncated")
            chunks.put(_END)
        except HatsError as exc:
            chunks.put(exc)
        except (lzma.LZMAError, zlib.error, OSError, EOFError, ValueError) as exc:
            chunks.put(InputError(f"{path}: corrupt {fmt} data: {exc}"))
        except Exception as exc:  # zstandard.ZstdError has no importable base here
            chunks.put(InputError(f"{path}: corrupt {fmt} data: {exc}"))

    worker = threading.Thread(target=work, name=f"decompress-{path.name}", daemon=True)
    worker.start()
    try:
        yield _QueueReader(chunks, str(path))
    finally:
        stop.set()
        # Drain so the worker is never blocked on a full queue.
        while worker.is_alive():
            with suppress(queue.Empty):
                chunks.get(timeout=0.05)
        worker.join()


@dataclass
class SinkStats:
    """Where the compressing thread's time goes (``bench/build_bench.py --profile``).

    Times are ``time.perf_counter`` instants or seconds; ``cpu`` is the
    compressing thread's own CPU time (``time.thread_time``).
    """

    chunks: int = 0  # hand-offs to the compressing thread
    tar_bytes: int = 0
    started: float = 0.0  # the thread started
    first_input: float | None = None  # the first chunk arrived
    finished: float | None = None  # the last compressed byte was written
    starved: float = 0.0  # seconds waiting for input after the first chunk
    producer_blocked: float = 0.0  # seconds ``write`` waited on a full queue
    cpu: float = 0.0


class XzSink:
    """Compress written bytes in a worker thread: the reference ``xz -T1 -6``.

    ``write`` batches small writes (tar headers are 512 bytes) into
    :data:`SINK_CHUNK` (4 MiB) pieces: each hand-off costs the compressing
    thread a few GIL acquisitions, so they are few. The writing thread hashes
    the tar and writes ``tar_out`` (optional: the uncompressed bytes as well);
    the compressing thread only compresses, hashes and writes the (small) xz
    output, since it is the one the build waits for. ``close`` flushes and
    returns; both digests are then available. ``stats`` tells where the
    compressing thread's time went.
    """

    def __init__(
        self,
        out: BinaryIO | None,
        tar_out: BinaryIO | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self._out = out
        self._tar_out = tar_out
        self._progress = progress
        self._pending: list[bytes] = []
        self._pending_size = 0
        self.tar_size = 0
        self.xz_size = 0
        self.tar_sha256 = hashlib.sha256()
        self.xz_sha256 = hashlib.sha256()
        self.stats = SinkStats(started=time.perf_counter())
        self._queue: queue.Queue[bytes | None] = queue.Queue(SINK_QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._aborted = threading.Event()
        self._thread = threading.Thread(target=self._work, name="xz-compress", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        compressor = lzma.LZMACompressor(
            format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=XZ_PRESET
        )
        stats = self.stats
        clock = time.perf_counter
        try:
            while True:
                waited = clock()
                chunk = self._queue.get()
                now = clock()
                if stats.first_input is None:
                    stats.first_input = now
                else:
                    stats.starved += now - waited
                if chunk is None:
                    if not self._aborted.is_set():
                        self._emit(compressor.flush())
                    return
                if self._aborted.is_set():
                    continue  # the output is discarded: don't compress what is queued
                stats.chunks += 1
                stats.tar_bytes += len(chunk)
                if self._out is not None:
                    self._emit(compressor.compress(chunk))
                if self._progress is not None:
                    self._progress(len(chunk))
        except BaseException as exc:
            self._error = exc
            while self._queue.get() is not None:
                pass
        finally:
            stats.finished = clock()
            stats.cpu = time.thread_time()

    def _emit(self, data: bytes) -> None:
        if data and self._out is not None:
            self.xz_sha256.update(data)
            self._out.write(data)
            self.xz_size += len(data)

    def _raise_pending_error(self) -> None:
        if self._error is not None:
            error = self._error
            if isinstance(error, OSError):
                raise HatsError(f"cannot write output: {error.strerror}") from None
            raise error

    def write(self, data: bytes) -> None:
        self.tar_size += len(data)
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= SINK_CHUNK:
            self._flush_pending()

    def _flush_pending(self) -> None:
        if self._pending:
            self._raise_pending_error()
            chunk = b"".join(self._pending)
            self._pending = []
            self._pending_size = 0
            waited = time.perf_counter()
            self._queue.put(chunk)
            self.stats.producer_blocked += time.perf_counter() - waited
            # Off the compressing thread: it is the one the build waits for.
            self.tar_sha256.update(chunk)
            if self._tar_out is not None:
                try:
                    self._tar_out.write(chunk)
                except OSError as exc:
                    raise HatsError(f"cannot write output: {exc.strerror}") from None

    def close(self) -> None:
        self._flush_pending()
        self._queue.put(None)
        self._thread.join()
        self._raise_pending_error()

    def abort(self) -> None:
        """Stop the worker after an error elsewhere (or a signal); output is discarded.

        Queued chunks are dropped, not compressed: the worker finishes at most
        the chunk it is compressing (one :data:`SINK_CHUNK`), so a stop is prompt.
        """
        self._pending = []
        self._aborted.set()
        if self._thread.is_alive():
            with suppress(queue.Empty):
                while True:
                    self._queue.get_nowait()
            self._queue.put(None)
            self._thread.join()


def xz_compress_file(src: Path, out: BinaryIO) -> tuple[str, int]:
    """Compress a whole file the reference way; return (sha256, size) of the xz."""
    sink = XzSink(out)
    try:
        with src.open("rb") as handle:
            while data := handle.read(CHUNK):
                sink.write(data)
    except BaseException:
        sink.abort()
        raise
    sink.close()
    return sink.xz_sha256.hexdigest(), sink.xz_size
