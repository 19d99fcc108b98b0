"""Reading the journal through ``journalctl -o json`` (pure parts).

Why journalctl rather than libsystemd (``systemd-python``): the image's
Python has only the standard library and our locked wheels, and
systemd-python has no wheels (it needs libsystemd-dev and a compiler to
build); ``journalctl`` is in every systemd image, reads the same files
through the same library and follows them the same way (``sd_journal_wait``).

:func:`journalctl_command` builds the command line:

- always ``--output=json --all --no-pager --quiet``: one JSON object per
  entry per line, fields of any size (``--all``; without it fields over
  4096 bytes come as ``null``);
- the system journal: ``--namespace=*`` (all namespaces, as the reference's
  ``SD_JOURNAL_ALL_NAMESPACES``) and ``--boot`` (the current boot; off with
  ``all_boots``), from its first entry;
- ``--directory DIR`` or ``--file FILE``… for the tests (every entry in
  them, whatever its boot); journalctl cannot follow ``--file`` (its inotify
  watch needs a directory), so files are read once;
- ``--follow --no-tail`` to follow (``--follow`` alone would start at the
  last 10 entries).

:func:`parse_json_entry` reads one line. journalctl writes a value as a
JSON string when it is printable UTF-8, as an array of byte numbers
otherwise (binary, invalid UTF-8, or text with control characters such as a
newline), and a field that repeats as an array of such values; ``null``
means "not available" and is skipped. Values come back as bytes, in order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hats.errors import HatsError

JournalEntry = dict[str, tuple[bytes, ...]]


class JournalFormatError(HatsError):
    """A line from journalctl that is not a journal entry in its JSON format."""


@dataclass(frozen=True)
class JournalSource:
    """Which journal to read, and whether to follow it."""

    files: tuple[str, ...] = ()
    directory: str | None = None
    all_boots: bool = False
    follow: bool = True
    journalctl: str = "journalctl"

    @property
    def follows(self) -> bool:
        """Whether journalctl will follow (never for ``--file``)."""
        return self.follow and not self.files


def journalctl_command(source: JournalSource) -> list[str]:
    """The journalctl command line for ``source`` (module docstring)."""
    if source.files and source.directory is not None:
        raise ValueError("journal files and a journal directory are exclusive")
    command = [source.journalctl, "--output=json", "--all", "--no-pager", "--quiet"]
    if source.directory is not None:
        command.append(f"--directory={source.directory}")
    elif source.files:
        command.extend(f"--file={name}" for name in source.files)
    else:
        command.append("--namespace=*")
        if not source.all_boots:
            command.append("--boot")
    if source.follows:
        command.extend(["--follow", "--no-tail"])
    return command


def _bytes(value: object, field: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, list) and all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value
    ):
        return bytes(value)
    raise JournalFormatError(f"field {field}: a value is neither a string nor bytes")


def _values(value: object, field: str) -> tuple[bytes, ...]:
    if value is None:
        return ()
    if isinstance(value, list) and value and not all(isinstance(v, int) for v in value):
        # A repeated field: an array of strings and byte arrays.
        return tuple(_bytes(v, field) for v in value if v is not None)
    return (_bytes(value, field),)


def parse_json_entry(line: str | bytes) -> JournalEntry:
    """One entry from one line of ``journalctl -o json``."""
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JournalFormatError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise JournalFormatError(f"expected a JSON object, got {type(data).__name__}")
    entry: JournalEntry = {}
    for field, value in data.items():
        values = _values(value, field)
        if values:
            entry[field] = values
    return entry
