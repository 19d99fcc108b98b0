"""Incremental multi-block builds: the block cache, and ``hats image build --xz-block-size``."""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import random
import subprocess
import time
from pathlib import Path

import pytest
from image_support import Inputs
from xz_testdata import needs_xz, noise, text, xz_cli

from hats.archive.blockcache import MAGIC, BlockCache, BlockCacheError, default_block_cache_dir
from hats.archive.xzparallel import settings_id, xz_multiblock
from hats.keys.keygen import generate_key_pair
from suite_support import run_hats

KiB = 1 << 10
ROOT = Path(__file__).resolve().parents[2]


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*/*.xzblock"))


# -- the cache, in process ------------------------------------------------------


def test_same_bytes_with_and_without_the_cache_for_any_worker_count(tmp_path: Path) -> None:
    data = text(9 * 64 * KiB + 100, seed=11)
    plain = xz_multiblock(data, 64 * KiB, jobs=1)
    cache = BlockCache(tmp_path / "c")
    assert xz_multiblock(data, 64 * KiB, jobs=2, cache=cache) == plain
    assert (cache.stats.hits, cache.stats.stored) == (0, 10)
    for jobs in (1, 2, 4):
        warm = BlockCache(tmp_path / "c")
        assert xz_multiblock(data, 64 * KiB, jobs=jobs, cache=warm) == plain
        assert (warm.stats.hits, warm.stats.misses, warm.stats.stored) == (10, 0, 0)


def test_only_changed_blocks_are_compressed(tmp_path: Path) -> None:
    data = bytearray(text(6 * 64 * KiB, seed=12))
    xz_multiblock(bytes(data), 64 * KiB, cache=BlockCache(tmp_path / "c"))
    data[-10:] = b"0123456789"  # the tail: the last block only
    data[70_000] ^= 0xFF  # and one byte of the second block
    cache = BlockCache(tmp_path / "c")
    assert xz_multiblock(bytes(data), 64 * KiB, jobs=2, cache=cache) == xz_multiblock(
        bytes(data), 64 * KiB
    )
    assert (cache.stats.hits, cache.stats.misses) == (4, 2)


def test_settings_are_part_of_the_key(tmp_path: Path) -> None:
    data = text(3 * 128 * KiB, seed=13)
    xz_multiblock(data, 128 * KiB, cache=BlockCache(tmp_path / "c"))
    # the 64 KiB blocks' bytes are a prefix of the 128 KiB ones, but their headers differ
    cache = BlockCache(tmp_path / "c")
    assert xz_multiblock(data[: 64 * KiB], 64 * KiB, cache=cache) == xz_multiblock(
        data[: 64 * KiB], 64 * KiB
    )
    assert cache.stats.hits == 0


@pytest.mark.parametrize("damage", ["flip-data", "flip-header", "truncate", "magic", "empty"])
def test_corrupt_entries_are_detected_deleted_and_recomputed(tmp_path: Path, damage: str) -> None:
    data = text(3 * 64 * KiB + 5, seed=14)
    expected = xz_multiblock(data, 64 * KiB, cache=BlockCache(tmp_path / "c"))
    victim = entries(tmp_path / "c")[1]
    raw = bytearray(victim.read_bytes())
    if damage == "flip-data":
        raw[-20] ^= 0x40
    elif damage == "flip-header":
        raw[100] ^= 0x01
    elif damage == "truncate":
        raw = raw[:-1]
    elif damage == "magic":
        raw[:8] = b"HATSXZB0"
    else:
        raw = bytearray()
    victim.write_bytes(bytes(raw))
    cache = BlockCache(tmp_path / "c")
    assert xz_multiblock(data, 64 * KiB, cache=cache) == expected
    assert (cache.stats.corrupt, cache.stats.hits, cache.stats.stored) == (1, 3, 1)
    assert victim.read_bytes().startswith(MAGIC)  # rewritten, whole
    assert BlockCache(tmp_path / "c").get(b"\0" * 32, 1) is None


def test_entry_under_another_key_is_never_used(tmp_path: Path) -> None:
    """A valid entry copied to another block's name (a mix-up, not bit rot) is rejected."""
    data = noise(64 * KiB) + text(64 * KiB)
    expected = xz_multiblock(data, 64 * KiB, cache=BlockCache(tmp_path / "c"))
    first, second = entries(tmp_path / "c")
    first.write_bytes(second.read_bytes())
    cache = BlockCache(tmp_path / "c")
    assert xz_multiblock(data, 64 * KiB, cache=cache) == expected
    assert cache.stats.corrupt == 1


def test_prune_evicts_least_recently_used(tmp_path: Path) -> None:
    root = tmp_path / "c"
    xz_multiblock(noise(4 * 64 * KiB), 64 * KiB, cache=BlockCache(root))
    files = entries(root)
    now = time.time()
    for age, path in enumerate(files):
        os.utime(path, (now - 100 * (age + 1), now - 100 * (age + 1)))  # files[3] is oldest
    stale = root / files[0].parent.name / ".tmp-left-over"
    stale.write_bytes(b"x")
    os.utime(stale, (now - 7200, now - 7200))
    fresh = root / files[0].parent.name / ".tmp-in-progress"
    fresh.write_bytes(b"x")
    sizes = [path.stat().st_size for path in files]
    cache = BlockCache(root, max_size=sizes[0] + sizes[1] + 10)
    assert cache.prune() == sizes[2] + sizes[3]
    assert entries(root) == sorted(files[:2]) and not stale.exists() and fresh.exists()
    # a hit refreshes an entry's age
    BlockCache(root).get(bytes.fromhex(files[1].name[:64]), 64 * KiB)
    assert files[1].stat().st_mtime > files[0].stat().st_mtime


def test_write_failures_are_counted_not_fatal(tmp_path: Path) -> None:
    cache = BlockCache(tmp_path / "c")
    data = text(1000)
    key = BlockCache.key(settings_id(64 * KiB), hashlib.sha256(data).digest())
    cache.path(key).parent.write_bytes(b"a file where the subdirectory should be")
    assert xz_multiblock(data, 64 * KiB, cache=cache) == xz_multiblock(data, 64 * KiB)
    assert cache.stats.stored == 0 and len(cache.stats.write_errors) == 1


def test_unusable_cache_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BlockCacheError, match="cannot create the block cache directory"):
        BlockCache(blocker / "cache")
    with pytest.raises(BlockCacheError, match="negative"):
        BlockCache(tmp_path / "c", max_size=-1)


def test_default_location_follows_the_hats_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HATS_CACHE_DIR", str(tmp_path / "hc"))
    assert default_block_cache_dir() == tmp_path / "hc" / "xz-blocks"
    assert default_block_cache_dir(tmp_path / "x") == tmp_path / "x" / "xz-blocks"


# -- hats image build --xz-block-size ------------------------------------------


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``hats ARGS`` in-process (exit codes and one-line errors as a process gives them)."""
    return run_hats(*args, env=env)


def one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "rror" in line]
    assert len(errors) == 1 and needle in errors[0], result.stderr


@pytest.fixture(scope="module")
def big_inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    """Binaries of ~300 KB each, so that images span a dozen 64 KiB blocks."""
    work = tmp_path_factory.mktemp("big")
    paths = {}
    for index, name in enumerate(("orchestrator", "agent", "syslogd")):
        path = work / name
        path.write_bytes(b"#!/bin/sh\n" + text(200_000, seed=index) + noise(100_000, seed=index))
        paths[name] = path
    return Inputs(workdir=work, **paths)


def key_file(path: Path) -> Path:
    path.write_text(f"0:{generate_key_pair()[1].hex()}\n")
    return path


def build_args(base: Path, inputs: Inputs, keys: Path) -> list[str | Path]:
    return [
        "image",
        "build",
        "--base",
        base,
        "--tvs-keys",
        keys,
        "--secret-share-type",
        "no-split",
        "--orchestrator",
        inputs.orchestrator,
        "--agent",
        inputs.agent,
        "--syslogd",
        inputs.syslogd,
        "--json",
    ]


def build(*args: str | Path) -> dict[str, object]:
    result = run(*args)
    assert result.returncode == 0, result.stderr
    summary: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return summary


@needs_xz
def test_cli_parallel_build_equals_xz_and_rebuilds_only_the_tail(
    tmp_path: Path, bases: dict[str, Path], big_inputs: Inputs
) -> None:
    keys = key_file(tmp_path / "keys.txt")
    cache = tmp_path / "blocks"
    args = [*build_args(bases["xz"], big_inputs, keys), "--xz-block-size", "64KiB"]
    first = build(
        *args,
        "--block-cache",
        cache,
        "-j",
        "2",
        "-o",
        tmp_path / "a.tar.xz",
        "--tar",
        tmp_path / "a.tar",
    )
    image = (tmp_path / "a.tar.xz").read_bytes()
    assert image == xz_cli((tmp_path / "a.tar").read_bytes(), 64 * KiB)
    xz = first["xz"]
    assert isinstance(xz, dict) and xz["mode"] == "multi-block" and xz["block_size"] == 65536
    blocks = xz["blocks"]
    assert isinstance(blocks, int) and blocks >= 10
    assert (xz["compressed"], xz["reused"]) == (blocks, 0)
    assert first["sha256"] == hashlib.sha256(image).hexdigest()
    # the same inputs again: every block from the cache, the same bytes
    again = build(*args, "--block-cache", cache, "-o", tmp_path / "b.tar.xz")
    assert again["xz"] == {**xz, "compressed": 0, "reused": blocks}
    assert (tmp_path / "b.tar.xz").read_bytes() == image
    # a new key: only the last block changes
    key_file(keys)
    changed = build(
        *args, "--block-cache", cache, "-o", tmp_path / "c.tar.xz", "--tar", tmp_path / "c.tar"
    )
    assert changed["xz"] == {**xz, "compressed": 1, "reused": blocks - 1}
    rebuilt = (tmp_path / "c.tar.xz").read_bytes()
    assert rebuilt == xz_cli((tmp_path / "c.tar").read_bytes(), 64 * KiB)
    for jobs in ("1", "4"):
        build(*args, "--no-block-cache", "-j", jobs, "-o", tmp_path / f"j{jobs}.tar.xz")
        assert (tmp_path / f"j{jobs}.tar.xz").read_bytes() == rebuilt
    # digest, verify and inspect work unchanged
    digest = hashlib.sha256(rebuilt).hexdigest()
    assert run("image", "verify", tmp_path / "c.tar.xz", "--sha256", digest).returncode == 0
    shown = run("image", "inspect", tmp_path / "c.tar.xz", "/hats")
    assert shown.returncode == 0 and "/hats/tvs_public_keys.txt" in shown.stdout
    # the default stays the reference: one block, xz -T1 -6
    reference = build(*build_args(bases["xz"], big_inputs, keys), "-o", tmp_path / "r.tar.xz")
    assert reference["xz"] == {"mode": "reference"}
    assert (tmp_path / "r.tar.xz").read_bytes() == lzma.compress(
        (tmp_path / "c.tar").read_bytes(), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6
    )


def test_cli_default_cache_location(tmp_path: Path, bases: dict[str, Path], inputs: Inputs) -> None:
    keys = key_file(tmp_path / "keys.txt")
    env = {**os.environ, "HATS_CACHE_DIR": str(tmp_path / "hc")}
    args = [*build_args(bases["tar"], inputs, keys), "--xz-block-size", "64KiB"]
    result = run(*args, "-o", tmp_path / "a.tar.xz", env=env)
    assert result.returncode == 0, result.stderr
    assert entries(tmp_path / "hc" / "xz-blocks")
    assert "reused from" in result.stderr
    result = run(*args, "--no-block-cache", "-o", tmp_path / "b.tar.xz", env=env)
    assert result.returncode == 0 and "reused" not in result.stderr
    limited = run(*args, "--block-cache-max-size", "0", "-o", tmp_path / "c.tar.xz", env=env)
    assert limited.returncode == 0, limited.stderr
    assert not entries(tmp_path / "hc" / "xz-blocks")
    images = {(tmp_path / f"{n}.tar.xz").read_bytes() for n in "abc"}
    assert len(images) == 1


def test_cli_option_errors(tmp_path: Path, bases: dict[str, Path], inputs: Inputs) -> None:
    keys = key_file(tmp_path / "keys.txt")
    args = [*build_args(bases["tar"], inputs, keys), "-o", tmp_path / "x.tar.xz"]
    one_line_error(run(*args, "--xz-block-size", "1KiB"), "1024 bytes is outside 64KiB..256MiB")
    one_line_error(run(*args, "--xz-block-size", "8XB"), "'8XB' is not a size like 8MiB")
    one_line_error(run(*args, "--xz-block-size", "1GiB"), "outside 64KiB..256MiB")
    one_line_error(run(*args, "--jobs", "2"), "--jobs needs --xz-block-size")
    one_line_error(run(*args, "--no-block-cache"), "--no-block-cache needs --xz-block-size")
    multi = [*args, "--xz-block-size", "8MiB"]
    one_line_error(run(*multi, "--jobs", "0"), "--jobs: 0 is not a number of workers")
    one_line_error(
        run(*multi, "--no-block-cache", "--block-cache", tmp_path / "c"), "cannot be combined"
    )
    one_line_error(run(*multi, "--block-cache-max-size", "lots"), "is not a size like 8MiB")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    one_line_error(
        run(*multi, "--block-cache", blocker / "c"), "cannot create the block cache directory"
    )
    assert not (tmp_path / "x.tar.xz").exists()


def test_spec_block_size(tmp_path: Path, bases: dict[str, Path], inputs: Inputs) -> None:
    keys = key_file(tmp_path / "keys.txt")
    spec = tmp_path / "image.toml"
    body = f"""
output = "spec.tar.xz"
tvs_keys = "{keys}"
secret_share_type = "no-split"
base = "{bases["tar"]}"
[binaries]
orchestrator = "{inputs.orchestrator}"
agent = "{inputs.agent}"
syslogd = "{inputs.syslogd}"
"""
    spec.write_text(body + '[xz]\nblock_size = "64KiB"\n')
    from_spec = build("image", "build", spec, "--json", "--no-block-cache")
    flag = build(
        *build_args(bases["tar"], inputs, keys),
        "--xz-block-size",
        "64KiB",
        "--block-cache",
        tmp_path / "blocks",
        "-o",
        tmp_path / "flag.tar.xz",
    )
    assert from_spec["sha256"] == flag["sha256"]
    assert (tmp_path / "spec.tar.xz").read_bytes() == (tmp_path / "flag.tar.xz").read_bytes()
    # the flag overrides the spec
    other = build(
        "image",
        "build",
        spec,
        "--json",
        "--xz-block-size",
        "128KiB",
        "--no-block-cache",
        "-o",
        tmp_path / "o.tar.xz",
    )
    assert isinstance(other["xz"], dict) and other["xz"]["block_size"] == 128 * KiB
    spec.write_text(body + "[xz]\nblock_size = 1024\n")
    one_line_error(run("image", "build", spec), "[xz] block_size: 1024 bytes is outside")
    spec.write_text(body + "[xz]\nthreads = 2\n")
    one_line_error(run("image", "build", spec), "unknown key 'threads' in [xz]")
    spec.write_text(body + "[xz]\nblock_size = true\n")
    one_line_error(run("image", "build", spec), "block_size must be a size")


@needs_xz
@pytest.mark.slow
def test_real_base_fast_build_and_key_rebuild(default_base_tar: Path, tmp_path: Path) -> None:
    """The real Debian base: xz's bytes, then a key change recompresses only the tail."""
    rnd = random.Random(7)
    paths = {}
    for name in ("orchestrator", "agent", "syslogd"):
        paths[name] = tmp_path / name
        paths[name].write_bytes(b"#!/bin/sh\n" + rnd.randbytes(1 << 20))
    inputs = Inputs(workdir=tmp_path, **paths)
    keys = key_file(tmp_path / "keys.txt")
    args = [
        *build_args(default_base_tar, inputs, keys),
        "--xz-block-size",
        "8MiB",
        "--block-cache",
        tmp_path / "blocks",
    ]
    build(*args, "-o", tmp_path / "a.tar.xz", "--tar", tmp_path / "a.tar")
    assert (tmp_path / "a.tar.xz").read_bytes() == xz_cli(
        (tmp_path / "a.tar").read_bytes(), 8 << 20
    )
    key_file(keys)
    summary = build(*args, "-o", tmp_path / "b.tar.xz", "--tar", tmp_path / "b.tar")
    xz = summary["xz"]
    assert isinstance(xz, dict) and xz["compressed"] == 1
    assert (
        lzma.decompress((tmp_path / "b.tar.xz").read_bytes()) == (tmp_path / "b.tar").read_bytes()
    )
