"""An independent model of the reference build, made of CPython's ``tarfile``.

rules_pkg 1.0.1's ``build_tar`` reads and writes with ``tarfile`` (GNU
format); this oracle does the same with the composition rules of spec
system-image §1.2 (sorted sources, created parents, deps re-emitted with
blank owner names, duplicates kept), then ``lzma`` preset 6 / CRC64 for
``xz -T1``. Our streaming builder must produce the same bytes.
"""

from __future__ import annotations

import io
import lzma
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import cast

PORTABLE = 946684800


class _Writer:
    def __init__(self, out: Path) -> None:
        self.tar = tarfile.open(out, "w", format=tarfile.GNU_FORMAT)  # noqa: SIM115 (closed in close())
        self.members: set[str] = set()
        self.dirs: set[str] = {"/", "./"}

    def _add(self, info: tarfile.TarInfo, data: io.BufferedIOBase | None = None) -> None:
        if info.type == tarfile.DIRTYPE and not info.name.endswith("/"):
            info.name += "/"
        self.tar.addfile(info, data)
        self.members.add(info.name)
        if info.type == tarfile.DIRTYPE:
            self.dirs.add(info.name)

    def parents(self, name: str, mtime: float, uid: int = 0, gid: int = 0) -> None:
        path = ""
        for part in name.split("/")[:-1]:
            path += part + "/"
            if path not in self.members and path not in self.dirs:
                info = tarfile.TarInfo(path)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                info.mtime = mtime
                info.uid, info.gid = uid, gid
                info.uname = info.gname = ""
                self._add(info)

    def close(self) -> None:
        self.tar.close()


def sub_tar(out: Path, files: Sequence[tuple[str, bytes, int]]) -> Path:
    """A pkg_tar of sources: (destination, data, mode)."""
    writer = _Writer(out)
    for dest, data, mode in sorted(files):
        writer.parents(dest, PORTABLE)
        info = tarfile.TarInfo(dest)
        info.mtime, info.mode, info.size = PORTABLE, mode, len(data)
        info.uname = info.gname = ""
        writer._add(info, io.BytesIO(data))  # type: ignore[arg-type]
    writer.close()
    return out


def merge(out: Path, deps: Sequence[Path]) -> Path:
    """The top-level pkg_tar: deps merged in order, duplicates kept."""
    writer = _Writer(out)
    for dep in deps:
        with tarfile.open(dep, "r:*") as intar:
            for info in intar:
                info.uname = info.gname = ""
                writer.parents(info.name, info.mtime, info.uid, info.gid)
                cast(dict[str, str], info.pax_headers).pop("path", None)
                if info.isfile():
                    writer._add(info, intar.extractfile(info))  # type: ignore[arg-type]
                else:
                    writer._add(info)
    writer.close()
    return out


def reference_image(
    workdir: Path,
    base: Path,
    *,
    orchestrator: bytes,
    agent: bytes,
    syslogd: bytes,
    orchestrator_unit: bytes,
    syslogd_unit: bytes,
    keys: bytes,
) -> tuple[bytes, bytes]:
    """(tar bytes, xz bytes) of the reference image for these inputs."""
    deps = [
        base,
        sub_tar(
            workdir / "admin_bin.tar",
            [
                ("usr/bin/orchestrator_main", orchestrator, 0o755),
                ("usr/bin/oak_containers_agent", agent, 0o755),
                ("usr/bin/oak_containers_syslogd", syslogd, 0o755),
            ],
        ),
        sub_tar(workdir / "interface.tar", [("etc/systemd/network/10-enp0s1.network", b"", 0o555)]),
        sub_tar(
            workdir / "services.tar",
            [
                ("etc/systemd/system/oak-orchestrator.service", orchestrator_unit, 0o555),
                ("etc/systemd/system/oak-syslogd.service", syslogd_unit, 0o555),
            ],
        ),
        sub_tar(workdir / "keys.tar", [("hats/tvs_public_keys.txt", keys, 0o555)]),
    ]
    tar = merge(workdir / "reference.tar", deps).read_bytes()
    return tar, lzma.compress(tar, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6)
