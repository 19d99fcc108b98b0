"""The share types' rules live in hats.sharetype; every user reads them from there."""

from __future__ import annotations

import pytest

from hats import cli as hats_cli
from hats import orchestrator
from hats.image import lint, units
from hats.keys import keyfile
from hats.orchestrator import secret_manager
from hats.sharetype import DEFAULT_SHARE_TYPE, MAX_TVS, SHARE_TYPES, ShareType
from hats.tvs import split


def test_spellings_and_default() -> None:
    assert SHARE_TYPES == ("no-split", "xor", "shamir")
    assert DEFAULT_SHARE_TYPE is ShareType.NO_SPLIT
    assert ShareType("xor") is ShareType.XOR


@pytest.mark.parametrize(
    ("share", "low", "high"),
    [(ShareType.NO_SPLIT, 1, 1), (ShareType.XOR, 2, 10), (ShareType.SHAMIR, 3, 10)],
)
def test_tvs_bounds(share: ShareType, low: int, high: int) -> None:
    assert (share.min_tvs, share.max_tvs) == (low, high)
    assert lint.MIN_KEYS[share.value] == (low, high)


def test_at_most_ten_tvses_as_the_key_file() -> None:
    # The reference reads a TVS index as one character: 0-9.
    assert MAX_TVS == keyfile.MAX_KEYS == 10


def test_thresholds_xor_all_shamir_n_minus_one() -> None:
    assert ShareType.NO_SPLIT.threshold(1) == 1
    assert ShareType.XOR.threshold(4) == 4
    assert ShareType.SHAMIR.threshold(4) == 3
    for share in ShareType:
        assert secret_manager.required_replies(share.value, 5) == share.threshold(5)
    assert split.default_threshold("xor", 3) == 3
    assert split.default_threshold("shamir", 3) == 2


def test_unit_flag_is_the_orchestrators_option() -> None:
    for share in ShareType:
        assert share.unit_flag == f"--secret-share-type={share.value}"
        exec_start = units.orchestrator_exec_start(share.value)
        assert share.unit_flag in exec_start.split()
        assert lint.share_type_of(f"[Service]\nExecStart={exec_start}\n".encode()) == share.value


def test_every_command_line_offers_the_same_types() -> None:
    assert set(orchestrator.SECRET_SHARE_TYPES) == set(SHARE_TYPES)
    assert orchestrator.DEFAULT_SECRET_SHARE_TYPE == "no-split"
    assert units.SHARE_TYPES == SHARE_TYPES
    assert set(split.SCHEMES) == {"xor", "shamir"}
    demo = hats_cli.cli.commands["demo"]
    share = next(p for p in demo.params if p.name == "share")
    assert tuple(share.type.choices) == SHARE_TYPES  # type: ignore[attr-defined]
    assert share.default == "no-split"


@pytest.mark.parametrize(
    ("share", "tvs"), [("no-split", 2), ("xor", 1), ("shamir", 2), ("bogus", 1)]
)
def test_orchestrator_refuses_too_few_tvses(share: str, tvs: int) -> None:
    with pytest.raises(secret_manager.SecretConfigError):
        secret_manager.make_splitter(share, tvs)
