"""The container bundle unpacked as the reference orchestrator's tar-rs does.

tar-rs has no case for device nodes and FIFOs (it writes empty regular files)
and, with ``preserve_permissions = false``, applies ``mode & 0o777`` before the
reference's ``lchown -R`` (which cannot add set-id bits back).
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

import pytest
from orch_ipc_support import device, directory, minimal, reg

from hats.orchestrator.bundle import unpack_bundle

SOCKET = "/run/hats/orchestrator.sock"


def _unpack(bundle: bytes, container: Path) -> Path:
    uid, gid = (os.getuid(), os.getgid())
    return unpack_bundle(bundle, container, uid=uid, gid=gid, ipc_socket_path=SOCKET)


@pytest.mark.parametrize(
    ("name", "kind"),
    [("rootfs/dev/null", tarfile.CHRTYPE), ("rootfs/sda", tarfile.BLKTYPE)],
)
def test_tarrs_bundle_device_nodes_become_empty_files(
    tmp_path: Path, name: str, kind: bytes
) -> None:
    info, data = device(name, kind)
    info.mode = 0o640
    root = _unpack(minimal(directory("rootfs/dev"), (info, data)), tmp_path / "c")
    written = os.lstat(root / name)
    assert stat.S_ISREG(written.st_mode) and written.st_size == 0
    assert stat.S_IMODE(written.st_mode) == 0o640


def test_tarrs_bundle_fifo_becomes_an_empty_file(tmp_path: Path) -> None:
    info = tarfile.TarInfo("rootfs/pipe")
    info.type = tarfile.FIFOTYPE
    info.mode = 0o600
    root = _unpack(minimal((info, None)), tmp_path / "c")
    written = os.lstat(root / "rootfs/pipe")
    assert stat.S_ISREG(written.st_mode) and written.st_size == 0


@pytest.mark.parametrize(
    ("mode", "expected"),
    [(0o4755, 0o755), (0o2711, 0o711), (0o1777, 0o777), (0o7555, 0o555), (0o644, 0o644)],
)
def test_tarrs_bundle_setid_and_sticky_bits_are_masked(
    tmp_path: Path, mode: int, expected: int
) -> None:
    root = _unpack(
        minimal(reg("rootfs/tool", b"#!/bin/sh\n", mode), directory("rootfs/tmp", mode)),
        tmp_path / "c",
    )
    assert stat.S_IMODE(os.lstat(root / "rootfs/tool").st_mode) == expected
    assert stat.S_IMODE(os.lstat(root / "rootfs/tmp").st_mode) == expected
