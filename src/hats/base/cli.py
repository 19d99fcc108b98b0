"""``hats base``: build the default Debian base root filesystem, show where it is cached."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from hats.base import recipe
from hats.base.build import build_base, cached_base
from hats.errors import HatsError

_with_python = click.option(
    "--with-python",
    is_flag=True,
    help="Also install python3 (bookworm's 3.11), needed by the project's agents.",
)
_cache_dir = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Cache directory (default: $HATS_CACHE_DIR or ~/.cache/hats).",
)
_mirror = click.option(
    "--mirror",
    default=recipe.DEFAULT_MIRROR,
    show_default=True,
    help="Debian archive mirror (part of the cache key).",
)
_security_mirror = click.option(
    "--security-mirror",
    default=recipe.DEFAULT_SECURITY_MIRROR,
    show_default=True,
    help="Debian security archive mirror (part of the cache key).",
)


@click.group("base")
def base_group() -> None:
    """Build the default Debian base root filesystem."""


@base_group.command("build")
@_with_python
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the base here (.tar, or .tar.xz compressed; missing directories are"
    " created) [default: only the cache].",
)
@_cache_dir
@click.option("--rebuild", is_flag=True, help="Build again even if a cached base exists.")
@_mirror
@_security_mirror
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON summary on stdout (progress goes to stderr).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress messages on stderr.")
def build_command(
    with_python: bool,
    out: Path | None,
    cache_dir: Path | None,
    rebuild: bool,
    mirror: str,
    security_mirror: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """Build the Oak-equivalent bookworm base with mmdebstrap (cached).

    \b
    Example:
      hats base build --with-python -o out/base.tar.xz
    """

    from hats.console import Steps

    # Numbered, timed steps on stderr: plain lines, or rich's display on a terminal.
    progress = Steps(sys.stderr, prefix="hats: base: ", quiet=quiet)

    result = build_base(
        out,
        with_python=with_python,
        cache_dir=cache_dir,
        rebuild=rebuild,
        mirror=mirror,
        security_mirror=security_mirror,
        progress=progress,
    )
    if as_json:
        summary = {
            "path": str(result.path),
            "sha256": result.sha256,
            "size": result.size,
            "packages": len(result.packages),
            "packages_sha256": result.packages_sha256,
            "manifest": str(result.manifest),
            "tar_sha256": result.tar_sha256,
            "cached": result.cached,
        }
        click.echo(json.dumps(summary, sort_keys=True))
    else:
        state = "cached" if result.cached else "built"
        click.echo(f"{result.path}")
        progress.log(
            f"{state}: sha256 {result.sha256}, {result.size} bytes, "
            f"{len(result.packages)} packages (manifest {result.manifest})"
        )


@base_group.command("path")
@_with_python
@_cache_dir
@_mirror
@_security_mirror
def path_command(
    with_python: bool, cache_dir: Path | None, mirror: str, security_mirror: str
) -> None:
    """Print the path of the cached base; exit 1 if it has not been built.

    \b
    Example:
      hats base path --with-python
    """
    found = cached_base(
        with_python=with_python,
        cache_dir=cache_dir,
        mirror=mirror,
        security_mirror=security_mirror,
    )
    if found is None:
        flag = " --with-python" if with_python else ""
        raise HatsError(f"no cached base for these options: run 'hats base build{flag}'")
    click.echo(str(found.path))
