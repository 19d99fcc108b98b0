"""Reading journalctl's JSON: the command line, the parser (with hypothesis), real files."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hats.syslogd.journal import (
    JournalFormatError,
    JournalSource,
    journalctl_command,
    parse_json_entry,
)
from telemetry_support import BOOT_ID, entry, needs_journal_tools, write_journal

BASE = ["journalctl", "--output=json", "--all", "--no-pager", "--quiet"]


def test_system_journal_command_follows_this_boot_in_every_namespace() -> None:
    assert journalctl_command(JournalSource()) == [
        *BASE,
        "--namespace=*",
        "--boot",
        "--follow",
        "--no-tail",
    ]
    assert journalctl_command(JournalSource(all_boots=True, follow=False)) == [
        *BASE,
        "--namespace=*",
    ]


def test_directory_and_file_commands() -> None:
    assert journalctl_command(JournalSource(directory="/j", journalctl="/bin/jc")) == [
        "/bin/jc",
        *BASE[1:],
        "--directory=/j",
        "--follow",
        "--no-tail",
    ]
    # journalctl cannot follow --file: files are read once
    source = JournalSource(files=("a.journal", "b.journal"))
    assert not source.follows
    assert journalctl_command(source) == [*BASE, "--file=a.journal", "--file=b.journal"]
    with pytest.raises(ValueError):
        journalctl_command(JournalSource(files=("a",), directory="d"))


def test_parse_strings_bytes_repeats_and_nulls() -> None:
    line = json.dumps(
        {
            "MESSAGE": "héllo",
            "BIN": [255, 0, 10],
            "REP": ["a", [200, 201], "c"],
            "TOO_BIG": None,
            "EMPTY": "",
        }
    )
    assert parse_json_entry(line) == {
        "MESSAGE": ("héllo".encode(),),
        "BIN": (b"\xff\x00\n",),
        "REP": (b"a", b"\xc8\xc9", b"c"),
        "EMPTY": (b"",),
    }
    assert parse_json_entry(line.encode()) == parse_json_entry(line)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"A": 5}', "field A"),
        ('{"A": [256]}', "field A"),
        ('{"A": [true]}', "field A"),
        ('{"A": {"x": 1}}', "field A"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_parse_rejects_what_journalctl_never_writes(line: str | bytes, reason: str) -> None:
    with pytest.raises(JournalFormatError, match=reason):
        parse_json_entry(line)


def _journalctl_json(value: bytes) -> object:
    """How journalctl writes one value: printable UTF-8 as a string, else byte numbers."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return list(value)
    if all(ch.isprintable() or ch in "\n\t" for ch in text):
        return text
    return list(value)


_names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=12)
_values = st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_names, st.lists(_values, min_size=1, max_size=3), max_size=8))
def test_parse_round_trips_journalctl_encoding(fields: dict[str, list[bytes]]) -> None:
    encoded = {
        name: _journalctl_json(values[0])
        if len(values) == 1
        else [_journalctl_json(v) for v in values]
        for name, values in fields.items()
    }
    parsed = parse_json_entry(json.dumps(encoded))
    expected = {name: tuple(values) for name, values in fields.items()}
    # One binary value that is a list of ints and a repeat of texts are told apart.
    assert parsed == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_parse_never_fails_with_anything_but_a_format_error(line: str) -> None:
    with contextlib.suppress(JournalFormatError):
        parse_json_entry(line)


@needs_journal_tools
def test_real_journal_file_through_journalctl(tmp_path: Path) -> None:
    """systemd-journal-remote writes it, journalctl reads it, we parse every field."""
    path = write_journal(
        tmp_path / "real.journal",
        [
            entry(
                0,
                ("MESSAGE", b"line one\nline two \x1b[1m\xc3\xa9"),
                ("PRIORITY", b"4"),
                ("BIN", b"\xff\xfe\x00"),
                ("REP", b"first"),
                ("REP", b"second"),
                ("BIG", b"x" * 70_000),
            )
        ],
    )
    output = subprocess.run(
        journalctl_command(JournalSource(files=(str(path),))),
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    lines = output.splitlines()
    assert len(lines) == 1
    parsed = parse_json_entry(lines[0])
    assert parsed["MESSAGE"] == (b"line one\nline two \x1b[1m\xc3\xa9",)
    assert parsed["PRIORITY"] == (b"4",)
    assert parsed["BIN"] == (b"\xff\xfe\x00",)
    assert parsed["REP"] == (b"first", b"second")
    assert parsed["BIG"] == (b"x" * 70_000,)  # --all: no null for big fields
    assert parsed["_BOOT_ID"] == (BOOT_ID,)
    assert parsed["__REALTIME_TIMESTAMP"] == (b"1700000000000000",)
    assert "__CURSOR" in parsed
