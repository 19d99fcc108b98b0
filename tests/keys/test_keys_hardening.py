"""Known test keys (private key public) are errors unless ``--allow-test-keys`` (item 7).

The reference's key files hold 1·G, 2·G, 3·G (private keys 1, 2, 3) and its
heartbeat test key, whose private key is published in the HATs sources: anyone
can act as such a TVS and receive the image's secrets.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import shared_data
from hats.archive.tarformat import Member
from hats.cli import main
from hats.demo import toy_base_root
from hats.image.lint import ERROR_CODES, lint
from hats.image.spec import SpecError, load_spec
from hats.image.tree import EffectiveTree
from hats.image.units import render_orchestrator_unit, render_syslogd_unit
from hats.keys.keyfile import format_key_file
from hats.keys.keygen import public_key_from_private

G1 = public_key_from_private((1).to_bytes(32, "big"))
G3 = public_key_from_private((3).to_bytes(32, "big"))
HEARTBEAT_KEY = bytes.fromhex(  # the reference's heartbeat test key (upstream, published)
    "04b57ab5cad6ff969c3c77eff6ebcb1074cf74c5a9309d05ea48be0fa96251150a"
    "7f27730484a14da70811332d0935738aa57d706a6ebe240b9a48399861fbface"
)
PRIVATE_ONLY_TO_US = public_key_from_private(hashlib.sha256(b"a real TVS").digest())


def _tree(keys: list[bytes], share: str = "no-split") -> EffectiveTree:
    tree = EffectiveTree()

    def add(name: str, data: bytes, mode: int) -> None:
        member = Member(name=name, mode=mode, size=len(data))
        keep = data if name.endswith((".service", ".txt")) else None
        tree.add(member, "test", hashlib.sha256(data).hexdigest(), data[:128], keep)

    add("usr/bin/python3", b"\x7fELF", 0o755)
    for name in ("orchestrator_main", "oak_containers_syslogd"):
        add(f"usr/bin/{name}", b"#!/usr/bin/python3 -IS\n", 0o755)
    add("etc/systemd/system/oak-orchestrator.service", render_orchestrator_unit(share), 0o555)
    add("etc/systemd/system/oak-syslogd.service", render_syslogd_unit(), 0o555)
    add("hats/tvs_public_keys.txt", format_key_file(keys), 0o555)
    return tree


def _test_key_findings(tree: EffectiveTree, **options: bool) -> list[tuple[str, str]]:
    return [(f.severity, f.message) for f in lint(tree, **options) if f.code == "test-key"]


@pytest.mark.parametrize(
    ("keys", "share", "lines"),
    [
        ([G1], "no-split", [1]),
        ([HEARTBEAT_KEY], "no-split", [1]),
        ([PRIVATE_ONLY_TO_US, G3], "xor", [2]),
    ],
)
def test_lint_makes_test_keys_an_error(keys: list[bytes], share: str, lines: list[int]) -> None:
    findings = _test_key_findings(_tree(keys, share))
    assert [severity for severity, _ in findings] == ["error"] * len(lines)
    for (_, message), line in zip(findings, lines, strict=True):
        assert message.startswith(f"line {line}: test key")
        assert "private key is public" in message and "--allow-test-keys" in message
    assert "test-key" in ERROR_CODES


def test_allow_test_keys_makes_them_a_warning() -> None:
    findings = _test_key_findings(_tree([G1]), allow_test_keys=True)
    assert [severity for severity, _ in findings] == ["warning"]


def test_other_keys_are_clean() -> None:
    assert _test_key_findings(_tree([PRIVATE_ONLY_TO_US])) == []


def test_key_count_is_still_checked_with_test_keys() -> None:
    codes = {(f.severity, f.code) for f in lint(_tree([G1], "xor"))}
    assert ("error", "key-count") in codes and ("error", "test-key") in codes


# --- keys check -------------------------------------------------------------------


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().out


def test_keys_check_fails_on_the_reference_files(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(shared_data.TVS_KEYS.glob("*.txt"))
    code, out = run(["keys", "check", *map(str, files)], capsys)
    assert code == 1
    assert "OK" not in out
    flagged = {line.split(":")[0] for line in out.splitlines() if "test key" in line}
    assert flagged == set(map(str, files))


def test_keys_check_allow_test_keys(capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_data.TVS_KEYS / "test_single.txt"
    code, out = run(["keys", "check", "--allow-test-keys", str(path)], capsys)
    assert (code, out) == (0, f"{path}: OK (1 key)\n")


# --- image build and lint, specs --------------------------------------------------


def _toy_build(tmp_path: Path, keys: bytes, *extra: str) -> tuple[int, Path]:
    root = toy_base_root(tmp_path / "root")
    binary = tmp_path / "agent"
    binary.write_bytes(b"#!/bin/sh\n")
    binary.chmod(0o755)
    key_file = tmp_path / "keys.txt"
    key_file.write_bytes(keys)
    out = tmp_path / "image.tar.xz"
    args = ["image", "build", "-q", "--base", str(root), "--tvs-keys", str(key_file)]
    args += ["--secret-share-type", "no-split", "-o", str(out)]
    for option in ("--orchestrator", "--agent", "--syslogd"):
        args += [option, str(binary)]
    return main([*args, *extra]), out


def test_image_build_refuses_test_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _toy_build(tmp_path, (shared_data.TVS_KEYS / "test_single.txt").read_bytes())
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    assert "test key 1·G: its private key is public" in err and "[test-key]" in err
    assert err.count("\n") == 1


def test_image_build_and_lint_allow_test_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = (shared_data.TVS_KEYS / "test_single.txt").read_bytes()
    code, out = _toy_build(tmp_path, keys, "--allow-test-keys")
    assert code == 0 and out.exists()
    capsys.readouterr()
    assert main(["image", "lint", str(out)]) == 1
    assert "error: /hats/tvs_public_keys.txt: line 1: test key 1·G" in capsys.readouterr().out
    assert main(["image", "lint", "--allow-test-keys", str(out)]) == 0
    assert "warning: /hats/tvs_public_keys.txt: line 1: test key" in capsys.readouterr().out


def test_spec_allow_test_keys(tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    head = 'tvs_keys = "k"\nsecret_share_type = "no-split"\n'
    spec.write_text(head)
    assert load_spec(spec).lint.allow_test_keys is False
    spec.write_text(head + "allow_test_keys = true\n")
    assert load_spec(spec).lint.allow_test_keys is True
    spec.write_text(head + 'allow_test_keys = "yes"\n')
    with pytest.raises(SpecError, match="allow_test_keys must be true or false"):
        load_spec(spec)


@pytest.mark.parametrize("name", ["test_single", "test_xor_2", "test_shamir_2_of_3"])
def test_the_reference_examples_say_they_use_test_keys(name: str) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    assert load_spec(examples / f"{name}.toml").lint.allow_test_keys is True
