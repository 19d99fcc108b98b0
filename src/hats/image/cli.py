"""``hats image``: build, inspect, diff, verify and lint system images.

A thin shell: options are parsed into :class:`~hats.image.build.BuildOptions`
or passed to the pure readers; everything else lives in the modules.
With ``--json`` the last line on stdout is one JSON object.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from hats.errors import HatsError
from hats.image.blockcache import DEFAULT_MAX_SIZE
from hats.image.compose import read_tree
from hats.image.compress import open_decompressed
from hats.image.lint import Finding, lint
from hats.image.spec import SpecError, load_spec, parse_mode
from hats.image.sums import check_digest, file_sha256, parse_sums, policy_image_digests
from hats.image.tarstream import TarReader
from hats.image.tree import EffectiveTree, Entry, normalize
from hats.image.units import SHARE_TYPES
from hats.image.xzparallel import RECOMMENDED_BLOCK_SIZE, check_block_size, parse_size
from hats.textsafe import printable

if TYPE_CHECKING:  # imported where used: `hats image --help` does not load the builder or rich
    from hats.image.build import BuildOptions, LayerSpec

PathArg = click.Path(path_type=Path)
ExistingFile = click.Path(path_type=Path, exists=False, dir_okay=False)


@click.group("image")
def image_group() -> None:
    """Build, inspect, diff, verify and lint system images."""


def _emit_json(document: object) -> None:
    click.echo(json.dumps(document, sort_keys=True))


def _parse_layer(value: str) -> LayerSpec:
    """``SOURCE[:DEST[:MODE]]`` (DEST defaults to ``/``)."""
    from hats.image.build import LayerSpec

    parts = value.split(":")
    mode: int | None = None
    if len(parts) >= 3 and parts[-1].isdigit():
        mode = parse_mode(parts.pop(), f"--layer {value}")
    dest = parts.pop() if len(parts) >= 2 and parts[-1].startswith("/") else "/"
    return LayerSpec(source=Path(":".join(parts)), dest=dest, mode=mode)


def _progress(quiet: bool) -> Callable[[str], None]:
    def report(message: str) -> None:
        if not quiet:
            click.echo(f"hats: {message}", err=True)

    return report


@image_group.command("build")
@click.argument("spec", required=False, type=PathArg)
@click.option("--base", type=PathArg, help="Base root: tar, tar.gz/xz/zst or directory.")
@click.option("--tvs-keys", type=PathArg, help="tvs_public_keys.txt to put in /hats/.")
@click.option("--secret-share-type", type=click.Choice(SHARE_TYPES, case_sensitive=True))
@click.option("--tvs-heartbeat-frequency", type=int, help="Seconds between TVS heartbeats.")
@click.option("--orchestrator-flag", multiple=True, help="Extra orchestrator flag (repeat).")
@click.option("--orchestrator", type=PathArg, help="orchestrator_main binary.")
@click.option("--agent", type=PathArg, help="oak_containers_agent binary.")
@click.option("--syslogd", type=PathArg, help="oak_containers_syslogd binary.")
@click.option("--orchestrator-unit", type=PathArg, help="Use this unit file verbatim.")
@click.option("--syslogd-unit", type=PathArg, help="Use this unit file verbatim.")
@click.option("--layer", multiple=True, help="Extra layer SOURCE[:DEST[:MODE]] (repeat).")
@click.option("-o", "--output", type=PathArg, help="Output .tar.xz.")
@click.option("--tar", "tar_output", type=PathArg, help="Also write the uncompressed tar.")
@click.option("--manifest", type=PathArg, help="Write a JSON manifest of every path.")
@click.option("--sums", type=PathArg, help="Add/replace this image's line in SHA256SUMS.")
@click.option("--lint-allow", multiple=True, help="Lint error code not to fail on (repeat).")
@click.option(
    "--allow-test-keys",
    is_flag=True,
    help="Accept keys whose private key is public (the reference's test keys 1*G...): "
    "test images only; anyone can act as such a TVS.",
)
@click.option("--cache-dir", type=PathArg, help="Cache for the default base and agents.")
@click.option(
    "--xz-block-size",
    metavar="SIZE",
    help="Write multi-block xz (bytes of `xz -T2 --block-size=SIZE -6`), compressed in "
    f"parallel; e.g. {RECOMMENDED_BLOCK_SIZE >> 20}MiB (recommended). Default: the "
    "reference `xz -T1 -6`.",
)
@click.option(
    "-j", "--jobs", type=int, help="Compression workers with --xz-block-size [default: CPUs]."
)
@click.option(
    "--block-cache",
    "block_cache_dir",
    type=PathArg,
    help="Cache of compressed blocks for --xz-block-size [default: CACHE_DIR/xz-blocks].",
)
@click.option("--no-block-cache", is_flag=True, help="Compress every block, cache nothing.")
@click.option(
    "--block-cache-max-size",
    metavar="SIZE",
    help=f"Evict least recently used blocks above this [default: {DEFAULT_MAX_SIZE >> 30}GiB].",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary last.")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def build_command(
    spec: Path | None,
    base: Path | None,
    tvs_keys: Path | None,
    secret_share_type: str | None,
    tvs_heartbeat_frequency: int | None,
    orchestrator_flag: tuple[str, ...],
    orchestrator: Path | None,
    agent: Path | None,
    syslogd: Path | None,
    orchestrator_unit: Path | None,
    syslogd_unit: Path | None,
    layer: tuple[str, ...],
    output: Path | None,
    tar_output: Path | None,
    manifest: Path | None,
    sums: Path | None,
    lint_allow: tuple[str, ...],
    allow_test_keys: bool,
    cache_dir: Path | None,
    xz_block_size: str | None,
    jobs: int | None,
    block_cache_dir: Path | None,
    no_block_cache: bool,
    block_cache_max_size: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Compose a HATs system image (reference layout, xz -T1 -6 bytes).

    Give the options, or a TOML SPEC file holding them. With --xz-block-size
    the image is compressed in parallel as multi-block xz (other bytes than
    the reference's, as reproducible), reusing unchanged blocks of earlier
    builds from a block cache.
    """
    from hats.image.build import BuildOptions, build_image

    if spec is not None:
        exclusive = {
            "--base": base,
            "--tvs-keys": tvs_keys,
            "--secret-share-type": secret_share_type,
            "--tvs-heartbeat-frequency": tvs_heartbeat_frequency,
            "--orchestrator-flag": orchestrator_flag,
            "--orchestrator": orchestrator,
            "--agent": agent,
            "--syslogd": syslogd,
            "--orchestrator-unit": orchestrator_unit,
            "--syslogd-unit": syslogd_unit,
            "--layer": layer,
            "--lint-allow": lint_allow,
        }
        given = [flag for flag, value in exclusive.items() if value not in (None, ())]
        if given:
            raise click.UsageError(
                f"{given[0]} cannot be combined with a spec file; put it in {spec}"
            )
        build = load_spec(spec)
    else:
        if tvs_keys is None or secret_share_type is None:
            raise click.UsageError("--tvs-keys and --secret-share-type are required (or a SPEC)")
        build = BuildOptions(
            output=Path(),
            tvs_keys=tvs_keys,
            secret_share_type=secret_share_type,
            base=base,
            tvs_heartbeat_frequency=tvs_heartbeat_frequency,
            orchestrator_flags=orchestrator_flag,
            orchestrator=orchestrator,
            agent=agent,
            syslogd=syslogd,
            orchestrator_unit=orchestrator_unit,
            syslogd_unit=syslogd_unit,
            layers=tuple(_parse_layer(v) for v in layer),
            lint_allow=lint_allow,
        )
    if output is not None:
        build.output = output
    if build.output == Path():
        raise click.UsageError("no output: give -o OUT.tar.xz (or output in the spec)")
    build.tar_output = tar_output or build.tar_output
    build.manifest = manifest or build.manifest
    build.sums = sums or build.sums
    build.cache_dir = cache_dir
    build.allow_test_keys = build.allow_test_keys or allow_test_keys
    _xz_options(build, xz_block_size, jobs, block_cache_dir, no_block_cache, block_cache_max_size)
    for path in (build.output, build.tar_output, build.manifest, build.sums):
        if path is not None and not path.parent.exists():
            try:
                path.parent.mkdir(parents=True)
            except OSError as exc:
                raise HatsError(f"{path}: cannot create directory: {exc.strerror}") from None
    report = _progress(quiet)
    if quiet or not sys.stderr.isatty():
        result = build_image(build, progress=report)
    else:
        from rich.console import Console
        from rich.progress import (
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        with Progress(
            TextColumn("hats: composing and compressing"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as bar:
            task = bar.add_task("build", total=None)
            result = build_image(build, progress=report, on_bytes=lambda n: bar.advance(task, n))
    warnings = [f for f in result.findings if f.severity == "warning"]
    if warnings and not quiet:
        click.echo(
            f"hats: {len(warnings)} lint warning(s); `hats image lint {result.path}` lists them",
            err=True,
        )
    click.echo(f"{result.sha256}  {result.path}")
    if as_json:
        _emit_json(result.to_json())


def _xz_options(
    build: BuildOptions,
    block_size: str | None,
    jobs: int | None,
    cache_dir: Path | None,
    no_cache: bool,
    max_size: str | None,
) -> None:
    if block_size is not None:
        build.xz_block_size = check_block_size(parse_size(block_size, "--xz-block-size"))
    if build.xz_block_size is None:
        given = {
            "--jobs": jobs,
            "--block-cache": cache_dir,
            "--no-block-cache": no_cache or None,
            "--block-cache-max-size": max_size,
        }
        for flag, value in given.items():
            if value is not None:
                raise click.UsageError(
                    f"{flag} needs --xz-block-size (the reference xz -T1 is one block, one thread)"
                )
        return
    if no_cache and (cache_dir is not None or max_size is not None):
        raise click.UsageError("--no-block-cache cannot be combined with other block cache options")
    if jobs is not None and jobs < 1:
        raise click.UsageError(f"--jobs: {jobs} is not a number of workers (1 or more)")
    build.jobs = jobs
    build.block_cache = not no_cache
    build.block_cache_dir = cache_dir
    if max_size is not None:
        build.block_cache_max_size = parse_size(max_size, "--block-cache-max-size")


def load_tree(image: Path) -> EffectiveTree:
    with open_decompressed(image) as stream:
        return read_tree(TarReader(stream, str(image)))


def _mode_string(entry: Entry) -> str:
    kinds = {"dir": "d", "symlink": "l", "chardev": "c", "blockdev": "b", "fifo": "p"}
    bits = "".join(ch if entry.mode & (1 << (8 - i)) else "-" for i, ch in enumerate("rwxrwxrwx"))
    return kinds.get(entry.kind, "-") + bits


def _selected(tree: EffectiveTree, paths: tuple[str, ...]) -> list[Entry]:
    entries = tree.sorted_entries()
    if not paths:
        return entries
    wanted = []
    for raw in paths:
        norm = normalize(raw)
        if norm is None:
            raise HatsError(f"{raw}: paths with '..' are never in the effective tree")
        match = [e for e in entries if not norm or e.path == norm or e.path.startswith(norm + "/")]
        if not match:
            raise HatsError(f"{raw}: not in the image's effective tree")
        wanted.extend(match)
    return wanted


@image_group.command("inspect")
@click.argument("image", type=ExistingFile)
@click.argument("paths", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect_command(image: Path, paths: tuple[str, ...], as_json: bool) -> None:
    """Show the effective tree stage1 would unpack (later entries win).

    Modes are shown as stage1 applies them (mode & 0o777); entries that
    replaced earlier ones list the archive members they overrode (#index).
    """
    tree = load_tree(image)
    entries = _selected(tree, paths)
    if as_json:
        _emit_json(
            {
                "image": str(image),
                "members": tree.member_count,
                "entries": [e.to_json() for e in entries],
            }
        )
        return
    for entry in entries:
        link = f" -> {entry.linkname}" if entry.linkname else ""
        over = f"  (overrides {', '.join(entry.overrides)})" if entry.overrides else ""
        click.echo(
            printable(
                f"{_mode_string(entry)} {entry.uid}/{entry.gid} {entry.size:>10} "
                f"/{entry.path}{link}  {entry.layer}{over}"
            )
        )


def _comparable(entry: Entry) -> dict[str, object]:
    doc = entry.to_json()
    for key in ("layer", "overrides", "uid", "gid"):
        doc.pop(key, None)
    doc["mtime"] = entry.mtime
    return doc


@image_group.command("diff")
@click.argument("first", type=ExistingFile)
@click.argument("second", type=ExistingFile)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def diff_command(first: Path, second: Path, as_json: bool) -> None:
    """Differences between two images' effective trees; exit 1 when they differ.

    Ownership is ignored (stage1 ignores it); type, mode, size, content,
    link target, device numbers and mtime are compared.
    """
    a, b = load_tree(first), load_tree(second)
    changes: list[dict[str, object]] = []
    for path in sorted(set(a.entries) | set(b.entries)):
        old, new = a.entries.get(path), b.entries.get(path)
        if old is None:
            assert new is not None
            changes.append({"path": "/" + path, "change": "added", "new": _comparable(new)})
        elif new is None:
            changes.append({"path": "/" + path, "change": "removed", "old": _comparable(old)})
        else:
            before, after = _comparable(old), _comparable(new)
            if before != after:
                fields = sorted(
                    k for k in set(before) | set(after) if before.get(k) != after.get(k)
                )
                changes.append(
                    {
                        "path": "/" + path,
                        "change": "changed",
                        "fields": fields,
                        "old": before,
                        "new": after,
                    }
                )
    if as_json:
        _emit_json({"first": str(first), "second": str(second), "changes": changes})
    else:
        for change in changes:
            detail = f" ({', '.join(change['fields'])})" if "fields" in change else ""  # type: ignore[arg-type]
            marks = {"added": "+", "removed": "-", "changed": "~"}
            click.echo(printable(f"{marks[str(change['change'])]} {change['path']}{detail}"))
        if not changes:
            click.echo("no differences")
    raise click.exceptions.Exit(1 if changes else 0)


@image_group.command("verify")
@click.argument("image", type=ExistingFile)
@click.option("--sha256", "expected", help="Expected SHA-256 of the .tar.xz.")
@click.option("--sums", type=PathArg, help="SHA256SUMS file (reference format).")
@click.option("--name", help="Name in SHA256SUMS (default: file name without .tar.xz).")
@click.option("--policy", type=PathArg, help="Text-format AppraisalPolicies.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def verify_command(
    image: Path,
    expected: str | None,
    sums: Path | None,
    name: str | None,
    policy: Path | None,
    as_json: bool,
) -> None:
    """Check the image's digest against a hash, SHA256SUMS or a policy.

    Exit 0 when it matches, 1 when it does not.
    """
    if sum(x is not None for x in (expected, sums, policy)) != 1:
        raise click.UsageError("give exactly one of --sha256, --sums, --policy")
    actual = file_sha256(image)
    if expected is not None:
        wanted = [check_digest(expected, "--sha256")]
        source = "--sha256"
    elif sums is not None:
        try:
            table = parse_sums(sums.read_text(), str(sums))
        except (OSError, UnicodeDecodeError) as exc:
            raise HatsError(f"{sums}: cannot read: {exc}") from None
        from hats.image.build import sums_name

        key = name or sums_name(image)
        if key not in table:
            raise HatsError(f"{sums}: no line for {key!r} (names: {', '.join(sorted(table))})")
        wanted = [table[key]]
        source = f"{sums} ({key})"
    else:
        assert policy is not None
        try:
            wanted = policy_image_digests(policy.read_text(), str(policy))
        except (OSError, UnicodeDecodeError) as exc:
            raise HatsError(f"{policy}: cannot read: {exc}") from None
        source = f"{policy} ({len(wanted)} polic{'y' if len(wanted) == 1 else 'ies'})"
    ok = actual in wanted
    if as_json:
        _emit_json({"image": str(image), "sha256": actual, "expected": wanted, "match": ok})
    elif ok:
        click.echo(f"OK: {image} sha256 {actual} matches {source}")
    else:
        click.echo(f"MISMATCH: {image} sha256 {actual} is not in {source}", err=True)
    raise click.exceptions.Exit(0 if ok else 1)


@image_group.command("lint")
@click.argument("image", type=ExistingFile)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--allow-test-keys",
    is_flag=True,
    help="Report keys whose private key is public (the reference's test keys) as warnings.",
)
def lint_command(image: Path, as_json: bool, allow_test_keys: bool) -> None:
    """Check an image for what breaks stage1 or the agents; exit 1 on errors."""
    findings: list[Finding] = lint(load_tree(image), allow_test_keys=allow_test_keys)
    errors = sum(1 for f in findings if f.severity == "error")
    if as_json:
        _emit_json(
            {"image": str(image), "errors": errors, "findings": [f.to_json() for f in findings]}
        )
    else:
        for finding in findings:
            click.echo(str(finding))  # escaped by Finding.__str__
        click.echo(f"{errors} error(s), {len(findings) - errors} warning(s)")
    raise click.exceptions.Exit(1 if errors else 0)


__all__ = ["SpecError", "image_group"]
