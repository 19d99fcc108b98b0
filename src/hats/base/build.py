"""``build_base`` / ``ensure_default_base``: the embedded default base, built and cached."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hats.archive.compress import xz_compress_file
from hats.base import recipe
from hats.base.cache import (
    METADATA,
    BaseCache,
    CachedBase,
    manifest_path,
    recipe_key,
    tar_name,
)
from hats.base.mmdebstrap import (
    BuildSpec,
    command,
    find_mmdebstrap,
    mmdebstrap_version,
    run,
)
from hats.base.tarnorm import TarNormaliseError, normalise, relpath
from hats.console import Progress, Steps, as_steps
from hats.errors import HatsError
from hats.fsio import atomic_output, check_parent_dirs, make_parent_dirs, write_bytes_atomic

_CHUNK = 1 << 20


class BaseBuildError(HatsError):
    """Building or exporting the base failed."""


@dataclass(frozen=True)
class BaseResult:
    """A built base tarball (``path``) and what it contains."""

    path: Path
    sha256: str  # of the file at ``path`` (the .tar.xz bytes for a .tar.xz output)
    size: int
    packages: tuple[str, ...]  # "name=version", sorted
    packages_sha256: str  # of the manifest file
    tar_sha256: str  # of the uncompressed tarball
    recipe_key: str
    cached: bool  # reused from the cache, no mmdebstrap run

    @property
    def manifest(self) -> Path:
        return manifest_path(self.path)


def output_kind(out: Path) -> str:
    """``tar`` or ``tar.xz`` from the name; anything else is a user error."""
    name = out.name
    if name.endswith(".tar.xz"):
        return "tar.xz"
    if name.endswith(".tar"):
        return "tar"
    raise BaseBuildError(f"{out}: output name must end with .tar or .tar.xz")


def installed_packages(status: bytes) -> tuple[str, ...]:
    """``name=version`` of every installed package in a dpkg ``status`` file, sorted."""
    result: list[str] = []
    for stanza in status.decode("utf-8", "replace").split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            result.append(f"{fields['Package']}={fields.get('Version', '')}")
    return tuple(sorted(result))


def _manifest_bytes(packages: tuple[str, ...]) -> bytes:
    return "".join(f"{p}\n" for p in packages).encode("utf-8")


def check_base_tar(path: Path) -> tuple[tuple[str, ...], list[str]]:
    """Read a normalised base; return (packages, problems found against the recipe)."""
    problems: list[str] = []
    status: bytes | None = None
    with tarfile.open(path, "r:") as tar:
        members = {relpath(m.name): m for m in tar}
        for item in recipe.CONFIG_FILES:
            member = members.get(item.path.lstrip("/"))
            if member is None or not member.isreg():
                problems.append(f"{item.path} missing")
                continue
            handle = tar.extractfile(member)
            data = handle.read() if handle is not None else b""
            if data != item.content:
                problems.append(f"{item.path} has unexpected content")
            if member.mode != item.mode:
                problems.append(f"{item.path} has mode {member.mode:04o}")
        for link, target in recipe.ENABLEMENT_LINKS.items():
            member = members.get(link.lstrip("/"))
            if member is None or not member.issym() or member.linkname != target:
                problems.append(f"{link} is not a symlink to {target}")
        for forbidden in recipe.FORBIDDEN_PATHS:
            if forbidden.lstrip("/") in members:
                problems.append(f"{forbidden} present")
        machine_id = members.get("etc/machine-id")
        if machine_id is None or not machine_id.isreg() or machine_id.size != 0:
            problems.append("/etc/machine-id is not an empty file")
        dbus_id = members.get("var/lib/dbus/machine-id")
        if dbus_id is None or not dbus_id.issym() or dbus_id.linkname != "/etc/machine-id":
            problems.append("/var/lib/dbus/machine-id is not a symlink to /etc/machine-id")
        status_member = members.get("var/lib/dpkg/status")
        if status_member is not None:
            handle = tar.extractfile(status_member)
            status = handle.read() if handle is not None else None
    if status is None:
        problems.append("/var/lib/dpkg/status missing")
        return (), problems
    return installed_packages(status), problems


def _build_into_cache(cache: BaseCache, spec: BuildSpec, key: str, steps: Steps) -> CachedBase:
    """Run mmdebstrap, normalise, verify and publish into the cache (lock held)."""
    executable = find_mmdebstrap()
    for stale in cache.tmp.glob("build-*"):
        shutil.rmtree(stale, ignore_errors=True)
    workdir = Path(tempfile.mkdtemp(prefix="build-", dir=cache.tmp))
    try:
        raw = workdir / "raw.tar"
        entry = cache.entry_dir(spec)
        log = cache.logs / f"{entry.name}.log"
        argv = command(
            spec,
            raw,
            executable=executable,
            apt_archives=cache.apt_archives,
            apt_lists=cache.apt_lists,
        )
        with steps.step(f"running mmdebstrap ({recipe.SUITE}, {recipe.VARIANT})"):
            steps.log(f"log: {log}")
            run(argv, log_path=log, progress=steps.log)
        built = workdir / "base.tar"
        with steps.step("normalising the tarball"):
            try:
                with open(built, "wb") as handle:
                    result = normalise(
                        raw, handle, empty_dirs=recipe.OUTPUT_EMPTY_DIRS, progress=steps.log
                    )
            except (TarNormaliseError, tarfile.TarError) as exc:
                raise BaseBuildError(f"{raw}: cannot normalise mmdebstrap output: {exc}") from None
        raw.unlink()
        packages, problems = check_base_tar(built)
        if problems:
            raise BaseBuildError(
                f"built base does not match the recipe: {'; '.join(problems)} (log: {log})"
            )
        manifest = _manifest_bytes(packages)
        packages_sha256 = hashlib.sha256(manifest).hexdigest()
        entry.mkdir(parents=True, exist_ok=True)
        final = entry / tar_name(packages_sha256)
        os.chmod(built, 0o644)
        write_bytes_atomic(manifest_path(final), manifest)
        os.replace(built, final)
        meta = {
            "tar": final.name,
            "sha256": result.sha256,
            "size": result.size,
            "packages_sha256": packages_sha256,
            "packages": len(packages),
            "recipe_key": key,
            "suite": recipe.SUITE,
            "architecture": recipe.ARCHITECTURE,
            "with_python": spec.with_python,
            "sources": list(recipe.apt_sources(spec.mirror, spec.security_mirror)),
            "mmdebstrap": mmdebstrap_version(executable),
        }
        write_bytes_atomic(
            entry / METADATA, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
        )
        for old in entry.glob("base-*.tar*"):
            if old.name not in (final.name, manifest_path(final).name):
                with contextlib.suppress(OSError):
                    old.unlink()
        for removed in cache.prune(spec):
            steps.log(f"removed old cache entry {removed}")
        steps.log(f"built {final} ({result.size} bytes, {len(packages)} packages)")
        return CachedBase(final, result.sha256, result.size, packages_sha256, packages)
    except OSError as exc:
        where = exc.filename or cache.root
        raise BaseBuildError(f"{where}: cannot write the base: {exc.strerror}") from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _cached_or_build(
    spec: BuildSpec, cache_dir: Path | None, rebuild: bool, steps: Steps
) -> tuple[CachedBase, str, bool]:
    cache = BaseCache.at(cache_dir)
    key = recipe_key(spec)
    if rebuild:
        find_mmdebstrap()
    with cache.lock():
        found = None if rebuild else cache.lookup(spec)
        if found is not None:
            return found, key, True
        return _build_into_cache(cache, spec, key, steps), key, False


def _export(source: CachedBase, out: Path, kind: str, steps: Steps) -> tuple[str, int]:
    """Copy (``tar``) or xz-compress (``tar.xz``) the cached tarball to ``out``."""
    verb = "compressing" if kind == "tar.xz" else "copying"
    with steps.step(f"{verb} {source.path} to {out}"):
        return _copy_out(source, out, kind)


def _copy_out(source: CachedBase, out: Path, kind: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    make_parent_dirs(out)  # as every -o: missing directories are created
    if kind == "tar.xz":
        with atomic_output(out) as dst:
            return xz_compress_file(source.path, dst)
    with atomic_output(out) as dst, open(source.path, "rb") as src:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            dst.write(chunk)
    return digest.hexdigest(), size


def build_base(
    out: Path | None,
    *,
    with_python: bool,
    cache_dir: Path | None = None,
    rebuild: bool = False,
    mirror: str = recipe.DEFAULT_MIRROR,
    security_mirror: str = recipe.DEFAULT_SECURITY_MIRROR,
    progress: Progress | None = None,
) -> BaseResult:
    """Build (or reuse from the cache) the default base; copy it to ``out`` if given.

    ``out`` ending in ``.tar`` gets the tarball, ``.tar.xz`` gets it xz-compressed
    (preset 6, CRC64, single stream, like ``xz -T1``); ``None`` leaves it in the
    cache (``BaseResult.path`` is then the cached file). The package manifest is
    written next to the output as ``<out>.packages.txt``. ``rebuild`` ignores
    a cached base (the apt package cache is still used). ``progress``: the
    caller's :class:`hats.console.Steps` (the build's steps nest in its current
    step), or a line callback.
    """
    steps = as_steps(progress)
    kind = output_kind(out) if out is not None else "tar"
    if out is not None:
        check_parent_dirs(out)  # created when written
    spec = BuildSpec(with_python=with_python, mirror=mirror, security_mirror=security_mirror)
    found, key, cached = _cached_or_build(spec, cache_dir, rebuild, steps)
    if out is None or (out.exists() and out.resolve() == found.path.resolve()):
        return BaseResult(
            found.path,
            found.sha256,
            found.size,
            found.packages,
            found.packages_sha256,
            found.sha256,
            key,
            cached,
        )
    try:
        sha256, size = _export(found, out, kind, steps)
        write_bytes_atomic(manifest_path(out), _manifest_bytes(found.packages))
    except OSError as exc:
        raise BaseBuildError(f"{exc.filename or out}: cannot write: {exc.strerror}") from None
    return BaseResult(
        out, sha256, size, found.packages, found.packages_sha256, found.sha256, key, cached
    )


def cached_base(
    *,
    with_python: bool,
    cache_dir: Path | None = None,
    mirror: str = recipe.DEFAULT_MIRROR,
    security_mirror: str = recipe.DEFAULT_SECURITY_MIRROR,
) -> CachedBase | None:
    """The cached base for these options, without building; ``None`` if not built."""
    spec = BuildSpec(with_python=with_python, mirror=mirror, security_mirror=security_mirror)
    return BaseCache.at(cache_dir).lookup(spec)


def ensure_default_base(
    *,
    with_python: bool,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> Path:
    """The path of the cached, uncompressed base ``.tar``, building it if needed."""
    return build_base(None, with_python=with_python, cache_dir=cache_dir, progress=progress).path
