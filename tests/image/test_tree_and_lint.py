"""The effective tree (stage1's unpacking rules) and the lint rules, as pure code."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hats.archive import tarformat as tf
from hats.archive.tarformat import Member
from hats.image.lint import lint, share_type_of
from hats.image.merge import DepsMerge, SubTar, SubTarFile
from hats.image.tree import EffectiveTree, normalize
from hats.image.units import render_orchestrator_unit, render_syslogd_unit
from hats.keys.keygen import public_key_from_private

# Keys whose private keys are not public (1·G, 2·G are the reference's test keys: a
# `test-key` error, tests/keys/test_keys_hardening.py).
KEY1 = public_key_from_private(hashlib.sha256(b"lint key 1").digest()).hex()
KEY2 = public_key_from_private(hashlib.sha256(b"lint key 2").digest()).hex()


def test_normalize_follows_tar_rs() -> None:
    assert normalize("./etc/x") == "etc/x"
    assert normalize("/etc//x/") == "etc/x"
    assert normalize("./") == ""
    assert normalize("a/../b") is None
    assert normalize("..") is None


@given(st.lists(st.sampled_from(["a", "b", ".", "", ".."]), max_size=6))
def test_normalize_never_keeps_dot_components(parts: list[str]) -> None:
    result = normalize("/".join(parts))
    if ".." in parts:
        assert result is None
    else:
        assert result is not None
        assert all(p not in ("", ".", "..") for p in result.split("/") if result)


def add_file(
    tree: EffectiveTree, name: str, data: bytes, mode: int = 0o644, layer: str = "l"
) -> None:
    member = Member(name=name, mode=mode, size=len(data))
    keep = data if name.endswith((".service", ".txt")) else None
    tree.add(member, layer, hashlib.sha256(data).hexdigest(), data[:128], keep)


def test_later_entry_wins_and_records_overrides() -> None:
    tree = EffectiveTree()
    add_file(tree, "./etc/x", b"old", layer="base")
    add_file(tree, "etc/x", b"new", mode=0o4755, layer="hats")
    entry = tree.lookup("/etc/x")
    assert entry is not None
    assert entry.sha256 == hashlib.sha256(b"new").hexdigest()
    assert entry.mode == 0o755 and entry.raw_mode == 0o4755
    assert entry.overrides == ["base"] and entry.layer == "hats"


def test_hard_links_take_the_content_at_that_point() -> None:
    tree = EffectiveTree()
    add_file(tree, "a", b"one")
    tree.add(Member(name="b", type=tf.LNKTYPE, linkname="a"), "l")
    add_file(tree, "a", b"two")
    b = tree.lookup("b")
    assert b is not None and b.sha256 == hashlib.sha256(b"one").hexdigest()
    tree.add(Member(name="c", type=tf.LNKTYPE, linkname="missing"), "l")
    assert any("hard link" in p.message for p in tree.conflicts)


def test_resolve_follows_symlinks() -> None:
    tree = EffectiveTree()
    tree.add(Member(name="./bin", type=tf.SYMTYPE, linkname="usr/bin"), "base")
    tree.add(Member(name="./usr/lib/x", type=tf.SYMTYPE, linkname="../bin/sh"), "base")
    add_file(tree, "./usr/bin/sh", b"#!")
    assert tree.resolve("/bin/sh") is tree.lookup("usr/bin/sh")
    assert tree.resolve("/usr/lib/x") is tree.lookup("usr/bin/sh")
    tree.add(Member(name="loop", type=tf.SYMTYPE, linkname="loop"), "base")
    assert tree.resolve("/loop") is None


def hats_tree(keys: str, share: str, *, python: bool = True) -> EffectiveTree:
    tree = EffectiveTree()
    add_file(tree, "usr/bin/journalctl", b"\x7fELF", 0o755)
    if python:
        add_file(tree, "usr/bin/python3", b"\x7fELF", 0o755)
    for name in ("orchestrator_main", "oak_containers_syslogd"):
        add_file(tree, f"usr/bin/{name}", b"#!/usr/bin/python3 -IS\n", 0o755)
    add_file(
        tree, "etc/systemd/system/oak-orchestrator.service", render_orchestrator_unit(share), 0o555
    )
    add_file(tree, "etc/systemd/system/oak-syslogd.service", render_syslogd_unit(), 0o555)
    add_file(tree, "hats/tvs_public_keys.txt", keys.encode(), 0o555)
    return tree


def codes(tree: EffectiveTree) -> set[tuple[str, str]]:
    return {(f.severity, f.code) for f in lint(tree)}


def test_a_good_tree_is_clean() -> None:
    assert codes(hats_tree(f"0:{KEY1}\n", "no-split")) == set()
    assert codes(hats_tree(f"0:{KEY1}\n1:{KEY2}\n", "xor")) == set()


@pytest.mark.parametrize(
    ("keys", "share", "code"),
    [
        (f"0:{KEY1}\n", "xor", "key-count"),
        (f"0:{KEY1}\n1:{KEY2}\n", "no-split", "key-count"),
        (f"0:{KEY1}\n1:{KEY2}\n", "shamir", "key-count"),
        (f"1:{KEY1}\n", "no-split", "key-file"),
        (f"0:{KEY1[:-2]}\n", "no-split", "key-file"),
    ],
)
def test_key_rules(keys: str, share: str, code: str) -> None:
    assert ("error", code) in codes(hats_tree(keys, share))


def test_missing_interpreter_and_binary_are_errors() -> None:
    assert ("error", "missing-exec") in codes(hats_tree(f"0:{KEY1}\n", "no-split", python=False))
    tree = hats_tree(f"0:{KEY1}\n", "no-split")
    add_file(tree, "usr/bin/orchestrator_main", b"not executable", 0o644)
    findings = [f for f in lint(tree) if f.code == "missing-exec"]
    assert findings and "not executable" in findings[0].message


def test_stage1_breakers_and_warnings() -> None:
    tree = hats_tree(f"0:{KEY1}\n", "no-split")
    tree.add(Member(name="./oak", type=tf.DIRTYPE), "base")
    tree.add(Member(name="/abs", type=tf.DIRTYPE), "base")
    tree.add(Member(name="../up", type=tf.DIRTYPE), "base")
    tree.add(Member(name="./tmp", type=tf.DIRTYPE, mode=0o1777), "base")
    tree.add(Member(name="./dev/null", type=tf.CHRTYPE, devmajor=1, devminor=3), "base")
    add_file(tree, ".dockerenv", b"")
    add_file(tree, "etc/systemd/system/other.service", b"[Service]\nExecStart=/usr/bin/nothere\n")
    add_file(
        tree,
        "etc/systemd/system/guarded.service",
        b"[Unit]\nConditionFileIsExecutable=/etc/rc.local\n[Service]\nExecStart=/etc/rc.local\n",
    )
    found = codes(tree)
    assert {
        ("error", "oak-dir"),
        ("error", "unsafe-name"),
        ("warning", "special-bits"),
        ("warning", "device"),
        ("warning", "dockerenv"),
        ("warning", "unit-missing-exec"),
    } <= found
    assert not any("rc.local" in f.path for f in lint(tree))
    assert sum(f.code == "unsafe-name" for f in lint(tree)) == 2
    assert lint(tree)[0].severity == "error"


def test_share_type_of_unit() -> None:
    assert share_type_of(render_orchestrator_unit("shamir")) == "shamir"
    assert share_type_of(b"[Service]\nExecStart=/x --secret-share-type xor\n") == "xor"
    assert share_type_of(b"[Service]\nExecStart=/x\n") == "no-split"


def test_deps_merge_creates_missing_parents_with_member_attributes() -> None:
    merge = DepsMerge()
    out = merge.add(Member(name="./opt/app/tool", uid=7, gid=8, mtime=1234, uname="u"))
    assert [m.name for m in out] == ["./opt/", "./opt/app/", "./opt/app/tool"]
    assert all((m.uid, m.gid, m.mtime, m.uname) == (7, 8, 1234, "") for m in out)
    assert out[0].mode == 0o755 and out[0].is_dir
    # "./opt/" and "opt/" are different strings: pkg_tar adds both
    assert [m.name for m in merge.add(Member(name="opt/x"))] == ["opt/", "opt/x"]
    assert [m.name for m in merge.add(Member(name="opt", type=tf.DIRTYPE))] == ["opt/"]


def test_sub_tar_sorts_and_creates_parents_once() -> None:
    members = [
        m
        for m, _ in SubTar().members(
            [
                SubTarFile("etc/systemd/system/b.service", 0o555, 1),
                SubTarFile("etc/systemd/system/a.service", 0o555, 2),
            ]
        )
    ]
    assert [m.name for m in members] == [
        "etc",
        "etc/systemd",
        "etc/systemd/system",
        "etc/systemd/system/a.service",
        "etc/systemd/system/b.service",
    ]
    assert all(m.mtime == tf.PORTABLE_MTIME and m.uid == 0 for m in members)
