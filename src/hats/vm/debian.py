"""Debian packages for the guest: the kernel and busybox, fetched with apt into our cache.

The guest's kernel (``linux-image-cloud-amd64``) and the initramfs tools
(``busybox-static``) come from the same Debian release and mirrors as the
default base (:mod:`hats.base.recipe`). They are fetched with the host's
``apt-get`` but with a private configuration (sources, lists and archive
directories under ``<cache>/vm/apt``), so the host's own apt state is neither
read nor changed, and unpacked with ``dpkg-deb -x``.

Rules:

* a package is downloaded once: a ``.deb`` already in the archive directory
  is reused (``apt-get download`` only fetches what is missing);
* a meta package (``linux-image-cloud-amd64``) is resolved to the one
  package it depends on whose name starts with ``linux-image-``;
* every failure is a :class:`DebianPackageError` naming the package and the
  command's last line of output.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from hats import toolrun
from hats.base import recipe
from hats.errors import HatsError

KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"


class DebianPackageError(HatsError):
    """A Debian package cannot be fetched or unpacked."""


@dataclass(frozen=True)
class AptConfig:
    """A private apt configuration rooted at ``root`` (no host state used)."""

    root: Path
    mirror: str = recipe.DEFAULT_MIRROR
    security_mirror: str = recipe.DEFAULT_SECURITY_MIRROR

    @property
    def archives(self) -> Path:
        return self.root / "archives"

    def options(self) -> list[str]:
        """``-o`` options making apt use only this configuration."""
        settings = {
            "Dir::Etc::SourceList": str(self.root / "sources.list"),
            "Dir::Etc::SourceParts": str(self.root / "sources.list.d"),
            "Dir::Etc::Preferences": str(self.root / "preferences"),
            "Dir::Etc::PreferencesParts": str(self.root / "preferences.d"),
            "Dir::State": str(self.root / "state"),
            "Dir::State::Lists": str(self.root / "lists"),
            "Dir::State::status": str(self.root / "status"),
            "Dir::Cache": str(self.root / "cache"),
            "Dir::Cache::Archives": str(self.archives),
            "APT::Architecture": recipe.ARCHITECTURE,
            "APT::Sandbox::User": "root",
            "Debug::NoLocking": "true",
        }
        return [f"-o{name}={value}" for name, value in settings.items()]

    def prepare(self) -> None:
        """Write the sources list and create the directories apt expects."""
        for sub in ("sources.list.d", "preferences.d", "state", "lists/partial", "cache"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.archives / "partial").mkdir(parents=True, exist_ok=True)
        (self.root / "status").touch()
        sources = "\n".join(recipe.apt_sources(self.mirror, self.security_mirror)) + "\n"
        (self.root / "sources.list").write_text(sources, encoding="utf-8")


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    """One tool to completion (:func:`hats.toolrun.run`); a failure is a DebianPackageError."""
    return toolrun.run(argv, what=what, error=DebianPackageError, cwd=cwd).text


class PackageFetcher:
    """Downloads ``.deb`` files with a private apt configuration."""

    def __init__(self, config: AptConfig) -> None:
        self.config = config
        self._updated = False

    def _apt(self, tool: str, *args: str, what: str) -> str:
        return _run([tool, *self.config.options(), *args], what, cwd=self.config.archives)

    def update(self) -> None:
        if self._updated:
            return
        self.config.prepare()
        self._apt("apt-get", "-q", "update", what="apt-get update")
        self._updated = True

    def _cached(self, package: str) -> Path | None:
        matches = sorted(self.config.archives.glob(f"{package}_*.deb"))
        return matches[-1] if matches else None

    def depends(self, package: str) -> list[str]:
        """The direct dependencies apt knows for ``package``."""
        self.update()
        text = self._apt("apt-cache", "depends", package, what=package)
        names: list[str] = []
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("Depends:"):
                names.append(line.split(":", 1)[1].strip())
        return names

    def download(self, package: str) -> Path:
        """The ``.deb`` of ``package`` (downloaded unless already in the archive)."""
        cached = self._cached(package)
        if cached is not None:
            return cached
        self.update()
        self._apt("apt-get", "-q", "download", package, what=package)
        found = self._cached(package)
        if found is None:
            raise DebianPackageError(f"{package}: apt-get download wrote no .deb")
        return found

    def kernel_package(self, meta: str = KERNEL_META_PACKAGE) -> str:
        """The versioned kernel package a meta package points at."""
        cached = sorted(self.config.archives.glob("linux-image-[0-9]*.deb"))
        if cached:
            return cached[-1].name.split("_", 1)[0]
        for name in self.depends(meta):
            if name.startswith("linux-image-"):
                return name
        raise DebianPackageError(f"{meta}: depends on no linux-image- package")


def extract_deb(deb: Path, dest: Path) -> None:
    """Unpack a ``.deb``'s data into ``dest`` (created, must not exist)."""
    if shutil.which("dpkg-deb") is None:
        raise DebianPackageError(f"{deb.name}: dpkg-deb is not installed")
    dest.mkdir(parents=True)
    _run(["dpkg-deb", "-x", str(deb), str(dest)], deb.name)
