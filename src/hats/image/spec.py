"""Build specs: the TOML form of ``hats image build``'s options.

Rules:
- relative paths in a spec are relative to the spec file's directory;
- unknown keys are errors (a typo must not silently change an image);
- the keys mirror the command-line options::

    output = "test_single.tar.xz"
    tvs_keys = "keys/test_single.txt"
    secret_share_type = "no-split"          # no-split | xor | shamir
    # base = "base-image.tar.xz"            # default: `hats base build`
    # tvs_heartbeat_frequency = 1
    # orchestrator_flags = ["--runtime-user=oakc"]
    # allow_test_keys = true                # tvs_keys may hold the reference's
    #                                       # test keys (1·G…): test images only

    # [binaries]                            # all three, or none: our agents
    # orchestrator = "bin/orchestrator_main"
    # agent = "bin/oak_containers_agent"
    # syslogd = "bin/oak_containers_syslogd"

    # [units]                               # verbatim unit files
    # orchestrator = "units/oak-orchestrator.service"
    # syslogd = "units/oak-syslogd.service"

    # [[layers]]
    # source = "extra/"
    # destination = "/opt/extra"
    # mode = "0644"

    # [outputs]
    # tar = "image.tar"
    # manifest = "image.manifest.json"
    # sums = "SHA256SUMS"

    # [lint]
    # allow = ["unsafe-name"]

    # [xz]                                  # default: the reference xz -T1 -6
    # block_size = "8MiB"                   # multi-block, parallel (--xz-block-size)
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from hats.errors import HatsError
from hats.image.build import BuildOptions, LayerSpec
from hats.image.xzparallel import check_block_size, parse_size


class SpecError(HatsError):
    """A build spec file is malformed."""


_TOP = {
    "output",
    "tvs_keys",
    "secret_share_type",
    "base",
    "tvs_heartbeat_frequency",
    "orchestrator_flags",
    "allow_test_keys",
    "binaries",
    "units",
    "layers",
    "outputs",
    "lint",
    "xz",
}
_TABLES = {
    "binaries": {"orchestrator", "agent", "syslogd"},
    "units": {"orchestrator", "syslogd"},
    "outputs": {"tar", "manifest", "sums"},
    "lint": {"allow"},
    "xz": {"block_size"},
}
_LAYER_KEYS = {"source", "destination", "mode"}


def parse_mode(value: str, where: str) -> int:
    """An octal mode string such as ``"0644"``."""
    try:
        mode = int(value, 8)
    except (TypeError, ValueError):
        raise SpecError(f"{where}: mode {value!r} is not an octal number like '0644'") from None
    if not 0 <= mode <= 0o7777:
        raise SpecError(f"{where}: mode {value!r} is out of range")
    return mode


def _str(doc: dict[str, Any], key: str, where: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where}: {key} must be a non-empty string")
    return value


def load_spec(path: Path) -> BuildOptions:
    """Read a TOML build spec into :class:`BuildOptions`."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: invalid TOML: {exc}") from None
    where = str(path)
    root = path.parent

    def rel(value: str | None) -> Path | None:
        return None if value is None else root / value

    for key in doc:
        if key not in _TOP:
            raise SpecError(f"{where}: unknown key {key!r}")
    for table, keys in _TABLES.items():
        if table in doc:
            if not isinstance(doc[table], dict):
                raise SpecError(f"{where}: [{table}] must be a table")
            for key in doc[table]:
                if key not in keys:
                    raise SpecError(f"{where}: unknown key {key!r} in [{table}]")
    tvs_keys = _str(doc, "tvs_keys", where)
    share = _str(doc, "secret_share_type", where)
    if tvs_keys is None or share is None:
        raise SpecError(f"{where}: tvs_keys and secret_share_type are required")
    heartbeat = doc.get("tvs_heartbeat_frequency")
    if heartbeat is not None and (not isinstance(heartbeat, int) or isinstance(heartbeat, bool)):
        raise SpecError(f"{where}: tvs_heartbeat_frequency must be an integer (seconds)")
    flags = doc.get("orchestrator_flags", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise SpecError(f"{where}: orchestrator_flags must be a list of strings")
    allow_test_keys = doc.get("allow_test_keys", False)
    if not isinstance(allow_test_keys, bool):
        raise SpecError(f"{where}: allow_test_keys must be true or false")
    binaries = doc.get("binaries", {})
    unit_files = doc.get("units", {})
    outputs = doc.get("outputs", {})
    allow = doc.get("lint", {}).get("allow", [])
    if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
        raise SpecError(f"{where}: [lint] allow must be a list of codes")
    layers: list[LayerSpec] = []
    raw_layers = doc.get("layers", [])
    if not isinstance(raw_layers, list):
        raise SpecError(f"{where}: layers must be an array of tables ([[layers]])")
    for number, layer in enumerate(raw_layers, 1):
        lwhere = f"{where}: layer {number}"
        if not isinstance(layer, dict):
            raise SpecError(f"{lwhere}: must be a table")
        for key in layer:
            if key not in _LAYER_KEYS:
                raise SpecError(f"{lwhere}: unknown key {key!r}")
        source = _str(layer, "source", lwhere)
        if source is None:
            raise SpecError(f"{lwhere}: source is required")
        mode = layer.get("mode")
        layers.append(
            LayerSpec(
                source=root / source,
                dest=_str(layer, "destination", lwhere) or "/",
                mode=None if mode is None else parse_mode(str(mode), lwhere),
            )
        )
    output = rel(_str(doc, "output", where))
    xz_block_size: int | None = None
    raw_block_size = doc.get("xz", {}).get("block_size")
    if raw_block_size is not None:
        if not isinstance(raw_block_size, str | int) or isinstance(raw_block_size, bool):
            raise SpecError(f'{where}: [xz] block_size must be a size like "8MiB"')
        xz_block_size = check_block_size(
            parse_size(raw_block_size, f"{where}: [xz] block_size"), f"{where}: [xz] block_size"
        )
    return BuildOptions(
        output=output if output is not None else Path(),
        tvs_keys=root / tvs_keys,
        secret_share_type=share,
        base=rel(_str(doc, "base", where)),
        tvs_heartbeat_frequency=heartbeat,
        orchestrator_flags=tuple(flags),
        orchestrator=rel(_str(binaries, "orchestrator", where)),
        agent=rel(_str(binaries, "agent", where)),
        syslogd=rel(_str(binaries, "syslogd", where)),
        orchestrator_unit=rel(_str(unit_files, "orchestrator", where)),
        syslogd_unit=rel(_str(unit_files, "syslogd", where)),
        layers=tuple(layers),
        tar_output=rel(_str(outputs, "tar", where)),
        manifest=rel(_str(outputs, "manifest", where)),
        sums=rel(_str(outputs, "sums", where)),
        lint_allow=tuple(allow),
        allow_test_keys=allow_test_keys,
        xz_block_size=xz_block_size,
    )
