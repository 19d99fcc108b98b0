"""The wheel cache: locked wheels, downloaded once with pip, verified on every use.

Layout: ``<cache_dir>/agents-wheels/<sha256>/<wheel filename>``, one directory
per locked digest, so a wheel is found by the hash the lock file asks for and
nothing else. A cached wheel is re-hashed every time it is used; a mismatch is
an error that names the file (it is never used, and never silently replaced:
a wheel that changed on disk deserves a look before it is deleted).

Downloads run ``python -m pip download --require-hashes --no-deps
--only-binary=:all:`` with the target platform options (see
:func:`hats.packaging.lockfile.pip_download_command`) into a temporary directory
inside the cache, and the wheel is moved into place only after this module has
checked its sha256 itself. pip's own configuration (index URL, mirrors,
proxies) applies; the hashes make the source irrelevant.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from hats import toolrun
from hats.cachedir import default_cache_dir as default_cache_dir  # re-exported
from hats.errors import HatsError
from hats.hashing import file_sha256
from hats.packaging.lockfile import LockedRequirement, normalize_name, pip_download_command

#: Seconds one ``pip download`` may take before it counts as a network failure.
PIP_TIMEOUT = 900


class WheelFetchError(HatsError):
    """A locked wheel cannot be downloaded."""


class WheelHashMismatch(HatsError):
    """A wheel's bytes do not match the sha256 the lock file pins."""


def wheel_cache_dir(cache_dir: Path) -> Path:
    """Where the locked wheels live inside ``cache_dir``."""
    return cache_dir / "agents-wheels"


#: Hex sha256 of a file's content (:func:`hats.hashing.file_sha256`; ``OSError`` propagates).
sha256_file = file_sha256


def _wheel_name_version(filename: str) -> tuple[str, str]:
    parts = filename[: -len(".whl")].split("-")
    if not filename.endswith(".whl") or len(parts) not in (5, 6):
        return "", ""
    return normalize_name(parts[0]), parts[1]


def _cached(requirement: LockedRequirement, cache: Path) -> Path | None:
    """The verified cached wheel for ``requirement``, or None when none is cached."""
    for digest in requirement.sha256:
        directory = cache / digest
        candidates = sorted(directory.glob("*.whl")) if directory.is_dir() else []
        if not candidates:
            continue
        if len(candidates) > 1:
            raise WheelHashMismatch(
                f"{directory}: more than one wheel in a cache slot; remove the directory"
            )
        wheel = candidates[0]
        actual = sha256_file(wheel)
        if actual != digest:
            raise WheelHashMismatch(
                f"{wheel}: sha256 {actual} does not match the locked {digest} for "
                f"{requirement}; not using it (delete it to download it again)"
            )
        if _wheel_name_version(wheel.name) != (requirement.key, requirement.version):
            raise WheelHashMismatch(f"{wheel}: cached under the hash of {requirement}")
        return wheel
    return None


def _download(requirement: LockedRequirement, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
        tmp_dir = Path(tmp)
        req_file = tmp_dir / "requirement.txt"
        req_file.write_text(requirement.requirement_line() + "\n", encoding="utf-8")
        dest = tmp_dir / "wheels"
        command = pip_download_command(
            dest, "--require-hashes", "--no-deps", "--requirement", str(req_file)
        )
        env = dict(os.environ, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
        what = f"cannot download the wheel for {requirement}"
        result = toolrun.run(
            command,
            what=what,
            error=WheelFetchError,
            env=env,
            timeout=PIP_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            stderr = str(result.stderr)
            if "THESE PACKAGES DO NOT MATCH THE HASHES" in stderr:
                raise WheelHashMismatch(
                    f"the downloaded wheel for {requirement} does not match the locked sha256"
                )
            errors = [line for line in stderr.splitlines() if line.startswith("ERROR")]
            detail = toolrun.last_line("\n".join(errors), stderr)
            raise toolrun.failure(
                "pip", result.returncode, detail, what=what, error=WheelFetchError
            )
        wheels = sorted(dest.glob("*.whl"))
        if len(wheels) != 1:
            raise WheelFetchError(
                f"cannot download the wheel for {requirement}: pip produced "
                f"{len(wheels)} wheels instead of one"
            )
        wheel = wheels[0]
        actual = sha256_file(wheel)
        if actual not in requirement.sha256:
            raise WheelHashMismatch(
                f"{wheel.name}: downloaded sha256 {actual} is not a locked hash of {requirement}"
            )
        if _wheel_name_version(wheel.name) != (requirement.key, requirement.version):
            raise WheelFetchError(f"{wheel.name}: pip downloaded a wheel that is not {requirement}")
        slot = cache / actual
        slot.mkdir(exist_ok=True)
        final = slot / wheel.name
        os.replace(wheel, final)
        return final


def fetch_wheels(
    requirements: tuple[LockedRequirement, ...],
    cache_dir: Path,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Make sure every locked wheel is in the cache; return normalised name → wheel path.

    Every wheel is verified against the lock before anything is returned, so a
    caller never starts writing output from a partly bad set.
    """
    cache = wheel_cache_dir(cache_dir)
    result: dict[str, Path] = {}
    for requirement in requirements:
        wheel = _cached(requirement, cache)
        if wheel is None:
            if progress is not None:
                progress(f"downloading {requirement}")
            wheel = _download(requirement, cache)
        elif progress is not None:
            progress(f"using cached {wheel.name}")
        result[requirement.key] = wheel
    return result


def clear_wheel_cache(cache_dir: Path) -> None:
    """Remove the wheel cache (used by tests and by ``--no-cache`` style callers)."""
    shutil.rmtree(wheel_cache_dir(cache_dir), ignore_errors=True)
