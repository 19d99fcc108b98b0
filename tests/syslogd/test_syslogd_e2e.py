"""``hats syslogd`` as a process: real journal files, a real ``hats launcher`` over a socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from telemetry_support import (
    BASE_USEC,
    BOOT_ID,
    SYSLOGD,
    Process,
    entry,
    json_lines,
    launcher_process,
    needs_journal_tools,
    simple_entries,
    wait_for,
    write_journal,
)

FAST = ["--batch-delay", "0.05", "--max-retry-delay", "0.2", "--rpc-timeout", "2"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LAUNCHER_ADDR"}
    env.update(extra)
    return env


def _bodies(lines: list[dict[str, Any]]) -> list[Any]:
    return [line["body"] for line in lines]


@needs_journal_tools
def test_real_journal_every_field_reaches_the_launcher(work: Path) -> None:
    source_usec = BASE_USEC + 1
    journal = write_journal(
        work / "rich.journal",
        [
            entry(
                0,
                ("MESSAGE", "started\n\x1b[1mé".encode()),
                ("PRIORITY", b"3"),
                ("_SYSTEMD_UNIT", b"oak-orchestrator.service"),
                ("_PID", b"42"),
                ("_HOSTNAME", b"cvm"),
                ("_TRANSPORT", b"journal"),
                ("SYSLOG_IDENTIFIER", b"orchestrator"),
                ("_SOURCE_REALTIME_TIMESTAMP", str(source_usec).encode()),
                ("BIN", b"\xff\xfe\x00"),
                ("REP", b"a"),
                ("REP", b"b"),
            ),
            entry(1, ("MESSAGE", b"debug noise"), ("PRIORITY", b"7")),
            *[
                entry(2 + p, ("MESSAGE", f"p{p}".encode()), ("PRIORITY", str(p).encode()))
                for p in (0, 1, 2, 4, 5, 6)
            ],
            entry(9, ("MESSAGE", b"no priority"), ("_SYSTEMD_UNIT", b"x.service")),
            entry(10, ("MESSAGE", b"\xc3\x28 broken"), ("PRIORITY", b"6")),
        ],
    )
    logs = work / "logs.jsonl"
    with launcher_process(work / "l.sock", logs_file=logs) as launcher:
        # An empty positional (systemd's ${LAUNCHER_ADDR}) falls back to the environment.
        result = subprocess.run(
            [*SYSLOGD, "", "--journal-file", str(journal), *FAST],
            env=_env(LAUNCHER_ADDR=f"unix:{work / 'l.sock'}"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr.splitlines() == [
            "oak-syslogd: stopped: 9 records sent, 0 dropped at the queue bound, "
            "0 refused, 0 undelivered"
        ]
        lines = wait_for(lambda: len(json_lines(logs)) == 9 and json_lines(logs))
        console = wait_for(lambda: len(launcher.out) >= 3 and list(launcher.out))

    first = lines[0]
    assert first["body"] == "started\n\x1b[1mé"
    assert first["severity"] == "ERROR" and first["severity_number"] == 17
    assert first["time_unix_nano"] == source_usec * 1000  # µs → ns
    assert first["time"] == "2023-11-14T22:13:20.000001000Z"
    assert first["observed_time_unix_nano"] == BASE_USEC * 1000
    assert first["unit"] == "oak-orchestrator.service"
    assert first["scope"] == "TEE Log"
    assert first["resource"] == {"service.name": "unknown_service"}
    assert first["attributes"] == {
        "BIN": "non-string",
        "REP": ["a", "b"],
        "SYSLOG_IDENTIFIER": "orchestrator",
        "_BOOT_ID": BOOT_ID.decode(),
        "_HOSTNAME": "cvm",
        "_PID": "42",
        "_SYSTEMD_UNIT": "oak-orchestrator.service",
        "_TRANSPORT": "journal",
    }
    # debug dropped; the severity table; journald's time when there is no source time
    assert _bodies(lines[1:]) == [
        "p0",
        "p1",
        "p2",
        "p4",
        "p5",
        "p6",
        "no priority",
        "non-string",
    ]
    assert [line["severity"] for line in lines[1:7]] == [
        "ERROR4",
        "ERROR3",
        "ERROR2",
        "WARN",
        "INFO2",
        "INFO",
    ]
    assert [line["severity_number"] for line in lines[1:7]] == [20, 19, 18, 13, 10, 9]
    no_priority = lines[7]
    assert no_priority["severity_number"] == 0
    assert no_priority["time_unix_nano"] == (BASE_USEC + 9 * 1000) * 1000
    # the reference's console lines: only records with a unit
    assert "oak-orchestrator.service: started\\x0a\\x1b[1mé" in console
    assert "x.service: no priority" in console
    assert not any("p0" in line for line in console)


@needs_journal_tools
def test_launcher_down_then_up_nothing_lost_up_to_the_bound(work: Path) -> None:
    directory = work / "journal"
    directory.mkdir()
    write_journal(directory / "boot.journal", simple_entries(30))
    sock = work / "l.sock"
    logs = work / "logs.jsonl"
    syslogd = Process(
        [
            *SYSLOGD,
            f"unix:{sock}",
            "--journal-directory",
            str(directory),
            "--queue-size",
            "30",
            "--batch-size",
            "8",
            *FAST,
        ],
        env=_env(),
    )
    try:
        wait_for(lambda: any("OTLP error" in line for line in syslogd.err), what="an error")
        with launcher_process(sock, logs_file=logs):
            lines = wait_for(lambda: len(json_lines(logs)) >= 30 and json_lines(logs))
            # new entries written while it runs are followed and sent too
            write_journal(directory / "later.journal", simple_entries(3, start=30))
            lines = wait_for(lambda: len(json_lines(logs)) >= 33 and json_lines(logs))
            assert syslogd.stop() == 0
    finally:
        syslogd.kill()
    assert _bodies(lines) == [f"m{i}" for i in range(33)]
    errors = [line for line in syslogd.err if "OTLP error" in line]
    assert len(errors) == 1, syslogd.err  # once per outage, not per retry
    assert errors[0].startswith("oak-syslogd: OTLP error: UNAVAILABLE")
    # never a record's content (the socket's random path may itself hold "m1")
    assert "m1" not in errors[0].replace(str(sock), "")
    assert sum("reachable again" in line for line in syslogd.err) == 1
    assert syslogd.err[-1].startswith("oak-syslogd: stopped: 33 records sent, 0 dropped")


@needs_journal_tools
def test_beyond_the_bound_drops_are_counted_and_reported(work: Path) -> None:
    directory = work / "journal"
    directory.mkdir()
    write_journal(directory / "boot.journal", simple_entries(50))
    sock = work / "l.sock"
    logs = work / "logs.jsonl"
    syslogd = Process(
        [
            *SYSLOGD,
            f"unix:{sock}",
            "--journal-directory",
            str(directory),
            "--queue-size",
            "20",
            "--batch-size",
            "8",
            *FAST,
        ],
        env=_env(),
    )
    try:
        wait_for(lambda: any("OTLP error" in line for line in syslogd.err), what="an error")
        with launcher_process(sock, logs_file=logs) as launcher:
            lines = wait_for(lambda: len(json_lines(logs)) >= 21 and json_lines(logs))
            console = wait_for(
                lambda: [line for line in launcher.out if line.startswith("oak-syslogd")]
            )
            assert syslogd.stop() == 0
    finally:
        syslogd.kill()
    reports = [line for line in lines if line["unit"] == "oak-syslogd.service"]
    assert len(reports) == 1
    (report,) = reports
    assert report["attributes"]["HATS_DROPPED_RECORDS"] == "30"
    assert report["severity"] == "WARN"
    assert "30 journal records were dropped" in report["body"]
    # the oldest 20 (the start of the boot) were kept, in order
    assert [b for b in _bodies(lines) if b != report["body"]] == [f"m{i}" for i in range(20)]
    assert console == [f"oak-syslogd.service: {report['body']}"]
    assert "30 dropped at the queue bound" in syslogd.err[-1]


@needs_journal_tools
def test_sigterm_flushes_what_waits_for_its_batch(work: Path) -> None:
    directory = work / "journal"
    directory.mkdir()
    write_journal(directory / "boot.journal", simple_entries(25))
    sock = work / "l.sock"
    logs = work / "logs.jsonl"
    with launcher_process(sock, logs_file=logs):
        syslogd = Process(
            [
                *SYSLOGD,
                f"unix:{sock}",
                "--journal-directory",
                str(directory),
                "--batch-size",
                "10",
                "--batch-delay",
                "600",
            ],
            env=_env(),
        )
        try:
            # two full batches go at once; the last 5 wait for a 10-minute delay
            wait_for(lambda: len(json_lines(logs)) == 20)
            assert len(json_lines(logs)) == 20
            assert syslogd.stop(signal.SIGTERM, timeout=15) == 0
        finally:
            syslogd.kill()
        lines = wait_for(lambda: len(json_lines(logs)) == 25 and json_lines(logs))
    assert _bodies(lines) == [f"m{i}" for i in range(25)]
    assert syslogd.err[-1].endswith(
        "25 records sent, 0 dropped at the queue bound, 0 refused, 0 undelivered"
    )


@needs_journal_tools
def test_sigterm_while_unreachable_ends_at_the_shutdown_deadline(work: Path) -> None:
    journal = write_journal(work / "j.journal", simple_entries(5))
    syslogd = Process(
        [
            *SYSLOGD,
            f"unix:{work / 'nobody.sock'}",
            "--journal-directory",
            str(journal.parent),
            "--shutdown-timeout",
            "1.0",
            *FAST,
        ],
        env=_env(),
    )
    try:
        wait_for(lambda: any("OTLP error" in line for line in syslogd.err))
        syslogd.popen.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        syslogd.popen.send_signal(signal.SIGTERM)  # a second one does not cut the flush short
        assert syslogd.wait(timeout=10) == 0
    finally:
        syslogd.kill()
    assert any(
        "5 records not sent: the launcher was unreachable until the shutdown deadline" in line
        for line in syslogd.err
    ), syslogd.err
    assert syslogd.err[-1].endswith("5 undelivered")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SYSLOGD, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env() if env is None else env,
        check=False,
    )


def test_user_errors_are_one_line(work: Path) -> None:
    result = _run("bogus address", "--journal-directory", str(work))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "oak-syslogd: 'bogus address': expected vsock://CID:PORT, http://HOST:PORT, "
        "HOST:PORT or unix:PATH"
    ]
    result = _run("unix:/x", "--journal-file", str(work / "missing.journal"))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"oak-syslogd: --journal-file {work / 'missing.journal'}: no such file"
    ]
    result = _run("unix:/x", "--journal-directory", str(work), "--journalctl", "/nonexistent/jc")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "oak-syslogd: cannot run /nonexistent/jc: No such file or directory"
    ]
    result = _run("unix:/x", "--queue-size", "0")
    assert result.returncode == 2 and "expected a whole number above 0" in result.stderr


def test_a_failing_journalctl_is_reported_and_exits_1(work: Path) -> None:
    fake = work / "journalctl"
    fake.write_text(
        "#!/bin/sh\n"
        'echo \'{"MESSAGE":"one","PRIORITY":"6","__REALTIME_TIMESTAMP":"1"}\'\n'
        "echo 'garbage'\n"
        "exit 3\n"
    )
    fake.chmod(0o755)
    with launcher_process(work / "l.sock", logs_file=work / "logs.jsonl"):
        result = _run(
            f"unix:{work / 'l.sock'}",
            "--journal-directory",
            str(work),
            "--journalctl",
            str(fake),
            *FAST,
        )
        lines = json_lines(work / "logs.jsonl")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "oak-syslogd: skipped 1 lines from journalctl that were not journal entries",
        "oak-syslogd: journalctl exited with status 3",
        "oak-syslogd: stopped: 1 records sent, 0 dropped at the queue bound, 0 refused, "
        "0 undelivered",
    ]
    assert _bodies(lines) == ["one"]


def test_hats_syslogd_is_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hats", "syslogd", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # Issue 15: the help names the command typed, and the binary in the image.
    assert result.stdout.startswith("usage: hats syslogd ")
    assert "/usr/bin/oak_containers_syslogd" in result.stdout
    assert "--journal-directory" in result.stdout
