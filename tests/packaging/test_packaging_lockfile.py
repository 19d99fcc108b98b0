"""The hash-locked requirements file and its parser."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hats.errors import HatsError
from hats.packaging.lock import TOP_LEVEL
from hats.packaging.lockfile import (
    LOCK_PATH,
    TARGET_PLATFORMS,
    normalize_name,
    parse_lock_text,
    pip_target_args,
    read_lock,
)

REQUIRED = {
    "grpcio",
    "protobuf",
    "cryptography",
    "cbor2",
    "opentelemetry-proto",
    "cffi",
    "typing-extensions",
}
HASH = "a" * 64


def test_packaged_lock_pins_every_runtime_dependency() -> None:
    requirements = read_lock()
    keys = {r.key for r in requirements}
    assert keys >= REQUIRED
    for requirement in requirements:
        assert requirement.sha256, requirement
        assert all(len(d) == 64 for d in requirement.sha256)
    assert [r.key for r in requirements] == sorted(keys)


def test_lock_matches_the_top_level_pins() -> None:
    pinned = {r.key: r.version for r in read_lock()}
    for top in TOP_LEVEL:
        name, version = top.split("==")
        assert pinned[normalize_name(name)] == version


def test_protobuf_is_6x_for_grpcio_tools_1_81() -> None:
    pinned = {r.key: r.version for r in read_lock()}
    assert pinned["protobuf"].startswith("6.33.")
    assert pinned["grpcio"].startswith("1.81.")


def test_lock_documents_how_to_regenerate_it() -> None:
    text = LOCK_PATH.read_text(encoding="utf-8")
    assert "python -m hats.packaging.lock" in text
    assert "--only-binary=:all:" in text


def test_target_is_bookworm_cpython_311_x86_64() -> None:
    args = pip_target_args()
    assert args[args.index("--python-version") + 1] == "3.11"
    assert args[args.index("--abi") + 1] == "cp311"
    assert args[args.index("--implementation") + 1] == "cp"
    assert "--only-binary=:all:" in args
    assert TARGET_PLATFORMS[0] == "manylinux_2_36_x86_64"  # bookworm's glibc
    assert "manylinux_2_17_x86_64" in TARGET_PLATFORMS
    assert "manylinux2014_x86_64" in TARGET_PLATFORMS
    assert not any("2_37" in p or "aarch64" in p for p in TARGET_PLATFORMS)


def test_parse_continuations_and_comments() -> None:
    text = (
        "# header\n\n"
        f"Foo_Bar==1.0 \\\n    --hash=sha256:{HASH} \\\n    --hash=sha256:{'b' * 64}\n"
        "    # foo_bar-1.0-py3-none-any.whl\n"
        f"baz==2.0.post1 --hash=sha256:{'c' * 64}  # trailing comment\n"
    )
    requirements = parse_lock_text(text, "x.txt")
    assert [(r.key, r.version, len(r.sha256), r.line) for r in requirements] == [
        ("baz", "2.0.post1", 1, 7),
        ("foo-bar", "1.0", 2, 3),
    ]
    assert requirements[1].requirement_line().startswith("Foo_Bar==1.0 --hash=sha256:")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo>=1.0 --hash=sha256:" + HASH, "expected 'name==version"),
        ("foo==1.0", "has no --hash"),
        ("foo==1.0 --hash=md5:" + "a" * 32, "unsupported option"),
        ("foo==1.0 --hash=sha256:" + "A" * 64, "unsupported option"),
        ("foo==1.0 --index-url=http://x --hash=sha256:" + HASH, "unsupported option"),
        ("foo==1.0 --hash=sha256:" + HASH + "\nFoo==2.0 --hash=sha256:" + HASH, "already pinned"),
        ("foo==1.0 \\", "continuation"),
        ("# nothing\n", "no requirements"),
        ("foo==1.0; python_version>'3' --hash=sha256:" + HASH, "expected 'name==version"),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(HatsError, match=message) as exc:
        parse_lock_text(text, "bad.txt")
    assert str(exc.value).startswith("bad.txt")
    assert "\n" not in str(exc.value)


def test_read_lock_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HatsError, match="cannot read lock file"):
        read_lock(tmp_path / "nope.txt")


@pytest.mark.network
def test_pip_accepts_the_lock_and_finds_it_complete(tmp_path: Path) -> None:
    """pip resolves the lock *with* dependencies in --require-hashes mode.

    pip refuses when a dependency of a locked wheel is not itself pinned with a
    hash, so this proves the lock is closed under runtime dependencies for the
    target platform.
    """
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "--ignore-installed",
            "--disable-pip-version-check",
            "--require-hashes",
            *pip_target_args(),
            "--target",
            str(tmp_path / "target"),
            "--requirement",
            str(LOCK_PATH),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
