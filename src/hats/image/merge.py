"""Composition rules of the reference image: rules_pkg 1.0.1 ``pkg_tar``.

Sans-I/O. Two pure state machines describe, member by member, what
``pkg_tar`` writes:

:class:`SubTar` — a ``pkg_tar`` with ``srcs`` and a ``package_dir`` (the HATs
layers ``:admin_bin``, ``:interface``, ``:services``, ``:tvs_public_keys``):

- sources are written in sorted destination order;
- before each file, every missing parent directory is written
  (``create_parents``): mode 0755, uid/gid 0, empty owner names, the
  portable mtime 946684800;
- files get mtime 946684800, uid/gid 0, empty owner names, and the mode
  given (the rule's ``mode``, or 0755 forced for executables).

:class:`DepsMerge` — the top-level ``pkg_tar`` that merges ``deps`` in order
with ``allow_duplicates_from_deps = True`` (``add_tar`` with
``numeric=True``, mtimes preserved):

- every member of every dep is re-emitted in order; owner *names* are
  blanked, numeric ids, modes and mtimes are kept;
- directory names get a trailing ``/``;
- before a member, each prefix of its name up to the last ``/`` that has not
  been written yet (as a member or directory, exact string; ``/`` and ``./``
  count as written) is written as a directory with mode 0755 and the
  member's uid/gid/mtime — so ``usr/`` and ``./usr/`` are different strings;
- duplicates are **not** removed: the override happens when stage1 unpacks
  (the later entry wins), see :mod:`hats.image.tree`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from hats.archive import tarformat as tf
from hats.archive.tarformat import Member


class DepsMerge:
    """The merging top-level ``pkg_tar``: what it writes for each dep member."""

    def __init__(self) -> None:
        self._members: set[str] = set()
        self._directories: set[str] = {"/", "./"}

    def _have(self, path: str) -> bool:
        return path in self._members or path in self._directories

    def _record(self, member: Member) -> None:
        self._members.add(member.name)
        if member.is_dir:
            self._directories.add(member.name)

    def parents(self, member: Member) -> Iterator[Member]:
        """Synthesised parent directories for ``member`` (recorded as written)."""
        parts = member.name.split("/")
        path = ""
        for part in parts[:-1]:
            path += part + "/"
            if not self._have(path):
                parent = Member(
                    name=path,
                    type=tf.DIRTYPE,
                    mode=0o755,
                    uid=member.uid,
                    gid=member.gid,
                    mtime=member.mtime,
                )
                self._record(parent)
                yield parent

    def add(self, member: Member) -> list[Member]:
        """Headers written for one dep member: its missing parents, then itself.

        Returns a normalised copy of ``member`` last; data follows it unchanged.
        """
        member = dataclasses.replace(member, uname="", gname="")
        out = list(self.parents(member))
        if member.is_dir and not member.name.endswith("/"):
            member.name += "/"
        self._record(member)
        out.append(member)
        return out


@dataclass(frozen=True)
class SubTarFile:
    """One source of a ``pkg_tar`` layer: destination path and content."""

    dest: str
    mode: int
    size: int
    type: bytes = tf.REGTYPE
    linkname: str = ""


class SubTar:
    """A ``pkg_tar`` built from sources (``create_parents``, portable mtime)."""

    def __init__(self, mtime: int = tf.PORTABLE_MTIME) -> None:
        self._mtime = mtime
        self._members: set[str] = set()
        self._directories: set[str] = {"/", "./"}

    def members(self, files: Iterable[SubTarFile]) -> Iterator[tuple[Member, SubTarFile | None]]:
        """The sub-tar's members as they read back, with the source of each file.

        Directory names are given without their trailing ``/``, as a reader
        of the sub-tar sees them.
        """
        for src in sorted(files, key=lambda f: f.dest):
            parts = src.dest.split("/")
            path = ""
            for part in parts[:-1]:
                path += part + "/"
                if path not in self._members and path not in self._directories:
                    self._members.add(path)
                    self._directories.add(path)
                    yield (
                        Member(
                            name=path.rstrip("/"), type=tf.DIRTYPE, mode=0o755, mtime=self._mtime
                        ),
                        None,
                    )
            name = src.dest
            if src.type == tf.DIRTYPE:
                self._directories.add(name + "/")
                self._members.add(name + "/")
            else:
                self._members.add(name)
            yield (
                Member(
                    name=name,
                    type=src.type,
                    mode=src.mode,
                    size=src.size if src.type in tf.REGULAR_TYPES else 0,
                    mtime=self._mtime,
                    linkname=src.linkname,
                ),
                src,
            )
