"""LauncherConfig text protos and HATs system bundles."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from hats.launcher.config import (
    BundleMember,
    LauncherConfigError,
    load_launcher_config,
    open_system_bundle,
    parse_launcher_config,
    resolve_images,
    select_bundle_members,
)
from hats.pb.pcit.client import launcher_config_pb2

# The fields of the reference example (spec system-image §5.2).
EXAMPLE = """\
cvm_config {
  cvm_type: CVMTYPE_DEFAULT
  num_cpus: 4
  ramdrive_size_kb: 10485760
  ram_size_kb: 8000000
  network_config {
    inbound_only {
      host_enclave_app_proxy_port: 8079
    }
  }
  hats_system_bundle: "./system_bundle_test_single.tar"
  runc_runtime_bundle: "./bundle.tar"
  vmm_binary: "/usr/bin/qemu-system-x86_64"
}
"""


def test_example_config_parses() -> None:
    config = parse_launcher_config(EXAMPLE, "launcher_config.txtpb")
    cvm = config.cvm_config
    assert cvm.cvm_type == launcher_config_pb2.CVMTYPE_DEFAULT
    assert cvm.num_cpus == 4
    assert cvm.ramdrive_size_kb == 10485760
    assert cvm.ram_size_kb == 8000000
    assert cvm.network_config.WhichOneof("network_mode") == "inbound_only"
    assert cvm.network_config.inbound_only.host_enclave_app_proxy_port == 8079
    assert cvm.hats_system_bundle == "./system_bundle_test_single.tar"
    assert cvm.runc_runtime_bundle == "./bundle.tar"
    assert not cvm.HasField("virtio_guest_cid")


def test_sevsnp_and_cid() -> None:
    config = parse_launcher_config(
        "cvm_config { cvm_type: CVMTYPE_SEVSNP virtio_guest_cid: 1234 }", "x"
    )
    assert config.cvm_config.cvm_type == launcher_config_pb2.CVMTYPE_SEVSNP
    assert config.cvm_config.virtio_guest_cid == 1234


def test_bad_config_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "launcher_config.txtpb"
    path.write_text("cvm_config {\n  num_cpus: 4\n  no_such_field: 1\n}\n")
    with pytest.raises(LauncherConfigError) as info:
        load_launcher_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: ")
    assert "no_such_field" in message
    assert "\n" not in message


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(LauncherConfigError, match="cannot read"):
        load_launcher_config(tmp_path / "nope.txtpb")


def _bundle(path: Path, members: dict[str, bytes], links: tuple[str, ...] = ()) -> Path:
    with tarfile.open(path, "w") as tar:
        directory = tarfile.TarInfo("./")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name in links:
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return path


FOUR = {
    "./initrd.cpio.xz": b"initrd",
    "./kernel_bin": b"kernel",
    "./stage0_bin": b"stage0",
    "./system.tar.xz": b"the system image",
}


def test_bundle_with_the_four_members(tmp_path: Path) -> None:
    path = _bundle(tmp_path / "system_bundle.tar", {**FOUR, "./README": b"skipped"})
    with open_system_bundle(path, temp_root=tmp_path) as bundle:
        assert bundle.members == {
            "initrd.cpio.xz": "./initrd.cpio.xz",
            "kernel_bin": "./kernel_bin",
            "stage0_bin": "./stage0_bin",
            "system.tar.xz": "./system.tar.xz",
        }
        assert bundle.system_image.read_bytes() == b"the system image"
        assert bundle.system_image.parent == bundle.directory
        assert bundle.directory.parent == tmp_path
        assert os.stat(bundle.system_image).st_mode & 0o777 == 0o600
        assert sorted(p.name for p in bundle.directory.iterdir()) == ["system.tar.xz"]
        directory = bundle.directory
    assert not directory.exists()


def test_extract_all_four(tmp_path: Path) -> None:
    path = _bundle(tmp_path / "b.tar", FOUR)
    extract = ("initrd.cpio.xz", "stage0_bin", "system.tar.xz", "kernel_bin")
    with open_system_bundle(path, extract=extract, temp_root=tmp_path) as bundle:
        assert {k: v.read_bytes() for k, v in bundle.files.items()} == {
            "initrd.cpio.xz": b"initrd",
            "stage0_bin": b"stage0",
            "system.tar.xz": b"the system image",
            "kernel_bin": b"kernel",
        }


def test_optional_members_are_taken_in_the_same_pass_when_present(tmp_path: Path) -> None:
    # The QEMU files come out with the system image (one read of the tar); a
    # suffix the bundle lacks is no error, unlike a required one.
    without_stage0 = {k: v for k, v in FOUR.items() if k != "./stage0_bin"}
    path = _bundle(tmp_path / "b.tar", without_stage0)
    optional = ("stage0_bin", "kernel_bin", "initrd.cpio.xz")
    with open_system_bundle(path, temp_root=tmp_path, optional=optional) as bundle:
        assert {k: v.read_bytes() for k, v in bundle.files.items()} == {
            "system.tar.xz": b"the system image",
            "kernel_bin": b"kernel",
            "initrd.cpio.xz": b"initrd",
        }
    images = resolve_images(system_bundle=path, temp_root=tmp_path, also_extract=["kernel_bin"])
    try:
        assert images.system_bundle is not None
        assert sorted(images.system_bundle.files) == ["kernel_bin", "system.tar.xz"]
    finally:
        images.cleanup()


def test_ends_with_rule() -> None:
    members = [
        BundleMember("out/hats_system.tar.xz"),
        BundleMember("a/b/my_kernel_bin"),
        BundleMember("system.tar.xz.sig"),
        BundleMember("kernel_bin/"),
        BundleMember("stage0_bin.txt"),
        BundleMember("initrd.cpio.xz"),
    ]
    assert select_bundle_members(members, "b.tar") == {
        "system.tar.xz": "out/hats_system.tar.xz",
        "kernel_bin": "a/b/my_kernel_bin",
        "initrd.cpio.xz": "initrd.cpio.xz",
    }


@pytest.mark.parametrize(
    "name", ["../system.tar.xz", "/tmp/system.tar.xz", "a/../../kernel_bin", "..\\system.tar.xz"]
)
def test_hostile_member_names_rejected(name: str, tmp_path: Path) -> None:
    with pytest.raises(LauncherConfigError, match="hostile member name"):
        select_bundle_members([BundleMember(name)], "b.tar")
    path = _bundle(tmp_path / "b.tar", {name: b"x", "./system.tar.xz": b"ok"})
    with pytest.raises(LauncherConfigError, match="hostile member name"):
        open_system_bundle(path, temp_root=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["b.tar"]  # temp dir removed


def test_hostile_name_of_an_unselected_member_is_skipped() -> None:
    assert select_bundle_members([BundleMember("../etc/passwd")], "b.tar") == {}


def test_link_member_rejected(tmp_path: Path) -> None:
    path = _bundle(tmp_path / "b.tar", {}, links=("./system.tar.xz",))
    with pytest.raises(LauncherConfigError, match="not a regular file"):
        open_system_bundle(path, temp_root=tmp_path)


def test_duplicate_member_rejected() -> None:
    with pytest.raises(LauncherConfigError, match="both"):
        select_bundle_members(
            [BundleMember("./system.tar.xz"), BundleMember("x/system.tar.xz")], "b.tar"
        )


def test_bundle_without_system_image(tmp_path: Path) -> None:
    path = _bundle(tmp_path / "b.tar", {"./kernel_bin": b"k"})
    with pytest.raises(LauncherConfigError, match=r"no member ends with 'system\.tar\.xz'"):
        open_system_bundle(path, temp_root=tmp_path)


def test_not_a_tar(tmp_path: Path) -> None:
    path = tmp_path / "b.tar"
    path.write_bytes(b"\x01" * 1000)
    with pytest.raises(LauncherConfigError, match="not a readable tar"):
        open_system_bundle(path, temp_root=tmp_path)
    with pytest.raises(LauncherConfigError, match="no such system bundle"):
        open_system_bundle(tmp_path / "missing.tar", temp_root=tmp_path)


@pytest.mark.parametrize(
    "data",
    [b"\x1f\x8b", b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"\xff" * 20, b"\xfd7zXZ\x00" + b"\x00" * 30],
    ids=["gzip-magic-only", "gzip-corrupt-deflate", "xz-corrupt"],
)
def test_truncated_or_corrupt_compressed_bundle_is_one_line(tmp_path: Path, data: bytes) -> None:
    # Found by the fuzz test: a bare gzip header made tarfile raise EOFError.
    path = tmp_path / "b.tar"
    path.write_bytes(data)
    with pytest.raises(LauncherConfigError, match=r"not a readable tar|broken tar") as caught:
        open_system_bundle(path, temp_root=tmp_path)
    assert "\n" not in str(caught.value)


def test_resolve_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _bundle(tmp_path / "system_bundle_test_single.tar", FOUR)
    (tmp_path / "bundle.tar").write_bytes(b"container")
    images = resolve_images(parse_launcher_config(EXAMPLE, "x"), temp_root=tmp_path)
    try:
        assert images.system_image is not None
        assert images.system_image.read_bytes() == b"the system image"
        assert images.container_bundle == Path("./bundle.tar")
    finally:
        images.cleanup()
    assert images.system_bundle is not None
    assert not images.system_bundle.directory.exists()


def test_resolve_explicit_paths_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the config's files do not exist here
    image = tmp_path / "image.tar.xz"
    image.write_bytes(b"img")
    container = tmp_path / "c.tar"
    container.write_bytes(b"c")
    images = resolve_images(
        parse_launcher_config(EXAMPLE, "x"), system_image=image, container_bundle=container
    )
    assert (images.system_image, images.container_bundle) == (image, container)
    assert images.system_bundle is None


def test_resolve_errors(tmp_path: Path) -> None:
    with pytest.raises(LauncherConfigError, match="is not a readable file"):
        resolve_images(system_image=tmp_path / "missing")
    with pytest.raises(LauncherConfigError, match="not both"):
        resolve_images(system_image=tmp_path / "a", system_bundle=tmp_path / "b")
    assert resolve_images() == resolve_images(launcher_config_pb2.LauncherConfig())
