"""The orchestrator's logging: syslog (hence the journal) when present, stderr otherwise.

The reference logs RFC 3164 syslog over the local socket, facility DAEMON,
process name ``oak_containers_orchestrator``, and dies when syslog is
missing. Here: if ``/dev/log`` exists and accepts a connection, records go
there (facility DAEMON, ``oak_containers_orchestrator[pid]: message``; on a
systemd image ``/dev/log`` is journald's socket); otherwise, or with
``--log-to-stderr``, to stderr. Standard library only.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from typing import TextIO

IDENT = "oak_containers_orchestrator"
SYSLOG_SOCKET = "/dev/log"


def setup_logging(
    *,
    to_stderr: bool = False,
    level: int = logging.INFO,
    syslog_socket: str = SYSLOG_SOCKET,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Attach one handler to the root logger (replacing ours from an earlier call); return it."""
    handler: logging.Handler | None = None
    if not to_stderr and os.path.exists(syslog_socket):
        try:
            syslog = logging.handlers.SysLogHandler(
                address=syslog_socket, facility=logging.handlers.SysLogHandler.LOG_DAEMON
            )
        except OSError:
            syslog = None
        if syslog is not None:
            syslog.setFormatter(logging.Formatter(f"{IDENT}[{os.getpid()}]: %(message)s"))
            handler = syslog
    if handler is None:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {IDENT}: %(levelname)s %(name)s: %(message)s")
        )
    handler.set_name(IDENT)
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == IDENT:
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(level)
    return handler
