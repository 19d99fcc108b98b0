"""Regenerate ``agents-requirements.txt``, the hash-locked in-image dependencies.

Usage (needs PyPI; run from the project's virtualenv)::

    .venv/bin/python -m hats.packaging.lock [--output PATH]

It runs ``pip download --only-binary=:all: <target platform options> -d TMP
<TOP_LEVEL…>``, i.e. pip resolves the top-level pins below *plus their runtime
dependencies* for the image's interpreter (CPython 3.11, manylinux x86_64 up
to glibc 2.36), downloads exactly the wheel it would install for each, and
this script writes one ``name==version --hash=sha256:…`` entry per wheel,
hashed locally. The output depends only on the top-level pins and on what the
index serves for them (new releases of unpinned transitive dependencies do
change it: review the diff).

To upgrade, edit :data:`TOP_LEVEL` and rerun. Version choices:

* ``protobuf`` 6.33.x with ``grpcio`` 1.81.x: ``grpcio-tools`` 1.81.1 is the
  newest release that still targets protobuf 6 (it requires
  ``protobuf>=6.33.5,<7``; 1.82 and later require protobuf 7). Generate the
  ``_pb2``/``_pb2_grpc`` modules with ``grpcio-tools==1.81.1``: its gencode
  checks runtime protobuf ``>=6.33.5,<7`` and ``grpcio>=1.81.1``.
* ``cryptography`` 48.0.1: the version the development venv tests against
  (the project's own dependency range is ``>=42,<49``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hats import toolrun
from hats.errors import HatsError
from hats.hashing import file_sha256
from hats.packaging.lockfile import (
    LOCK_PATH,
    TARGET_ABI,
    TARGET_PLATFORMS,
    TARGET_PYTHON_VERSION,
    normalize_name,
    parse_lock_text,
    pip_download_command,
)

#: What the agents import directly; everything else in the lock is pulled in
#: by pip's resolver as a runtime dependency of these.
TOP_LEVEL: tuple[str, ...] = (
    "cbor2==6.3.0",
    "cryptography==48.0.1",
    "grpcio==1.81.2",
    "opentelemetry-proto==1.45.2",
    "protobuf==6.33.6",
)

REGENERATE_COMMAND = ".venv/bin/python -m hats.packaging.lock"


def _header() -> str:
    lines = [
        "# Hash-locked runtime dependencies of the in-image HATs agents",
        "# (orchestrator_main, oak_containers_agent, oak_containers_syslogd).",
        "#",
        f"# Target: CPython {TARGET_PYTHON_VERSION} ({TARGET_ABI}, Debian bookworm python3),",
        f"# x86_64, wheels only, platform tags {TARGET_PLATFORMS[0]} … {TARGET_PLATFORMS[-1]}.",
        "# One wheel per distribution: the one pip selects for that target.",
        "#",
        "# GENERATED FILE. Regenerate (needs PyPI) with:",
        f"#     {REGENERATE_COMMAND}",
        "# which runs, in a temporary directory:",
        "#     python -m pip download --only-binary=:all: --platform manylinux_2_36_x86_64 …",
        f"#         --python-version {TARGET_PYTHON_VERSION} --implementation cp"
        f" --abi {TARGET_ABI} \\",
        "#         -d TMP " + " ".join(TOP_LEVEL),
        "# and hashes the downloaded wheels. Top-level pins: TOP_LEVEL in",
        "# src/hats/packaging/lock.py (protobuf 6.x pairs with grpcio-tools==1.81.1).",
        "# Consumers: pip download --require-hashes --no-deps, hats.packaging.agents_layer.",
        "",
    ]
    return "\n".join(lines) + "\n"


def _parse_wheel_filename(filename: str) -> tuple[str, str]:
    parts = filename[: -len(".whl")].split("-")
    if not filename.endswith(".whl") or len(parts) not in (5, 6):
        raise HatsError(f"{filename}: pip downloaded something that is not a wheel")
    return parts[0], parts[1]


def render_lock(wheels: Sequence[Path]) -> str:
    """The lock-file text for these downloaded wheels."""
    entries: list[tuple[str, str]] = []
    for wheel in wheels:
        name, version = _parse_wheel_filename(wheel.name)
        digest = file_sha256(wheel)
        pin = f"{normalize_name(name)}=={version}"
        entries.append(
            (normalize_name(name), f"{pin} \\\n    --hash=sha256:{digest}\n    # {wheel.name}\n")
        )
    entries.sort()
    text = _header() + "".join(entry for _, entry in entries)
    parse_lock_text(text, "<generated lock>")  # what we write, we can read
    return text


def download_resolved(top_level: Sequence[str], dest: Path) -> list[Path]:
    """Let pip resolve and download ``top_level`` and its dependencies for the target."""
    command = pip_download_command(dest, *top_level)
    toolrun.run(command, what="downloading the agents' dependencies")
    return sorted(dest.glob("*.whl"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hats.packaging.lock",
        description="Regenerate the hash-locked requirements of the in-image agents.",
    )
    parser.add_argument("--output", type=Path, default=LOCK_PATH, help="default: %(default)s")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="hats-lock-") as tmp:
            wheels = download_resolved(TOP_LEVEL, Path(tmp))
            text = render_lock(wheels)
    except HatsError as exc:
        print(f"hats.packaging.lock: error: {exc}", file=sys.stderr)
        return exc.exit_code
    output: Path = args.output
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output} ({len(wheels)} wheels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
