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
- the keys, their parsers and the options they mirror come from the one
  table of settings, :data:`hats.image.settings.SETTINGS`::

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

from hats.image.settings import (
    LAYER_KEYS,
    LIST_SETTINGS,
    SETTINGS,
    BuildOptions,
    TomlValue,
    options_from_settings,
)
from hats.image.settings import SpecError as SpecError
from hats.image.settings import check_share_type as check_share_type
from hats.image.settings import parse_mode as parse_mode

SPEC_DOC = "docs/SPEC.md"
_SPEC_SETTINGS = [setting for setting in SETTINGS if setting.toml is not None]
#: The spec's tables and their keys, in the table's order.
TABLES: dict[str, list[str]] = {}
for _setting in _SPEC_SETTINGS:
    if _setting.section is not None:
        TABLES.setdefault(_setting.section, []).append(_setting.key)
#: The top-level keys, tables included.
TOP = [s.key for s in _SPEC_SETTINGS if s.section is None] + list(TABLES)
#: Names users reach for (option names, the settings' names, misplaced keys) → the spec's key.
ALIASES: dict[str, str] = {"dest": "destination", "out": "output"}
for _setting in _SPEC_SETTINGS:
    for _name in (_setting.name, *(flag.lstrip("-").replace("-", "_") for flag in _setting.flags)):
        if _name != _setting.key or _setting.section is not None:
            ALIASES.setdefault(_name, _setting.label)


def _suggest(key: str, table: str | None) -> str:
    """`` (did you mean X?)`` for an unknown ``key`` (in ``table``), or ``""``.

    In order: the same key spelled with ``-`` or capitals; the key where it
    belongs (another table, or the top level); a command-line option's name;
    a close spelling of a key of this table; a close spelling of an option.
    """
    norm = key.strip().lstrip("-").replace("-", "_").lower()
    if table == "[[layers]]":
        here = sorted(LAYER_KEYS)
    else:
        here = sorted(TOP if table is None else TABLES[table.strip("[]")])

    def quoted(name: str) -> str:
        return name if name.startswith("[") else repr(name)

    found: str | None = None
    if norm in here and norm != key:
        found = quoted(norm)
    elif table is not None and norm in TOP:
        found = f"the top-level key {norm!r}"
    elif any(norm in keys and f"[{name}]" != table for name, keys in TABLES.items()):
        found = next(f"[{name}] {norm}" for name, keys in TABLES.items() if norm in keys)
    elif norm in ALIASES:
        found = quoted(ALIASES[norm])
    else:
        close = difflib.get_close_matches(norm, here, n=1, cutoff=0.75)
        if close:
            found = quoted(close[0])
        else:
            alias = difflib.get_close_matches(norm, ALIASES, n=1, cutoff=0.8)
            if alias:
                found = quoted(ALIASES[alias[0]])
    return "" if found is None else f" (did you mean {found}?)"


def unknown_key(where: str, key: str, table: str | None) -> SpecError:
    """The error for an unknown ``key`` (in ``table``, e.g. ``[xz]``), with "did you mean"."""
    place = "" if table is None else f" in {table}"
    return SpecError(
        f"{where}: unknown key {key!r}{place}{_suggest(key, table)}; the keys: {SPEC_DOC}"
    )


def read_spec(path: Path) -> dict[str, Any]:
    """The settings a TOML spec gives: setting names → typed values (the table's parsers).

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
    for key in doc:
        if key not in TOP:
            raise unknown_key(where, key, None)
    for table, keys in TABLES.items():
        if table in doc:
            if not isinstance(doc[table], dict):
                raise SpecError(f"{where}: [{table}] must be a table")
            for key in doc[table]:
                if key not in keys:
                    raise unknown_key(where, key, f"[{table}]")
    out: dict[str, Any] = {}
    for setting in _SPEC_SETTINGS:
        where_in = doc if setting.section is None else doc.get(setting.section, {})
        value = where_in.get(setting.key)
        if value is None:
            continue
        assert setting.from_toml is not None
        raw = TomlValue(value, where, path.parent, setting.key, setting.label)
        out[setting.name] = setting.from_toml(raw)
    return out


def merge_settings(spec: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The spec's settings with the command line's on top (see the module rules)."""
    merged = dict(spec)
    for name, value in given.items():
        if name in LIST_SETTINGS:
            merged[name] = tuple(merged.get(name, ())) + tuple(value)
        else:
            merged[name] = value
    return merged


def load_spec(path: Path) -> BuildOptions:
    """Read a TOML build spec into :class:`BuildOptions`."""
    return options_from_settings(read_spec(path), str(path))


__all__ = [
    "SpecError",
    "check_share_type",
    "load_spec",
    "merge_settings",
    "options_from_settings",
    "parse_mode",
    "read_spec",
    "unknown_key",
]
