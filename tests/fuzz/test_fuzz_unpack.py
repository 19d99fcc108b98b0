"""Fuzzing the unpackers with hostile trees: stage1's unpacking of the image
(:func:`hats.stage1.unpack.unpack_image`) and the orchestrator's container
bundle (:func:`hats.orchestrator.bundle.unpack_bundle`).

The archives are well-formed tars of hostile trees: names with ``..``, ``.``,
empty components and a leading ``/``; symlinks to the parent, the root, each
other (chains, loops) and to the host path of a directory outside the target;
hard links to nowhere, to directories and to that outside directory; devices
and FIFOs; names nested thousands of levels deep (past ``PATH_MAX``).

Each input is unpacked into a fresh directory beside a sentinel directory
holding a file: only a HatsError may escape (stage1's ``UnpackError`` and the
reader's ``TarFormatError`` are HatsErrors), within a second, and nothing
outside the target is written, removed or linked to.
"""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fuzz_support import check_hostile
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from hats.archive import tarformat as tf
from hats.archive.tarformat import Member
from hats.archive.tarstream import TarWriter
from hats.errors import HatsError
from hats.orchestrator.bundle import unpack_bundle
from hats.stage1.errors import Stage1Error
from hats.stage1.unpack import unpack_image

OUTSIDE = "@OUTSIDE@"  # replaced by the host path of the sentinel directory
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TYPES = {
    "file": tf.REGTYPE,
    "dir": tf.DIRTYPE,
    "symlink": tf.SYMTYPE,
    "hardlink": tf.LNKTYPE,
    "fifo": tf.FIFOTYPE,
    "chardev": tf.CHRTYPE,
}


@dataclass(frozen=True)
class Node:
    name: str
    kind: str
    link: str = ""


# Few names, so that entries meet: a symlink ``l`` and then ``l/a``, a file
# ``a`` and then ``a/b``, and so on.
COMPONENT = st.sampled_from(["a", "l", "..", ".", "", "rootfs"])
SHORT = st.lists(COMPONENT, min_size=1, max_size=3).map("/".join)
DEEP = st.builds(
    lambda levels, tail: "d/" * levels + tail,
    st.sampled_from([40, 300, 1000, 2050]),
    st.sampled_from(["", "f", "l/x", "../x"]),
)
NAME = st.one_of(SHORT, SHORT.map(lambda name: "/" + name), DEEP)
TARGET = st.one_of(
    st.sampled_from([OUTSIDE, OUTSIDE + "/victim", "../../../../outside", "/" + "d/" * 300]),
    st.sampled_from(["", "a", "l", "..", "../..", "/", "/a", "a/l", "l/l"]),
    SHORT,
)
NODE = st.builds(Node, NAME, st.sampled_from(list(TYPES)), TARGET)
TREE = st.lists(NODE, min_size=1, max_size=8)
#: Escapes tried on every run, whatever hypothesis draws.
THROUGH_LINKS = [
    Node("l", "symlink", OUTSIDE),
    Node("l/a", "file"),
    Node("a", "symlink", "../../../../outside"),
    Node("a/b", "dir"),
    Node("a/c", "fifo"),
    Node("h", "hardlink", OUTSIDE + "/victim"),
    Node("l/victim", "symlink", "x"),
]
DEEPEST = [Node("d/" * 2040 + "f", "file"), Node("d/" * 2050 + "f", "file")]


def archive(nodes: list[Node], outside: Path) -> bytes:
    out = io.BytesIO()
    writer = TarWriter(out.write)
    for node in nodes:
        data = (b"{}" if node.name == "config.json" else b"x") if node.kind == "file" else b""
        member = Member(
            name=node.name.replace(OUTSIDE, str(outside)),
            type=TYPES[node.kind],
            mode=0o755 if node.kind == "dir" else 0o644,
            linkname=node.link.replace(OUTSIDE, str(outside)),
            size=len(data),
            devmajor=1 if node.kind == "chardev" else 0,
            devminor=3 if node.kind == "chardev" else 0,
        )
        writer.add(member, iter([data]) if node.kind == "file" else None)
    writer.close()
    return out.getvalue()


@pytest.fixture
def sandbox() -> Iterator[Path]:
    """A directory (on tmpfs when there is one) with ``outside/victim``, the
    sentinel every unpack must leave alone."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="hats-fuzz-unpack-", dir=base))
    (path / "outside").mkdir()
    (path / "outside" / "victim").write_bytes(b"sentinel")
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=True)


def run_hostile(sandbox: Path, unpack: Callable[[Path], object]) -> None:
    """Unpack (twice: check_hostile also measures memory) into fresh targets,
    then check the sentinel and remove the targets."""
    targets = Path(tempfile.mkdtemp(dir=sandbox))
    count = iter(range(1_000_000))

    def attempt() -> None:
        unpack(targets / str(next(count)))

    try:
        outcome = check_hostile(attempt)
        event("unpacked" if outcome.error is None else type(outcome.error).__name__)
        outside = sandbox / "outside"
        assert sorted(os.listdir(outside)) == ["victim"]
        victim = os.lstat(outside / "victim")
        assert victim.st_nlink == 1 and (outside / "victim").read_bytes() == b"sentinel"
        assert sorted(os.listdir(sandbox)) == sorted(["outside", targets.name])
    finally:
        subprocess.run(["rm", "-rf", str(targets)], check=True)


def test_stage1_errors_are_hats_errors() -> None:
    assert issubclass(Stage1Error, HatsError)


@SETTINGS
@given(nodes=TREE)
@example(nodes=THROUGH_LINKS)
@example(nodes=THROUGH_LINKS[2:])
@example(nodes=THROUGH_LINKS[5:])
@example(nodes=DEEPEST)
def test_stage1_unpack_of_hostile_trees(sandbox: Path, nodes: list[Node]) -> None:
    data = archive(nodes, sandbox / "outside")
    run_hostile(sandbox, lambda dest: unpack_image(io.BytesIO(data), dest, mknod=True))


@SETTINGS
@given(nodes=TREE, valid=st.booleans())
@example(nodes=THROUGH_LINKS, valid=True)
@example(nodes=THROUGH_LINKS[2:], valid=True)
@example(nodes=THROUGH_LINKS[5:], valid=True)
@example(nodes=DEEPEST, valid=True)
def test_bundle_unpack_of_hostile_trees(sandbox: Path, nodes: list[Node], valid: bool) -> None:
    if valid:
        nodes = [
            Node("config.json", "file"),
            Node("rootfs", "dir"),
            *(Node("rootfs/" + node.name.lstrip("/"), node.kind, node.link) for node in nodes),
        ]
    data = archive(nodes, sandbox / "outside")
    run_hostile(
        sandbox,
        lambda dest: unpack_bundle(
            data, dest, uid=None, gid=None, ipc_socket_path="/run/ipc", max_members=100
        ),
    )
