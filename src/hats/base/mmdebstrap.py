"""Building the mmdebstrap command line and running it."""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hats import toolrun
from hats.base import recipe
from hats.errors import HatsError

DEBIAN_PACKAGE = "mmdebstrap"
MERGED_USR_HOOKS = "/usr/share/mmdebstrap/hooks/merged-usr"


class MmdebstrapError(HatsError):
    """mmdebstrap is missing or failed."""


@dataclass(frozen=True)
class BuildSpec:
    """What to build (the options of one mmdebstrap run)."""

    with_python: bool
    mirror: str = recipe.DEFAULT_MIRROR
    security_mirror: str = recipe.DEFAULT_SECURITY_MIRROR
    mode: str = "auto"


def find_mmdebstrap() -> str:
    """The mmdebstrap executable, or a one-line error naming the package."""
    path = shutil.which("mmdebstrap")
    if path is None:
        raise MmdebstrapError(
            f"mmdebstrap not found: install the Debian package '{DEBIAN_PACKAGE}' "
            f"(apt-get install {DEBIAN_PACKAGE})"
        )
    return path


def mmdebstrap_version(executable: str) -> str:
    """``mmdebstrap --version`` (e.g. ``mmdebstrap 1.3.5``), or ``unknown``."""
    try:
        done = toolrun.run([executable, "--version"], timeout=60, check=False)
    except HatsError:
        return "unknown"
    text = (done.text or str(done.stderr)).strip()
    return text.splitlines()[0] if text else "unknown"


def command(
    spec: BuildSpec,
    target: Path,
    *,
    executable: str = "mmdebstrap",
    apt_archives: Path | None = None,
    apt_lists: Path | None = None,
) -> list[str]:
    """The mmdebstrap argv writing an (unnormalised) tarball to ``target``.

    ``apt_archives``/``apt_lists``: host directories whose contents are put
    into the chroot's ``/var/cache/apt/archives`` and ``/var/lib/apt/lists``
    before the download and copied back after the installation (see
    :func:`cache_in_hook`), so that a rebuild downloads nothing but the
    ``InRelease`` files.
    """
    argv = [
        executable,
        f"--mode={spec.mode}",
        f"--variant={recipe.VARIANT}",
        f"--architectures={recipe.ARCHITECTURE}",
        "--format=tar",
        "--include=" + ",".join(recipe.packages(with_python=spec.with_python)),
        # Our customize hook does the reproducibility clean-up itself: mmdebstrap's
        # would delete the /var/lib/dbus/machine-id symlink Oak's image has.
        "--skip=cleanup/reproducible",
        "--skip=cleanup/apt",
        # Merged /usr the way debootstrap (and so Debian's container images) does
        # it: directory symlinks plus the usr-is-merged package, instead of the
        # usrmerge package that would pull in perl.
        f"--hook-dir={MERGED_USR_HOOKS}",
        # No fsync per unpacked file (the tree is thrown away if the build fails);
        # the customize hook deletes the dpkg.cfg.d file this option leaves.
        "--dpkgopt=force-unsafe-io",
    ]
    if apt_archives is not None or apt_lists is not None:
        argv += [
            # Keep the essential packages' .debs so they can be copied out.
            "--skip=essential/unlink",
            "--setup-hook=" + cache_in_hook(apt_archives, apt_lists),
            "--customize-hook=" + cache_out_hook(apt_archives, apt_lists),
        ]
    argv.append("--customize-hook=" + recipe.customize_script())
    argv += [
        recipe.SUITE,
        str(target),
        *recipe.apt_sources(spec.mirror, spec.security_mirror),
    ]
    return argv


_CHROOT_ARCHIVES = '"$1"/var/cache/apt/archives'
_CHROOT_LISTS = '"$1"/var/lib/apt/lists'


def cache_in_hook(archives: Path | None, lists: Path | None) -> str:
    """Setup hook: put the cached .debs (hard links if possible) and lists into the chroot.

    mmdebstrap's ``sync-in``/``sync-out`` special hooks would do the same
    through tar pipes; plain copies are ~3 s faster per build and, as shell
    hooks run on the host side (root and unshare modes), equally correct.
    The .debs are only read by apt and dpkg (apt replaces, never rewrites, a
    file in the archive directory), so hard-linking them is safe.
    """
    lines = ["set -eu"]
    if archives is not None:
        src = shlex.quote(str(archives))
        debs = f"find {src} -maxdepth 1 -type f -name '*.deb'"
        lines += [
            f"mkdir -p {_CHROOT_ARCHIVES}",
            f"{debs} -exec cp -l -t {_CHROOT_ARCHIVES} {{}} + 2>/dev/null"
            f" || {debs} -exec cp -p -t {_CHROOT_ARCHIVES} {{}} +",
        ]
    if lists is not None:
        src = shlex.quote(str(lists))
        lines += [
            f"mkdir -p {_CHROOT_LISTS}",
            f"find {src} -maxdepth 1 -type f ! -name lock -exec cp -p -t {_CHROOT_LISTS} {{}} +",
        ]
    return "\n".join(lines) + "\n"


def cache_out_hook(archives: Path | None, lists: Path | None) -> str:
    """Customize hook (before the clean-up): copy new .debs and the current lists out."""
    lines = ["set -eu"]
    if archives is not None:
        dst = shlex.quote(str(archives))
        lines.append(
            f"find {_CHROOT_ARCHIVES} -maxdepth 1 -type f -name '*.deb'"
            f" -exec cp -pn -t {dst} {{}} +"
        )
    if lists is not None:
        dst = shlex.quote(str(lists))
        lines += [
            f"find {dst} -maxdepth 1 -type f -delete",
            f"find {_CHROOT_LISTS} -maxdepth 1 -type f ! -name lock -exec cp -p -t {dst} {{}} +",
        ]
    return "\n".join(lines) + "\n"


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for mmdebstrap: the caller's plus a fixed locale and epoch."""
    env = dict(os.environ if base is None else base)
    env["SOURCE_DATE_EPOCH"] = str(recipe.SOURCE_DATE_EPOCH)
    env["LC_ALL"] = "C.UTF-8"
    return env


def run(
    argv: Sequence[str],
    *,
    log_path: Path,
    progress: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run mmdebstrap (:func:`hats.toolrun.run`), its stderr to ``log_path``; one-line error.

    Its ``I:``/``W:``/``E:`` lines go to ``progress``; the error's detail is the
    first ``E:`` line (the cause: the last one is just "mmdebstrap failed to
    run") and the log's path.
    """
    first_error = ""

    with open(log_path, "wb") as log:

        def line(text: str) -> None:
            nonlocal first_error
            log.write(text.encode("utf-8", "replace") + b"\n")
            text = text.rstrip()
            if text.startswith("E: ") and not first_error:
                first_error = text[3:300]
            if progress is not None and text[:3] in ("I: ", "W: ", "E: "):
                progress(text[:200])

        toolrun.run(
            argv,
            tool="mmdebstrap",
            error=MmdebstrapError,
            env=environment() if env is None else env,
            on_stderr=line,
            explain=lambda _result: f"{first_error or 'see the log'} (log: {log_path})",
        )
