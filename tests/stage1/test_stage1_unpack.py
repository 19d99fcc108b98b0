"""hats.stage1.unpack: Oak stage1's unpacking rules (tar-rs 0.4.40 defaults, after chroot)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
from stage1_support import EMPTY_SHA256, Seen, Spec, archive, mismatches, on_disk, tree_of

from hats.archive.tarformat import TarFormatError
from hats.stage1.errors import (
    EntryConflictError,
    LinkTargetError,
    UnpackError,
    UnresolvablePathError,
)
from hats.stage1.rootpath import Root
from hats.stage1.unpack import DATA_CHUNK, UnpackReport, unpack_image, unpack_image_file


def unpack(data: bytes, dest: Path, *, mknod: bool = False) -> UnpackReport:
    return unpack_image(io.BytesIO(data), dest, mknod=mknod)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_later_duplicate_wins_and_matches_the_tree(tmp_path: Path) -> None:
    data = archive(
        Spec("etc/", "dir", mode=0o755),
        Spec("etc/app.conf", data=b"base\n", mode=0o600),
        Spec("etc/link", "symlink", link="app.conf"),
        Spec("./etc/app.conf", data=b"override\n", mode=0o640),
        Spec("etc/link", "symlink", link="/etc/other"),
    )
    report = unpack(data, tmp_path)
    assert (tmp_path / "etc/app.conf").read_bytes() == b"override\n"
    assert mode(tmp_path / "etc/app.conf") == 0o640
    assert os.readlink(tmp_path / "etc/link") == "/etc/other"
    assert (report.files, report.dirs, report.symlinks) == (2, 1, 2)
    assert mismatches(tree_of(data), tmp_path) == []


def test_setuid_setgid_and_sticky_bits_are_dropped(tmp_path: Path) -> None:
    data = archive(
        Spec("usr/bin/passwd", data=b"#!/bin/sh\n", mode=0o4755),
        Spec("usr/bin/wall", data=b"#!/bin/sh\n", mode=0o2755),
        Spec("tmp/", "dir", mode=0o1777),
    )
    unpack(data, tmp_path)
    assert mode(tmp_path / "usr/bin/passwd") == 0o755
    assert mode(tmp_path / "usr/bin/wall") == 0o755
    assert mode(tmp_path / "tmp") == 0o777
    assert mismatches(tree_of(data), tmp_path) == []


def test_directories_are_applied_after_everything_else_in_archive_order(tmp_path: Path) -> None:
    data = archive(
        Spec("ro/", "dir", mode=0o500),  # would block the file below if applied first
        Spec("ro/file", data=b"x", mode=0o400),
        Spec("d/", "dir", mode=0o700),
        Spec("d/sub/f", data=b"y"),
        Spec("./d", "dir", mode=0o751),  # the last entry for a path sets its mode
    )
    old_umask = os.umask(0o022)
    try:
        unpack(data, tmp_path)
    finally:
        os.umask(old_umask)
    assert mode(tmp_path / "ro") == 0o500
    assert (tmp_path / "ro/file").read_bytes() == b"x"
    assert mode(tmp_path / "d") == 0o751
    assert mode(tmp_path / "d/sub") == 0o755  # implicit parent: 0o777 & ~umask
    assert mismatches(tree_of(data), tmp_path) == []


def test_names_dotdot_skipped_leading_slash_and_dot_ignored_root_entry_noop(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "root"
    dest.mkdir(mode=0o711)
    os.chmod(dest, 0o711)
    data = archive(
        Spec("./", "dir", mode=0o700),
        Spec("/", "dir", mode=0o700),
        Spec("../escape", data=b"no"),
        Spec("a/../../escape2", data=b"no"),
        Spec("/etc/abs", data=b"abs"),
        Spec(".//./etc/./dotted", data=b"dot"),
        Spec("x/..", "dir"),
    )
    report = unpack(data, dest)
    assert (dest / "etc/abs").read_bytes() == b"abs"
    assert (dest / "etc/dotted").read_bytes() == b"dot"
    assert not (tmp_path / "escape").exists() and not (tmp_path / "escape2").exists()
    assert not (dest / "escape").exists() and not (dest / "x").exists()
    assert report.skipped == 3
    assert report.skipped_names == ["../escape", "a/../../escape2", "x/.."]
    assert report.root_entries == 2
    assert mode(dest) == 0o711, "an entry naming the root changes nothing"
    tree = tree_of(data)
    assert mismatches(tree, dest) == []
    assert len(tree.unsafe_names) == 4  # the three '..' entries and '/etc/abs'


def test_hard_links_share_the_file_unpacked_before_them(tmp_path: Path) -> None:
    data = archive(
        Spec("usr/bin/perl", data=b"perl", mode=0o755, mtime=1000),
        Spec("usr/bin/perl5.36", "hardlink", link="./usr/bin/perl", mode=0o755),
        Spec("usr/bin/abs", "hardlink", link="/usr/bin/perl", mode=0o755),
        Spec("usr/bin/perl", data=b"new perl", mode=0o700),  # replaces the name only
    )
    report = unpack(data, tmp_path)
    assert report.hardlinks == 2
    link = tmp_path / "usr/bin/perl5.36"
    assert link.read_bytes() == b"perl"
    assert os.stat(link).st_ino == os.stat(tmp_path / "usr/bin/abs").st_ino
    assert os.stat(link).st_nlink == 2
    assert (tmp_path / "usr/bin/perl").read_bytes() == b"new perl"
    assert mismatches(tree_of(data), tmp_path) == []


def test_a_hard_link_has_its_targets_mode_not_its_own(tmp_path: Path) -> None:
    """Disagreement with EffectiveTree, which gives the link its header's mode."""
    data = archive(
        Spec("a", data=b"x", mode=0o600),
        Spec("b", "hardlink", link="a", mode=0o755),
    )
    unpack(data, tmp_path)
    assert mode(tmp_path / "b") == 0o600
    tree = tree_of(data)
    assert tree.entries["b"].mode == 0o755
    assert mismatches(tree, tmp_path) == [
        (
            "b",
            Seen("file", 0o755, tree.entries["a"].sha256),
            Seen("file", 0o600, tree.entries["a"].sha256),
        )
    ]
    assert mismatches(tree, tmp_path, hardlink_modes=False) == []


def test_a_hard_link_never_replaces_an_existing_path(tmp_path: Path) -> None:
    """tar-rs calls link() without removing what is there: stage1 fails."""
    data = archive(
        Spec("a", data=b"a"),
        Spec("b", data=b"b"),
        Spec("b", "hardlink", link="a"),
    )
    with pytest.raises(EntryConflictError, match=r"'b'.*already exists.*stage1 fails"):
        unpack(data, tmp_path)
    assert tree_of(data).conflicts == []  # the tree does not see this failure


@pytest.mark.parametrize(
    ("link", "message"),
    [
        ("missing", "cannot resolve /missing"),
        ("", "destination is empty"),
        ("d", "cannot hard link"),
    ],
)
def test_bad_hard_link_targets_fail(tmp_path: Path, link: str, message: str) -> None:
    data = archive(Spec("d/", "dir"), Spec("d/f", data=b"f"), Spec("h", "hardlink", link=link))
    with pytest.raises(LinkTargetError, match=message):
        unpack(data, tmp_path)


def test_symlinks_are_created_as_written_and_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"keep")
    dest = tmp_path / "root"
    data = archive(
        Spec("abs", "symlink", link=str(outside / "victim")),
        Spec("rel", "symlink", link="../outside/victim"),
        Spec("abs", data=b"replaced the link, not the victim", mode=0o600),
        Spec("rel", "symlink", link="../../x"),
    )
    report = unpack(data, dest)
    assert report.symlinks == 3
    assert (outside / "victim").read_bytes() == b"keep"
    assert not (dest / "abs").is_symlink()
    assert os.readlink(dest / "rel") == "../../x"
    assert mismatches(tree_of(data), dest) == []


def test_a_symlinked_directory_is_resolved_inside_the_root(tmp_path: Path) -> None:
    """As after stage1's chroot: absolute targets start at the root, '..' stops there."""
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "root"
    data = archive(
        Spec("etc/hostname", data=b"h"),  # a directory *entry* would only come at the end
        Spec("bin", "symlink", link="usr/bin"),
        Spec("usr/bin/sh", data=b"sh", mode=0o755),
        Spec("bin/dash", data=b"dash", mode=0o755),
        Spec("etcabs", "symlink", link="/etc"),
        Spec("etcabs/through-absolute", data=b"1"),
        Spec("up", "symlink", link="../../../.."),
        Spec("up/at-the-root", data=b"2"),
        Spec("out", "symlink", link=str(outside)),
    )
    unpack(data, dest)
    assert (dest / "usr/bin/dash").read_bytes() == b"dash"
    assert (dest / "etc/through-absolute").read_bytes() == b"1"
    assert (dest / "at-the-root").read_bytes() == b"2"
    assert list(outside.iterdir()) == []
    tree = tree_of(data)
    assert mismatches(tree, dest) == []
    assert tree.resolve("bin/sh") is tree.entries["usr/bin/sh"]


def test_a_file_under_a_symlink_to_outside_the_image_is_refused(tmp_path: Path) -> None:
    """The symlink points at a host directory that the image does not have:
    inside the root it dangles, so the entry fails; the host directory is untouched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "root"
    data = archive(
        Spec("evil", "symlink", link=str(outside)),
        Spec("evil/payload", data=b"owned"),
    )
    with pytest.raises(UnresolvablePathError, match=r"'evil/payload'.*cannot resolve /evil"):
        unpack(data, dest)
    assert list(outside.iterdir()) == []
    for target in ("../outside", "../../../outside"):
        with pytest.raises(UnresolvablePathError):
            unpack(
                archive(Spec("x", "symlink", link=target), Spec("x/payload", data=b"!")),
                tmp_path / f"r{len(target)}",
            )
    assert list(outside.iterdir()) == []


def test_a_directory_entry_through_a_symlink_sets_the_targets_mode(tmp_path: Path) -> None:
    """tar-rs keeps a symlink to a directory and chmods the directory
    (EffectiveTree calls it a failure)."""
    data = archive(
        Spec("real/", "dir", mode=0o755),
        Spec("alias", "symlink", link="/real"),
        Spec("alias/", "dir", mode=0o700),
    )
    unpack(data, tmp_path)
    assert (tmp_path / "alias").is_symlink()
    assert mode(tmp_path / "real") == 0o700
    assert [p.message for p in tree_of(data).conflicts] == [
        "directory replaces a symlink from layer #1: stage1 fails"
    ]


def test_each_step_resolves_the_path_afresh(tmp_path: Path) -> None:
    """'a' -> '..' makes 'a/a' the link itself: tar-rs removes it, then cannot
    reopen 'a/a' (its parent is gone)."""
    data = archive(Spec("a", "symlink", link=".."), Spec("a/a", data=b"x"))
    with pytest.raises(UnresolvablePathError, match="'a/a'"):
        unpack(data, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_files_in_one_directory_look_their_parent_up_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent of entries in archive order is resolved once, not per entry
    and step (under emulation each lookup is a costly system call); an entry
    that removes something makes the next one resolve afresh."""
    calls: list[list[str]] = []
    real = Root.open_dir

    def counting(self: Root, parts: list[str]) -> int:
        calls.append(list(parts))
        return real(self, parts)

    monkeypatch.setattr(Root, "open_dir", counting)
    files = [Spec(f"usr/lib/f{i}", data=b"x" * i) for i in range(50)]
    unpack(
        archive(*files, Spec("usr/lib/f7", data=b"again"), Spec("usr/lib/g", data=b"")), tmp_path
    )
    assert (tmp_path / "usr/lib/f7").read_bytes() == b"again"
    assert (tmp_path / "usr/lib/f49").read_bytes() == b"x" * 49
    assert calls == [
        [],  # where the missing 'usr' and 'usr/lib' are made
        ["usr", "lib"],  # the parent of the 50 files
        ["usr", "lib"],  # f7 again: created afresh after its removal
        ["usr", "lib"],  # so 'g' looks its parent up again
    ]


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([Spec("d/", "dir"), Spec("d", data=b"x")], "exists and is not a directory"),
        ([Spec("d", data=b"x"), Spec("d/", "dir")], "exists and is not a directory"),
        ([Spec("d/f", data=b"x"), Spec("d", data=b"y")], "is a directory and a file cannot"),
        ([Spec("d/f", data=b"x"), Spec("d", "symlink", link="e")], "is a directory and a symlink"),
        ([Spec("f", data=b"x"), Spec("f/g", data=b"y")], "/f is not a directory"),
        ([Spec("f", data=b"x"), Spec("f/g/h", data=b"y")], "a non-directory is in the way"),
    ],
)
def test_paths_in_the_way_fail_as_stage1_fails(
    tmp_path: Path, specs: list[Spec], message: str
) -> None:
    with pytest.raises(EntryConflictError, match=message):
        unpack(archive(*specs), tmp_path)


def test_parents_that_do_not_resolve_fail(tmp_path: Path) -> None:
    loop = archive(
        Spec("l1", "symlink", link="l2"),
        Spec("l2", "symlink", link="l1"),
        Spec("l1/f", data=b"x"),
    )
    with pytest.raises(UnresolvablePathError, match="symbolic links"):
        unpack(loop, tmp_path / "a")
    with pytest.raises(UnresolvablePathError, match="No such file"):
        unpack(archive(Spec("d", "symlink", link="nowhere"), Spec("d/f")), tmp_path / "b")
    with pytest.raises(LinkTargetError, match="symlink destination is empty"):
        unpack(archive(Spec("s", "symlink", link="")), tmp_path / "c")


def test_long_and_pax_names_and_link_targets(tmp_path: Path) -> None:
    long_dir = "usr/share/" + "very-long-directory-name-" * 5
    long_name = long_dir + "/" + "long-file-name-" * 8 + "données.txt"
    data = archive(
        Spec(long_name, data=b"long"),
        Spec("short-link", "symlink", link="/" + long_name),
        Spec(long_dir + "/hard", "hardlink", link=long_name),
    )
    pax = io.BytesIO()
    with tarfile.open(fileobj=pax, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("pax/" + "p" * 150 + "/ünï.txt")
        info.size, info.mode, info.mtime = 3, 0o4644, 1234567890.75
        tar.addfile(info, io.BytesIO(b"pax"))
    dest = tmp_path / "gnu"
    unpack(data, dest)
    assert (dest / long_name).read_bytes() == b"long"
    assert os.readlink(dest / "short-link") == "/" + long_name
    assert mismatches(tree_of(data), dest) == []
    unpack(pax.getvalue(), tmp_path / "pax")
    target = tmp_path / "pax" / ("pax/" + "p" * 150 + "/ünï.txt")
    assert target.read_bytes() == b"pax" and mode(target) == 0o644
    assert os.stat(target).st_mtime == 1234567890


def test_mtimes_files_and_symlinks_kept_zero_becomes_one_directories_not_set(
    tmp_path: Path,
) -> None:
    data = archive(
        Spec("d/", "dir", mtime=946684800),
        Spec("d/f", data=b"x", mtime=1234),
        Spec("d/zero", data=b"x", mtime=0),
        Spec("d/link", "symlink", link="nowhere", mtime=5678),
    )
    unpack(data, tmp_path)
    assert os.stat(tmp_path / "d/f").st_mtime == 1234
    assert os.stat(tmp_path / "d/zero").st_mtime == 1
    assert os.lstat(tmp_path / "d/link").st_mtime == 5678
    assert os.stat(tmp_path / "d").st_mtime != 946684800, "tar-rs sets no directory mtime"


def test_ownership_is_not_applied(tmp_path: Path) -> None:
    unpack(archive(Spec("f", data=b"x", uid=4321), Spec("d/", "dir", uid=4321)), tmp_path)
    assert os.stat(tmp_path / "f").st_uid == os.getuid()
    assert os.stat(tmp_path / "d").st_uid == os.getuid()


def test_fifos_and_devices_are_empty_files_as_in_tar_rs(tmp_path: Path) -> None:
    data = archive(
        Spec("dev/initctl", "fifo", mode=0o600),
        Spec("dev/null", "chardev", mode=0o666, device=(1, 3)),
        Spec("dev/sda", "blockdev", mode=0o4660, device=(8, 0)),
    )
    report = unpack(data, tmp_path)
    assert report.devices == 3 and report.files == 0
    for name, want in (("initctl", 0o600), ("null", 0o666), ("sda", 0o660)):
        assert on_disk(tmp_path, f"dev/{name}") == Seen("file", want, EMPTY_SHA256)
    assert mismatches(tree_of(data), tmp_path) == []


def test_mknod_creates_the_nodes_or_counts_what_it_may_not(tmp_path: Path) -> None:
    data = archive(
        Spec("dev/initctl", "fifo", mode=0o600),
        Spec("dev/null", "chardev", mode=0o666, device=(1, 3)),
    )
    report = unpack(data, tmp_path, mknod=True)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "dev/initctl").st_mode)
    assert report.devices + report.devices_skipped == 2
    if report.devices_skipped:
        assert "mknod not permitted" in report.warnings[0]
        assert not (tmp_path / "dev/null").exists()
    else:
        info = os.lstat(tmp_path / "dev/null")
        assert stat.S_ISCHR(info.st_mode) and os.major(info.st_rdev) == 1
        assert mismatches(tree_of(data), tmp_path, mknod=True) == []


class _Recording(io.RawIOBase):
    """A stream that records the largest read asked of it."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.largest = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        self.largest = max(self.largest, size if size >= 0 else 1 << 62)
        return self._data.read(size)


def test_file_data_is_streamed_in_bounded_reads(tmp_path: Path) -> None:
    big = bytes(range(256)) * (5 * DATA_CHUNK // 256 + 7)
    stream = _Recording(archive(Spec("big", data=big)))
    report = unpack_image(stream, tmp_path)
    assert report.bytes == len(big)
    assert (tmp_path / "big").read_bytes() == big
    assert 0 < stream.largest <= DATA_CHUNK


def test_malformed_archives_fail_with_the_tar_error(tmp_path: Path) -> None:
    data = archive(Spec("f", data=b"x" * 1000))
    with pytest.raises(TarFormatError, match="truncated"):
        unpack(data[:1024], tmp_path)


def test_unpack_image_file_reads_compressed_images(tmp_path: Path) -> None:
    import lzma

    data = archive(Spec("etc/hostname", data=b"hats\n"))
    image = tmp_path / "image.tar.xz"
    image.write_bytes(lzma.compress(data, format=lzma.FORMAT_XZ))
    report = unpack_image_file(image, tmp_path / "root")
    assert (tmp_path / "root/etc/hostname").read_bytes() == b"hats\n"
    assert report.to_json()["files"] == 1


def test_every_failure_is_an_unpack_error(tmp_path: Path) -> None:
    for cls in (EntryConflictError, LinkTargetError, UnresolvablePathError):
        assert issubclass(cls, UnpackError)


def test_names_that_are_not_utf8_keep_their_bytes(tmp_path: Path) -> None:
    name = os.fsdecode(b"etc/caf\xe9")
    unpack(archive(Spec(name, data=b"latin-1")), tmp_path)
    assert os.listdir(os.fsencode(tmp_path / "etc")) == [b"caf\xe9"]
