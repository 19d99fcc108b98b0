"""``hats vm bundle``: the system bundle the launcher reads (system-image §3.1), deterministic,
atomic; the launcher's own parser reads what it writes and refuses hostile variants."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from hats.launcher.config import LauncherConfigError, open_system_bundle
from hats.vm.cli import vm_group
from hats.vm.sysbundle import BundleInputError, BundleInputs, member_mode, write_system_bundle

XZ = b"\xfd7zXZ\x00"
#: 2000-01-01T00:00:00Z, the project's mtime for deterministic archives.
Y2K = 946684800


def _inputs(tmp_path: Path, stage0: bool = True) -> BundleInputs:
    files = {"vmlinuz": b"kernel bytes", "initrd.gz": b"\x1f\x8b initrd", "image.tar.xz": XZ + b"x"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "stage0_bin").write_bytes(b"firmware")
    return BundleInputs(
        kernel=tmp_path / "vmlinuz",
        initrd=tmp_path / "initrd.gz",
        image=tmp_path / "image.tar.xz",
        stage0=tmp_path / "stage0_bin" if stage0 else None,
    )


def test_the_bundle_has_the_references_layout(tmp_path: Path) -> None:
    out = tmp_path / "b.tar"
    write_system_bundle(out, _inputs(tmp_path))
    with tarfile.open(out) as tar:
        members = tar.getmembers()
    # tarfile reads the directory "./" back as "."; the header holds "./".
    assert out.read_bytes()[:3] == b"./\0"
    assert [m.name for m in members] == [
        ".", "./initrd.cpio.xz", "./kernel_bin", "./stage0_bin", "./system.tar.xz",
    ]  # fmt: skip
    assert members[0].isdir() and members[0].mode == 0o755
    assert all(m.isreg() and m.mode == 0o644 for m in members[1:])
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {
        (0, 0, "root", "root", Y2K)
    }


def test_the_launchers_parser_reads_what_it_writes(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path)
    out = tmp_path / "b.tar"
    write_system_bundle(out, inputs)
    suffixes = ("initrd.cpio.xz", "kernel_bin", "stage0_bin", "system.tar.xz")
    with open_system_bundle(out, suffixes, temp_root=tmp_path) as bundle:
        assert bundle.files["kernel_bin"].read_bytes() == b"kernel bytes"
        assert bundle.files["initrd.cpio.xz"].read_bytes() == b"\x1f\x8b initrd"
        assert bundle.files["stage0_bin"].read_bytes() == b"firmware"
        assert bundle.system_image.read_bytes() == XZ + b"x"


def test_without_stage0_there_is_no_stage0_member(tmp_path: Path) -> None:
    out = tmp_path / "b.tar"
    names = write_system_bundle(out, _inputs(tmp_path, stage0=False))
    assert names == ["./", "./initrd.cpio.xz", "./kernel_bin", "./system.tar.xz"]
    with open_system_bundle(out, temp_root=tmp_path) as bundle:
        assert "stage0_bin" not in bundle.members


def test_same_inputs_same_bytes(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path)
    write_system_bundle(tmp_path / "1.tar", inputs)
    os.utime(inputs.kernel, (1, 1))  # the inputs' own mtimes do not matter
    write_system_bundle(tmp_path / "2.tar", inputs)
    assert (tmp_path / "1.tar").read_bytes() == (tmp_path / "2.tar").read_bytes()


def test_modes_follow_a_eq_r_u_plus_w_a_plus_capital_x() -> None:
    assert member_mode(0o100600) == 0o644
    assert member_mode(0o100700) == 0o755
    assert member_mode(0o100640) == 0o644
    assert member_mode(0o100511) == 0o755


@pytest.mark.parametrize(
    ("field", "message"),
    [("kernel", "No such file"), ("image", "not an .xz file"), ("stage0", "not a regular file")],
)
def test_bad_inputs_are_one_line_and_leave_nothing(
    tmp_path: Path, field: str, message: str
) -> None:
    inputs = _inputs(tmp_path)
    if field == "kernel":
        inputs.kernel.unlink()
    elif field == "image":
        inputs.image.write_bytes(b"plain tar")
    else:
        inputs.stage0.unlink()  # type: ignore[union-attr]
        inputs.stage0.mkdir()  # type: ignore[union-attr]
    out = tmp_path / "out" / "b.tar"
    out.parent.mkdir()
    with pytest.raises(BundleInputError, match=message) as caught:
        write_system_bundle(out, inputs)
    assert "\n" not in str(caught.value)
    assert list(out.parent.iterdir()) == []  # no output, no temp file


def _append(bundle: Path, name: str, data: bytes = b"", link: str | None = None) -> None:
    with tarfile.open(bundle, "a") as tar:
        info = tarfile.TarInfo(name)
        if link is not None:
            info.type = tarfile.SYMTYPE
            info.linkname = link
            tar.addfile(info)
        else:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(
    ("name", "link", "message"),
    [
        ("../stage0_bin", None, "hostile member name"),
        ("/abs/kernel_bin", None, "hostile member name"),
        ("x/stage0_bin", None, "both './stage0_bin' and 'x/stage0_bin'"),
        ("evil/initrd.cpio.xz", "/etc/shadow", "not a regular file"),
    ],
)
def test_a_hostile_variant_of_our_bundle_is_refused(
    tmp_path: Path, name: str, link: str | None, message: str
) -> None:
    out = tmp_path / "b.tar"
    write_system_bundle(out, _inputs(tmp_path))
    _append(out, name, b"x", link)
    root = tmp_path / "extract"
    root.mkdir()
    with pytest.raises(LauncherConfigError, match=message):
        open_system_bundle(out, ("stage0_bin", "kernel_bin"), temp_root=root)
    assert list(root.iterdir()) == []  # the temporary directory is removed


def test_the_command_writes_into_missing_directories(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path)
    out = tmp_path / "new" / "dir" / "b.tar"
    args = ["bundle", "-o", str(out), "--image", str(inputs.image)]
    args += ["--kernel", str(inputs.kernel), "--initrd", str(inputs.initrd)]
    result = CliRunner().invoke(vm_group, [*args, "--stage0", str(inputs.stage0)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        f"wrote {out} (initrd.cpio.xz, kernel_bin, stage0_bin, system.tar.xz)"
    )
    with tarfile.open(out) as tar:
        assert len(tar.getmembers()) == 5


def test_the_command_says_a_bad_image_in_one_line(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path)
    inputs.image.write_bytes(b"not xz")
    args = ["vm", "bundle", "-o", str(tmp_path / "b.tar"), "--image", str(inputs.image)]
    args += ["--kernel", str(inputs.kernel), "--initrd", str(inputs.initrd)]
    result = subprocess.run(
        [sys.executable, "-m", "hats", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "not an .xz file" in result.stderr
    assert not (tmp_path / "b.tar").exists()
