"""``hats image build``: from options to a verified ``.tar.xz`` on disk.

Steps: resolve the inputs (default base, default agents, rendered or given
units, the key file); compose the layers once without compressing (the
*plan*: the effective tree, so every lint rule runs before the first
compressed byte, and the exact tar size, the progress total); compose them
again into one streamed GNU tar, compress it (the reference way,
``xz -T1 -6``; or, with ``xz_block_size``, as parallel multi-block xz equal
to ``xz -T2 --block-size=B -6``, reusing cached blocks), lint the effective
tree again (a safety net), and only then rename the outputs into place. A
failure anywhere leaves no output file. :func:`check_build` stops after the
plan (``hats image build --check``).

Missing parent directories of every output are created (after the plan
passed), the same for ``-o``, ``--tar``, ``--manifest``, ``--sums`` and
``--digest-file``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from hats import __version__
from hats.archive.blockcache import BlockCache, default_block_cache_dir
from hats.archive.compress import XzSink, detect_format
from hats.archive.tarstream import TarWriter
from hats.archive.xzparallel import ParallelXzSink, XzStats, check_block_size
from hats.console import Progress, Steps, as_steps
from hats.errors import HatsError
from hats.fsio import atomic_output, write_bytes_atomic
from hats.image import units
from hats.image.compose import compose
from hats.image.layers import (
    ArchiveLayer,
    Content,
    FilesLayer,
    Layer,
    hats_layers,
    user_layer,
)
from hats.image.lint import ERROR_CODES, KEY_FILE, WARNING_CODES, Finding, lint, share_type_of
from hats.image.settings import BuildOptions, LayerSpec, settings_json
from hats.image.sums import existing_sums_form, update_sums
from hats.image.tree import EffectiveTree
from hats.image.units import ORCHESTRATOR_UNIT
from hats.keys.keyfile import parse_key_file

AGENTS_LAYER = "hats-agents"

BUILD_STEPS = 4
""":func:`build_image`'s top-level steps: inputs, plan, compose and compress, write."""

CHECK_STEPS = 2
""":func:`check_build`'s top-level steps: inputs, plan."""


class BuildError(HatsError):
    """The image cannot be built from these inputs."""


class LintFailed(HatsError):
    """The composed image has lint errors that were not allowed."""


@dataclass
class BuildPlan:
    """What a build will write, known before compressing (``--check`` prints it)."""

    base: str
    layers: list[tuple[str, int]]  # name, bytes of tar it contributes
    tar_size: int
    tree: EffectiveTree
    findings: list[Finding]
    keys: int | None
    share_type: str | None
    outputs: list[Path] = field(default_factory=list)

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def to_json(self) -> dict[str, object]:
        return {
            "hats_version": __version__,
            "base": self.base,
            "layers": [{"name": name, "tar_bytes": size} for name, size in self.layers],
            "tar_size": self.tar_size,
            "entries": self.tree.member_count,
            "paths": len(self.tree.entries),
            "keys": self.keys,
            "secret_share_type": self.share_type,
            "outputs": [str(p) for p in self.outputs],
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass
class BuildResult:
    path: Path
    sha256: str
    size: int
    tar_sha256: str
    tar_size: int
    tree: EffectiveTree
    findings: list[Finding]
    layers: list[str]
    base: str
    tar_path: Path | None = None
    manifest_path: Path | None = None
    sums_path: Path | None = None
    xz_block_size: int | None = None
    xz_stats: XzStats | None = None
    digest_file_path: Path | None = None

    def xz_json(self) -> dict[str, object]:
        if self.xz_block_size is None or self.xz_stats is None:
            return {"mode": "reference"}
        return {
            "mode": "multi-block",
            "block_size": self.xz_block_size,
            "blocks": self.xz_stats.blocks,
            "reused": self.xz_stats.reused,
            "compressed": self.xz_stats.compressed,
        }

    def to_json(self) -> dict[str, object]:
        return {
            "hats_version": __version__,
            "path": str(self.path),
            "sha256": self.sha256,
            "size": self.size,
            "tar_sha256": self.tar_sha256,
            "tar_size": self.tar_size,
            "entries": self.tree.member_count,
            "paths": len(self.tree.entries),
            "base": self.base,
            "layers": self.layers,
            "warnings": sum(1 for f in self.findings if f.severity == "warning"),
            "tar": str(self.tar_path) if self.tar_path else None,
            "manifest": str(self.manifest_path) if self.manifest_path else None,
            "sums": str(self.sums_path) if self.sums_path else None,
            "digest_file": str(self.digest_file_path) if self.digest_file_path else None,
            "xz": self.xz_json(),
        }


def _check_inputs(options: BuildOptions) -> None:
    agents = options.agents
    given = [agents.orchestrator, agents.agent, agents.syslogd]
    if any(given) and not all(given):
        raise BuildError("give all three binaries (--orchestrator, --agent, --syslogd) or none")
    unknown = sorted(set(options.lint.allow) - set(ERROR_CODES) - set(WARNING_CODES))
    if unknown:
        raise BuildError(
            f"unknown lint code {unknown[0]!r} to allow; codes: "
            f"{', '.join(ERROR_CODES + WARNING_CODES)}"
        )
    for layer in options.layers:
        if not layer.dest.startswith("/"):
            raise BuildError(
                f"--layer {layer.source}:{layer.dest}: the destination must be an absolute "
                f"path (e.g. {layer.source}:/{layer.dest})"
            )
    outputs, compression = options.outputs, options.compression
    if outputs.image is not None:
        if not outputs.image.name.endswith(".xz"):
            raise BuildError(f"{outputs.image}: the output must be an .xz file (e.g. image.tar.xz)")
        if outputs.image.exists() and outputs.image.is_dir():
            raise BuildError(f"{outputs.image}: is a directory")
    for path in outputs.paths():
        _check_output_dir(path)
    if outputs.sums is not None and outputs.sums_format is not None:
        existing = existing_sums_form(outputs.sums)
        if existing is not None and existing != outputs.sums_format:
            raise BuildError(
                f"{outputs.sums}: holds {existing} lines; not adding a {outputs.sums_format} "
                f"line (--sums-format {existing})"
            )
    if compression.xz_block_size is not None:
        check_block_size(compression.xz_block_size)
    if compression.jobs is not None and compression.jobs < 1:
        raise BuildError(f"--jobs: {compression.jobs} is not a number of workers (1 or more)")


def _check_output_dir(path: Path) -> None:
    """Fail early when ``path``'s directory cannot exist (a file is in the way)."""
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            return
        parent = parent.parent
    if not parent.is_dir():
        raise BuildError(f"{path}: cannot create its directory: {parent} is not a directory")


def _make_output_dirs(options: BuildOptions) -> None:
    for path in options.outputs.paths():
        if not path.parent.exists():
            try:
                path.parent.mkdir(parents=True)
            except OSError as exc:
                raise BuildError(f"{path}: cannot create directory: {exc.strerror}") from None


def _keys_content(options: BuildOptions) -> Content:
    try:
        data = options.keys.tvs_keys.read_bytes()
    except FileNotFoundError:
        raise BuildError(f"{options.keys.tvs_keys}: no such key file") from None
    except OSError as exc:
        raise BuildError(f"{options.keys.tvs_keys}: cannot read: {exc.strerror}") from None
    parse_key_file(data, str(options.keys.tvs_keys))
    return Content(data=data)


def _unit(path: Path | None, render: Callable[[], bytes]) -> Content:
    if path is None:
        return Content(data=render())
    try:
        return Content(data=path.read_bytes())
    except OSError as exc:
        raise BuildError(f"{path}: cannot read unit file: {exc.strerror}") from None


def _default_base(options: BuildOptions, with_python: bool, progress: Progress) -> Path:
    from hats.base.build import ensure_default_base

    return ensure_default_base(
        with_python=with_python, cache_dir=options.cache_dir, progress=progress
    )


@contextlib.contextmanager
def plan_layers(options: BuildOptions, progress: Progress) -> Iterator[tuple[list[Layer], str]]:
    """The image's layers in order, and a description of the base."""
    _check_inputs(options)
    keys = _keys_content(options)
    agents = options.agents
    orchestrator_unit = _unit(
        agents.orchestrator_unit,
        lambda: units.render_orchestrator_unit(
            options.keys.secret_share_type,
            agents.tvs_heartbeat_frequency,
            agents.orchestrator_flags,
        ),
    )
    syslogd_unit = _unit(agents.syslogd_unit, units.render_syslogd_unit)
    use_agents = agents.orchestrator is None
    with contextlib.ExitStack() as stack:
        extra: list[Layer] = []
        if use_agents:
            from hats.packaging.agents_layer import build_agents_tree

            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hats-agents-")))
            tree = build_agents_tree(
                root, cache_dir=options.cache_dir, progress=_AgentsChatter(progress)
            )
            binaries = {
                "orchestrator": Content(path=tree.orchestrator_main),
                "agent": Content(path=tree.oak_containers_agent),
                "syslogd": Content(path=tree.oak_containers_syslogd),
            }
            extra.append(user_layer(AGENTS_LAYER, tree.site_dir, "/usr/lib/hats/python", None))
        else:
            assert agents.orchestrator and agents.agent and agents.syslogd
            binaries = {
                "orchestrator": Content.of_file(agents.orchestrator),
                "agent": Content.of_file(agents.agent),
                "syslogd": Content.of_file(agents.syslogd),
            }
        if options.base is None:
            base_path = _default_base(options, use_agents, progress)
            python = " with python3" if use_agents else ""
            base_label = f"default{python} ({base_path})"
        else:
            base_path = options.base
            detect_format(base_path)
            base_label = str(base_path)
        layers: list[Layer] = [ArchiveLayer("base", base_path)]
        layers.extend(
            hats_layers(
                orchestrator=binaries["orchestrator"],
                agent=binaries["agent"],
                syslogd=binaries["syslogd"],
                orchestrator_unit=orchestrator_unit,
                syslogd_unit=syslogd_unit,
                tvs_keys=keys,
            )
        )
        layers.extend(extra)
        for index, spec in enumerate(options.layers, 1):
            layers.append(user_layer(f"user-{index}", spec.source, spec.dest, spec.mode))
        yield layers, base_label


class _AgentsChatter:
    """The agents layer's progress in one line: wheel by wheel only when downloading."""

    def __init__(self, progress: Callable[[str], None]) -> None:
        self._progress = progress
        self.cached = 0
        self.downloaded = 0

    def __call__(self, message: str) -> None:
        if message.startswith("using cached "):
            self.cached += 1
        elif message.startswith("downloading "):
            self.downloaded += 1
            self._progress(f"agents layer: {message}")
        elif message.startswith("agents tree: "):
            wheels = f"{self.cached + self.downloaded} locked wheels"
            if self.downloaded:
                wheels += f" ({self.downloaded} downloaded)"
            self._progress(f"agents layer: {wheels} + hats, {message[len('agents tree: ') :]}")


def _tree_keys(tree: EffectiveTree) -> tuple[int | None, str | None]:
    """The number of keys in the tree's key file and the unit's share type (None: unknown)."""
    entry = tree.resolve(KEY_FILE)
    keys: int | None = None
    if entry is not None and entry.data is not None:
        try:
            keys = len(parse_key_file(entry.data, "/" + KEY_FILE))
        except HatsError:
            keys = None
    unit = tree.lookup(f"etc/systemd/system/{ORCHESTRATOR_UNIT}")
    share = share_type_of(unit.data) if unit is not None and unit.data is not None else None
    return keys, share


def lint_gate(options: BuildOptions, tree: EffectiveTree) -> list[Finding]:
    """Lint ``tree``; raise :class:`LintFailed` on an error not allowed; the findings kept.

    Warnings whose code is in ``lint_allow`` are dropped from the result.
    """
    allowed = options.lint.allow
    findings = lint(tree, allow_test_keys=options.lint.allow_test_keys)
    fatal = [f for f in findings if f.severity == "error" and f.code not in allowed]
    if fatal:
        first = fatal[0]
        more = f" (and {len(fatal) - 1} more)" if len(fatal) > 1 else ""
        target = options.outputs.image or "image"
        raise LintFailed(
            f"{target}: not written: {first.path}: {first.message} "
            f"[{first.code}]{more}; --lint-allow {first.code} accepts it"
        )
    return [f for f in findings if f.severity == "error" or f.code not in allowed]


def _plan(options: BuildOptions, layers: list[Layer], base_label: str) -> BuildPlan:
    """Compose without compressing: the tree, its lint, the tar size of every layer."""
    writer = TarWriter(lambda _data: None)
    marks: list[tuple[str, int]] = []
    tree = compose(
        layers,
        writer,
        on_layer=lambda name: marks.append((name, writer.offset)),
        digests=False,  # the lint needs none; the real pass hashes
    )
    ends = [offset for _, offset in marks[1:]] + [writer.offset]
    sizes = [(name, end - start) for (name, start), end in zip(marks, ends, strict=True)]
    findings = lint_gate(options, tree)
    keys, share = _tree_keys(tree)
    return BuildPlan(
        base=base_label,
        layers=sizes,
        tar_size=writer.offset,
        tree=tree,
        findings=findings,
        keys=keys,
        share_type=share,
        outputs=options.outputs.paths(),
    )


def check_build(options: BuildOptions, progress: Progress | None = None) -> BuildPlan:
    """Every check of a build, and what it would write; no output, no compression.

    Steps (:data:`CHECK_STEPS`): the inputs, then the plan.
    """
    steps = as_steps(progress)
    with contextlib.ExitStack() as stack:
        layers, base_label = _inputs(options, steps, stack)
        with steps.step("plan: composing without compression, lint"):
            return _plan(options, layers, base_label)


def _inputs(
    options: BuildOptions, steps: Steps, stack: contextlib.ExitStack
) -> tuple[list[Layer], str]:
    """The step that resolves the inputs (default base and agents nest their own steps)."""
    with steps.step("inputs"):
        return stack.enter_context(plan_layers(options, steps))


def _nullcontext() -> contextlib.AbstractContextManager[BinaryIO | None]:
    return contextlib.nullcontext(None)


def _block_cache(options: BuildOptions) -> BlockCache | None:
    compression = options.compression
    if compression.xz_block_size is None or not compression.block_cache:
        return None
    root = compression.block_cache_dir or default_block_cache_dir(options.cache_dir)
    if compression.block_cache_max_size is None:
        return BlockCache(root)
    return BlockCache(root, compression.block_cache_max_size)


def _sink(
    options: BuildOptions,
    xz_file: BinaryIO,
    tar_file: BinaryIO | None,
    on_bytes: Callable[[int], None] | None,
    cache: BlockCache | None,
) -> XzSink | ParallelXzSink:
    compression = options.compression
    if compression.xz_block_size is None:
        return XzSink(xz_file, tar_file, on_bytes)
    return ParallelXzSink(
        xz_file, compression.xz_block_size, compression.jobs, tar_file, on_bytes, cache=cache
    )


def build_image(
    options: BuildOptions,
    progress: Progress | None = None,
    on_bytes: Callable[[int], None] | None = None,
    on_plan: Callable[[BuildPlan], None] | None = None,
) -> BuildResult:
    """Build the image described by ``options``; see the module docstring.

    Steps (:data:`BUILD_STEPS`, reported through ``progress``): the inputs, the
    plan, compose and compress (one streamed pass; the compression is the
    step's progress bar), write (the safety-net lint, then the outputs move
    into place). ``on_plan`` gets the plan (its ``tar_size`` is the total
    ``on_bytes`` counts to) before compression starts.
    """
    outputs = options.outputs
    image = outputs.image
    if image is None:
        raise BuildError("no output: give -o OUT.tar.xz (or output in the spec)")
    steps = as_steps(progress)
    with contextlib.ExitStack() as stack:
        layers, base_label = _inputs(options, steps, stack)
        with steps.step("plan: composing without compression, lint"):
            plan = _plan(options, layers, base_label)
        if on_plan is not None:
            on_plan(plan)
        _make_output_dirs(options)
        cache = _block_cache(options)
        tar_ctx = atomic_output(outputs.tar) if outputs.tar else _nullcontext()
        with contextlib.ExitStack() as files:
            xz_file = files.enter_context(atomic_output(image))
            tar_file = files.enter_context(tar_ctx)
            with (
                steps.step("compose and compress"),
                steps.progress(plan.tar_size, "compressing") as bar,
            ):
                sink = _sink(options, xz_file, tar_file, _counter(bar.advance, on_bytes), cache)
                try:
                    tree = compose(
                        layers,
                        TarWriter(sink.write),
                        on_layer=lambda name: steps.log(f"layer {name}"),
                    )
                except BaseException:
                    sink.abort()
                    raise
                sink.close()
                if isinstance(sink, ParallelXzSink):
                    _report_blocks(sink.stats, cache, steps.log)
            with steps.step("write"):
                findings = lint_gate(options, tree)  # the safety net: same tree as the plan's
                files.close()  # the image (and --tar) move into place
                return _write_extras(options, image, sink, tree, findings, layers, base_label)
    raise AssertionError("unreachable")


def _counter(
    advance: Callable[[int], None], on_bytes: Callable[[int], None] | None
) -> Callable[[int], None]:
    """The compression bar's count, and the caller's ``on_bytes`` if any."""
    if on_bytes is None:
        return advance

    def both(size: int) -> None:
        advance(size)
        on_bytes(size)

    return both


def _write_extras(
    options: BuildOptions,
    image: Path,
    sink: XzSink | ParallelXzSink,
    tree: EffectiveTree,
    findings: list[Finding],
    layers: list[Layer],
    base_label: str,
) -> BuildResult:
    """The result, and the manifest, sums and digest file next to the image (if asked)."""
    outputs = options.outputs
    result = BuildResult(
        path=image,
        sha256=sink.xz_sha256.hexdigest(),
        size=sink.xz_size,
        tar_sha256=sink.tar_sha256.hexdigest(),
        tar_size=sink.tar_size,
        tree=tree,
        findings=findings,
        layers=[layer.name for layer in layers],
        base=base_label,
        tar_path=outputs.tar,
        xz_block_size=options.compression.xz_block_size,
        xz_stats=sink.stats if isinstance(sink, ParallelXzSink) else None,
    )
    if outputs.manifest is not None:
        write_bytes_atomic(outputs.manifest, manifest_json(result).encode())
        result.manifest_path = outputs.manifest
    if outputs.sums is not None:
        form = outputs.sums_format or existing_sums_form(outputs.sums) or "reference"
        name = (
            sums_name(image) if form == "reference" else os.path.relpath(image, outputs.sums.parent)
        )
        update_sums(outputs.sums, name, result.sha256, form)
        result.sums_path = outputs.sums
    if outputs.digest_file is not None:
        write_bytes_atomic(outputs.digest_file, f"sha256:{result.sha256}".encode())
        result.digest_file_path = outputs.digest_file
    return result


def _report_blocks(
    stats: XzStats, cache: BlockCache | None, progress: Callable[[str], None]
) -> None:
    message = f"xz: {stats.blocks} block(s), {stats.compressed} compressed"
    if cache is not None:
        message += f", {stats.reused} reused from {cache.root}"
        if cache.stats.corrupt:
            message += f" ({cache.stats.corrupt} corrupt cache entries ignored and recomputed)"
    progress(message)
    if cache is not None:
        for error in cache.stats.write_errors:
            progress(f"warning: block cache not written: {error}")


def sums_name(output: Path) -> str:
    """The name an image has in ``SHA256SUMS``: its file name without ``.tar.xz``."""
    name = output.name
    for suffix in (".tar.xz", ".xz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def manifest_json(result: BuildResult) -> str:
    """Every effective path with its type, mode, owner, size, digest and layers."""
    document = {
        "hats_version": __version__,
        "image": {
            "path": result.path.name,
            "sha256": result.sha256,
            "size": result.size,
            "tar_sha256": result.tar_sha256,
            "tar_size": result.tar_size,
        },
        "layers": result.layers,
        "base": result.base,
        "entries": [entry.to_json() for entry in result.tree.sorted_entries()],
    }
    return json.dumps(document, indent=1, sort_keys=False) + "\n"


__all__ = [
    "BuildError",
    "BuildOptions",
    "BuildPlan",
    "BuildResult",
    "FilesLayer",
    "LayerSpec",
    "LintFailed",
    "build_image",
    "check_build",
    "settings_json",
]
