"""Where built bases and the apt caches live, and how entries are keyed.

Layout under ``<cache dir>/base/``::

    .lock                                  exclusive while building/publishing
    apt/archives/                          .deb cache synced in/out of the chroot
    apt/lists/                             apt index cache synced in/out
    logs/<entry>.log                       mmdebstrap's output of the last build
    tmp/build-*/                           scratch space of a running build
    <entry>/current.json                   metadata of the current tarball
    <entry>/base-<packages digest>.tar     the normalised base
    <entry>/base-<packages digest>.tar.packages.txt

``<entry>`` = ``bookworm-amd64-minbase[-python]-<recipe key>``: the recipe key
hashes everything in :func:`hats.base.recipe.recipe_description` (package
lists, file contents, clean-up, the Debian mirrors) and the mmdebstrap
options. The tarball's own name carries the digest of the package set it was
built from, so a rebuild that picks up new package versions from the mirror
makes a new file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hats.base import recipe
from hats.base.mmdebstrap import BuildSpec, command
from hats.cachedir import CACHE_ENV as CACHE_ENV  # re-exported (one definition)
from hats.cachedir import default_cache_dir as default_cache_dir
from hats.errors import HatsError
from hats.fsio import LockFileError, exclusive_lock

METADATA = "current.json"


class CacheError(HatsError):
    """The cache directory is unusable."""


def recipe_key(spec: BuildSpec) -> str:
    """SHA-256 (hex) of the recipe description for ``spec``."""
    description = recipe.recipe_description(
        with_python=spec.with_python, mirror=spec.mirror, security_mirror=spec.security_mirror
    )
    # The mmdebstrap options (without the apt cache hooks, which only change
    # where packages come from) are part of the recipe too.
    description["mmdebstrap_argv"] = command(spec, Path("OUT"), executable="mmdebstrap")
    data = json.dumps(description, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()


def entry_name(spec: BuildSpec) -> str:
    flavour = "-python" if spec.with_python else ""
    return f"{recipe.SUITE}-{recipe.ARCHITECTURE}-{recipe.VARIANT}{flavour}-{recipe_key(spec)[:16]}"


def tar_name(packages_sha256: str) -> str:
    return f"base-{packages_sha256[:16]}.tar"


def manifest_path(tar: Path) -> Path:
    """The package manifest written next to a base tarball."""
    return tar.with_name(tar.name + ".packages.txt")


@dataclass(frozen=True)
class CachedBase:
    path: Path
    sha256: str
    size: int
    packages_sha256: str
    packages: tuple[str, ...]


@dataclass(frozen=True)
class BaseCache:
    """The ``base/`` directory of a hats cache directory."""

    root: Path

    @classmethod
    def at(cls, cache_dir: Path | None) -> BaseCache:
        return cls((cache_dir if cache_dir is not None else default_cache_dir()) / "base")

    @property
    def apt_archives(self) -> Path:
        return self.root / "apt" / "archives"

    @property
    def apt_lists(self) -> Path:
        return self.root / "apt" / "lists"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def entry_dir(self, spec: BuildSpec) -> Path:
        return self.root / entry_name(spec)

    def prepare(self) -> None:
        """Create the directory skeleton."""
        try:
            for directory in (self.root, self.apt_archives, self.apt_lists, self.tmp, self.logs):
                directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(
                f"{exc.filename}: cannot create cache directory: {exc.strerror}"
            ) from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the cache's exclusive lock (builds and publishing are serialised)."""
        self.prepare()
        try:
            with exclusive_lock(self.root / ".lock"):
                yield
        except LockFileError as exc:  # only opening the lock file raises it
            raise CacheError(str(exc)) from None

    def prune(self, spec: BuildSpec, keep: int = 2) -> list[Path]:
        """Delete all but the ``keep`` most recently published entries of this flavour.

        Entries of older recipes (or other mirrors) would otherwise pile up at
        ~250 MB each. Returns the deleted directories. Call with the lock held.
        """
        pattern = re.compile(re.escape(entry_name(spec)[:-16]) + "[0-9a-f]{16}")
        entries: list[tuple[float, Path]] = []
        for child in self.root.iterdir():
            if child.is_dir() and pattern.fullmatch(child.name):
                try:
                    stamp = (child / METADATA).stat().st_mtime
                except OSError:
                    stamp = 0.0
                entries.append((stamp, child))
        entries.sort(reverse=True)
        removed = [path for _, path in entries[keep:]]
        for path in removed:
            shutil.rmtree(path, ignore_errors=True)
        return removed

    def lookup(self, spec: BuildSpec) -> CachedBase | None:
        """The current cached base for ``spec``, if complete; else ``None``."""
        directory = self.entry_dir(spec)
        try:
            meta: Any = json.loads((directory / METADATA).read_text(encoding="utf-8"))
            tar = directory / str(meta["tar"])
            size = int(meta["size"])
            sha256 = str(meta["sha256"])
            packages_sha256 = str(meta["packages_sha256"])
            manifest = manifest_path(tar).read_bytes()
            if tar.stat().st_size != size:
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if hashlib.sha256(manifest).hexdigest() != packages_sha256:
            return None
        packages = tuple(manifest.decode("utf-8").splitlines())
        return CachedBase(tar, sha256, size, packages_sha256, packages)
