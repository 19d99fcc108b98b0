"""The one table of build settings: options, spec keys, docs/SPEC.md and --json agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from hats.image.build import BuildError, build_image
from hats.image.cli import image_group
from hats.image.settings import (
    LAYER_KEYS,
    SETTINGS,
    BuildOptions,
    KeyInputs,
    LayerSpec,
    SettingsConflict,
    given_from_cli,
    options_from_settings,
    settings_json,
)
from hats.image.spec import merge_settings, read_spec

SPEC_MD = Path(__file__).resolve().parents[2] / "docs" / "SPEC.md"


def documented_keys() -> dict[tuple[str | None, str], str]:
    """(table, key) → the "option" cell, from every key table of docs/SPEC.md."""
    rows: dict[tuple[str | None, str], str] = {}
    section: str | None = None
    in_keys = False
    for line in SPEC_MD.read_text().splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
            match = re.fullmatch(r"`\[\[?(\w+)\]\]?`", heading)
            in_keys = heading == "Top-level keys" or match is not None
            section = match.group(1) if match else None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if in_keys and line.startswith("| `"):
            rows[(section, cells[0].strip("`"))] = cells[3]
    return rows


def test_spec_md_and_the_table_list_the_same_keys_and_options() -> None:
    documented = documented_keys()
    table = {(s.section, s.key): s for s in SETTINGS if s.toml is not None and s.key != "layers"}
    expected = set(table) | {("layers", key) for key in LAYER_KEYS}
    assert set(documented) == expected
    for place, setting in table.items():
        assert f"`{setting.option()}" in documented[place], place
    # The command-line-only settings are not spec keys.
    assert {s.name for s in SETTINGS if s.toml is None} == {
        "cache_dir",
        "jobs",
        "block_cache_dir",
        "no_block_cache",
        "block_cache_max_size",
    }


def test_build_help_has_one_option_per_setting() -> None:
    result = CliRunner().invoke(image_group, ["build", "--help"], terminal_width=200)
    assert result.exit_code == 0
    help_text = " ".join(result.output.split())
    for setting in SETTINGS:
        for flag in setting.flags:
            assert re.search(rf"(^|[ ,]){re.escape(flag)}\b", help_text), flag
    for flag in ("--check", "--json", "--quiet", "docs/SPEC.md"):
        assert flag in help_text


def test_the_command_line_overrides_the_spec_and_adds_to_its_lists(tmp_path: Path) -> None:
    spec = tmp_path / "specs" / "image.toml"
    spec.parent.mkdir()
    spec.write_text(
        'tvs_keys = "keys.txt"\nsecret_share_type = "xor"\noutput = "a.tar.xz"\n'
        'orchestrator_flags = ["--a=1"]\n[lint]\nallow = ["device"]\n'
        '[[layers]]\nsource = "extra"\ndestination = "/opt"\nmode = "0644"\n'
    )
    given = given_from_cli(
        {
            "output": Path("b.tar.xz"),
            "orchestrator_flags": ("--b=2",),
            "lint_allow": (),
            "layers": ("more:/srv",),
            "allow_test_keys": False,
            "xz_block_size": "64KiB",
            "jobs": 2,
        }
    )
    options = options_from_settings(merge_settings(read_spec(spec), given), str(spec))
    assert options.keys == KeyInputs(spec.parent / "keys.txt", "xor")
    assert options.outputs.image == Path("b.tar.xz")  # replaced
    assert options.agents.orchestrator_flags == ("--a=1", "--b=2")  # added
    assert options.lint.allow == ("device",) and options.lint.allow_test_keys is False
    assert options.layers == (
        LayerSpec(spec.parent / "extra", "/opt", 0o644),
        LayerSpec(Path("more"), "/srv", None),
    )
    assert options.compression.xz_block_size == 64 << 10 and options.compression.jobs == 2
    assert options.compression.block_cache is True


def test_no_output_is_none_and_build_image_refuses_it(tmp_path: Path) -> None:
    options = options_from_settings(
        {"tvs_keys": tmp_path / "k", "secret_share_type": "no-split"}, "options"
    )
    assert options.outputs.image is None and options.outputs.paths() == []
    with pytest.raises(BuildError, match="no output"):
        build_image(options)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"jobs": 2}, "--jobs needs --xz-block-size"),
        ({"no_block_cache": True}, "--no-block-cache needs --xz-block-size"),
        ({"block_cache_max_size": "1GiB"}, "--block-cache-max-size needs --xz-block-size"),
        (
            {"xz_block_size": "1MiB", "no_block_cache": True, "block_cache_dir": Path("c")},
            "cannot be combined",
        ),
        ({"xz_block_size": "1MiB", "jobs": 0}, "--jobs: 0 is not a number of workers"),
    ],
)
def test_compression_options_go_together(given: dict[str, object], message: str) -> None:
    settings = {"tvs_keys": Path("k"), "secret_share_type": "xor", **given_from_cli(given)}
    with pytest.raises(SettingsConflict, match=message) as info:
        options_from_settings(settings, "options")
    assert info.value.exit_code == 2


def test_settings_json_mirrors_the_spec_layout() -> None:
    options = BuildOptions(keys=KeyInputs(Path("keys.txt"), "shamir"))
    document = settings_json(options)
    assert document == {
        "output": None,
        "tvs_keys": "keys.txt",
        "secret_share_type": "shamir",
        "base": None,
        "tvs_heartbeat_frequency": None,
        "orchestrator_flags": [],
        "allow_test_keys": False,
        "binaries": {"orchestrator": None, "agent": None, "syslogd": None},
        "units": {"orchestrator": None, "syslogd": None},
        "layers": [],
        "outputs": {
            "tar": None,
            "manifest": None,
            "sums": None,
            "sums_format": None,
            "digest_file": None,
        },
        "lint": {"allow": []},
        "xz": {"block_size": None, "jobs": None, "block_cache": None},
        "cache_dir": None,
    }
