"""Path resolution inside a root directory, as the kernel does after ``chroot(root)``.

Oak stage1 chroots into the new root before unpacking, so for it an absolute
symlink target is relative to the image's root and ``..`` stops at that
root. Our stage1 unpacks into a directory (``/rootfs``) and switches root
afterwards, so it resolves paths here, component by component, with the same
rules: the result is always a host path inside the root, whatever the image's
symlinks say.

Cost: a walk holds one ``O_PATH`` descriptor of the directory it is in and
looks each component up relative to it (``..`` is that directory's parent),
so resolving costs one lookup per component walked (the path's own, and those
of the at most :data:`MAX_SYMLINK_HOPS` symlink targets it follows), never
one full path per component. A :class:`Root` also remembers the directories its
last walk went through (real directories, entered with ``O_NOFOLLOW``: a chain
free of symlinks) and starts the next walk below the longest of them that the
new path begins with: unpacking an archive in its order (siblings together, a
directory before what is in it) then looks up only the new components of each
path. Stage1 never removes a directory, so that memory cannot go stale; who
removes or renames one inside the root calls :meth:`Root.forget`.
"""

from __future__ import annotations

import errno
import os
import stat

MAX_SYMLINK_HOPS = 40  # the kernel's limit (ELOOP)
_O_WALK = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def split(path: str) -> list[str]:
    """The components of a path inside the root (``""`` and ``.`` dropped)."""
    return [part for part in path.split("/") if part not in ("", ".")]


class _Walk:
    """One resolution in progress: the directory reached (``done``, real
    directories from the root, and an ``O_PATH`` descriptor of it) and the
    symlinks followed so far."""

    def __init__(self, root: Root, start: list[str], fd: int) -> None:
        self.root = root
        self.done = start
        self.hops = 0
        self.fd = fd  # owned

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _move(self, fd: int) -> None:
        os.close(self.fd)
        self.fd = fd

    def enter(self, name: str) -> None:
        """Step into the directory ``name`` (no symlink: checked by the caller)."""
        self._move(os.open(name, _O_WALK, dir_fd=self.fd))
        self.done.append(name)

    def up(self) -> None:
        """``..``: never above the root."""
        if self.done:
            self._move(os.open("..", _O_WALK, dir_fd=self.fd))
            self.done.pop()

    def consume(
        self, parts: list[str], *, follow_final: bool, strict: bool, enter_final: bool
    ) -> str | None:
        """Walk ``parts`` from where the walk is.

        Returns the final component, not entered (``None`` when the walk ended
        on a directory it is in: the root, ``..``, or ``enter_final``).
        """
        pending = list(reversed(parts))
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                self.up()
                continue
            final = not pending
            try:
                info = os.stat(part, dir_fd=self.fd, follow_symlinks=False)
            except FileNotFoundError:
                if final and not strict and not enter_final:
                    return part
                raise FileNotFoundError(
                    errno.ENOENT, os.strerror(errno.ENOENT), self.root.host([*self.done, part])
                ) from None
            if stat.S_ISLNK(info.st_mode) and (follow_final or enter_final or not final):
                self.hops += 1
                if self.hops > MAX_SYMLINK_HOPS:
                    raise OSError(
                        errno.ELOOP, os.strerror(errno.ELOOP), self.root.host([*self.done, part])
                    )
                target = os.readlink(part, dir_fd=self.fd)
                if not target:
                    raise FileNotFoundError(
                        errno.ENOENT, os.strerror(errno.ENOENT), self.root.host([*self.done, part])
                    )
                if target.startswith("/"):
                    self._move(os.open(self.root.path, _O_WALK & ~os.O_NOFOLLOW))
                    self.done = []
                pending.extend(reversed(target.split("/")))
                continue
            if final and not enter_final:
                return part
            if not stat.S_ISDIR(info.st_mode):
                raise NotADirectoryError(
                    errno.ENOTDIR, os.strerror(errno.ENOTDIR), self.root.host([*self.done, part])
                )
            self.enter(part)
        return None


class Root:
    """A directory used as ``/`` for path resolution."""

    def __init__(self, path: str) -> None:
        self.path = path.rstrip("/") or "/"
        self._known: list[str] = []
        self._known_fd = -1

    def close(self) -> None:
        """Close the descriptor of the remembered directory."""
        self.forget()

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def host(self, parts: list[str]) -> str:
        """The host path of already-resolved components."""
        if not parts:
            return self.path
        return self.path + ("/" if self.path != "/" else "") + "/".join(parts)

    def forget(self) -> None:
        """Forget the directory of the last walk (after removing or renaming one)."""
        self._known = []
        if self._known_fd >= 0:
            os.close(self._known_fd)
            self._known_fd = -1

    def _start(self, parts: list[str]) -> _Walk:
        """A walk that starts in the deepest remembered directory ``parts`` begins
        with (never at its final component, which the caller's rules decide)."""
        known = self._known
        limit = max(0, min(len(known), len(parts) - 1))
        shared = limit
        if parts[:limit] != known[:limit]:
            low, high = 0, limit - 1  # the longest equal prefix, by halving
            while low < high:
                middle = (low + high + 1) // 2
                if parts[:middle] == known[:middle]:
                    low = middle
                else:
                    high = middle - 1
            shared = low
        if shared:
            fd = os.dup(self._known_fd)
            try:
                for _ in range(len(known) - shared):
                    parent = os.open("..", _O_WALK, dir_fd=fd)
                    os.close(fd)
                    fd = parent
            except OSError:
                os.close(fd)
            else:
                return _Walk(self, parts[:shared], fd)
        return _Walk(self, [], os.open(self.path, _O_WALK & ~os.O_NOFOLLOW))

    def _remember(self, walk: _Walk) -> None:
        """Keep the directory the walk ended in (the walk gives up its descriptor)."""
        self.forget()
        self._known, self._known_fd = walk.done, walk.fd
        walk.fd = -1

    def resolve(self, parts: list[str], *, follow_final: bool, strict: bool) -> list[str]:
        """Resolve ``parts`` (relative to the root) to components free of symlinks.

        Symlinks in every component but the last are followed (absolute targets
        from the root, ``..`` never above it); the last one too when
        ``follow_final``. With ``strict`` the last component must exist, else it
        is returned as is. Raises ``OSError`` (``ENOENT``, ``ENOTDIR``, ``ELOOP``)
        as the kernel would.
        """
        walk = self._start(parts)
        try:
            skip = len(walk.done)
            final = walk.consume(
                parts[skip:], follow_final=follow_final, strict=strict, enter_final=False
            )
            done = list(walk.done)
            self._remember(walk)
            return done if final is None else [*done, final]
        finally:
            walk.close()

    def open_dir(self, parts: list[str]) -> int:
        """An ``O_PATH`` descriptor (the caller closes it) of the directory ``parts``
        names, every symlink followed. Raises ``OSError`` as :meth:`resolve`, and
        ``ENOTDIR`` when it is not a directory."""
        walk = self._start(parts)
        try:
            walk.consume(parts[len(walk.done) :], follow_final=True, strict=True, enter_final=True)
            self._remember(walk)
            return os.dup(self._known_fd)
        finally:
            walk.close()

    def existing(self, parts: list[str]) -> int:
        """How many leading components of ``parts`` exist: the largest ``k`` for which
        ``parts[:k]`` exists as ``symlink_metadata`` sees it (the final component
        not followed). ``parts`` holds plain names (no ``..``)."""
        if not parts:
            return 0
        walk = self._start(parts)
        try:
            count = len(walk.done)
            while count < len(parts):
                part = parts[count]
                last = count == len(parts) - 1
                try:
                    os.stat(part, dir_fd=walk.fd, follow_symlinks=False)
                except OSError:
                    break
                count += 1
                if last:
                    break
                try:
                    walk.consume([part], follow_final=True, strict=True, enter_final=True)
                except OSError:
                    break  # parts[:count] exists, what is below it cannot
            self._remember(walk)
            return count
        finally:
            walk.close()

    def lexists(self, parts: list[str]) -> bool:
        """``symlink_metadata(path).is_ok()`` inside the root."""
        try:
            self.resolve(parts, follow_final=False, strict=True)
        except OSError:
            return False
        return True
