"""Real images through hats.stage1: a composed image (``hats image build``) and the
default Debian base, against the builder's effective tree, GNU tar and tar-rs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from stage1_support import mismatches, snapshot

from hats.archive.tarstream import TarWriter
from hats.image.build import BuildOptions, build_image, plan_layers
from hats.image.cli import load_tree
from hats.image.compose import compose
from hats.image.settings import AgentInputs, KeyInputs, Outputs
from hats.image.tree import EffectiveTree
from hats.keys.keyfile import format_key_file
from hats.keys.keygen import generate_key_pair
from hats.stage1.finish import finish_root
from hats.stage1.unpack import unpack_image_file


def _toy_base(tmp: Path) -> Path:
    """A small Debian-like root as GNU tar makes it: merged /usr, setuid, sticky
    /tmp, a hard link, a FIFO, a device, long and non-ASCII names, ``./`` names."""
    root = tmp / "toy"
    for path in ("usr/bin", "usr/sbin", "etc/systemd/system", "dev", "tmp", "var/run-real"):
        (root / path).mkdir(parents=True)
    os.symlink("usr/bin", root / "bin")
    os.symlink("usr/sbin", root / "sbin")
    os.symlink("/var/run-real", root / "run")
    for name in ("sh", "passwd", "journalctl"):
        (root / "usr/bin" / name).write_bytes(b"#!/bin/sh\nexit 0\n")
        os.chmod(root / "usr/bin" / name, 0o755)
    os.chmod(root / "usr/bin/passwd", 0o4755)
    os.chmod(root / "tmp", 0o1777)
    os.link(root / "usr/bin/sh", root / "usr/bin/dash")
    (root / "usr/sbin/init").write_bytes(b"\x7fELF init\n")
    os.chmod(root / "usr/sbin/init", 0o755)
    (root / "etc/hostname").write_text("toy\n")
    (root / "etc/systemd/system/oak-orchestrator.service").write_text("[Service]\n")
    deep = root / "usr/share" / ("long-directory-name-" * 4) / ("long-file-" * 6)
    deep.mkdir(parents=True)
    (deep / "données.txt").write_text("long\n")
    os.mkfifo(root / "dev/initctl")
    os.mknod(root / "dev/null", 0o666 | 0o020000, os.makedev(1, 3))
    out = tmp / "toy.tar"
    flags = ("--sort=name", "--numeric-owner", "--mtime=2000-01-01Z", "--format=gnu")
    subprocess.run(["tar", *flags, "-C", str(root), "-cf", str(out), "."], check=True)
    return out


def _options(tmp: Path, base: Path, output: Path) -> BuildOptions:
    keys = tmp / "tvs_public_keys.txt"
    keys.write_bytes(format_key_file([generate_key_pair()[1]]))
    binaries: dict[str, Path] = {}
    for name in ("orchestrator", "agent", "syslogd"):
        binaries[name] = tmp / name
        binaries[name].write_bytes(f"#!/bin/sh\necho {name}\n".encode())
    return BuildOptions(
        keys=KeyInputs(tvs_keys=keys, secret_share_type="no-split"),
        outputs=Outputs(image=output),
        base=base,
        agents=AgentInputs(
            orchestrator=binaries["orchestrator"],
            agent=binaries["agent"],
            syslogd=binaries["syslogd"],
        ),
    )


def test_a_built_image_unpacks_to_its_effective_tree_then_finishes(tmp_path: Path) -> None:
    base = _toy_base(tmp_path)
    result = build_image(_options(tmp_path, base, tmp_path / "image.tar.xz"))
    root = tmp_path / "root"
    report = unpack_image_file(result.path, root)
    assert mismatches(result.tree, root) == []
    assert report.hardlinks == 1 and report.devices == 2
    assert os.stat(root / "usr/bin/passwd").st_mode & 0o7777 == 0o755
    assert os.stat(root / "tmp").st_mode & 0o7777 == 0o777
    assert (root / "usr/bin/orchestrator_main").read_bytes() == b"#!/bin/sh\necho orchestrator\n"
    assert (root / "hats/tvs_public_keys.txt").read_bytes().startswith(b"0:04")
    finished = finish_root(root, b"dice")
    assert finished.machine_id_created and not finished.dockerenv_removed
    assert (root / "oak/dice").read_bytes() == b"dice"


@pytest.mark.slow
def test_the_default_base_unpacks_like_the_tree_gnu_tar_and_tar_rs(
    default_base_tar: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    ours = tmp_path / "ours"
    report = unpack_image_file(default_base_tar, ours)
    assert report.files > 1000 and report.skipped == 0 and report.warnings == []
    tree = load_tree(default_base_tar)
    assert tree.conflicts == []
    assert mismatches(tree, ours) == []
    expected = snapshot(ours)

    gnu = tmp_path / "gnu"
    gnu.mkdir()
    subprocess.run(
        ["tar", "-xf", str(default_base_tar), "-C", str(gnu), "--no-same-owner"], check=True
    )
    assert snapshot(gnu) == expected

    try:
        oracle: Path = request.getfixturevalue("tarrs_oracle")
    except pytest.skip.Exception:
        return
    theirs = tmp_path / "tarrs"
    theirs.mkdir()
    with default_base_tar.open("rb") as stdin:
        subprocess.run([str(oracle), str(theirs)], stdin=stdin, check=True)
    assert snapshot(theirs, mtimes=True) == snapshot(ours, mtimes=True)


@pytest.mark.slow
def test_the_reference_layout_on_the_default_base_unpacks_to_its_tree(
    default_base_tar: Path, tmp_path: Path
) -> None:
    """``test_single``'s layers on the Debian base, composed without compression."""
    options = _options(tmp_path, default_base_tar, tmp_path / "unused.tar.xz")
    image = tmp_path / "image.tar"
    with plan_layers(options, lambda _message: None) as (layers, _base), image.open("wb") as out:
        tree: EffectiveTree = compose(layers, TarWriter(out.write))
    root = tmp_path / "root"
    unpack_image_file(image, root)
    assert mismatches(tree, root) == []
    unit = root / "etc/systemd/system/oak-orchestrator.service"
    assert unit.read_bytes() == tree.entries["etc/systemd/system/oak-orchestrator.service"].data
    finish_root(root, b"dice")
    assert (root / "oak/dice").stat().st_mode & 0o777 == 0o600
