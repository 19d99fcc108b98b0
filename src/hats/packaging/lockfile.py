"""The in-image Python target and the hash-locked requirements file.

The agents run on the image's own interpreter: Debian bookworm's ``python3``
(CPython 3.11, x86_64, glibc 2.36). Every third-party dependency is a binary
wheel for that target, pinned by version *and* sha256 in
``agents-requirements.txt`` beside this module (regenerate it with
``python -m hats.packaging.lock``).

The lock file is a pip requirements file restricted to what
:mod:`hats.packaging.lock` writes: comment lines, and one requirement per
entry of the form ``name==version --hash=sha256:<hex> [--hash=…]`` (with
backslash continuations). Anything else is rejected, so the file stays
something both pip (``--require-hashes``) and this module read the same way.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from hats.errors import HatsError

#: The packaged lock file.
LOCK_PATH = Path(__file__).with_name("agents-requirements.txt")

TARGET_PYTHON_VERSION = "3.11"
TARGET_IMPLEMENTATION = "cp"
TARGET_ABI = "cp311"
#: glibc of Debian bookworm; pip does not expand ``manylinux_2_X`` to older
#: glibc versions by itself, so every compatible tag is listed, newest first.
TARGET_GLIBC_MINOR = 36
TARGET_PLATFORMS: tuple[str, ...] = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(TARGET_GLIBC_MINOR, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)

_NAME_VERSION = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)==(?P<version>[A-Za-z0-9.+!_-]+)$"
)
_HASH = re.compile(r"^--hash=sha256:(?P<hex>[0-9a-f]{64})$")


class LockFileError(HatsError):
    """The lock file is malformed."""


def pip_target_args() -> list[str]:
    """The pip options that select wheels for the in-image interpreter."""
    args: list[str] = ["--only-binary=:all:"]
    for platform in TARGET_PLATFORMS:
        args += ["--platform", platform]
    args += [
        "--python-version",
        TARGET_PYTHON_VERSION,
        "--implementation",
        TARGET_IMPLEMENTATION,
        "--abi",
        TARGET_ABI,
    ]
    return args


def pip_download_command(dest: Path, *args: str) -> list[str]:
    """``pip download`` of wheels for the in-image interpreter into ``dest``, then ``args``.

    The one command line of the lock's resolution (``args``: the top-level
    requirements) and of the locked fetch (``args``: ``--require-hashes
    --no-deps --requirement FILE``).
    """
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        *pip_target_args(),
        "--dest",
        str(dest),
        *args,
    ]


def normalize_name(name: str) -> str:
    """PEP 503 normalised project name (``Typing_Extensions`` → ``typing-extensions``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class LockedRequirement:
    """One pinned distribution and the sha256 digests its wheel may have."""

    name: str
    version: str
    sha256: tuple[str, ...]
    line: int

    @property
    def key(self) -> str:
        """The normalised name."""
        return normalize_name(self.name)

    def requirement_line(self) -> str:
        """This requirement as one pip requirements-file line (with its hashes)."""
        hashes = " ".join(f"--hash=sha256:{digest}" for digest in self.sha256)
        return f"{self.name}=={self.version} {hashes}"

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


def parse_lock_text(text: str, source: str) -> tuple[LockedRequirement, ...]:
    """Parse lock-file text; ``source`` names the file in error messages."""
    logical: list[tuple[int, str]] = []
    pending = ""
    pending_line = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if " #" in line:
            line = line.split(" #", 1)[0].rstrip()
        if not pending:
            pending_line = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append((pending_line, pending + line))
        pending = ""
    if pending:
        raise LockFileError(f"{source}:{pending_line}: continuation runs past the end of the file")

    requirements: list[LockedRequirement] = []
    seen: dict[str, int] = {}
    for number, entry in logical:
        tokens = entry.split()
        match = _NAME_VERSION.match(tokens[0])
        if match is None:
            raise LockFileError(
                f"{source}:{number}: expected 'name==version --hash=sha256:…', got {tokens[0]!r}"
            )
        digests: list[str] = []
        for token in tokens[1:]:
            hash_match = _HASH.match(token)
            if hash_match is None:
                raise LockFileError(
                    f"{source}:{number}: unsupported option {token!r} "
                    "(only --hash=sha256:<64 lowercase hex> is allowed)"
                )
            digests.append(hash_match["hex"])
        if not digests:
            raise LockFileError(f"{source}:{number}: {tokens[0]} has no --hash=sha256:")
        requirement = LockedRequirement(
            name=match["name"], version=match["version"], sha256=tuple(digests), line=number
        )
        if requirement.key in seen:
            raise LockFileError(
                f"{source}:{number}: {requirement.name} is already pinned on line "
                f"{seen[requirement.key]}"
            )
        seen[requirement.key] = number
        requirements.append(requirement)
    if not requirements:
        raise LockFileError(f"{source}: no requirements")
    return tuple(sorted(requirements, key=lambda r: r.key))


def read_lock(path: Path | None = None) -> tuple[LockedRequirement, ...]:
    """Read and parse a lock file (default: the packaged one)."""
    path = LOCK_PATH if path is None else path
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LockFileError(f"{path}: cannot read lock file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise LockFileError(f"{path}: lock file is not UTF-8") from None
    return parse_lock_text(text, str(path))
