"""Path resolution inside a root directory, as the kernel does after ``chroot(root)``.

Oak stage1 chroots into the new root before unpacking, so for it an absolute
symlink target is relative to the image's root and ``..`` stops at that
root. Our stage1 unpacks into a directory (``/rootfs``) and switches root
afterwards, so it resolves paths here, component by component, with the same
rules: the result is always a host path inside the root, whatever the image's
symlinks say.
"""

from __future__ import annotations

import errno
import os
import stat

MAX_SYMLINK_HOPS = 40  # the kernel's limit (ELOOP)


def split(path: str) -> list[str]:
    """The components of a path inside the root (``""`` and ``.`` dropped)."""
    return [part for part in path.split("/") if part not in ("", ".")]


class Root:
    """A directory used as ``/`` for path resolution."""

    def __init__(self, path: str) -> None:
        self.path = path.rstrip("/") or "/"

    def host(self, parts: list[str]) -> str:
        """The host path of already-resolved components."""
        if not parts:
            return self.path
        return os.path.join(self.path, *parts)

    def resolve(self, parts: list[str], *, follow_final: bool, strict: bool) -> list[str]:
        """Resolve ``parts`` (relative to the root) to components free of symlinks.

        Symlinks in every component but the last are followed (absolute targets
        from the root, ``..`` never above it); the last one too when
        ``follow_final``. With ``strict`` the last component must exist, else it
        is returned as is. Raises ``OSError`` (``ENOENT``, ``ENOTDIR``, ``ELOOP``)
        as the kernel would.
        """
        pending = list(reversed(parts))
        done: list[str] = []
        hops = 0
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            final = not pending
            candidate = [*done, part]
            host = self.host(candidate)
            try:
                info = os.lstat(host)
            except FileNotFoundError:
                if final and not strict:
                    return candidate
                raise
            if stat.S_ISLNK(info.st_mode) and (follow_final or not final):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), host)
                target = os.readlink(host)
                if not target:
                    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), host)
                if target.startswith("/"):
                    done = []
                pending.extend(reversed(target.split("/")))
                continue
            if not final and not stat.S_ISDIR(info.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), host)
            done = candidate
        return done

    def lexists(self, parts: list[str]) -> bool:
        """``symlink_metadata(path).is_ok()`` inside the root."""
        try:
            self.resolve(parts, follow_final=False, strict=True)
        except OSError:
            return False
        return True
