"""Safe unpacking of the container bundle; the ``config.json`` edits (wire-protocol §2 step 14).

The bundle is an uncompressed tar from the (untrusted) launcher: an OCI
bundle with ``config.json`` and ``rootfs/``. It is read with the project's
streaming reader (:class:`hats.archive.tarstream.TarReader`) and written below
``container_dir`` by walking directory file descriptors with ``O_NOFOLLOW``,
so nothing is ever written through a symbolic link. Rules (each violation is a
:class:`BundleError` naming the member; what was written stays inside
``container_dir``):

* names: a leading ``./`` and empty or ``.`` components are dropped; absolute
  names and any ``..`` component are refused;
* a member whose parent path is a symbolic link (or not a directory) is refused;
* symbolic links: under ``rootfs/`` a target is read as the container will
  (absolute = from the rootfs root) and must not climb above ``rootfs``;
  elsewhere absolute targets are refused and relative ones must stay inside
  ``container_dir``. (The real guarantee is that links are never followed
  while unpacking; this check also keeps host-side readers safe.)
* hard links must name an already unpacked regular file of the bundle;
* character and block devices and FIFOs become empty regular files (their
  mode and mtime as files), as tar-rs, which the reference unpacks with, has
  no case for them;
* at most ``max_size`` bytes of file data and ``max_members`` members;
* a later member replaces an earlier non-directory of the same name; a
  non-directory never replaces a directory;
* ``container_dir`` must be empty or missing; the result must have a regular
  ``config.json`` and a ``rootfs`` directory.

Ownership and modes: every entry (and ``container_dir``) is owned by
``uid``/``gid`` when given (the reference's ``lchown -R``); modes are the
member's ``mode & 0o777``: set-id and sticky bits are dropped, as tar-rs does
with ``preserve_permissions = false`` before the reference's ``lchown``
(which could not add them back); directory modes are applied at the end, each
after everything below it.
Implicit parent directories get 0755 when they are made (``container_dir``
stays 0700 until the end, so nobody else sees into them meanwhile).

Limits and cost: a member's path, and a hard link's target, must be shorter
than :data:`PATH_MAX` (4096 bytes, Linux's limit; a depth of at most 2048), and
one component at most 255 bytes (the kernel's). Directory descriptors along
the last path walked are kept (one every 32 levels and the deepest), so each
member costs a lookup per component it does not share with the one before
(at most 32 more), and the final pass over the directory modes as much: time
is linear in the archive however deep it goes, and at most 66 descriptors
are open.

Then ``config.json`` is edited (:func:`edit_config`) and rewritten in place:
a bind mount of the IPC socket at ``/oak_utils/orchestrator_ipc``
(``options: ["rbind"]``) is appended to ``mounts`` and every
``linux.uidMappings``/``gidMappings`` entry's ``hostID`` becomes the runtime
uid/gid (left alone when ``uid``/``gid`` is ``None``). Not done (unlike the
reference): NVIDIA CDI device injection from ``/etc/cdi``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from hats.archive import tarformat as tf
from hats.archive.tarformat import Member, TarFormatError
from hats.archive.tarstream import TarReader
from hats.errors import HatsError

_TARRS_EMPTY_FILE_TYPES = (tf.CHRTYPE, tf.BLKTYPE, tf.FIFOTYPE)
"""Member types tar-rs has no case for: it writes them as empty regular files."""

IPC_MOUNT_DESTINATION = "/oak_utils/orchestrator_ipc"
"""Where the IPC socket appears inside the container."""

CONFIG_NAME = "config.json"
ROOTFS_NAME = "rootfs"
DEFAULT_MAX_SIZE = 16 << 30
"""Default limit on the bundle's file data (16 GiB)."""
DEFAULT_MAX_MEMBERS = 1_000_000
MAX_CONFIG_SIZE = 4 << 20
_IMPLICIT_DIR_MODE = 0o755
PATH_MAX = 4096
"""Linux ``PATH_MAX``: a member's path (or hard link target) of this many bytes is refused."""
_HOLD_EVERY = 32
_CHUNK = 1 << 20
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_WALK = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class BundleError(HatsError):
    """The container bundle is unsafe or malformed; names the member at fault."""


def safe_parts(name: str, what: str = "member") -> tuple[str, ...]:
    """The components of an archive path; refuses absolute paths and ``..``."""
    if name.startswith("/"):
        raise BundleError(f"container bundle: {what} {name!r} has an absolute path")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise BundleError(f"container bundle: {what} {name!r} contains '..'")
    return parts


def _shared_prefix(first: tuple[str, ...], second: tuple[str, ...]) -> int:
    """How many leading components two paths share (compared in halves, not one by one)."""
    limit = min(len(first), len(second))
    if first[:limit] == second[:limit]:
        return limit
    low, high = 0, limit - 1
    while low < high:
        middle = (low + high + 1) // 2
        if first[:middle] == second[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def check_symlink(parts: tuple[str, ...], target: str) -> None:
    """Refuse a symbolic link at ``parts`` whose ``target`` leaves its allowed tree."""
    name = "/".join(parts)
    if not target:
        raise BundleError(f"container bundle: symbolic link {name!r} has an empty target")
    in_rootfs = len(parts) > 1 and parts[0] == ROOTFS_NAME
    floor = 1 if in_rootfs else 0
    if target.startswith("/"):
        if not in_rootfs:
            raise BundleError(
                f"container bundle: symbolic link {name!r} points to the absolute path "
                f"{target!r} outside the rootfs"
            )
        resolved = [ROOTFS_NAME]
    else:
        resolved = list(parts[:-1])
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if len(resolved) <= floor:
                where = "the rootfs" if in_rootfs else "the container directory"
                raise BundleError(
                    f"container bundle: symbolic link {name!r} -> {target!r} escapes {where}"
                )
            resolved.pop()
        else:
            resolved.append(part)


def _check_length(path: str, what: str, member: str) -> None:
    size = len(os.fsencode(path))
    if size >= PATH_MAX:
        raise BundleError(
            f"container bundle: member {member!r}: {what} is {size} bytes, "
            f"the limit is {PATH_MAX - 1} (PATH_MAX)"
        )


class _Unpacker:
    """Writes members below an open directory descriptor, never following links."""

    def __init__(
        self, root: Path, uid: int | None, gid: int | None, max_size: int, max_members: int
    ) -> None:
        self.root = root
        self.uid = -1 if uid is None else uid
        self.gid = -1 if gid is None else gid
        self.chown = uid is not None or gid is not None
        self.max_size = max_size
        self.max_members = max_members
        self.size = 0
        self.members = 0
        self.dir_modes: dict[tuple[str, ...], int] = {}
        self._path: tuple[str, ...] = ()
        self._held: dict[int, int] = {}
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.root_fd = os.open(root, _O_DIR)
        except OSError as exc:
            raise BundleError(
                f"{root}: cannot use as container directory: {exc.strerror}"
            ) from None
        if os.listdir(self.root_fd):
            os.close(self.root_fd)
            raise BundleError(f"{root}: container directory is not empty")

    def close(self) -> None:
        self._reset()
        os.close(self.root_fd)

    def _fail(self, member: str, message: str) -> BundleError:
        return BundleError(f"container bundle: member {member!r}: {message}")

    def _own(self, name: str, dir_fd: int, mode: int | None, *, link: bool = False) -> None:
        if self.chown:
            os.chown(name, self.uid, self.gid, dir_fd=dir_fd, follow_symlinks=False)
        if mode is not None and not link:
            os.chmod(name, mode, dir_fd=dir_fd)

    def _reset(self) -> None:
        """Close the descriptors kept along the last directory path."""
        for fd in self._held.values():
            os.close(fd)
        self._held.clear()
        self._path = ()

    def _dir_fd(self, dirs: tuple[str, ...], member: str, *, create: bool) -> int:
        """A descriptor of the directory ``dirs`` (borrowed: valid until the next call).

        The walk starts at the deepest descriptor kept from the last one that
        ``dirs`` shares (every :data:`_HOLD_EVERY` levels, and the last level,
        are kept), so an archive in its usual order costs a lookup per new
        component, and a jump back at most ``_HOLD_EVERY`` of them. Kept
        descriptors stay right: the unpacker never removes a directory.
        """
        shared = _shared_prefix(self._path, dirs)
        for level in [level for level in self._held if level > shared]:
            os.close(self._held.pop(level))
        start = max(self._held, default=0)
        fd = self._held[start] if start else self.root_fd
        self._path = dirs[:start]
        try:
            for depth in range(start, len(dirs)):
                part = dirs[depth]
                try:
                    info = os.stat(part, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    if not create:
                        missing = "/".join(dirs[: depth + 1])
                        raise self._fail(member, f"{missing!r} does not exist") from None
                    os.mkdir(part, 0o700, dir_fd=fd)
                    self._own(part, fd, _IMPLICIT_DIR_MODE)
                    info = os.stat(part, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISDIR(info.st_mode):
                    kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a directory"
                    raise self._fail(member, f"parent {'/'.join(dirs[: depth + 1])!r} is {kind}")
                child = os.open(part, _O_WALK, dir_fd=fd)
                if fd not in (self.root_fd, self._held.get(depth)):
                    os.close(fd)
                fd = child
                level = depth + 1
                if level % _HOLD_EVERY == 0 or level == len(dirs):
                    self._held[level] = fd
                    self._path = dirs[:level]
        except BaseException:
            if fd not in (self.root_fd, *self._held.values()):
                os.close(fd)
            self._reset()
            raise
        return fd

    def _clear(self, name: str, dir_fd: int, member: str, *, keep_dir: bool) -> bool:
        """Remove an earlier non-directory at ``name``; True if a directory stays."""
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(info.st_mode):
            if keep_dir:
                return True
            raise self._fail(member, "would replace a directory")
        os.unlink(name, dir_fd=dir_fd)
        return False

    def add(self, member: Member, reader: TarReader) -> None:
        self.members += 1
        parts = safe_parts(member.name)
        if self.members > self.max_members:
            raise self._fail(member.name, f"more than {self.max_members} members")
        if not parts:
            return  # the bundle's root directory itself
        display = "/".join(parts)
        _check_length(display, "path", display)
        mode = member.mode & 0o777  # tar-rs, preserve_permissions=false: no set-id, no sticky
        if member.is_regular:
            self.size += member.size
            if self.size > self.max_size:
                raise self._fail(display, f"the bundle's files exceed {self.max_size} bytes")
        if member.type == tf.SYMTYPE:
            check_symlink(parts, member.linkname)
        link_parts = (
            safe_parts(member.linkname, "hard link target") if member.type == tf.LNKTYPE else ()
        )
        if member.type == tf.LNKTYPE and not link_parts:
            raise self._fail(display, "hard link without a target")
        if member.type == tf.LNKTYPE:
            _check_length("/".join(link_parts), "hard link target", display)
        dir_fd = self._dir_fd(parts[:-1], display, create=True)
        name = parts[-1]
        existing_dir = self._clear(name, dir_fd, display, keep_dir=member.is_dir)
        if member.is_dir:
            if not existing_dir:
                os.mkdir(name, 0o700, dir_fd=dir_fd)
                self._own(name, dir_fd, None)
            self.dir_modes[parts] = mode
        elif member.is_regular or member.type in _TARRS_EMPTY_FILE_TYPES:
            self._write_file(name, dir_fd, mode, member, reader)
        elif member.type == tf.SYMTYPE:
            os.symlink(member.linkname, name, dir_fd=dir_fd)
            self._own(name, dir_fd, None, link=True)
        elif member.type == tf.LNKTYPE:
            self._hard_link(name, dir_fd, link_parts, display)
        else:  # pragma: no cover (TarReader admits no other types)
            raise self._fail(display, f"unsupported member type {member.kind}")

    def _write_file(
        self, name: str, dir_fd: int, mode: int, member: Member, reader: TarReader
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
        try:
            for chunk in reader.chunks(_CHUNK):
                view = memoryview(chunk)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            if self.chown:
                os.fchown(fd, self.uid, self.gid)
            os.fchmod(fd, mode)
            mtime = int(member.mtime)
            os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)

    def _hard_link(self, name: str, dir_fd: int, target: tuple[str, ...], display: str) -> None:
        dir_fd = os.dup(dir_fd)  # the target's walk may close the borrowed one
        try:
            target_dir = self._dir_fd(target[:-1], display, create=False)
            try:
                info = os.stat(target[-1], dir_fd=target_dir, follow_symlinks=False)
            except FileNotFoundError:
                raise self._fail(
                    display, f"hard link target {'/'.join(target)!r} is not in the bundle"
                ) from None
            if not stat.S_ISREG(info.st_mode):
                raise self._fail(
                    display, f"hard link target {'/'.join(target)!r} is not a regular file"
                )
            os.link(
                target[-1],
                name,
                src_dir_fd=target_dir,
                dst_dir_fd=dir_fd,
                follow_symlinks=False,
            )
        finally:
            os.close(dir_fd)

    def finish(self) -> None:
        """Check the bundle's shape, then apply directory modes deepest first."""
        try:
            config = os.stat(CONFIG_NAME, dir_fd=self.root_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise BundleError(f"container bundle: no {CONFIG_NAME}") from None
        if not stat.S_ISREG(config.st_mode):
            raise BundleError(f"container bundle: {CONFIG_NAME} is not a regular file")
        try:
            rootfs = os.stat(ROOTFS_NAME, dir_fd=self.root_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise BundleError(f"container bundle: no {ROOTFS_NAME}/ directory") from None
        if not stat.S_ISDIR(rootfs.st_mode):
            raise BundleError(f"container bundle: {ROOTFS_NAME} is not a directory")
        # Every directory after all below it (a path sorts after its ancestors;
        # NUL, in no name, keeps a directory's subtree together).
        for parts in sorted(self.dir_modes, key="\0".join, reverse=True):
            dir_fd = self._dir_fd(parts[:-1], "/".join(parts), create=False)
            os.chmod(parts[-1], self.dir_modes[parts], dir_fd=dir_fd)
        if self.chown:
            os.fchown(self.root_fd, self.uid, self.gid)
        os.fchmod(self.root_fd, _IMPLICIT_DIR_MODE)


def edit_config(
    config: dict[str, Any], *, ipc_socket_path: str, uid: int | None, gid: int | None
) -> dict[str, Any]:
    """§2 step 14's edits of an OCI ``config.json`` (a new dict; pure)."""
    result = json.loads(json.dumps(config))
    mounts = result.setdefault("mounts", [])
    if not isinstance(mounts, list):
        raise BundleError(f"container bundle: {CONFIG_NAME}: 'mounts' is not a list")
    mounts.append(
        {
            "destination": IPC_MOUNT_DESTINATION,
            "type": "bind",
            "source": ipc_socket_path,
            "options": ["rbind"],
        }
    )
    linux = result.get("linux")
    if linux is None:
        return result  # type: ignore[no-any-return]
    if not isinstance(linux, dict):
        raise BundleError(f"container bundle: {CONFIG_NAME}: 'linux' is not an object")
    for key, host_id in (("uidMappings", uid), ("gidMappings", gid)):
        mappings = linux.get(key)
        if mappings is None or host_id is None:
            continue
        if not isinstance(mappings, list) or not all(isinstance(m, dict) for m in mappings):
            raise BundleError(f"container bundle: {CONFIG_NAME}: 'linux.{key}' is not a list")
        for mapping in mappings:
            mapping["hostID"] = host_id
    return result  # type: ignore[no-any-return]


def load_config(container_dir: Path) -> dict[str, Any]:
    """Read ``container_dir/config.json`` (a JSON object, at most 4 MiB, not a link)."""
    path = container_dir / CONFIG_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(MAX_CONFIG_SIZE + 1)
    if len(raw) > MAX_CONFIG_SIZE:
        raise BundleError(f"{path}: larger than {MAX_CONFIG_SIZE} bytes")
    try:
        config = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise BundleError(f"{path}: not valid JSON{where}") from None
    if not isinstance(config, dict):
        raise BundleError(f"{path}: not a JSON object")
    return config


def _rewrite_config(container_dir: Path, config: dict[str, Any]) -> None:
    path = container_dir / CONFIG_NAME
    info = path.lstat()
    data = (json.dumps(config, indent=2) + "\n").encode()
    tmp = container_dir / f".{CONFIG_NAME}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchown(handle.fileno(), info.st_uid, info.st_gid)
            os.fchmod(handle.fileno(), stat.S_IMODE(info.st_mode))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _open_bundle(bundle: bytes | Path) -> BinaryIO:
    if isinstance(bundle, bytes | bytearray):
        return io.BytesIO(bundle)
    try:
        return open(bundle, "rb")  # closed by the caller
    except OSError as exc:
        raise BundleError(f"{bundle}: cannot read the bundle: {exc.strerror}") from None


def unpack_bundle(
    bundle: bytes | Path,
    container_dir: Path,
    *,
    uid: int | None,
    gid: int | None,
    ipc_socket_path: str,
    max_size: int = DEFAULT_MAX_SIZE,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> Path:
    """Unpack ``bundle`` into ``container_dir`` safely and edit its ``config.json``.

    Returns ``container_dir`` (the OCI bundle directory). See the module
    docstring for the rules.
    """
    source = "container bundle" if not isinstance(bundle, Path) else str(bundle)
    with _open_bundle(bundle) as stream:
        unpacker = _Unpacker(container_dir, uid, gid, max_size, max_members)
        try:
            reader = TarReader(stream, source)
            for member in reader:
                try:
                    unpacker.add(member, reader)
                except OSError as exc:
                    raise BundleError(
                        f"container bundle: member {member.name!r}: {exc.strerror}"
                    ) from None
            try:
                unpacker.finish()
            except OSError as exc:
                raise BundleError(f"container bundle: {exc.strerror}") from None
        except TarFormatError as exc:
            raise BundleError(f"container bundle: {exc}") from None
        finally:
            unpacker.close()
    config = load_config(container_dir)
    edited = edit_config(config, ipc_socket_path=ipc_socket_path, uid=uid, gid=gid)
    try:
        _rewrite_config(container_dir, edited)
    except OSError as exc:
        raise BundleError(
            f"{container_dir / CONFIG_NAME}: cannot rewrite: {exc.strerror}"
        ) from None
    return container_dir
