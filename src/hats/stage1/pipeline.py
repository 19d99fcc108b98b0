"""Stage1's image pipeline: chunks → SHA-256 → ``.xz`` decoder → tar unpacker, as they arrive.

The caller (:mod:`hats.stage1.guest`, a thin shell around the gRPC stream)
hands every chunk of ``GetOakSystemImage`` to :meth:`ImagePipeline.feed` the
moment it arrives and calls :meth:`ImagePipeline.finish` after the last one.

Rules:

- **The measurement is over exactly the bytes received**: each chunk goes
  into SHA-256 first, unchanged, then to the decoder. :meth:`finish` returns
  the digest only once the stream has ended, the ``.xz`` container has been
  checked to its footer (every block's check, the index) and the unpacker has
  read the whole tar; there is no digest of a partial or a bad image.
- **Staging, not buffering** (choice (a) of issue ``[boot-fast]``): the tar
  is unpacked while the image arrives, into ``dest`` — the fresh tmpfs that
  becomes the root only when stage1 switches to it. Nothing in it is used
  before the digest is final: the DICE event is made from the final digest,
  then the after-unpack steps run, then ``switch_root``. If the stream fails,
  the container is malformed or the unpacker refuses an entry, stage1 stops
  (PID 1 exits, the kernel panics, the VM stops) and the half-written staging
  root in RAM goes with it. Unpacking early gives a hostile launcher nothing
  it did not have: it can send any bytes anyway, with a good digest of them,
  and those bytes are unpacked by the same rules
  (:mod:`hats.stage1.unpack`: confined to ``dest``, bounded by the tmpfs
  size) whether they were buffered first or not. Buffering instead would
  hold the whole compressed image in RAM (51 MB for ours) next to the
  unpacked tree and serialise fetching, decompressing and unpacking.
- **Parallel blocks**: a multi-block image (``--xz-block-size``) is decoded
  by ``workers`` threads (the guest's vCPUs), in order
  (:mod:`hats.archive.xzdecode`); a single-block reference image by one
  streaming decoder on the feeding thread. Either way the unpacker runs on a
  thread of its own, fed through a bounded queue of decompressed pieces
  (back-pressure: a full queue slows the feeder, which slows gRPC's flow
  control), so fetching + hashing + decoding overlap with unpacking.
- **Failures**: a bad container is a :class:`~hats.stage1.errors.Stage1Error`
  (``system image: …``, one line); the unpacker's own errors pass through
  unchanged. A failure on either side stops the other (the unpacker is never
  left waiting on a queue, the feeder never on a full one).
"""

from __future__ import annotations

import collections
import hashlib
import io
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hats.archive.tarstream import Readable
from hats.archive.xzdecode import XzDecodeError, XzDecoder
from hats.stage1.errors import Stage1Error
from hats.stage1.unpack import UnpackReport, unpack_image

#: Decompressed pieces waiting for the unpacker (one piece ≤ 1 MiB or one block).
QUEUE_PIECES = 4

Consumer = Callable[[Readable], UnpackReport]


class _Stopped(Exception):
    """The other side of the channel failed; its error is reported by the pipeline."""


class Channel:
    """A bounded queue of byte pieces from one producer to one consumer thread.

    ``close()`` ends the data; ``fail()`` (from either side) wakes both and
    makes every later ``put``/``get`` raise :class:`_Stopped`. After the
    consumer is ``done`` (it stopped reading, e.g. at the tar's end), ``put``
    drops pieces.
    """

    def __init__(self, max_pieces: int = QUEUE_PIECES) -> None:
        self._pieces: collections.deque[bytes] = collections.deque()
        self._max = max_pieces
        self._cond = threading.Condition()
        self._closed = False
        self._failed = False
        self._done = False
        self.waited = 0.0  # consumer seconds spent waiting for data

    def put(self, piece: bytes) -> None:
        with self._cond:
            while len(self._pieces) >= self._max and not (self._failed or self._done):
                self._cond.wait()
            if self._failed:
                raise _Stopped
            if not self._done:
                self._pieces.append(piece)
                self._cond.notify_all()

    def get(self) -> bytes:
        """The next piece, ``b""`` at the end of the data."""
        with self._cond:
            started = time.monotonic()
            while not self._pieces and not (self._closed or self._failed):
                self._cond.wait()
            self.waited += time.monotonic() - started
            if self._failed:
                raise _Stopped
            if not self._pieces:
                return b""
            piece = self._pieces.popleft()
            self._cond.notify_all()
            return piece

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def fail(self) -> None:
        with self._cond:
            self._failed = True
            self._pieces.clear()
            self._cond.notify_all()

    def consumer_done(self) -> None:
        with self._cond:
            self._done = True
            self._pieces.clear()
            self._cond.notify_all()


class ChannelReader(io.RawIOBase):
    """The consumer's end of a :class:`Channel` as a readable stream."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._piece = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._piece:
            self._piece = memoryview(self._channel.get())
            if not self._piece:
                return 0
        size = min(len(buffer), len(self._piece))
        buffer[:size] = self._piece[:size]
        self._piece = self._piece[size:]
        return size


@dataclass
class PipelineResult:
    """What the pipeline measured and did."""

    sha256: bytes
    size: int
    report: UnpackReport
    mode: str
    blocks: int
    workers: int
    tar_bytes: int
    digest_seconds: float
    decompress_seconds: float
    unpack_seconds: float
    unpack_waited: float
    tail_seconds: float
    extra: dict[str, float] = field(default_factory=dict)


class ImagePipeline:
    """One image: :meth:`feed` every chunk as it arrives, then :meth:`finish` (see the module)."""

    def __init__(
        self,
        dest: Path,
        *,
        workers: int,
        mknod: bool = False,
        consumer: Consumer | None = None,
        queue_pieces: int = QUEUE_PIECES,
    ) -> None:
        self._digest = hashlib.sha256()
        self._decoder = XzDecoder(workers)
        self._channel = Channel(queue_pieces)
        self._size = 0
        self._digest_seconds = 0.0
        self._report: UnpackReport | None = None
        self._error: BaseException | None = None
        self._unpack_seconds = 0.0
        self._finished = False
        self._consume: Consumer = consumer or (
            lambda source: unpack_image(source, dest, mknod=mknod)
        )
        self._thread = threading.Thread(target=self._unpack, name="stage1-unpack", daemon=True)
        self._thread.start()

    @property
    def size(self) -> int:
        return self._size

    def _unpack(self) -> None:
        started = time.monotonic()
        try:
            self._report = self._consume(io.BufferedReader(ChannelReader(self._channel), 1 << 20))
            self._channel.consumer_done()
        except _Stopped:
            pass
        except BaseException as exc:  # reported by the feeding thread
            self._error = exc
            self._channel.fail()
        finally:
            self._unpack_seconds = time.monotonic() - started

    def _raise_unpack_error(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error
        raise Stage1Error("system image: the unpacker stopped")  # pragma: no cover

    def _push(self, pieces: Iterable[bytes]) -> None:
        try:
            for piece in pieces:
                self._channel.put(piece)
        except _Stopped:
            self._decoder.close()
            self._raise_unpack_error()
        except XzDecodeError as exc:
            self.abort()
            raise Stage1Error(f"system image: {exc}") from None

    def feed(self, chunk: bytes) -> None:
        """Hash ``chunk`` (exactly as received), then decode and queue what it completes."""
        if self._finished:
            raise Stage1Error("system image: data after the end")  # pragma: no cover
        started = time.monotonic()
        self._digest.update(chunk)
        self._digest_seconds += time.monotonic() - started
        self._size += len(chunk)
        self._push(self._decoder.feed(chunk))

    def finish(self) -> PipelineResult:
        """The stream ended: drain, check the container's end, wait for the unpacker."""
        started = time.monotonic()
        self._push(self._decoder.finish())
        self._finished = True
        self._channel.close()
        self._thread.join()
        self._decoder.close()
        if self._error is not None:
            raise self._error
        if self._report is None:  # pragma: no cover - the thread always sets one or the other
            raise Stage1Error("system image: the unpacker stopped")
        if self._decoder.output_bytes == 0:
            raise Stage1Error("system image: the .xz stream holds no data")
        return PipelineResult(
            sha256=self._digest.digest(),
            size=self._size,
            report=self._report,
            mode=self._decoder.mode or "empty",
            blocks=self._decoder.blocks,
            workers=self._decoder.workers,
            tar_bytes=self._decoder.output_bytes,
            digest_seconds=self._digest_seconds,
            decompress_seconds=self._decoder.decode_seconds,
            unpack_seconds=self._unpack_seconds - self._channel.waited,
            unpack_waited=self._channel.waited,
            tail_seconds=time.monotonic() - started,
        )

    def abort(self) -> None:
        """Stop both sides (after a failure of the stream); idempotent."""
        self._finished = True
        self._channel.fail()
        self._decoder.close()
        self._thread.join()

    def __enter__(self) -> ImagePipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._finished:
            self.abort()
