"""Logging: syslog datagrams on /dev/log when present, stderr otherwise."""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hats.orchestrator.logging_setup import IDENT, setup_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    for handler in list(root.handlers):
        if handler.get_name() == IDENT:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_syslog_when_the_socket_exists(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.settimeout(5)
    try:
        handler = setup_logging(syslog_socket=path)
        assert isinstance(handler, logging.handlers.SysLogHandler)
        logging.getLogger("hats.orchestrator.test").info("hello %s", "world")
        datagram = receiver.recv(4096).decode()
    finally:
        receiver.close()
    # facility DAEMON (3) * 8 + INFO (6) = 30
    assert datagram.startswith(f"<30>{IDENT}[{os.getpid()}]: hello world")


def test_stderr_when_there_is_no_syslog(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = setup_logging(syslog_socket=str(tmp_path / "missing"), stream=stream)
    assert not isinstance(handler, logging.handlers.SysLogHandler)
    logging.getLogger("hats.orchestrator.test").warning("careful")
    assert f"{IDENT}: WARNING hats.orchestrator.test: careful" in stream.getvalue()


def test_log_to_stderr_wins_over_syslog(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    try:
        stream = io.StringIO()
        handler = setup_logging(to_stderr=True, syslog_socket=path, stream=stream)
        assert not isinstance(handler, logging.handlers.SysLogHandler)
    finally:
        receiver.close()


def test_a_second_setup_replaces_the_first(tmp_path: Path) -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging(syslog_socket=str(tmp_path / "x"), stream=first)
    setup_logging(syslog_socket=str(tmp_path / "x"), stream=second)
    logging.getLogger("hats.orchestrator.test").error("once")
    assert "once" not in first.getvalue() and "once" in second.getvalue()
    assert sum(h.get_name() == IDENT for h in logging.getLogger().handlers) == 1
