"""``hats image``: build, inspect, diff, verify and lint system images.

A thin shell: ``build``'s options are generated from the settings table
(:mod:`hats.image.settings`) and become :class:`~hats.image.settings.BuildOptions`;
``diff``'s differences come from :mod:`hats.image.diff`; the other commands call
the pure readers and only format their results.
With ``--json`` stdout holds one JSON document and nothing else (logs go to
stderr). ``diff`` and ``verify`` exit 0 (same / matches), 1 (differs / does
not match) or 2 (error).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hats.archive.compress import open_decompressed
from hats.archive.tarstream import TarReader
from hats.errors import HatsError
from hats.image.compose import read_tree
from hats.image.lint import Finding, lint
from hats.image.settings import (
    SETTINGS,
    SettingsConflict,
    SpecError,
    given_from_cli,
    options_from_settings,
    settings_json,
)
from hats.image.sums import (
    check_digest,
    file_sha256,
    parse_sums_lines,
    policy_image_digests,
)
from hats.image.tree import EffectiveTree, Entry, normalize
from hats.textsafe import printable

if TYPE_CHECKING:  # imported where used: `hats image --help` does not load the builder or rich
    from hats.image.build import BuildPlan

PathArg = click.Path(path_type=Path)
ExistingFile = click.Path(path_type=Path, exists=False, dir_okay=False)


@click.group("image")
def image_group() -> None:
    """Build, inspect, diff, verify and lint system images."""


def _emit_json(document: object) -> None:
    """The one JSON document of a ``--json`` command, alone on stdout."""
    click.echo(json.dumps(document, sort_keys=True))


@contextlib.contextmanager
def _errors_exit_2() -> Iterator[None]:
    """For commands whose exit 1 means "differs": an error exits 2."""
    try:
        yield
    except HatsError as exc:
        exc.exit_code = 2
        raise


def _warning_summary(findings: list[Finding]) -> str | None:
    counts = Counter(f.code for f in findings if f.severity == "warning")
    if not counts:
        return None
    total = sum(counts.values())
    parts = ", ".join(f"{n} {code}" for code, n in sorted(counts.items()))
    return (
        f"{total} lint warning(s) ({parts}); `hats image lint` lists them, "
        "--lint-allow CODE hides a code"
    )


def _setting_options(command: Callable[..., None]) -> Callable[..., None]:
    """One click option per row of :data:`hats.image.settings.SETTINGS`, in its order."""
    types: dict[str, Any] = {"path": PathArg, "str": None, "int": int}
    for setting in reversed(SETTINGS):
        extra: dict[str, Any] = {}
        if setting.kind == "flag":
            extra["is_flag"] = True
        elif setting.kind == "choice":
            extra["type"] = click.Choice(setting.choices, case_sensitive=True)
        elif types[setting.kind] is not None:
            extra["type"] = types[setting.kind]
        if setting.metavar is not None:
            extra["metavar"] = setting.metavar
        command = click.option(
            *setting.flags,
            setting.name,
            multiple=setting.multiple,
            help=setting.help,
            **extra,
        )(command)
    return command


@image_group.command("build", epilog="Spec file format: docs/SPEC.md")
@click.argument("spec", required=False, type=PathArg)
@_setting_options
@click.option(
    "--check",
    is_flag=True,
    help="Dry run: every input check and lint, and what would be built; no output, no compression.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document on stdout (with the merged settings); logs go to stderr.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def build_command(
    spec: Path | None, check: bool, as_json: bool, quiet: bool, **options: Any
) -> None:
    """Compose a HATs system image (reference layout, xz -T1 -6 bytes).

    Give the options, or a TOML SPEC file holding them (every key, with its
    type, default and an example: docs/SPEC.md); options given with a SPEC
    override its values, and the list options (--layer, --orchestrator-flag,
    --lint-allow) add to its lists. With --xz-block-size the image is
    compressed in parallel as multi-block xz (other bytes than the
    reference's, as reproducible), reusing unchanged blocks of earlier builds
    from a block cache. --check runs every check and says what would be
    built, without writing or compressing anything.

    \b
    Examples:
      hats image build examples/test_single.toml -o out/hats_system_image_test_single.tar.xz
      hats image build --base base.tar --tvs-keys keys.txt --secret-share-type no-split \\
          --orchestrator BIN --agent BIN --syslogd BIN -o out/image.tar.xz --check
    """
    from hats.console import Steps
    from hats.fsio import unwind_on_signals
    from hats.image.build import BUILD_STEPS, CHECK_STEPS, build_image, check_build
    from hats.image.spec import merge_settings, read_spec

    try:
        given = given_from_cli(options)
        settings = merge_settings(read_spec(spec), given) if spec is not None else given
        if settings.get("tvs_keys") is None or settings.get("secret_share_type") is None:
            raise click.UsageError(
                "--tvs-keys and --secret-share-type are required (or tvs_keys and "
                "secret_share_type in a SPEC)"
            )
        build = options_from_settings(settings, str(spec) if spec else "options")
    except SettingsConflict as exc:
        raise click.UsageError(str(exc)) from None
    total = CHECK_STEPS if check else BUILD_STEPS
    steps = Steps(prefix="hats: ", total=total, quiet=quiet)
    if check:
        with unwind_on_signals():
            plan = check_build(build, progress=steps)
        if as_json:
            _emit_json({"check": True, "settings": settings_json(build), "plan": plan.to_json()})
        else:
            _print_plan(plan)
        return
    if build.outputs.image is None:
        raise click.UsageError("no output: give -o OUT.tar.xz (or output in the spec)")
    with unwind_on_signals():
        result = build_image(build, progress=steps)
    summary = _warning_summary(result.findings)
    if summary is not None:
        steps.log(summary.replace("hats image lint", f"hats image lint {result.path}"))
    if as_json:
        _emit_json({**result.to_json(), "settings": settings_json(build)})
    else:
        click.echo(f"{result.sha256}  {result.path}")


def _print_plan(plan: BuildPlan) -> None:
    from hats.console import human_size

    click.echo(printable(f"base: {plan.base}"))
    click.echo("layers:")
    for name, size in plan.layers:
        click.echo(printable(f"  {name:<20} {human_size(size):>10}"))
    click.echo(
        f"tar: {human_size(plan.tar_size)} ({plan.tar_size} bytes), {plan.tree.member_count} "
        f"members, {len(plan.tree.entries)} paths"
    )
    keys = "unreadable" if plan.keys is None else str(plan.keys)
    click.echo(f"keys: {keys}, secret share type {plan.share_type or 'unknown'}")
    errors = [f for f in plan.findings if f.severity == "error"]
    for finding in errors:
        click.echo(f"allowed {finding}")
    click.echo(
        f"lint: {len(errors)} allowed error(s); {_warning_summary(plan.findings) or '0 warnings'}"
    )
    if plan.outputs:
        click.echo(printable("would write: " + ", ".join(str(p) for p in plan.outputs)))
    else:
        click.echo("would write: nothing (no -o given)")
    click.echo("OK: every check passed; nothing written, nothing compressed (--check)")


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

    \b
    Example:
      hats image inspect out/image.tar.xz /hats/tvs_public_keys.txt
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


@image_group.command("diff")
@click.argument("first", type=ExistingFile)
@click.argument("second", type=ExistingFile)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def diff_command(first: Path, second: Path, as_json: bool) -> None:
    """Differences between two images; exit 0 same, 1 different, 2 error.

    The effective trees are compared first (what stage1 unpacks): type,
    mode, size, content, link target, device numbers and mtime; ownership is
    ignored, as stage1 ignores it. Images whose bytes differ are never "the
    same": with equal trees, the reasons the bytes differ are named
    (compression layout, block size, tar padding, ownership, ...). The rules:
    hats.image.diff.

    \b
    Example:
      hats image diff old.tar.xz new.tar.xz --json
    """
    from hats.image.diff import diff_images

    with _errors_exit_2():
        result = diff_images(first, second)
    if as_json:
        _emit_json(result.to_json())
    else:
        marks = {"added": "+", "removed": "-", "changed": "~"}
        for change in result.changes:
            detail = f" ({', '.join(change.fields)})" if change.fields else ""
            click.echo(printable(f"{marks[change.change]} {change.path}{detail}"))
        a, b = result.sha256
        if result.identical:
            click.echo(f"no differences: the files are identical (sha256 {a})")
        elif result.trees_equal:
            click.echo(f"the effective trees are equal, but the bytes differ (sha256 {a} vs {b}):")
            for reason in result.byte_differences:
                click.echo(printable(f"  {reason}"))
    raise click.exceptions.Exit(0 if result.identical else 1)


def _sums_entry(sums: Path, image: Path, name: str | None) -> tuple[str, str]:
    """The digest ``sums`` lists for ``image`` and the name it is listed under."""
    from hats.image.build import sums_name

    try:
        lines = parse_sums_lines(sums.read_text(), str(sums))
    except (OSError, UnicodeDecodeError) as exc:
        raise HatsError(f"{sums}: cannot read: {exc}") from None
    if name is not None:
        found = [line for line in lines if line.name == name]
    else:
        relative = os.path.relpath(image, sums.parent)
        found = [
            line
            for line in lines
            if (line.form == "reference" and line.name == sums_name(image))
            or (line.form == "gnu" and line.name in (relative, str(image)))
        ]
        if not found:
            found = [
                line for line in lines if line.form == "gnu" and Path(line.name).name == image.name
            ]
    if not found:
        wanted = name or f"{sums_name(image)!r} or {image.name!r}"
        names = ", ".join(sorted(line.name for line in lines)) or "none"
        raise HatsError(f"{sums}: no line for {wanted} (names: {names})")
    if len(found) > 1:
        raise HatsError(
            f"{sums}: {len(found)} lines could be {image.name} "
            f"({', '.join(line.name for line in found)}); choose one with --name"
        )
    return found[0].digest, found[0].name


@image_group.command("verify")
@click.argument("image", type=ExistingFile)
@click.option("--sha256", "expected", help="Expected SHA-256 of the .tar.xz (HEX or sha256:HEX).")
@click.option("--sums", type=PathArg, help="SHA256SUMS file (reference or sha256sum form).")
@click.option(
    "--name",
    help="Name in SHA256SUMS (default: the file name without .tar.xz, or the file name).",
)
@click.option("--policy", type=PathArg, help="Text-format AppraisalPolicies.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def verify_command(
    image: Path,
    expected: str | None,
    sums: Path | None,
    name: str | None,
    policy: Path | None,
    as_json: bool,
) -> None:
    """Check the image's digest against a hash, SHA256SUMS or a policy.

    Exit 0 when it matches, 1 when it does not, 2 on an error.

    \b
    Examples:
      hats image verify out/image.tar.xz --sums out/SHA256SUMS
      hats image verify out/image.tar.xz --sha256 sha256:HEX
    """
    if sum(x is not None for x in (expected, sums, policy)) != 1:
        raise click.UsageError("give exactly one of --sha256, --sums, --policy")
    with _errors_exit_2():
        actual = file_sha256(image)
        if expected is not None:
            wanted = [check_digest(expected, "--sha256")]
            source = "--sha256"
        elif sums is not None:
            digest, key = _sums_entry(sums, image, name)
            wanted = [digest]
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
        _emit_json(
            {
                "image": str(image),
                "sha256": actual,
                "actual": actual,
                "expected": wanted,
                "source": source,
                "match": ok,
            }
        )
    elif ok:
        click.echo(f"OK: {image} sha256 {actual} matches {source}")
    else:
        expected_text = wanted[0] if len(wanted) == 1 else "one of " + ", ".join(wanted)
        click.echo(
            f"MISMATCH: {image}: expected sha256 {expected_text} ({source}), actual {actual}",
            err=True,
        )
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
    """Check an image for what breaks stage1 or the agents; exit 1 on errors.

    \b
    Example:
      hats image lint out/image.tar.xz
    """
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
