"""The shipped example specs are the four reference variants."""

from __future__ import annotations

from pathlib import Path

import pytest
from image_support import REFERENCE_VARIANTS, SHARE_TYPE

import shared_data
from hats.image.spec import SpecError, load_spec
from hats.keys.keyfile import parse_key_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("variant", REFERENCE_VARIANTS)
def test_example_spec_matches_the_reference_variant(variant: str) -> None:
    options = load_spec(EXAMPLES / f"{variant}.toml")
    assert options.keys.secret_share_type == SHARE_TYPE[variant]
    assert options.agents.tvs_heartbeat_frequency == (1 if "heartbeat" in variant else None)
    assert options.base is None and options.agents.orchestrator is None  # default base, agents
    keys = options.keys.tvs_keys.read_bytes()
    reference = shared_data.TVS_KEYS / f"{variant}.txt"
    if reference.exists():
        assert keys == reference.read_bytes()
    assert (
        len(parse_key_file(keys, str(options.keys.tvs_keys)))
        == {"no-split": 1, "xor": 2, "shamir": 3}[options.keys.secret_share_type]
    )


def test_spec_errors_name_the_file(tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    for text, needle in [
        ("tvs_keys = 'k'\n", "required"),
        ("tvs_keys = 'k'\nsecret_share_type = 'xor'\n[units]\nagent = 'x'\n", "unknown key"),
        ("tvs_keys = 'k'\nsecret_share_type = 'xor'\ntvs_heartbeat_frequency = '1'\n", "integer"),
        (
            "tvs_keys = 'k'\nsecret_share_type = 'xor'\n[[layers]]\nsource = 'a'\nmode = '9'\n",
            "octal",
        ),
        ("tvs_keys = \n", "invalid TOML"),
    ]:
        spec.write_text(text)
        with pytest.raises(SpecError, match=needle) as err:
            load_spec(spec)
        assert str(err.value).startswith(str(spec))
