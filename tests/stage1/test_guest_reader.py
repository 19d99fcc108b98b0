"""Stage1's image pipeline: chunks as gRPC delivers them → SHA-256 → .xz → unpacker.

The digest must be SHA-256 of exactly the bytes received (hashlib of the
whole image), the tar bytes what liblzma/xz decompress, and every failure a
one-line Stage1Error or the unpacker's own error — never a hang.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import lzma
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stage1_support import Spec, archive

from hats.archive.tarstream import Readable
from hats.archive.xzparallel import ParallelXzSink
from hats.stage1.errors import Stage1Error, UnpackError
from hats.stage1.pipeline import Channel, ImagePipeline, PipelineResult
from hats.stage1.unpack import UnpackReport

DATA = b"".join(b"line %d of the system image\n" % i for i in range(20000))
SINGLE = lzma.compress(DATA, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6)
MULTI = subprocess.run(
    ["xz", "-T2", "--block-size=65536", "-6", "-c"], input=DATA, capture_output=True, check=True
).stdout


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


class Collect:
    """A consumer that reads everything (or ``limit`` bytes) instead of unpacking."""

    def __init__(self, limit: int | None = None, fail: Exception | None = None) -> None:
        self.data = b""
        self.limit = limit
        self.fail = fail

    def __call__(self, source: Readable) -> UnpackReport:
        if self.fail is not None:
            source.read(100)
            raise self.fail
        self.data = source.read() if self.limit is None else source.read(self.limit)
        return UnpackReport()


def run(chunks: list[bytes], consumer: Collect, tmp: Path, workers: int = 2) -> PipelineResult:
    with ImagePipeline(tmp, workers=workers, consumer=consumer, queue_pieces=2) as pipeline:
        for chunk in chunks:
            pipeline.feed(chunk)
        return pipeline.finish()


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([SINGLE, MULTI]), st.lists(st.integers(0, 1 << 20), max_size=12))
def test_any_chunking_gives_the_tar_bytes_and_the_digest_of_the_bytes_received(
    image: bytes, cuts: list[int]
) -> None:
    consumer = Collect()
    result = run(_split(image, cuts), consumer, Path("/nonexistent"))
    assert consumer.data == DATA
    assert result.sha256 == hashlib.sha256(image).digest()
    assert result.size == len(image)
    assert result.tar_bytes == len(DATA)
    assert result.mode == ("parallel" if image is MULTI else "sequential")
    assert result.blocks == (-(-len(DATA) // 65536) if image is MULTI else 0)


def test_truncated_image_is_a_stage1_error() -> None:
    with pytest.raises(Stage1Error, match=r"^system image: \.xz: truncated"):
        run([SINGLE[: len(SINGLE) // 2]], Collect(), Path("/nonexistent"))
    with pytest.raises(Stage1Error, match=r"^system image: \.xz: truncated"):
        run([MULTI[: len(MULTI) // 2]], Collect(), Path("/nonexistent"))


def test_corrupt_block_is_a_stage1_error_naming_the_block() -> None:
    bad = bytearray(MULTI)
    bad[len(bad) // 2] ^= 0x10
    with pytest.raises(Stage1Error, match=r"^system image: \.xz block \d+ at byte \d+: "):
        run([bytes(bad)], Collect(), Path("/nonexistent"))


def test_an_unpacker_failure_stops_the_feeding_without_a_hang() -> None:
    """The unpacker fails after 100 bytes; the feeder (queue of 2) must not block on it."""
    failure = UnpackError("system image: member 'x': refused")
    many = [SINGLE[i : i + 1000] for i in range(0, len(SINGLE), 1000)]
    done = threading.Event()
    outcome: list[BaseException] = []

    def target() -> None:
        try:
            run(many, Collect(fail=failure), Path("/nonexistent"), workers=1)
        except BaseException as exc:
            outcome.append(exc)
        done.set()

    threading.Thread(target=target, daemon=True).start()
    assert done.wait(30), "the pipeline hung after the unpacker failed"
    assert outcome == [failure]


def test_a_consumer_that_stops_early_still_gets_the_container_checked() -> None:
    """The tar ends before the decompressed data does: the rest is decoded and checked."""
    consumer = Collect(limit=1000)
    result = run([MULTI], consumer, Path("/nonexistent"))
    assert consumer.data == DATA[:1000]
    assert result.tar_bytes == len(DATA)
    bad = bytearray(MULTI)
    bad[-30] ^= 1  # in the index
    with pytest.raises(Stage1Error, match="index"):
        run([bytes(bad)], Collect(limit=1000), Path("/nonexistent"))


def test_the_image_is_unpacked_into_the_staging_root(tmp_path: Path) -> None:
    tar = archive(
        Spec("etc/hostname", data=b"guest\n"),
        Spec("var/", "dir", mode=0o755),
        Spec("a/b/c", data=b"x"),
    )
    out = io.BytesIO()
    sink = ParallelXzSink(out, 65536, jobs=1)
    sink.write(tar)
    sink.close()
    image = out.getvalue()
    with ImagePipeline(tmp_path / "root", workers=2) as pipeline:
        for chunk in _split(image, [10, 100, 500]):
            pipeline.feed(chunk)
        result = pipeline.finish()
    assert result.sha256 == hashlib.sha256(image).digest()
    assert (tmp_path / "root/etc/hostname").read_bytes() == b"guest\n"
    assert (tmp_path / "root/a/b/c").read_bytes() == b"x"
    assert result.report.files == 2
    assert result.mode == "parallel"


def test_channel_drops_pieces_after_the_consumer_is_done() -> None:
    channel = Channel(1)
    channel.put(b"a")
    channel.consumer_done()
    channel.put(b"b")  # would block on a full queue otherwise
    channel.put(b"c")


def test_a_launcher_refusal_is_one_escaped_line(tmp_path: Path) -> None:
    # The launcher is not trusted: its error details reach the console only escaped.
    from concurrent import futures

    import grpc

    from hats.pb.oak.containers import interfaces_pb2_grpc
    from hats.stage1 import guest

    class Refusing(interfaces_pb2_grpc.LauncherServicer):
        def GetOakSystemImage(  # type: ignore[override]
            self, request: object, context: grpc.ServicerContext
        ) -> Iterator[object]:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no image\n\x1b[2Jforged line")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    interfaces_pb2_grpc.add_LauncherServicer_to_server(Refusing(), server)
    sock = tmp_path / "l.sock"
    server.add_insecure_port(f"unix:{sock}")
    server.start()
    try:
        with pytest.raises(Stage1Error) as info:
            guest._stream_image(f"unix:{sock}", tmp_path / "rootfs")
    finally:
        server.stop(None)
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message
    assert message.endswith(r"no image\x0a\x1b[2Jforged line")
