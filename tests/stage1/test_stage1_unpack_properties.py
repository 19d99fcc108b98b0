"""Property tests: random archives unpacked by hats.stage1 against the
builder's prediction (``EffectiveTree``), GNU tar, and — when Debian's
``librust-tar-dev`` and cargo are installed — tar-rs itself."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stage1_support import Spec, archive, mismatches, snapshot, tree_of

from hats.archive.tarformat import path_bytes
from hats.archive.tarstream import TarReader
from hats.image.tree import EffectiveTree, normalize
from hats.stage1.errors import UnpackError
from hats.stage1.rootpath import Root
from hats.stage1.unpack import unpack_image

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

MTIMES = st.sampled_from([0, 1, 946684800, 1_700_000_000])


def _decorate(draw: Callable[..., object], path: str) -> str:
    prefix = draw(st.sampled_from(["", "./", "/", ".//", "./././"]))
    assert isinstance(prefix, str)
    return prefix + path


@st.composite
def well_formed(draw: st.DrawFn) -> list[Spec]:
    """Archives within EffectiveTree's model: every path keeps one kind, nothing
    is written under a symlink or a file, hard links name a file unpacked before
    them and appear once. Duplicates, setuid bits, decorated names, '..' entries,
    directory entries before or after their contents are all in."""
    raw_dirs = draw(
        st.sets(st.lists(st.sampled_from("abc"), min_size=1, max_size=3).map(tuple), max_size=4)
    )
    dirs = {tuple(d[:i]) for d in raw_dirs for i in range(1, len(d) + 1)}
    parents: list[tuple[str, ...]] = [(), *sorted(dirs)]
    candidates = [(*parent, leaf) for parent in parents for leaf in ("f", "g", "h")]
    leaves = draw(st.lists(st.sampled_from(candidates), unique=True, min_size=1, max_size=6))
    kinds = {
        leaf: draw(st.sampled_from(["file", "file", "symlink", "hardlink", "fifo", "chardev"]))
        for leaf in leaves
    }
    pool = [("dir", d) for d in sorted(dirs)] + [(kinds[leaf], leaf) for leaf in leaves]
    order = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=14))
    specs: list[Spec] = []
    files: list[tuple[str, ...]] = []
    linked: set[tuple[str, ...]] = set()
    for kind, path in order:
        name = _decorate(draw, "/".join(path))
        mode = draw(st.integers(0, 0o7777))
        mtime = draw(MTIMES)
        if kind == "dir":
            specs.append(Spec(name, "dir", mode=mode | 0o700, mtime=mtime))
        elif kind == "file":
            specs.append(Spec(name, data=draw(st.binary(max_size=40)), mode=mode, mtime=mtime))
            if path not in files:
                files.append(path)
        elif kind == "hardlink":
            if path in linked or not files:
                continue
            linked.add(path)
            target = _decorate(draw, "/".join(draw(st.sampled_from(files))))
            specs.append(Spec(name, "hardlink", link=target, mode=mode, mtime=mtime))
        elif kind == "symlink":
            link = draw(st.sampled_from(["f", "../g", "/a/f", "/", ".", "nowhere", "a/b/../h"]))
            specs.append(Spec(name, "symlink", link=link, mode=mode, mtime=mtime))
        else:
            specs.append(Spec(name, kind, mode=mode, mtime=mtime, device=(1, 3)))
        if draw(st.integers(0, 9)) == 0:
            specs.append(Spec(draw(st.sampled_from(["../f", "a/../f", "x/../../y"])), data=b"!"))
    return specs


NAME = st.tuples(
    st.sampled_from(["", "./", "/", "a/../"]),
    st.lists(st.sampled_from("ab"), min_size=1, max_size=3).map("/".join),
).map("".join)
TARGET = st.one_of(
    NAME,
    st.sampled_from(["..", "../..", "/", ".", "../a", "/nowhere", "a", "a/b", "/a/b", "../b"]),
)
ANY_SPEC = st.one_of(
    st.builds(Spec, NAME, st.just("file"), st.binary(max_size=20), st.integers(0, 0o7777), MTIMES),
    st.builds(Spec, NAME, st.just("dir"), st.just(b""), st.integers(0, 0o7777), MTIMES),
    st.builds(lambda n, t, m: Spec(n, "symlink", link=t, mtime=m), NAME, TARGET, MTIMES),
    st.builds(lambda n, t: Spec(n, "hardlink", link=t), NAME, NAME),
    st.builds(lambda n, m: Spec(n, "fifo", mode=m), NAME, st.integers(0, 0o7777)),
)


def _written_through_symlinks(tree: EffectiveTree, root: Path) -> set[str]:
    """Where on disk the tree's paths under a symlink landed: another entry of the
    tree there (``b -> ..`` makes ``b/a`` write ``a``) is not what the tree says."""
    out = set()
    with Root(str(root)) as base:
        for path in tree.entries:
            if _through_symlink(tree, root, path):
                try:
                    parts = base.resolve(path.split("/"), follow_final=False, strict=False)
                except OSError:
                    continue
                out.add("/".join(parts))
    return out


def _under_any(path: str, ancestors: set[str]) -> bool:
    """Whether a proper ancestor of ``path`` is one of ``ancestors``."""
    parts = path.split("/")
    return any("/".join(parts[:depth]) in ancestors for depth in range(1, len(parts)))


def _through_symlink(tree: EffectiveTree, root: Path, path: str) -> bool:
    """Whether an ancestor of ``path`` is a symlink (in the tree or on disk)."""
    parts = path.split("/")
    with Root(str(root)) as base:  # closes the directory it remembers
        for depth in range(1, len(parts)):
            prefix = parts[:depth]
            entry = tree.entries.get("/".join(prefix))
            if entry is not None and entry.kind == "symlink":
                return True
            try:
                host = base.host(base.resolve(prefix, follow_final=False, strict=True))
            except OSError:
                continue
            if os.path.islink(host):
                return True
    return False


@SETTINGS
@given(specs=well_formed())
def test_well_formed_archives_unpack_to_the_predicted_tree(specs: list[Spec]) -> None:
    data = archive(*specs)
    tree = tree_of(data)
    assert tree.conflicts == []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        unpack_image(io.BytesIO(data), root)
        assert mismatches(tree, root, hardlink_modes=False) == []


@SETTINGS
@given(specs=st.lists(ANY_SPEC, min_size=1, max_size=10))
def test_any_archive_stays_inside_and_agrees_when_it_unpacks(specs: list[Spec]) -> None:
    data = archive(*specs)
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Path(tmp)
        (sandbox / "a").mkdir()
        (sandbox / "b").write_bytes(b"sentinel")
        root = sandbox / "root"
        try:
            unpack_image(io.BytesIO(data), root)
        except UnpackError:
            ok = False
        else:
            ok = True
        assert sorted(p.name for p in sandbox.iterdir()) == ["a", "b", "root"]
        assert list((sandbox / "a").iterdir()) == []
        assert (sandbox / "b").read_bytes() == b"sentinel"
        if ok:
            # Where the tree says "stage1 fails" (or flags the entry) it makes no
            # prediction; paths written through a symlink are keyed differently.
            tree = tree_of(data)
            flagged = {normalize(problem.name) for problem in tree.conflicts}
            aliased = _written_through_symlinks(tree, root)
            # A symlink replaced later (``a -> ../b``, ``a/x``, then file ``a``) still
            # sent ``a/x`` elsewhere: no prediction under a path that was ever a link.
            ever_links = {
                name
                for spec in specs
                if spec.kind == "symlink" and (name := normalize(spec.name)) is not None
            }
            wrong = [
                m
                for m in mismatches(tree, root, hardlink_modes=False)
                if m[0] not in flagged
                and m[0] not in aliased
                and not _through_symlink(tree, root, m[0])
                and not _under_any(m[0], ever_links)
            ]
            assert wrong == []


# -- GNU tar ------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar is not installed")
@SETTINGS
@given(specs=well_formed())
def test_well_formed_archives_unpack_like_gnu_tar(specs: list[Spec]) -> None:
    """Files, modes & 0o777, contents, hard-link groups and link targets agree with
    ``tar -xf`` (which skips '..' entries too)."""
    # Left out: '..' members (GNU tar exits 2), devices (it would mknod them), and
    # absolute or '..' symlink targets (it creates those late, through placeholder
    # files, which changes the outcome of duplicates).
    specs = [
        s for s in specs if ".." not in s.name.split("/") and s.kind not in ("fifo", "chardev")
    ]
    # GNU tar applies directory modes in archive order, stage1's tar-rs 0.4.44 sorted by
    # spelling (F4): one spelling per directory, so that both orders give the same modes.
    spelling: dict[str | None, str] = {}
    for spec in specs:
        if spec.kind == "symlink" and (spec.link.startswith("/") or ".." in spec.link):
            spec.link = "nowhere"
        if spec.kind == "dir":
            spec.name = spelling.setdefault(normalize(spec.name), spec.name)
    data = archive(*specs)
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = Path(tmp, "ours"), Path(tmp, "gnu")
        theirs.mkdir()
        unpack_image(io.BytesIO(data), ours)
        subprocess.run(
            ["tar", "-xf", "-", "-C", str(theirs), "--no-same-owner"],
            input=data,
            check=True,
            capture_output=True,
            env={**os.environ, "LC_ALL": "C"},
        )
        assert snapshot(ours) == snapshot(theirs)


# -- tar-rs itself --------------------------------------------------------------


def in_tar_rs_0_4_44_directory_order(specs: list[Spec]) -> list[Spec]:
    """``specs`` with the directory entries, and only they, permuted into the order tar-rs
    0.4.44 applies them: by the path bytes written in the archive, descending, stable."""
    members = list(TarReader(io.BytesIO(archive(*specs)), "specs"))
    assert len(members) == len(specs)
    keyed = [(path_bytes(m), spec) for m, spec in zip(members, specs, strict=True)]
    dirs = iter(
        sorted((item for item in keyed if item[1].kind == "dir"), key=lambda k: k[0], reverse=True)
    )
    return [next(dirs)[1] if spec.kind == "dir" else spec for spec in specs]


def test_f4_directory_order_helper_sorts_like_the_fact_sheet() -> None:
    """F4's own examples: ``./etc/`` after ``etc/``; deeper before parents; ties stable."""
    specs = [
        Spec("./etc", "dir", mode=0o700),
        Spec("f", data=b"x"),
        Spec("etc", "dir", mode=0o755),
        Spec("etc/a", "dir", mode=0o711),
        Spec("etc", "dir", mode=0o750),
    ]
    ordered = in_tar_rs_0_4_44_directory_order(specs)
    assert [(s.name, s.mode) for s in ordered] == [
        ("etc/a", 0o711),
        ("f", 0o644),
        ("etc", 0o755),
        ("etc", 0o750),
        ("./etc", 0o700),
    ]


@SETTINGS
@given(specs=st.lists(ANY_SPEC, min_size=1, max_size=10))
def test_any_archive_unpacks_exactly_as_tar_rs(tarrs_oracle: Path, specs: list[Spec]) -> None:
    """Same success or failure, and the same tree (even after a failure: both stop
    at the same entry).

    Debian packages tar-rs 0.4.38, which applies the (deferred) directory entries
    in archive order; stage1's 0.4.44 sorts them by path bytes, descending, stable
    (upstream-facts F4). The oracle therefore gets the same archive with only the
    directory entries permuted among themselves into 0.4.44's order: 0.4.38 then
    applies them exactly as 0.4.44 would the original (non-directory entries, and
    every other rule, are untouched). 0.4.40 differs from 0.4.38 only by setting
    symlink mtimes, which the snapshot does not compare."""
    data = archive(*specs)
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = Path(tmp, "ours"), Path(tmp, "tarrs")
        ours.mkdir()
        theirs.mkdir()
        try:
            unpack_image(io.BytesIO(data), ours)
        except UnpackError as exc:
            error: str | None = str(exc)
        else:
            error = None
        oracle = subprocess.run(
            [str(tarrs_oracle), str(theirs)],
            input=archive(*in_tar_rs_0_4_44_directory_order(specs)),
            capture_output=True,
        )
        assert (error is None) == (oracle.returncode == 0), (error, oracle.stderr)
        assert snapshot(ours, mtimes=True) == snapshot(theirs, mtimes=True)
