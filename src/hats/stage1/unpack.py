"""Unpack a system image exactly as Oak stage1 does.

Stage1 chroots into the fresh root and feeds the decompressed image to
``tar::Archive::new(..).unpack("/")`` with the defaults of tar-rs 0.4.44, the
version Oak's Bazel build resolves (spec system-image §3.4, upstream-facts F4).
:func:`unpack_image` applies the same rules to ``dest`` as if it were ``/`` after
a chroot: paths, including symlink targets in the image, are resolved inside
``dest`` (:mod:`hats.stage1.rootpath`), so nothing is ever written outside it
and an absolute symlink means what it will mean after the switch to the new
root.

- Names: empty and ``.`` components and a leading ``/`` are ignored; an entry
  with a ``..`` component is skipped; an entry naming only the root (``./``)
  changes nothing.
- Order: non-directory entries are unpacked as they come; directory entries
  are kept and applied after all of them, **sorted by their raw path bytes
  (as the archive spells them, trailing ``/`` included), descending, stable**
  (tar-rs 0.4.42 and later): deeper directories before their parents, the
  same spelling in archive order (the later one's mode wins), and of two
  spellings of one directory the smaller (``./etc/`` < ``etc/`` < ``etc``…)
  applied last, so its mode wins wherever it stands in the archive.
- Parents: missing parents of an entry are created (mode ``0o777 & ~umask``,
  no entry of their own). The parent must then resolve to an existing
  directory: a dangling symlink fails (:class:`UnresolvablePathError`, tar-rs
  "while canonicalizing"), a file fails (:class:`EntryConflictError`).
- Regular files: created new (``O_EXCL``); an existing non-directory is
  unlinked first (overwrite), so the later duplicate wins; an existing
  directory fails. Data is streamed. Then mtime (atime = mtime; 0 becomes 1,
  as tar-rs) and mode ``& 0o777``: setuid, setgid and sticky bits are dropped.
- Symlinks: created with the target as written; an existing non-directory is
  unlinked first. mtime is set on the link itself.
- Hard links: the target, resolved from the root (it must exist, symlinks
  followed), is linked (a symlink itself when the name is one); an existing
  path is **not** replaced: tar-rs fails with "File exists", so stage1 fails.
- Directories: created, or kept when a directory (or a symlink to one: tar-rs
  follows it and sets the mode of its target) is there; mode ``& 0o777``.
  tar-rs sets no directory mtime. A non-directory in the way fails.
- Character/block devices and FIFOs: tar-rs has no case for them and
  writes them as empty regular files (mode, mtime as files). ``mknod=True``
  creates the nodes instead, skipping (with a warning) those not permitted.
- Ownership and xattrs are not applied: everything belongs to the unpacking
  process.
- Path length: tar-rs hands the kernel ``/<name>``, which it refuses from
  :data:`PATH_MAX` (4096) bytes on (``ENAMETOOLONG``). An entry whose
  ``/<name>`` (or a hard link whose target path) is that long fails with
  :class:`UnpackOSError` (:class:`LinkTargetError`) naming the member, before
  anything of it is created. That bounds the depth of a name at 2048.

Cost: every step works on directory descriptors (the entry's parent, resolved
afresh by :class:`~hats.stage1.rootpath.Root`, which starts below the
directory its last walk reached), never on a host path: an entry costs a
walk of the components it does not share with the one before it (plus the
targets of the symlinks it goes through), so unpacking is linear in the
archive, however deep. An entry in the same directory, as spelled, as the
one before it reuses that directory's descriptor and checks
(:meth:`_Unpacker._enter_parent` says why that is exact): a file then costs
its create, write, times, mode and close, about five system calls instead of
thirty, which under emulation decides how fast stage1 unpacks. The host
path of ``dest`` plays no part in the length limit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hats.archive import tarformat as tf
from hats.archive.compress import open_decompressed
from hats.archive.tarformat import Member
from hats.archive.tarstream import Readable, TarReader
from hats.image.tree import normalize
from hats.stage1.errors import (
    EntryConflictError,
    LinkTargetError,
    UnpackError,
    UnpackOSError,
    UnresolvablePathError,
)
from hats.stage1.rootpath import Root

DATA_CHUNK = 1 << 20
_NODE_TYPES = {tf.CHRTYPE: stat.S_IFCHR, tf.BLKTYPE: stat.S_IFBLK, tf.FIFOTYPE: stat.S_IFIFO}
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_WALK_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Linux ``PATH_MAX``: the kernel refuses a path of this many bytes or more
#: (``ENAMETOOLONG``), and tar-rs hands it ``/<name>``.
PATH_MAX = 4096


@dataclass
class UnpackReport:
    """What :func:`unpack_image` did."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    devices: int = 0
    skipped: int = 0
    root_entries: int = 0
    devices_skipped: int = 0
    bytes: int = 0
    skipped_names: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def members(self) -> int:
        """Every archive member seen (meta headers not counted)."""
        return (
            self.files
            + self.dirs
            + self.symlinks
            + self.hardlinks
            + self.devices
            + self.skipped
            + self.root_entries
            + self.devices_skipped
        )

    def to_json(self) -> dict[str, object]:
        return {
            "files": self.files,
            "dirs": self.dirs,
            "symlinks": self.symlinks,
            "hardlinks": self.hardlinks,
            "devices": self.devices,
            "skipped": self.skipped,
            "root_entries": self.root_entries,
            "devices_skipped": self.devices_skipped,
            "bytes": self.bytes,
            "skipped_names": list(self.skipped_names),
            "warnings": list(self.warnings),
        }


def _mtime(member: Member) -> int:
    """tar-rs turns a zero mtime into 1 ("some tools don't ingest them well")."""
    seconds = int(member.mtime)
    return 1 if seconds == 0 else seconds


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


class _Unpacker:
    def __init__(self, reader: TarReader, dest: str, mknod: bool) -> None:
        self.reader = reader
        self.root = Root(dest)
        self.mknod = mknod
        self.report = UnpackReport()
        # The parent directory of the last entry, as the archive spells it, and
        # an ``O_PATH`` descriptor of it (see :meth:`_enter_parent`).
        self._parent_key: list[str] | None = None
        self._parent_fd = -1

    # -- helpers --------------------------------------------------------

    def _where(self, member: Member, offset: int) -> str:
        return f"{self.reader.source}: member {member.name!r} (header at byte {offset})"

    @staticmethod
    def _show(parts: list[str]) -> str:
        return "/" + "/".join(parts)

    def _check_length(
        self, path: str, what: str, member: Member, offset: int, error: type[UnpackError]
    ) -> None:
        """The kernel's ``ENAMETOOLONG`` for a path of ``PATH_MAX`` bytes or more."""
        size = len(os.fsencode(path))
        if size >= PATH_MAX:
            raise error(
                f"{self._where(member, offset)}: {what} is {size} bytes, the limit is "
                f"{PATH_MAX - 1} (PATH_MAX): {os.strerror(errno.ENAMETOOLONG)}"
            )

    def _os_error(self, member: Member, offset: int, doing: str, exc: OSError) -> UnpackOSError:
        return UnpackOSError(f"{self._where(member, offset)}: {doing}: {_why(exc)}")

    def _canonical(
        self,
        parts: list[str],
        member: Member,
        offset: int,
        error: type[UnpackError] = UnresolvablePathError,
    ) -> list[str]:
        """tar-rs ``validate_inside_dst``: ``canonicalize`` (must exist, all symlinks
        followed); inside the root by construction."""
        try:
            return self.root.resolve(parts, follow_final=True, strict=True)
        except OSError as exc:
            raise error(
                f"{self._where(member, offset)}: cannot resolve {self._show(parts)}: {_why(exc)}"
            ) from None

    def _ensure_parent(self, parent: list[str], member: Member, offset: int) -> None:
        """tar-rs ``ensure_dir_created``: create the missing ancestors, top down.

        The deepest ancestor that exists (``symlink_metadata``) is found in one
        walk; the missing ones below it are made one inside the other.
        """
        depth = self.root.existing(parent)
        if depth == len(parent):
            return
        above = self._canonical(parent[:depth], member, offset)
        end = depth + 1
        try:
            fd = self.root.open_dir(above)
            try:
                for end in range(depth + 1, len(parent) + 1):
                    os.mkdir(parent[end - 1], dir_fd=fd)
                    child = os.open(parent[end - 1], _WALK_FLAGS, dir_fd=fd)
                    os.close(fd)
                    fd = child
            finally:
                os.close(fd)
        except (FileExistsError, NotADirectoryError):
            raise EntryConflictError(
                f"{self._where(member, offset)}: cannot create directory "
                f"{self._show(parent[:end])}: a non-directory is in the way"
            ) from None
        except OSError as exc:
            raise self._os_error(
                member, offset, f"creating {self._show(parent[:end])}", exc
            ) from None

    def _forget_parent(self) -> None:
        """Drop the remembered parent (after anything that could change how a
        path resolves: a removal, a directory's mode)."""
        self._parent_key = None
        if self._parent_fd >= 0:
            os.close(self._parent_fd)
            self._parent_fd = -1

    def _enter_parent(self, parent: list[str], member: Member, offset: int) -> None:
        """tar-rs's checks of an entry's parent (``ensure_dir_created``, then
        ``validate_inside_dst`` and "is a directory"), skipped when the entry
        has the same parent, spelled the same, as the entry before it.

        Skipping them does not change what happens: the parent resolved to a
        directory then, and nothing since could make it resolve elsewhere.
        Stage1 only adds names; a name that existed is only replaced after
        :meth:`_unlink_existing`, and symlink targets never change, so the same
        components still lead to the same directory; what could change a
        lookup (a removal, a directory's mode) forgets the parent. It cuts the
        lookups of a file in the same directory as the one before from about
        thirty system calls to none, which under emulation is most of the
        unpacking time.
        """
        if self._parent_key == parent:
            return
        self._forget_parent()
        self._ensure_parent(parent, member, offset)
        canonical = self._canonical(parent, member, offset)
        try:
            fd = self.root.open_dir(canonical)  # no symlink left: a directory or an error
        except OSError:
            raise EntryConflictError(
                f"{self._where(member, offset)}: {self._show(parent)} is not a directory: "
                "stage1 fails"
            ) from None
        self._parent_key, self._parent_fd = list(parent), fd

    @contextlib.contextmanager
    def _parent_of(self, parts: list[str]) -> Iterator[int]:
        """A descriptor of the directory holding ``parts[-1]``, resolved *now*
        (tar-rs hands the kernel ``/<path>`` for every call, so each call
        resolves it afresh; the remembered parent of :meth:`_enter_parent` is
        that same directory). ``OSError`` when it does not resolve."""
        if self._parent_key is not None and parts[:-1] == self._parent_key:
            yield self._parent_fd
            return
        fd = self.root.open_dir(parts[:-1])
        try:
            yield fd
        finally:
            os.close(fd)

    def _stat_resolved(self, parts: list[str]) -> os.stat_result:
        """``lstat`` of already-resolved components (the root itself for none)."""
        if not parts:
            return os.stat(self.root.path)
        with self._parent_of(parts) as fd:
            return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)

    def _is_dir(self, parts: list[str]) -> bool:
        try:
            return stat.S_ISDIR(self._stat_resolved(parts).st_mode)
        except OSError:
            return False

    def _fail(self, member: Member, offset: int, doing: str, exc: OSError) -> UnpackError:
        """Map an ``OSError`` of a step to the error class of its kind."""
        if isinstance(exc, FileNotFoundError | NotADirectoryError) or exc.errno == errno.ELOOP:
            return UnresolvablePathError(f"{self._where(member, offset)}: {doing}: {_why(exc)}")
        return self._os_error(member, offset, doing, exc)

    def _unlink_existing(
        self, parts: list[str], member: Member, offset: int, *, missing_ok: bool
    ) -> None:
        """tar-rs overwrite: ``remove_file`` what is in the way (never a directory).

        For a regular file tar-rs ignores "not found" (the open that follows
        reports it); for a symlink it is an error.
        """
        shown = self._show(parts)
        try:
            with self._parent_of(parts) as fd:
                try:
                    os.unlink(parts[-1], dir_fd=fd)
                except (IsADirectoryError, PermissionError):
                    info = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISDIR(info.st_mode):
                        raise EntryConflictError(
                            f"{self._where(member, offset)}: {shown} is a directory and a "
                            f"{member.kind} cannot replace it: stage1 fails"
                        ) from None
                    raise
            self.root.forget()
            self._forget_parent()
        except FileNotFoundError as exc:
            if missing_ok:
                return
            raise self._fail(member, offset, f"removing {shown}", exc) from None
        except PermissionError as exc:
            raise self._os_error(member, offset, f"removing {shown}", exc) from None
        except OSError as exc:
            raise self._fail(member, offset, f"removing {shown}", exc) from None

    # -- entries --------------------------------------------------------

    def unpack_in(self, member: Member, offset: int) -> None:
        rel = normalize(member.name)
        if rel is None:
            self.report.skipped += 1
            self.report.skipped_names.append(member.name)
            return
        if rel == "":
            self.report.root_entries += 1
            return
        self._check_length("/" + rel, "path", member, offset, UnpackOSError)
        parts = rel.split("/")
        self._enter_parent(parts[:-1], member, offset)
        kind = member.type
        if kind == tf.DIRTYPE:
            self._directory(member, offset, parts)
        elif kind == tf.SYMTYPE:
            self._symlink(member, offset, parts)
        elif kind == tf.LNKTYPE:
            self._hardlink(member, offset, parts)
        elif kind in _NODE_TYPES and self.mknod:
            self._node(member, offset, parts)
        else:
            self._file(member, offset, parts)

    def _directory(self, member: Member, offset: int, parts: list[str]) -> None:
        shown = self._show(parts)
        where = parts
        try:
            with self._parent_of(parts) as fd:
                os.mkdir(parts[-1], dir_fd=fd)
        except FileExistsError:
            # tar-rs: ``fs::metadata`` (a symlink followed) must say "directory";
            # ``set_permissions`` then follows it too.
            try:
                where = self.root.resolve(parts, follow_final=True, strict=True)
            except OSError:
                where = parts
            else:
                if self._is_dir(where):
                    self._chmod(member, offset, where)
                    return
            raise EntryConflictError(
                f"{self._where(member, offset)}: {shown} exists and is not a directory: "
                "stage1 fails"
            ) from None
        except OSError as exc:
            raise self._fail(member, offset, f"creating {shown}", exc) from None
        self._chmod(member, offset, where)

    def _chmod(self, member: Member, offset: int, where: list[str]) -> None:
        """The directory's mode (``where`` is followed, as ``set_permissions``)."""
        try:
            if not where:
                os.chmod(self.root.path, member.mode & 0o777)
            else:
                with self._parent_of(where) as fd:
                    os.chmod(where[-1], member.mode & 0o777, dir_fd=fd)
        except OSError as exc:
            raise self._fail(member, offset, f"chmod {self._show(where)}", exc) from None
        finally:
            self._forget_parent()  # a directory's mode can decide a later lookup
        self.report.dirs += 1

    def _symlink(self, member: Member, offset: int, parts: list[str]) -> None:
        shown = self._show(parts)
        if not member.linkname:
            raise LinkTargetError(f"{self._where(member, offset)}: symlink destination is empty")
        name = parts[-1]
        try:
            try:
                with self._parent_of(parts) as fd:
                    os.symlink(member.linkname, name, dir_fd=fd)
            except FileExistsError:
                self._unlink_existing(parts, member, offset, missing_ok=False)
                with self._parent_of(parts) as fd:
                    os.symlink(member.linkname, name, dir_fd=fd)
            seconds = _mtime(member)
            with self._parent_of(parts) as fd:
                os.utime(name, (seconds, seconds), dir_fd=fd, follow_symlinks=False)
        except OSError as exc:
            raise self._fail(member, offset, f"symlink {shown}", exc) from None
        self.report.symlinks += 1

    def _hardlink(self, member: Member, offset: int, parts: list[str]) -> None:
        shown = self._show(parts)
        if not member.linkname:
            raise LinkTargetError(f"{self._where(member, offset)}: hard link destination is empty")
        absolute = member.linkname if member.linkname.startswith("/") else "/" + member.linkname
        self._check_length(absolute, "hard link target", member, offset, LinkTargetError)
        target = member.linkname.split("/")
        self._canonical(target, member, offset, LinkTargetError)
        try:
            source = self.root.resolve(target, follow_final=False, strict=True)
            with contextlib.ExitStack() as stack:
                if source:
                    source_fd = stack.enter_context(self._parent_of(source))
                    source_name = source[-1]
                else:  # the root: a directory, which link() refuses
                    source_fd, source_name = -1, self.root.path
                fd = stack.enter_context(self._parent_of(parts))
                os.link(
                    source_name,
                    parts[-1],
                    src_dir_fd=source_fd if source else None,
                    dst_dir_fd=fd,
                    follow_symlinks=False,
                )
        except FileExistsError:
            raise EntryConflictError(
                f"{self._where(member, offset)}: {shown} already exists and tar-rs does not "
                "replace a path with a hard link: stage1 fails"
            ) from None
        except (PermissionError, IsADirectoryError) as exc:
            raise LinkTargetError(
                f"{self._where(member, offset)}: cannot hard link to {member.linkname!r}: "
                f"{_why(exc)}"
            ) from None
        except OSError as exc:
            raise self._fail(member, offset, f"hard link {shown}", exc) from None
        self.report.hardlinks += 1

    def _create(self, parts: list[str]) -> int:
        with self._parent_of(parts) as fd:
            return os.open(parts[-1], _CREATE_FLAGS, 0o666, dir_fd=fd)

    def _open_new(self, member: Member, offset: int, parts: list[str]) -> int:
        shown = self._show(parts)
        try:
            return self._create(parts)
        except FileExistsError:
            self._unlink_existing(parts, member, offset, missing_ok=True)
        except OSError as exc:
            raise self._fail(member, offset, f"creating {shown}", exc) from None
        try:
            return self._create(parts)
        except OSError as exc:
            raise self._fail(member, offset, f"creating {shown}", exc) from None

    def _file(self, member: Member, offset: int, parts: list[str]) -> None:
        fd = self._open_new(member, offset, parts)
        try:
            written = 0
            for chunk in self.reader.chunks(DATA_CHUNK):
                _write_all(fd, chunk)
                written += len(chunk)
            seconds = _mtime(member)
            os.utime(fd, (seconds, seconds))
            os.fchmod(fd, member.mode & 0o777)
        except OSError as exc:
            raise self._os_error(member, offset, f"writing {self._show(parts)}", exc) from None
        finally:
            os.close(fd)
        self.report.bytes += written
        if member.type in _NODE_TYPES:
            self.report.devices += 1
        else:
            self.report.files += 1

    def _node(self, member: Member, offset: int, parts: list[str]) -> None:
        shown = self._show(parts)
        node_type = _NODE_TYPES[member.type]
        device = os.makedev(member.devmajor, member.devminor) if node_type != stat.S_IFIFO else 0
        name = parts[-1]
        try:
            try:
                with self._parent_of(parts) as fd:
                    os.mknod(name, node_type | 0o600, device, dir_fd=fd)
            except FileExistsError:
                self._unlink_existing(parts, member, offset, missing_ok=False)
                with self._parent_of(parts) as fd:
                    os.mknod(name, node_type | 0o600, device, dir_fd=fd)
        except PermissionError:
            self.report.devices_skipped += 1
            self.report.warnings.append(
                f"{self._where(member, offset)}: {member.kind} not created: mknod not permitted"
            )
            return
        except OSError as exc:
            raise self._fail(member, offset, f"mknod {shown}", exc) from None
        try:
            with self._parent_of(parts) as fd:
                os.chmod(name, member.mode & 0o777, dir_fd=fd)
                seconds = _mtime(member)
                os.utime(name, (seconds, seconds), dir_fd=fd, follow_symlinks=False)
        except OSError as exc:
            raise self._fail(member, offset, f"chmod {shown}", exc) from None
        self.report.devices += 1

    # -- the whole archive ------------------------------------------------

    def run(self) -> UnpackReport:
        deferred: list[tuple[Member, int]] = []
        with self.root, contextlib.ExitStack() as stack:
            stack.callback(self._forget_parent)
            for member in self.reader:
                offset = self.reader.offset - tf.BLOCK
                if member.type == tf.DIRTYPE:
                    deferred.append((member, offset))
                else:
                    self.unpack_in(member, offset)
            # tar-rs 0.4.44 (upstream-facts F4): by raw path bytes, descending, stable.
            deferred.sort(key=lambda item: tf.path_bytes(item[0]), reverse=True)
            for member, offset in deferred:
                self.unpack_in(member, offset)
        return self.report


def _prepare_dest(dest: Path) -> str:
    """tar-rs: create ``dest`` when missing, then work on its canonical path."""
    try:
        if not os.path.lexists(dest):
            os.makedirs(dest)
        canonical = os.path.realpath(dest, strict=True)
    except OSError as exc:
        raise UnpackOSError(f"{dest}: cannot use as destination: {exc.strerror or exc}") from None
    if not os.path.isdir(canonical):
        raise UnpackOSError(f"{dest}: destination is not a directory")
    return canonical


def unpack_image(
    source: Readable,
    dest: Path,
    *,
    source_name: str = "system image",
    mknod: bool = False,
) -> UnpackReport:
    """Unpack the (decompressed) tar stream ``source`` into ``dest`` like stage1.

    Constant memory: file data is streamed; only the directory entries are kept
    until the end. Raises a :class:`~hats.stage1.errors.UnpackError` where
    stage1 would fail (and :class:`~hats.archive.tarformat.TarFormatError` for a
    malformed archive); what was written until then stays.
    """
    reader = TarReader(source, source_name)
    return _Unpacker(reader, _prepare_dest(Path(dest)), mknod).run()


def unpack_image_file(image: Path, dest: Path, *, mknod: bool = False) -> UnpackReport:
    """:func:`unpack_image` of an image file (``.tar``, ``.tar.xz``, …, detected by content)."""
    with open_decompressed(image) as stream:
        return unpack_image(stream, dest, source_name=str(image), mknod=mknod)
