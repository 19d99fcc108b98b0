"""Inputs and the real ``xz`` for the multi-block xz tests."""

from __future__ import annotations

import random
import re
import shutil
import subprocess

import pytest


def _xz_version() -> str | None:
    if shutil.which("xz") is None:
        return None
    out = subprocess.run(["xz", "--version"], capture_output=True, text=True).stdout
    match = re.search(r"liblzma (\d+\.\d+)", out)
    return match.group(1) if match else None


needs_xz = pytest.mark.skipif(
    _xz_version() != "5.4", reason="byte identity is promised for xz/liblzma 5.4.x"
)


def xz_cli(data: bytes, block_size: int, threads: int = 2) -> bytes:
    return subprocess.run(
        ["xz", f"-T{threads}", f"--block-size={block_size}", "-6", "-c"],
        input=data,
        capture_output=True,
        check=True,
    ).stdout


def text(size: int, seed: int = 1) -> bytes:
    """Compressible, tar-like bytes: words, numbers, runs of zeros."""
    rnd = random.Random(seed)
    parts: list[bytes] = []
    total = 0
    while total < size:
        part = b"%s=%d\n" % (
            rnd.choice([b"usr/lib", b"etc/systemd", b"var"]),
            rnd.randrange(1 << 20),
        )
        if rnd.random() < 0.02:
            part += bytes(rnd.randrange(2048))
        parts.append(part)
        total += len(part)
    return b"".join(parts)[:size]


def noise(size: int, seed: int = 2) -> bytes:
    return random.Random(seed).randbytes(size)
