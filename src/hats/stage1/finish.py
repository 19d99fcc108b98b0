"""Stage1's steps after unpacking (spec system-image §3.4), on a root directory.

Oak stage1, chrooted into the unpacked image, then:

1. creates an empty ``/etc/machine-id`` when it does not exist (a dangling
   symlink counts as missing; the file is written through it, as
   ``fs::write`` does);
2. creates ``/oak`` — which fails when the image has anything at ``/oak``:
   **the image must not contain /oak**;
3. writes the DICE data to ``/oak/dice`` (here mode 0600; Oak's ``fs::write``
   leaves ``0666 & ~umask``, i.e. 0644);
4. sets eth0 down (not here: netlink I/O belongs to the /init program);
5. removes ``/.dockerenv`` if present;
6. execs init (not here either).

``root`` is the unpacked tree. Paths are resolved inside it as after a
chroot (:mod:`hats.stage1.rootpath`): nothing is written outside it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hats.stage1.errors import (
    DiceWriteError,
    DockerenvError,
    MachineIdError,
    OakDirError,
    OakDirExistsError,
)
from hats.stage1.rootpath import Root

MACHINE_ID = "etc/machine-id"
OAK_DIR = "oak"
DICE_FILE = "oak/dice"
DOCKERENV = ".dockerenv"
DICE_MODE = 0o600


@dataclass(frozen=True)
class FinishReport:
    """What :func:`finish_root` changed."""

    machine_id_created: bool
    dice_path: Path
    dockerenv_removed: bool


def _machine_id_error(root: Path, exc: OSError) -> MachineIdError:
    return MachineIdError(
        f"{Path(root) / MACHINE_ID}: cannot create the placeholder machine-id: "
        f"{exc.strerror or exc}"
    )


def ensure_machine_id(root: Path) -> bool:
    """Create an empty ``/etc/machine-id`` when it does not exist; True when created.

    As ``Path::exists`` then ``fs::write`` in the chrooted stage1: symlinks are
    followed inside ``root``, so a dangling ``/etc/machine-id`` symlink gets its
    target created.
    """
    parts = MACHINE_ID.split("/")
    with Root(os.path.realpath(root)) as base:
        try:
            base.resolve(parts, follow_final=True, strict=True)
            return False
        except OSError:
            pass
        try:
            path = base.host(base.resolve(parts, follow_final=True, strict=False))
        except OSError as exc:
            raise _machine_id_error(root, exc) from None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise _machine_id_error(root, exc) from None
    os.close(fd)
    return True


def create_oak_dir(root: Path) -> Path:
    """Create ``/oak``; fails when anything (even a dangling symlink) is there."""
    path = Path(root) / OAK_DIR
    try:
        os.mkdir(path)
    except FileExistsError:
        raise OakDirExistsError(
            f"{path}: already exists after unpacking: the image must not contain /oak"
        ) from None
    except OSError as exc:
        raise OakDirError(f"{path}: cannot create: {exc.strerror or exc}") from None
    return path


def write_dice(root: Path, dice: bytes) -> Path:
    """Write the DICE data to ``/oak/dice`` (a new file, mode 0600)."""
    path = Path(root) / DICE_FILE
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, DICE_MODE)
    except OSError as exc:
        raise DiceWriteError(f"{path}: cannot create: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, DICE_MODE)
        view = memoryview(dice)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        raise DiceWriteError(f"{path}: cannot write: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return path


def remove_dockerenv(root: Path) -> bool:
    """Remove ``/.dockerenv`` when present; True when removed."""
    path = Path(root) / DOCKERENV
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise DockerenvError(f"{path}: cannot remove: {exc.strerror or exc}") from None
    return True


def finish_root(root: Path, dice: bytes) -> FinishReport:
    """The after-unpack steps in stage1's order (without eth0 and exec)."""
    created = ensure_machine_id(root)
    create_oak_dir(root)
    dice_path = write_dice(root, dice)
    removed = remove_dockerenv(root)
    return FinishReport(machine_id_created=created, dice_path=dice_path, dockerenv_removed=removed)
