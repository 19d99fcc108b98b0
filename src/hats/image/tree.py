"""The effective tree: what Oak stage1 leaves on disk after unpacking an image.

Sans-I/O. Stage1 unpacks with the Rust ``tar`` crate's defaults, so:

- names are split on ``/``; empty and ``.`` components are dropped (a
  leading ``/`` or ``./`` means nothing); an entry with a ``..`` component is
  **skipped**; an entry that names only the root (``./``) changes nothing;
- later entries replace earlier ones at the same path (``overwrite``);
- modes are applied as ``mode & 0o777``: setuid, setgid and sticky bits are
  lost; ownership in the archive is ignored (everything is root's);
- directory entries are applied after all other entries, sorted by their
  raw path bytes (the archive's spelling, :func:`hats.archive.tarformat.path_bytes`)
  in descending order, stable — tar-rs 0.4.44, the version Oak's stage1 is
  built with (upstream-facts F4). So of the directory entries for one path,
  the one with the smallest spelling sets the mode (``./etc/`` beats
  ``etc/`` wherever each stands), and among equal spellings the last in the
  archive; a later entry that loses this way is recorded in
  :attr:`EffectiveTree.sorting_overrides`;
- a hard link is a new name for the file its target names *at that point*
  of the unpacking (so it has the target's content then).

:class:`EffectiveTree` is fed the merged archive's members in order and keeps,
for every path, the entry that wins and the layers of the entries it
replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hats.archive import tarformat as tf
from hats.archive.tarformat import Member


def normalize(name: str) -> str | None:
    """The path stage1 writes for an archive name: ``""`` for the root,
    ``None`` when the entry is skipped (``..``)."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    return "/".join(parts)


@dataclass
class Entry:
    """The winning archive entry for one path of the effective tree."""

    path: str
    kind: str
    mode: int
    raw_mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    layer: str
    name: str
    linkname: str = ""
    sha256: str | None = None
    devmajor: int = 0
    devminor: int = 0
    overrides: list[str] = field(default_factory=list)
    head: bytes = b""
    data: bytes | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "path": "/" + self.path,
            "type": self.kind,
            "mode": f"{self.mode:04o}",
            "uid": self.uid,
            "gid": self.gid,
            "size": self.size,
            "layer": self.layer,
        }
        if self.raw_mode & 0o7000:
            out["archive_mode"] = f"{self.raw_mode:04o}"
        if self.sha256 is not None:
            out["sha256"] = self.sha256
        if self.linkname:
            out["link"] = self.linkname
        if self.kind in ("chardev", "blockdev"):
            out["device"] = [self.devmajor, self.devminor]
        if self.overrides:
            out["overrides"] = list(self.overrides)
        return out


@dataclass
class Problem:
    """Something about an entry that stage1 would not unpack as written."""

    name: str
    layer: str
    message: str


class EffectiveTree:
    """Accumulate archive members into the tree stage1 would produce."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.unsafe_names: list[Problem] = []
        self.conflicts: list[Problem] = []
        self.sorting_overrides: list[Problem] = []
        """Directory entries later in the archive whose mode tar-rs 0.4.44's sorting
        overrides with an earlier entry's (a different spelling of the same path)."""
        self.member_count = 0
        self._dir_keys: dict[str, bytes] = {}

    def add(
        self,
        member: Member,
        layer: str,
        sha256: str | None = None,
        head: bytes = b"",
        data: bytes | None = None,
    ) -> None:
        """Apply one archive member.

        For regular files: ``sha256`` of the data, its first bytes (``head``)
        and, for the small files worth keeping (units, key file), all of it.
        """
        self.member_count += 1
        path = normalize(member.name)
        if path is None:
            self.unsafe_names.append(Problem(member.name, layer, "contains '..': stage1 skips it"))
            return
        if member.name.startswith("/"):
            self.unsafe_names.append(
                Problem(member.name, layer, "absolute name: other unpackers write outside the root")
            )
        if path == "":
            return
        entry = Entry(
            path=path,
            kind=member.kind,
            mode=member.mode & 0o777,
            raw_mode=member.mode & 0o7777,
            uid=member.uid,
            gid=member.gid,
            size=member.size if member.is_regular else 0,
            mtime=int(member.mtime),
            layer=layer,
            name=member.name,
            linkname=member.linkname,
            sha256=sha256,
            devmajor=member.devmajor,
            devminor=member.devminor,
            head=head,
            data=data,
        )
        if member.type == tf.LNKTYPE:
            target = normalize(member.linkname)
            source = self.entries.get(target) if target else None
            if source is None or source.kind != "file":
                self.conflicts.append(
                    Problem(
                        member.name,
                        layer,
                        f"hard link target {member.linkname!r} is not a "
                        "file unpacked before it: stage1 fails",
                    )
                )
            else:
                entry.size = source.size
                entry.sha256 = source.sha256
                entry.head = source.head
                entry.data = source.data
        if member.is_dir:
            previous = self.entries.get(path)
            if previous is not None and previous.kind != "dir":
                self.conflicts.append(
                    Problem(
                        member.name,
                        layer,
                        f"directory replaces a {previous.kind} from "
                        f"layer {previous.layer}: stage1 fails",
                    )
                )
                return
            key = tf.path_bytes(member)
            if previous is not None and key > self._dir_keys[path]:
                # Applied before the earlier entry by the sort: that one's mode stays.
                previous.overrides.append(layer)
                if entry.mode != previous.mode:
                    self.sorting_overrides.append(
                        Problem(
                            member.name,
                            layer,
                            f"mode {entry.mode:04o} is overridden by {previous.name!r}"
                            f" (mode {previous.mode:04o}, layer {previous.layer}): stage1's"
                            " tar-rs 0.4.44 applies directory entries sorted by name,"
                            f" descending, so {previous.name!r} comes last",
                        )
                    )
                return
            self._dir_keys[path] = key
        else:
            previous = self.entries.get(path)
            if previous is not None and previous.kind == "dir":
                self.conflicts.append(
                    Problem(
                        member.name,
                        layer,
                        f"{entry.kind} replaces a directory from layer {previous.layer}",
                    )
                )
        if previous is not None:
            entry.overrides = [*previous.overrides, previous.layer]
        self.entries[path] = entry

    def lookup(self, path: str) -> Entry | None:
        norm = normalize(path)
        return self.entries.get(norm) if norm else None

    def resolve(self, path: str, limit: int = 40) -> Entry | None:
        """Follow symbolic links (within the tree) to the entry ``path`` names."""
        norm = normalize(path)
        if norm is None:
            return None
        parts = norm.split("/") if norm else []
        done: list[str] = []
        hops = 0
        while parts:
            done.append(parts.pop(0))
            entry = self.entries.get("/".join(done))
            if entry is None:
                if not parts:
                    return None
                continue  # a parent with no entry of its own: unpacking creates it
            if entry.kind == "symlink":
                hops += 1
                if hops > limit:
                    return None
                link = entry.linkname
                base = [] if link.startswith("/") else done[:-1]
                target = normalize("/".join([*base, link])) if ".." not in link else None
                if target is None:
                    target = _resolve_dotdot(base, link)
                parts = (target.split("/") if target else []) + parts
                done = []
        return self.entries.get("/".join(done)) if done else None

    def sorted_entries(self) -> list[Entry]:
        return [self.entries[p] for p in sorted(self.entries)]


def _resolve_dotdot(base: list[str], link: str) -> str:
    parts = list(base)
    for part in link.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)
