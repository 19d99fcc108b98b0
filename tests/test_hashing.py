"""The one file-hashing helper, and the error wording each caller keeps."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hats import hashing
from hats.attestation import cli as attestation_cli
from hats.attestation import measure
from hats.errors import HatsError
from hats.image import sums
from hats.packaging import fetch
from hats.stage1 import simulate_cli as stage1_cli

# FIPS 180-2 appendix B.1: SHA-256("abc").
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_fips_180_abc_vector(tmp_path: Path) -> None:
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    assert hashing.file_sha256(path) == ABC_SHA256
    assert hashing.file_sha256(str(path)) == ABC_SHA256
    assert hashing.file_sha256_sized(path) == (ABC_SHA256, 3)


def test_files_longer_than_one_chunk_hash_whole(tmp_path: Path) -> None:
    data = bytes(range(256)) * (hashing.CHUNK // 256) + b"tail"
    path = tmp_path / "big"
    path.write_bytes(data)
    assert hashing.file_sha256_sized(path) == (hashlib.sha256(data).hexdigest(), len(data))


def test_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        hashing.file_sha256(tmp_path / "missing")


def test_callers_share_the_helper(tmp_path: Path) -> None:
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    assert fetch.sha256_file(path) == ABC_SHA256
    assert sums.file_sha256(path) == ABC_SHA256
    assert measure.file_sha256(path) == ABC_SHA256
    assert attestation_cli._file_sha256(str(path)) == ABC_SHA256
    assert stage1_cli._file_sha256(str(path)) == bytes.fromhex(ABC_SHA256)


def test_callers_keep_their_one_line_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(sums.SumsError, match=r"missing: no such file$"):
        sums.file_sha256(missing)
    with pytest.raises(measure.MeasureError, match=r"missing: cannot read initrd: No such file"):
        measure.file_sha256(missing, "initrd")
    with pytest.raises(HatsError, match=r"missing: cannot read: No such file or directory$"):
        attestation_cli._file_sha256(str(missing))
    with pytest.raises(HatsError, match=r"missing: cannot read: No such file or directory$"):
        stage1_cli._file_sha256(str(missing))
    with pytest.raises(sums.SumsError, match=r": cannot read: Is a directory$"):
        sums.file_sha256(tmp_path)
