"""F6: the orchestrator runs any key file the reference orchestrator runs.

The reference reads, per line, ``tvs_id = line[0..1]`` as an integer and the
key as ``hex(line[2..])``: any single-digit index, in any order, no duplicate
check; a longer index or a bad line fails start-up. ``lint`` and ``keys check``
stay strict but say how the reference would treat the file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from orch_testing import AUTH_KEY, TVS_PRIVATE_KEYS, FakeLauncher, dice_file, public, serve
from orch_testing import tvs_config as make_tvs_config

from hats.archive.tarformat import Member
from hats.image.lint import lint
from hats.image.tree import EffectiveTree
from hats.keys.cli import keys_group
from hats.keys.keyfile import KeyFileError
from hats.orchestrator.startup import RetryPolicy, StartupConfig, read_key_file, start
from hats.orchestrator.state import Secret as OrchSecret
from hats.tvs.keys import Secret

K = [public(k).hex() for k in TVS_PRIVATE_KEYS]


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "tvs_public_keys.txt"
    path.write_bytes(data)
    return path


def test_f6_any_single_digit_index_in_any_order(tmp_path: Path) -> None:
    keys = read_key_file(_file(tmp_path, f"7:{K[0]}\n3:{K[1]}\n".encode()))
    assert [(k.index, k.public_key.hex(), k.line) for k in keys] == [(7, K[0], 1), (3, K[1], 2)]


def test_f6_one_tvs_image_with_index_1_talks_to_tvs_addresses_1(tmp_path: Path) -> None:
    launcher = FakeLauncher({1: make_tvs_config(1, [Secret("5", "pk", b"the secret")])})
    server = serve(launcher, tmp_path / "launcher.sock")
    try:
        started = start(
            StartupConfig(
                launcher_addr=f"unix:{tmp_path / 'launcher.sock'}",
                tvs_public_keys_file=_file(tmp_path, f"1:{K[1]}\n".encode()),
                secret_share_type="no-split",
                dice_file=dice_file(tmp_path / "dice"),
                rpc_timeout=10.0,
                retry=RetryPolicy(initial=0.05, cap=0.2, budget=10.0),
                start_heartbeat=False,
            )
        )
        try:
            assert launcher.sessions == [1]
            assert started.state.secret_manager.current() == [OrchSecret("5", "pk", b"the secret")]
        finally:
            started.close()
    finally:
        server.stop(None)


def test_f6_crlf_and_duplicates_run_with_one_warning_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = f"0:{K[0]}\r\n1:{K[0]}\r\n1:{K[2]}\r\n".encode()
    with caplog.at_level(logging.WARNING, logger="hats.orchestrator.startup"):
        keys = read_key_file(_file(tmp_path, data))
    assert [(k.index, k.public_key.hex()) for k in keys] == [(0, K[0]), (1, K[0]), (1, K[2])]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "line 2: same public key as line 1" in warnings[0]
    assert "line 3: index 1 already used on line 2" in warnings[0]
    assert not any(k in warnings[0] for k in K)


def test_f6_the_second_character_is_not_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="hats.orchestrator.startup"):
        keys = read_key_file(_file(tmp_path, f"0;{K[0]}\n".encode()))
    assert [k.index for k in keys] == [0]
    assert "not ':'" in caplog.text


def test_f6_a_clean_file_gives_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hats.orchestrator.startup"):
        read_key_file(_file(tmp_path, f"0:{K[0]}\n1:{K[1]}\n".encode()))
    assert caplog.records == []


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (f"10:{K[0]}\n", 1),  # a longer index: the key part starts with ':'
        (f"0:{K[0]}\n\n1:{K[1]}\n", 2),  # an empty line
        (f"a:{K[0]}\n", 1),
        (f"0:{K[0][:-2]}\n", 1),  # 64 bytes
        (f"0:{K[0]}\n1:\n", 2),
    ],
)
def test_f6_lines_the_reference_fails_on_fail_start_up(
    tmp_path: Path, data: str, line: int
) -> None:
    path = _file(tmp_path, data.encode())
    with pytest.raises(KeyFileError, match=f"^{path}:{line}: ") as failure:
        read_key_file(path)
    assert not any(k in str(failure.value) for k in K)


def test_f6_keys_check_stays_strict_and_explains_the_reference(tmp_path: Path) -> None:
    path = _file(tmp_path, f"1:{K[0]}\n0:{K[0]}\n".encode())
    result = CliRunner().invoke(keys_group, ["check", "--allow-test-keys", str(path)])
    assert result.exit_code == 1
    assert f"{path}:2: same public key as line 1" in result.output
    note = [line for line in result.output.splitlines() if ": note: " in line]
    assert note == [
        f"{path}: note: the reference orchestrator runs this file: line 1 -> tvs_addresses[1],"
        " line 2 -> tvs_addresses[0]; but line 2: same public key as line 1"
    ]
    bad = _file(tmp_path, f"10:{K[0]}\n".encode())
    result = CliRunner().invoke(keys_group, ["check", str(bad)])
    assert "the reference orchestrator fails on this file (line 1: " in result.output


def test_f6_lint_stays_strict_and_explains_the_reference() -> None:
    data = f"0:{K[0]}\r\n".encode()
    tree = EffectiveTree()
    tree.add(Member("hats", type=b"5", mode=0o755), "keys")
    tree.add(Member("hats/tvs_public_keys.txt", size=len(data)), "keys", "0" * 64, data[:128], data)
    findings = {f.code: f for f in lint(tree, allow_test_keys=True)}
    assert findings["key-file"].severity == "error"
    explained = findings["key-file-reference"]
    assert explained.severity == "warning"
    assert explained.message == (
        "the reference orchestrator runs this file: line 1 -> tvs_addresses[0]"
    )
    assert AUTH_KEY.hex() not in explained.message
