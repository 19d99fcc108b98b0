"""Decompress an ``.xz`` stream while it arrives: block by block in parallel, or as one stream.

Rules:

- **Splitting** (:class:`XzSplitter`, pure): the bytes are parsed as they
  come: the stream header, then block headers. A block whose header records
  its compressed and uncompressed sizes (every block of ``xz -T2``,
  ``--xz-block-size`` images, :mod:`hats.archive.xzparallel`) is cut out
  whole as soon as its last byte has arrived and becomes a
  :class:`BlockTask`. If the *first* block's header lacks either size (the
  single-block ``xz -T1`` reference images), the whole stream is passed on
  to one streaming decoder instead (``sequential`` mode). In ``parallel``
  mode a later block without sizes is an error.
- **Checking a block**: a :class:`BlockTask` is a complete one-block
  ``.xz`` stream: the original stream header, the block as received (header,
  data, padding, check) and a one-record index and footer we write for it.
  liblzma decodes it (:func:`decode_block`) and so verifies, in C, the block
  header's CRC32, the filter chain, both recorded sizes and the block's
  check (CRC32, CRC64 or SHA-256, as the stream header says) — Python has no
  CRC64 of its own, and a raw LZMA2 decoder would verify none of these.
- **The end**: the index must list exactly the blocks seen (unpadded and
  uncompressed sizes), with zero padding and a good CRC32; the footer's
  CRC32, backward size and flags must match; nothing may follow the
  footer (no stream padding, no second stream). In ``sequential`` mode
  liblzma checks the same and trailing bytes are refused too.
- **Bounds** (hostile input): a block may claim at most
  :data:`MAX_BLOCK_UNCOMPRESSED` bytes and hold at most
  ``block_buffer_bound`` of that; every decoder runs under ``memlimit``;
  decompressed output is handed out in pieces (at most 1 MiB in sequential
  mode, one block in parallel mode) so a consumer can apply back-pressure;
  :class:`XzDecoder` keeps at most ``2 × workers`` blocks and
  :data:`IN_FLIGHT_BYTES` of declared output in flight (at least one
  block). Every failure is one :class:`XzDecodeError` line with the byte
  offset; truncation is reported by :meth:`XzDecoder.finish`, never a wait.
- **Threads**: block tasks run on a thread pool: liblzma releases the GIL,
  so the blocks use every CPU while the caller keeps hashing, parsing and
  unpacking. Output comes out in stream order.
"""

from __future__ import annotations

import collections
import concurrent.futures
import lzma
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from hats.archive import xzformat
from hats.errors import HatsError

#: The most a block may claim to decompress to (``xzparallel.MAX_BLOCK_SIZE``).
MAX_BLOCK_UNCOMPRESSED = 256 << 20
#: Declared output of the blocks in flight (queued, decoding, or done but not handed out).
IN_FLIGHT_BYTES = 64 << 20
#: Largest piece of output in sequential mode.
PIECE = 1 << 20
#: The decoders' memory limit (a dictionary larger than this is refused).
MEMLIMIT = 128 << 20
_CHECK_SIZES = {0x00: 0, 0x01: 4, 0x04: 8, 0x0A: 32}
_STREAM_HEADER = xzformat.STREAM_HEADER_SIZE
_FOOTER = 12
_TAIL_SLACK = 64

Mode = Literal["parallel", "sequential"]


class XzDecodeError(HatsError):
    """The bytes are not a valid ``.xz`` stream (or it is truncated, or too large to decode)."""


@dataclass(frozen=True)
class BlockTask:
    """One block to decode: a self-contained one-block ``.xz`` stream."""

    number: int
    offset: int
    stream: bytes
    uncompressed_size: int
    unpadded_size: int


def _footer(index_size: int, flags: bytes) -> bytes:
    fields = struct.pack("<I", index_size // 4 - 1) + flags
    return struct.pack("<I", zlib.crc32(fields)) + fields + xzformat.FOOTER_MAGIC


def decode_block(task: BlockTask, memlimit: int = MEMLIMIT) -> bytes:
    """The block's bytes, verified by liblzma (header CRC32, sizes, check); else XzDecodeError."""
    where = f"block {task.number} at byte {task.offset}"
    decoder = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=memlimit)
    try:
        out = decoder.decompress(task.stream, task.uncompressed_size + 1)
    except lzma.LZMAError as exc:
        raise XzDecodeError(f".xz {where}: {exc}") from None
    if not decoder.eof or len(out) != task.uncompressed_size or decoder.unused_data:
        raise XzDecodeError(
            f".xz {where}: decodes to {len(out)} bytes, its header says {task.uncompressed_size}"
        )
    return out


class XzSplitter:
    """Sans-I/O: ``.xz`` bytes in, :class:`BlockTask` s (or pass-through bytes) out.

    :meth:`feed` returns, in order, the blocks completed by the new bytes, or
    in sequential mode the bytes themselves (the first call in that mode
    returns everything received so far). :meth:`finish` checks the index and
    footer (parallel mode) and that the stream is complete.
    """

    def __init__(self) -> None:
        self.mode: Mode | None = None
        self._buffer = bytearray()
        self._offset = 0  # stream offset of _buffer[0]
        self._flags = b""
        self._check_size = 0
        self._header = b""
        self._records: list[tuple[int, int]] = []
        self._tail: bytearray | None = None  # index and footer, once the index started
        self._index_at = 0
        self._finished = False

    @property
    def blocks(self) -> int:
        return len(self._records)

    def feed(self, data: bytes) -> list[BlockTask | bytes]:
        if self._finished:
            raise XzDecodeError(".xz: data after the end of the stream")
        if self.mode == "sequential":
            return [data] if data else []
        if self._tail is not None:
            self._add_tail(data)
            return []
        self._buffer += data
        out: list[BlockTask | bytes] = []
        while self._tail is None:
            item = self._step()
            if item is None:
                break
            out.append(item)
            if isinstance(item, bytes):  # the switch to sequential mode
                break
        return out

    def _add_tail(self, data: bytes) -> None:
        assert self._tail is not None
        self._tail += data
        limit = 1 + 9 + 18 * len(self._records) + 3 + 4 + _FOOTER + _TAIL_SLACK
        if len(self._tail) > limit:
            raise XzDecodeError(
                f".xz: the index at byte {self._index_at} is followed by more data than an index"
                " and footer can hold"
            )

    def _take(self, size: int) -> bytes:
        chunk = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._offset += size
        return chunk

    def _step(self) -> BlockTask | bytes | None:
        """One element out of the buffer, or None when more bytes are needed."""
        if not self._header:
            if len(self._buffer) < _STREAM_HEADER:
                return None
            self._read_stream_header(self._take(_STREAM_HEADER))
            return self._step()
        if not self._buffer:
            return None
        if self._buffer[0] == 0:  # the index indicator where a block header would be
            self._tail = bytearray()
            self._index_at = self._offset
            self._add_tail(self._take(len(self._buffer)))
            return None
        header_size = (self._buffer[0] + 1) * 4
        if len(self._buffer) < header_size:
            return None
        sizes = self._block_sizes(bytes(self._buffer[:header_size]))
        if sizes is None:
            if self._records:
                raise XzDecodeError(
                    f".xz block {len(self._records) + 1} at byte {self._offset}: its header does"
                    " not record its sizes (the blocks before it did)"
                )
            self.mode = "sequential"
            everything = self._header + bytes(self._buffer)
            self._buffer.clear()
            return everything
        self.mode = "parallel"
        compressed, uncompressed = sizes
        total = header_size + compressed + (-compressed % 4) + self._check_size
        if len(self._buffer) < total:
            return None
        offset = self._offset
        block = self._take(total)
        unpadded = header_size + compressed + self._check_size
        self._records.append((unpadded, uncompressed))
        idx = xzformat.index([(unpadded, uncompressed)])
        stream = b"".join((self._header, block, idx, _footer(len(idx), self._flags)))
        return BlockTask(len(self._records), offset, stream, uncompressed, unpadded)

    def _read_stream_header(self, header: bytes) -> None:
        if not header.startswith(xzformat.STREAM_MAGIC):
            raise XzDecodeError(".xz: not an .xz stream (bad magic at byte 0)")
        flags = header[6:8]
        if struct.pack("<I", zlib.crc32(flags)) != header[8:12]:
            raise XzDecodeError(".xz: stream header CRC32 mismatch (byte 8)")
        if flags[0] != 0 or flags[1] not in _CHECK_SIZES:
            raise XzDecodeError(f".xz: unsupported stream flags {flags.hex()} (byte 6)")
        self._flags = flags
        self._check_size = _CHECK_SIZES[flags[1]]
        self._header = header

    def _block_sizes(self, header: bytes) -> tuple[int, int] | None:
        """(compressed, uncompressed) recorded in a block header, None when either is not."""
        where = f".xz block {len(self._records) + 1} at byte {self._offset}"
        if struct.pack("<I", zlib.crc32(header[:-4])) != header[-4:]:
            raise XzDecodeError(f"{where}: header CRC32 mismatch")
        flags = header[1]
        if flags & 0x3C:
            raise XzDecodeError(f"{where}: reserved header flags are set")
        if flags & 0xC0 != 0xC0:
            return None
        try:
            compressed, pos = xzformat.decode_vli(header, 2)
            uncompressed, _ = xzformat.decode_vli(header, pos)
        except xzformat.XzFormatError as exc:
            raise XzDecodeError(f"{where}: header sizes: {exc}") from None
        if uncompressed > MAX_BLOCK_UNCOMPRESSED:
            raise XzDecodeError(
                f"{where}: claims {uncompressed} bytes, more than the {MAX_BLOCK_UNCOMPRESSED}"
                " a block may hold"
            )
        if not 0 < compressed <= xzformat.block_buffer_bound(uncompressed):
            raise XzDecodeError(
                f"{where}: compressed size {compressed} is impossible for {uncompressed} bytes"
            )
        return compressed, uncompressed

    def finish(self) -> None:
        """The stream ended here: check it is complete (index, footer, nothing after)."""
        if self._finished:
            return
        self._finished = True
        if self.mode == "sequential":
            return
        if self._tail is None:
            what = "its stream header" if not self._header else "a block or its index"
            raise XzDecodeError(f".xz: truncated at byte {self._offset}, in {what}")
        self._check_tail(bytes(self._tail))

    def _check_tail(self, tail: bytes) -> None:
        where = f".xz index at byte {self._index_at}"
        if len(tail) < _FOOTER + 8:
            raise XzDecodeError(f"{where}: truncated (index or footer missing)")
        footer = tail[-_FOOTER:]
        if footer[10:] != xzformat.FOOTER_MAGIC or footer[8:10] != self._flags:
            raise XzDecodeError(f"{where}: bad stream footer (magic or flags)")
        if struct.pack("<I", zlib.crc32(footer[4:10])) != footer[:4]:
            raise XzDecodeError(f"{where}: stream footer CRC32 mismatch")
        (backward,) = struct.unpack("<I", footer[4:8])
        index_bytes = tail[:-_FOOTER]
        if (backward + 1) * 4 != len(index_bytes):
            raise XzDecodeError(
                f"{where}: the footer's index size {(backward + 1) * 4} is not the"
                f" {len(index_bytes)} bytes between the blocks and the footer"
            )
        if index_bytes != xzformat.index(self._records):
            raise XzDecodeError(
                f"{where}: the index does not list the {len(self._records)} block(s) received"
                " (sizes, padding or CRC32)"
            )


class XzDecoder:
    """Decompress ``.xz`` bytes fed in pieces; decompressed pieces out, in order.

    ``feed`` and ``finish`` are generators: iterate them to the end. They
    block only on the decoding of blocks already handed to the pool (never
    on input). Call :meth:`close` when done (or on failure).
    """

    def __init__(
        self,
        workers: int,
        *,
        memlimit: int = MEMLIMIT,
        in_flight_bytes: int = IN_FLIGHT_BYTES,
        piece: int = PIECE,
    ) -> None:
        self.workers = max(1, workers)
        self.memlimit = memlimit
        self.in_flight_bytes = in_flight_bytes
        self.piece = piece
        self.splitter = XzSplitter()
        self.decode_seconds = 0.0  # summed over threads
        self.output_bytes = 0
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._flight: collections.deque[tuple[int, concurrent.futures.Future[bytes]]] = (
            collections.deque()
        )
        self._stream: lzma.LZMADecompressor | None = None
        self._sequential_eof = False
        self._lock = threading.Lock()

    @property
    def mode(self) -> Mode | None:
        return self.splitter.mode

    @property
    def blocks(self) -> int:
        return self.splitter.blocks

    def feed(self, data: bytes) -> Iterator[bytes]:
        for item in self.splitter.feed(data):
            if isinstance(item, BlockTask):
                yield from self._submit(item)
            else:
                yield from self._sequential(item)

    def finish(self) -> Iterator[bytes]:
        self.splitter.finish()
        if self.mode == "sequential":
            if not self._sequential_eof:
                raise XzDecodeError(".xz: truncated (the stream ends before its footer)")
            return
        while self._flight:
            yield self._pop()

    def close(self) -> None:
        for _, future in self._flight:
            future.cancel()
        self._flight.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> XzDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- parallel --------------------------------------------------------

    def _timed_decode(self, task: BlockTask) -> bytes:
        started = time.monotonic()
        try:
            return decode_block(task, self.memlimit)
        finally:
            with self._lock:
                self.decode_seconds += time.monotonic() - started

    def _pop(self) -> bytes:
        _, future = self._flight.popleft()
        out = future.result()
        self.output_bytes += len(out)
        return out

    def _submit(self, task: BlockTask) -> Iterator[bytes]:
        while self._flight and (
            len(self._flight) >= 2 * self.workers
            or sum(size for size, _ in self._flight) + task.uncompressed_size > self.in_flight_bytes
        ):
            yield self._pop()
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self.workers, thread_name_prefix="xz-block"
            )
        self._flight.append((task.uncompressed_size, self._pool.submit(self._timed_decode, task)))
        while self._flight and self._flight[0][1].done():
            yield self._pop()

    # -- sequential ------------------------------------------------------

    def _sequential(self, data: bytes) -> Iterator[bytes]:
        if self._stream is None:
            self._stream = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=self.memlimit)
        decoder = self._stream
        while True:
            if self._sequential_eof:
                if data or decoder.unused_data:
                    raise XzDecodeError(".xz: data after the end of the stream")
                return
            started = time.monotonic()
            try:
                out = decoder.decompress(data, self.piece)
            except lzma.LZMAError as exc:
                raise XzDecodeError(f".xz: {exc}") from None
            finally:
                self.decode_seconds += time.monotonic() - started
            data = b""
            self._sequential_eof = decoder.eof
            if out:
                self.output_bytes += len(out)
                yield out
            elif decoder.needs_input and not self._sequential_eof:
                return


def decompress(data: bytes, workers: int = 2, *, feed_size: int = 1 << 20) -> bytes:
    """All of ``data`` decompressed through :class:`XzDecoder` (fed in ``feed_size`` pieces)."""
    out: list[bytes] = []
    with XzDecoder(workers) as decoder:
        for start in range(0, len(data), feed_size):
            out.extend(decoder.feed(data[start : start + feed_size]))
        out.extend(decoder.finish())
    return b"".join(out)
