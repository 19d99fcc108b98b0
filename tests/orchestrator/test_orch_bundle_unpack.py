"""Safe unpacking of the container bundle and config.json edits (wire-protocol §2 step 14)."""

from __future__ import annotations

import json
import os
import stat
import tarfile
from pathlib import Path

import pytest
from orch_ipc_support import (
    config_json,
    directory,
    link,
    minimal,
    reg,
    tar_bytes,
)

from hats.orchestrator.bundle import (
    IPC_MOUNT_DESTINATION,
    BundleError,
    edit_config,
    unpack_bundle,
)

SOCKET = "/run/oak_containers_orchestrator/oak_utils/orchestrator_ipc"


@pytest.fixture
def area(tmp_path: Path) -> tuple[Path, Path]:
    """(container dir, a sibling directory that must stay untouched)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("original")
    return tmp_path / "box" / "container", outside


def _unpack(bundle: bytes | Path, container: Path, **kwargs: object) -> Path:
    options: dict[str, object] = {"uid": None, "gid": None, "ipc_socket_path": SOCKET}
    options.update(kwargs)
    return unpack_bundle(bundle, container, **options)  # type: ignore[arg-type]


def _untouched(outside: Path, tmp_root: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]
    assert (outside / "victim").read_text() == "original"
    assert sorted(p.name for p in tmp_root.iterdir()) == ["box", "outside"]


HOSTILE = [
    ("dotdot", minimal(reg("rootfs/../../outside/evil")), "'rootfs/../../outside/evil'", "'..'"),
    ("absolute", minimal(reg("/tmp/evil")), "'/tmp/evil'", "absolute path"),
    (
        "symlink-escapes-rootfs",
        minimal(link("rootfs/esc", "../../outside")),
        "'rootfs/esc'",
        "escapes the rootfs",
    ),
    (
        "symlink-absolute-outside-rootfs",
        minimal(link("esc", "/etc")),
        "'esc'",
        "absolute path '/etc' outside the rootfs",
    ),
    (
        "symlink-escapes-container",
        minimal(link("esc", "../outside")),
        "'esc'",
        "escapes the container directory",
    ),
    (
        "hardlink-dotdot",
        minimal(link("rootfs/h", "../outside/victim", tarfile.LNKTYPE)),
        "'../outside/victim'",
        "'..'",
    ),
    (
        "hardlink-absolute",
        minimal(link("rootfs/h", "/etc/passwd", tarfile.LNKTYPE)),
        "'/etc/passwd'",
        "absolute path",
    ),
    (
        "hardlink-missing",
        minimal(link("rootfs/h", "rootfs/nothing", tarfile.LNKTYPE)),
        "'rootfs/h'",
        "not in the bundle",
    ),
    ("missing-config", tar_bytes(directory("rootfs")), "config.json", "no config.json"),
    ("missing-rootfs", tar_bytes(reg("config.json", config_json())), "rootfs", "no rootfs/"),
    (
        "config-is-symlink",
        tar_bytes(link("config.json", "rootfs/c"), directory("rootfs")),
        "config.json",
        "not a regular file",
    ),
    (
        "file-replaces-directory",
        minimal(directory("rootfs/d"), reg("rootfs/d")),
        "'rootfs/d'",
        "would replace a directory",
    ),
]


@pytest.mark.parametrize(
    ("bundle", "name", "reason"),
    [case[1:] for case in HOSTILE],
    ids=[case[0] for case in HOSTILE],
)
def test_hostile_bundles_are_refused(
    area: tuple[Path, Path], tmp_path: Path, bundle: bytes, name: str, reason: str
) -> None:
    container, outside = area
    with pytest.raises(BundleError) as info:
        _unpack(bundle, container)
    message = str(info.value)
    assert name in message and reason in message, message
    assert "\n" not in message
    _untouched(outside, tmp_path)


def test_no_write_through_an_absolute_symlink_in_the_rootfs(
    area: tuple[Path, Path], tmp_path: Path
) -> None:
    """rootfs/d -> /<outside> is a valid link inside the container; writing through it is not."""
    container, outside = area
    bundle = minimal(
        link("rootfs/d", str(outside)),
        reg("rootfs/d/victim", b"overwritten"),
    )
    with pytest.raises(BundleError, match=r"'rootfs/d/victim'.*parent 'rootfs/d' is a symbolic"):
        _unpack(bundle, container)
    _untouched(outside, tmp_path)


def test_no_hardlink_through_a_symlink(area: tuple[Path, Path], tmp_path: Path) -> None:
    container, outside = area
    bundle = minimal(
        link("rootfs/d", str(outside)),
        link("rootfs/h", "rootfs/d/victim", tarfile.LNKTYPE),
    )
    with pytest.raises(BundleError, match="is a symbolic link"):
        _unpack(bundle, container)
    _untouched(outside, tmp_path)


def test_replacing_a_symlink_with_a_file_does_not_follow_it(
    area: tuple[Path, Path], tmp_path: Path
) -> None:
    container, outside = area
    bundle = minimal(link("rootfs/v", str(outside / "victim")), reg("rootfs/v", b"new"))
    _unpack(bundle, container)
    assert (container / "rootfs" / "v").read_bytes() == b"new"
    _untouched(outside, tmp_path)


def test_size_and_member_limits(area: tuple[Path, Path], tmp_path: Path) -> None:
    container, outside = area
    bundle = minimal(reg("rootfs/a", b"a" * 600), reg("rootfs/b", b"b" * 600))
    with pytest.raises(BundleError, match=r"'rootfs/b'.*exceed 1024 bytes"):
        _unpack(bundle, container, max_size=1024)
    _untouched(outside, tmp_path)
    other = tmp_path / "box" / "other"
    with pytest.raises(BundleError, match=r"'rootfs/b'.*more than 3 members"):
        _unpack(bundle, other, max_members=3)


def test_container_dir_must_be_empty(area: tuple[Path, Path]) -> None:
    container, _ = area
    container.mkdir(parents=True)
    (container / "old").write_text("x")
    with pytest.raises(BundleError, match="not empty"):
        _unpack(minimal(), container)


def test_corrupt_tar_is_a_bundle_error(area: tuple[Path, Path]) -> None:
    container, _ = area
    data = bytearray(minimal(reg("rootfs/a", b"data")))
    data[148:156] = b"0000000\x00"  # break the first header's checksum
    with pytest.raises(BundleError, match="container bundle"):
        _unpack(bytes(data), container)


def test_good_bundle_layout_modes_links_and_config(tmp_path: Path) -> None:
    container = tmp_path / "c"
    bundle_file = tmp_path / "bundle.tar"
    bundle_file.write_bytes(
        tar_bytes(
            directory("."),
            reg("./config.json", config_json()),
            directory("./rootfs", 0o755),
            directory("./rootfs/ro", 0o555),
            reg("./rootfs/ro/tool", b"#!/bin/sh\n", 0o4755),
            reg("./rootfs/implicit/deep/file", b"data", 0o600),
            link("./rootfs/ro/hard", "rootfs/ro/tool", tarfile.LNKTYPE),
            link("./rootfs/bin", "usr/bin"),
            link("./rootfs/sh", "/usr/bin/dash"),
            link("./rootfs/up", "implicit/../ro"),
            reg("./rootfs/dup", b"first"),
            reg("./rootfs/dup", b"second"),
        )
    )
    assert _unpack(bundle_file, container) == container
    rootfs = container / "rootfs"
    assert stat.S_IMODE((rootfs / "ro").stat().st_mode) == 0o555
    # tar-rs (preserve_permissions = false): mode & 0o777, the setuid bit is dropped.
    assert stat.S_IMODE((rootfs / "ro" / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((rootfs / "implicit").stat().st_mode) == 0o755
    assert (rootfs / "implicit" / "deep" / "file").read_bytes() == b"data"
    assert os.path.samefile(rootfs / "ro" / "hard", rootfs / "ro" / "tool")
    assert os.readlink(rootfs / "sh") == "/usr/bin/dash"
    assert os.readlink(rootfs / "bin") == "usr/bin"
    assert (rootfs / "dup").read_bytes() == b"second"
    config = json.loads((container / "config.json").read_text())
    assert config["mounts"][-1] == {
        "destination": IPC_MOUNT_DESTINATION,
        "type": "bind",
        "source": SOCKET,
        "options": ["rbind"],
    }
    assert config["mounts"][0]["destination"] == "/proc"
    # uid/gid None: mappings untouched.
    assert config["linux"]["uidMappings"][0]["hostID"] == 1000


def test_ownership_and_host_id_rewrite(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("chown to another user needs root")
    container = tmp_path / "c"
    bundle = minimal(reg("rootfs/f", b"x", 0o2755), link("rootfs/l", "f"))
    _unpack(bundle, container, uid=4321, gid=8765)
    for path in (
        container,
        container / "config.json",
        container / "rootfs",
        container / "rootfs/f",
    ):
        info = path.lstat()
        assert (info.st_uid, info.st_gid) == (4321, 8765), path
    assert (container / "rootfs/l").lstat().st_uid == 4321
    # tar-rs masks to 0o777 before the lchown: no set-id bit survives.
    assert stat.S_IMODE((container / "rootfs/f").stat().st_mode) == 0o755
    config = json.loads((container / "config.json").read_text())
    assert [m["hostID"] for m in config["linux"]["uidMappings"]] == [4321]
    assert [m["hostID"] for m in config["linux"]["gidMappings"]] == [8765, 8765]


def test_edit_config_is_pure_and_checks_shapes() -> None:
    original = {"process": {"args": ["x"]}}
    edited = edit_config(original, ipc_socket_path="/s", uid=5, gid=6)
    assert original == {"process": {"args": ["x"]}}
    assert edited["mounts"] == [
        {"destination": IPC_MOUNT_DESTINATION, "type": "bind", "source": "/s", "options": ["rbind"]}
    ]
    assert "linux" not in edited
    mapped = edit_config(
        {"linux": {"uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}},
        ipc_socket_path="/s",
        uid=5,
        gid=6,
    )
    assert mapped["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 5, "size": 1}]
    assert "gidMappings" not in mapped["linux"]
    with pytest.raises(BundleError, match="'mounts' is not a list"):
        edit_config({"mounts": {}}, ipc_socket_path="/s", uid=None, gid=None)
    with pytest.raises(BundleError, match=r"'linux\.uidMappings' is not a list"):
        edit_config({"linux": {"uidMappings": 3}}, ipc_socket_path="/s", uid=1, gid=1)


def test_config_json_must_be_a_json_object(tmp_path: Path) -> None:
    bundle = tar_bytes(reg("config.json", b"[1, 2]"), directory("rootfs"))
    with pytest.raises(BundleError, match="not a JSON object"):
        _unpack(bundle, tmp_path / "a")
    bundle = tar_bytes(reg("config.json", b"{\n  oops"), directory("rootfs"))
    with pytest.raises(BundleError, match=r"not valid JSON \(line 2\)"):
        _unpack(bundle, tmp_path / "b")
