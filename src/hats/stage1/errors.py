"""The stage1 errors: one base, one class per kind of failure.

Messages name the archive member (and its byte offset) or the path at fault.
"""

from __future__ import annotations

from hats.errors import HatsError


class Stage1Error(HatsError):
    """Base of every stage1 failure."""


class UnpackError(Stage1Error):
    """Base of the failures that stop unpacking the image (stage1 fails too)."""


class EntryConflictError(UnpackError):
    """The path an entry names is in the way: a directory where a non-directory goes,
    a non-directory where a directory goes or under a parent, or a hard link over an
    existing path (tar-rs does not replace those)."""


class UnresolvablePathError(UnpackError):
    """A parent of an entry cannot be resolved inside the root: a dangling symlink
    (for example one pointing outside the image), a loop. tar-rs: "… while
    canonicalizing"."""


class LinkTargetError(UnpackError):
    """A symlink or hard link with an empty target, or a hard link whose target is
    missing or cannot be linked (a directory)."""


class UnpackOSError(UnpackError):
    """Any other operating-system failure while writing the tree (no space, …)."""


class FinishError(Stage1Error):
    """Base of the failures of the after-unpack steps."""


class MachineIdError(FinishError):
    """``/etc/machine-id`` was missing and could not be created."""


class OakDirExistsError(FinishError):
    """``/oak`` exists after unpacking: the image must not contain ``/oak``."""


class OakDirError(FinishError):
    """``/oak`` could not be created for another reason."""


class DiceWriteError(FinishError):
    """``/oak/dice`` could not be written."""


class DockerenvError(FinishError):
    """``/.dockerenv`` exists but could not be removed (a directory, …)."""


class CmdlineError(Stage1Error):
    """Stage1's arguments are malformed: a missing or repeated value, a bad number."""


class LauncherAddrError(CmdlineError):
    """``--launcher-addr`` is not a URI that stage1 (tonic's ``Uri``) accepts."""


class Stage0HandoffError(Stage1Error):
    """Stage0's DICE hand-off (``--oak-dice`` …) is incomplete, not E820-reserved, unreadable,
    or its ``OakProto`` region has a wrong magic, length or proto."""
