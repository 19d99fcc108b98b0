"""``hats vm bundle``: a HATs system bundle tar from our kernel, initrd, image (and stage0).

The layout is the reference's (system-image §3.1, ``build_test_bundles``):
the entries ``./``, ``./initrd.cpio.xz``, ``./kernel_bin``, ``./stage0_bin``
(when given) and ``./system.tar.xz``, sorted by name, owner and group
``root:0``, modes as ``tar --mode a=r,u+w,a+X`` makes them (0644, or 0755 for a
file with an execute bit and for the directory), GNU format. Deliberate
difference: every mtime is :data:`hats.reproducible.EPOCH` (the project's one
mtime for deterministic archives), where the reference passes ``--mtime=@0``;
the launcher ignores mtimes. The same inputs give the same bytes.

Our initramfs is gzip-compressed although the member is named
``initrd.cpio.xz``: the name is what the launcher selects by (the reference's
"ends with" rule), the kernel detects the compression from the content.

The tar is written through :func:`hats.fsio.atomic_output` (nothing at the
output path unless it is complete); the members are streamed, never held in
memory. Inputs are checked first: each must be a readable regular file, the
system image an ``.xz`` file.
"""

from __future__ import annotations

import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from hats.errors import HatsError
from hats.fsio import atomic_output
from hats.reproducible import EPOCH

XZ_MAGIC = b"\xfd7zXZ\x00"


class BundleInputError(HatsError):
    """An input of ``hats vm bundle`` that cannot go into a system bundle."""


@dataclass(frozen=True)
class BundleInputs:
    kernel: Path
    initrd: Path
    image: Path
    stage0: Path | None = None

    def members(self) -> list[tuple[str, Path]]:
        """``(member name, source)`` in the bundle's (sorted) order."""
        named = [
            ("./initrd.cpio.xz", self.initrd),
            ("./kernel_bin", self.kernel),
            ("./stage0_bin", self.stage0),
            ("./system.tar.xz", self.image),
        ]
        return [(name, path) for name, path in named if path is not None]


def member_mode(source_mode: int) -> int:
    """``a=r,u+w,a+X`` of a regular file: 0755 when it has any execute bit, else 0644."""
    return 0o755 if source_mode & 0o111 else 0o644


def _check(path: Path, what: str) -> int:
    try:
        info = path.stat()
    except OSError as exc:
        raise BundleInputError(f"{path}: {what}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise BundleInputError(f"{path}: {what} is not a regular file")
    return info.st_mode


def _check_image(path: Path) -> None:
    _check(path, "the system image")
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(XZ_MAGIC))
    except OSError as exc:
        raise BundleInputError(f"{path}: the system image: {exc.strerror}") from None
    if head != XZ_MAGIC:
        raise BundleInputError(f"{path}: the system image is not an .xz file (system.tar.xz)")


def _info(name: str, mode: int, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = mode
    info.size = size
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def write_system_bundle(output: Path, inputs: BundleInputs) -> list[str]:
    """Write the bundle (module rules); the member names written."""
    _check(inputs.kernel, "the kernel")
    _check(inputs.initrd, "the initrd")
    _check_image(inputs.image)
    if inputs.stage0 is not None:
        _check(inputs.stage0, "stage0")
    names = ["./"]
    with (
        atomic_output(output) as handle,
        tarfile.open(fileobj=handle, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        tar.addfile(_info("./", 0o755, directory=True))
        for name, source in inputs.members():
            try:
                with open(source, "rb") as data:
                    status = os.fstat(data.fileno())
                    info = _info(name, member_mode(status.st_mode), status.st_size)
                    tar.addfile(info, data)
            except OSError as exc:
                raise BundleInputError(f"{source}: cannot read: {exc.strerror}") from None
            names.append(name)
    return names
