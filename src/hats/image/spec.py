"""Build specs: the TOML form of ``hats image build``'s options.

Every key, with its type, default and an example: ``docs/SPEC.md``.

Rules:
- relative paths in a spec are relative to the spec file's directory;
- unknown keys are errors (a typo must not silently change an image), with
  the key meant when there is a likely one ("did you mean");
- command-line options override the spec (as mkosi's do): a given scalar
  option replaces the spec's value, a list option (``--layer``,
  ``--orchestrator-flag``, ``--lint-allow``) adds to the spec's list;
  :func:`read_spec` gives the spec's settings, :func:`merge_settings` the
  merged ones and :func:`options_from_settings` the options;
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
    # sums_format = "reference"             # reference | gnu (sha256sum -c)
    # digest_file = "image.digest"          # sha256:HEX, like docker --iidfile

    # [lint]
    # allow = ["unsafe-name"]

    # [xz]                                  # default: the reference xz -T1 -6
    # block_size = "8MiB"                   # multi-block, parallel (--xz-block-size)
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any

from hats.archive.xzparallel import check_block_size, parse_size
from hats.errors import HatsError
from hats.image.build import BuildOptions, LayerSpec
from hats.image.sums import SUMS_FORMATS
from hats.image.units import SHARE_TYPES


class SpecError(HatsError):
    """A build spec file is malformed."""


SPEC_DOC = "docs/SPEC.md"
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
    "outputs": {"tar", "manifest", "sums", "sums_format", "digest_file"},
    "lint": {"allow"},
    "xz": {"block_size"},
}
_LAYER_KEYS = {"source", "destination", "mode"}
#: Names users reach for (command-line option names, misplaced keys) → the spec's key.
_ALIASES = {
    "orchestrator": "[binaries] orchestrator",
    "agent": "[binaries] agent",
    "syslogd": "[binaries] syslogd",
    "orchestrator_unit": "[units] orchestrator",
    "syslogd_unit": "[units] syslogd",
    "tar": "[outputs] tar",
    "manifest": "[outputs] manifest",
    "sums": "[outputs] sums",
    "sums_format": "[outputs] sums_format",
    "digest_file": "[outputs] digest_file",
    "lint_allow": "[lint] allow",
    "allow": "[lint] allow",
    "xz_block_size": "[xz] block_size",
    "block_size": "[xz] block_size",
    "layer": "[[layers]]",
    "dest": "destination",
    "o": "output",
    "out": "output",
}
#: The settings a list option adds to (all others are replaced).
LIST_SETTINGS = ("orchestrator_flags", "layers", "lint_allow")


def _suggest(key: str, table: str | None) -> str:
    """`` (did you mean X?)`` for an unknown ``key`` (in ``table``), or ``""``.

    In order: the same key spelled with ``-`` or capitals; the key where it
    belongs (another table, or the top level); a command-line option's name;
    a close spelling of a key of this table; a close spelling of an option.
    """
    norm = key.strip().lstrip("-").replace("-", "_").lower()
    if table == "[[layers]]":
        here = sorted(_LAYER_KEYS)
    else:
        here = sorted(_TOP if table is None else _TABLES[table.strip("[]")])

    def quoted(name: str) -> str:
        return name if name.startswith("[") else repr(name)

    found: str | None = None
    if norm in here and norm != key:
        found = quoted(norm)
    elif table is not None and norm in _TOP:
        found = f"the top-level key {norm!r}"
    elif any(norm in keys and f"[{name}]" != table for name, keys in _TABLES.items()):
        found = next(f"[{name}] {norm}" for name, keys in _TABLES.items() if norm in keys)
    elif norm in _ALIASES:
        found = quoted(_ALIASES[norm])
    else:
        close = difflib.get_close_matches(norm, here, n=1, cutoff=0.75)
        if close:
            found = quoted(close[0])
        else:
            alias = difflib.get_close_matches(norm, _ALIASES, n=1, cutoff=0.8)
            if alias:
                found = quoted(_ALIASES[alias[0]])
    return "" if found is None else f" (did you mean {found}?)"


def _unknown(where: str, key: str, table: str | None) -> SpecError:
    place = "" if table is None else f" in {table}"
    return SpecError(
        f"{where}: unknown key {key!r}{place}{_suggest(key, table)}; the keys: {SPEC_DOC}"
    )


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


def check_share_type(value: str, where: str) -> str:
    """One of :data:`~hats.image.units.SHARE_TYPES`, with a suggestion when not."""
    if value in SHARE_TYPES:
        return value
    close = difflib.get_close_matches(value.lower(), SHARE_TYPES, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise SpecError(
        f"{where}: secret_share_type {value!r} is not one of {', '.join(SHARE_TYPES)}{hint}"
    )


def read_spec(path: Path) -> dict[str, Any]:
    """The settings a TOML spec gives: :class:`BuildOptions` field names → values.

    Only the keys present are in the result; paths are resolved against the
    spec's directory; nothing is required yet (see :func:`options_from_settings`).
    """
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
    out: dict[str, Any] = {}

    def put_path(field: str, table: dict[str, Any], key: str) -> None:
        value = _str(table, key, where)
        if value is not None:
            out[field] = root / value

    for key in doc:
        if key not in _TOP:
            raise _unknown(where, key, None)
    for table, keys in _TABLES.items():
        if table in doc:
            if not isinstance(doc[table], dict):
                raise SpecError(f"{where}: [{table}] must be a table")
            for key in doc[table]:
                if key not in keys:
                    raise _unknown(where, key, f"[{table}]")
    put_path("output", doc, "output")
    put_path("tvs_keys", doc, "tvs_keys")
    put_path("base", doc, "base")
    share = _str(doc, "secret_share_type", where)
    if share is not None:
        out["secret_share_type"] = check_share_type(share, where)
    if "tvs_heartbeat_frequency" in doc:
        heartbeat = doc["tvs_heartbeat_frequency"]
        if not isinstance(heartbeat, int) or isinstance(heartbeat, bool):
            raise SpecError(f"{where}: tvs_heartbeat_frequency must be an integer (seconds)")
        out["tvs_heartbeat_frequency"] = heartbeat
    if "orchestrator_flags" in doc:
        flags = doc["orchestrator_flags"]
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
            raise SpecError(f"{where}: orchestrator_flags must be a list of strings")
        out["orchestrator_flags"] = tuple(flags)
    if "allow_test_keys" in doc:
        if not isinstance(doc["allow_test_keys"], bool):
            raise SpecError(f"{where}: allow_test_keys must be true or false")
        out["allow_test_keys"] = doc["allow_test_keys"]
    binaries = doc.get("binaries", {})
    for name in ("orchestrator", "agent", "syslogd"):
        put_path(name, binaries, name)
    unit_files = doc.get("units", {})
    put_path("orchestrator_unit", unit_files, "orchestrator")
    put_path("syslogd_unit", unit_files, "syslogd")
    outputs = doc.get("outputs", {})
    put_path("tar_output", outputs, "tar")
    put_path("manifest", outputs, "manifest")
    put_path("sums", outputs, "sums")
    put_path("digest_file", outputs, "digest_file")
    sums_format = _str(outputs, "sums_format", where)
    if sums_format is not None:
        if sums_format not in SUMS_FORMATS:
            raise SpecError(
                f"{where}: [outputs] sums_format {sums_format!r} is not one of "
                f"{', '.join(SUMS_FORMATS)}"
            )
        out["sums_format"] = sums_format
    if "allow" in doc.get("lint", {}):
        allow = doc["lint"]["allow"]
        if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
            raise SpecError(f"{where}: [lint] allow must be a list of codes")
        out["lint_allow"] = tuple(allow)
    if "layers" in doc:
        out["layers"] = tuple(_layers(doc["layers"], where, root))
    raw_block_size = doc.get("xz", {}).get("block_size")
    if raw_block_size is not None:
        if not isinstance(raw_block_size, str | int) or isinstance(raw_block_size, bool):
            raise SpecError(f'{where}: [xz] block_size must be a size like "8MiB"')
        out["xz_block_size"] = check_block_size(
            parse_size(raw_block_size, f"{where}: [xz] block_size"), f"{where}: [xz] block_size"
        )
    return out


def _layers(raw_layers: object, where: str, root: Path) -> list[LayerSpec]:
    layers: list[LayerSpec] = []
    if not isinstance(raw_layers, list):
        raise SpecError(f"{where}: layers must be an array of tables ([[layers]])")
    for number, layer in enumerate(raw_layers, 1):
        lwhere = f"{where}: layer {number}"
        if not isinstance(layer, dict):
            raise SpecError(f"{lwhere}: must be a table")
        for key in layer:
            if key not in _LAYER_KEYS:
                raise _unknown(lwhere, key, "[[layers]]")
        source = _str(layer, "source", lwhere)
        if source is None:
            raise SpecError(f"{lwhere}: source is required")
        mode = layer.get("mode")
        dest = _str(layer, "destination", lwhere) or "/"
        if not dest.startswith("/"):
            raise SpecError(
                f"{lwhere}: destination {dest!r} must be an absolute path (e.g. '/{dest}')"
            )
        layers.append(
            LayerSpec(
                source=root / source,
                dest=dest,
                mode=None if mode is None else parse_mode(str(mode), lwhere),
            )
        )
    return layers


def merge_settings(spec: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The spec's settings with the command line's on top (see the module rules)."""
    merged = dict(spec)
    for field, value in given.items():
        if field in LIST_SETTINGS:
            merged[field] = tuple(merged.get(field, ())) + tuple(value)
        else:
            merged[field] = value
    return merged


def options_from_settings(settings: dict[str, Any], where: str) -> BuildOptions:
    """:class:`BuildOptions` from merged settings; ``where`` names their source in errors."""
    missing = [f for f in ("tvs_keys", "secret_share_type") if settings.get(f) is None]
    if missing:
        raise SpecError(f"{where}: tvs_keys and secret_share_type are required")
    fields = {k: v for k, v in settings.items() if v is not None}
    fields.setdefault("output", Path())
    return BuildOptions(**fields)


def load_spec(path: Path) -> BuildOptions:
    """Read a TOML build spec into :class:`BuildOptions`."""
    return options_from_settings(read_spec(path), str(path))
