"""The guest stage1 reads the image from in-memory chunks as gRPC delivered them."""

from __future__ import annotations

import io
import itertools
import lzma
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hats.stage1.errors import Stage1Error
from hats.stage1.guest import _ChunkReader

DATA = b"".join(b"line %d of the system image\n" % i for i in range(20000))
SINGLE = lzma.compress(DATA, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6)
MULTI = subprocess.run(
    ["xz", "-T2", "--block-size=65536", "-6", "-c"], input=DATA, capture_output=True, check=True
).stdout


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([SINGLE, MULTI]), st.lists(st.integers(0, 1 << 20), max_size=12))
def test_any_chunking_gives_the_tar_bytes(image: bytes, cuts: list[int]) -> None:
    reader = io.BufferedReader(_ChunkReader(_split(image, cuts)), 4096)
    assert reader.read() == DATA


def test_truncated_image_is_an_error() -> None:
    reader = io.BufferedReader(_ChunkReader([SINGLE[: len(SINGLE) // 2]]))
    with pytest.raises(Stage1Error, match="truncated"):
        reader.read()
