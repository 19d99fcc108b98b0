"""The two systemd units HATs adds to the image, rendered from build options.

Sans-I/O. The text around them is ours; the lines that matter to the
system are the reference's, so that an image built from the same options
starts the same processes:

- orchestrator ``ExecStart``: ``/usr/bin/orchestrator_main --container-dir
  ${RUNTIME_DIRECTORY}/oak_container --ipc-socket-path
  ${RUNTIME_DIRECTORY}/oak_utils/orchestrator_ipc --launcher-addr=${LAUNCHER_ADDR}
  --secret-share-type=<type>``, then ``--tvs-heartbeat-frequency=<n>`` when a
  heartbeat is given, then any extra flags in order;
- ``PassEnvironment=LAUNCHER_ADDR`` in both units (stage1 puts the launcher
  address in PID 1's environment);
- the orchestrator does not power the VM off when it exits
  (``FailureAction=none``/``SuccessAction=none``), runs in
  ``RuntimeDirectory=oak_containers_orchestrator`` and may write ``/oak``;
- syslogd gets the launcher address as its one argument and reports its own
  failures on the serial console (``StandardOutput=tty``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hats.errors import HatsError
from hats.sharetype import SHARE_TYPES as SHARE_TYPES  # image.cli and image.spec name it here
from hats.sharetype import ShareType

ORCHESTRATOR_BIN = "/usr/bin/orchestrator_main"
SYSLOGD_BIN = "/usr/bin/oak_containers_syslogd"
AGENT_BIN = "/usr/bin/oak_containers_agent"
ORCHESTRATOR_UNIT = "oak-orchestrator.service"
SYSLOGD_UNIT = "oak-syslogd.service"

# Characters that need no quoting or escaping in a systemd command line.
_SAFE_FLAG = re.compile(r"[A-Za-z0-9_@+=:,./-]+")


class UnitOptionError(HatsError):
    """A unit option (share type, heartbeat, extra flag) is not acceptable."""


def orchestrator_exec_start(
    share_type: str, heartbeat: int | None = None, extra_flags: Sequence[str] = ()
) -> str:
    """The orchestrator's ``ExecStart`` command line (without ``ExecStart=``)."""
    if share_type not in SHARE_TYPES:
        raise UnitOptionError(
            f"secret share type {share_type!r} is not one of {', '.join(SHARE_TYPES)}"
        )
    words = [
        ORCHESTRATOR_BIN,
        "--container-dir",
        "${RUNTIME_DIRECTORY}/oak_container",
        "--ipc-socket-path",
        "${RUNTIME_DIRECTORY}/oak_utils/orchestrator_ipc",
        "--launcher-addr=${LAUNCHER_ADDR}",
        ShareType(share_type).unit_flag,
    ]
    if heartbeat is not None:
        if heartbeat < 1:
            raise UnitOptionError(
                f"TVS heartbeat frequency must be at least 1 second, not {heartbeat}"
            )
        words.append(f"--tvs-heartbeat-frequency={heartbeat}")
    for flag in extra_flags:
        if not _SAFE_FLAG.fullmatch(flag):
            raise UnitOptionError(
                f"orchestrator flag {flag!r} needs quoting in a unit file; use letters, digits "
                "and _@+=:,./- only"
            )
        words.append(flag)
    return " ".join(words)


def render_orchestrator_unit(
    share_type: str, heartbeat: int | None = None, extra_flags: Sequence[str] = ()
) -> bytes:
    """``/etc/systemd/system/oak-orchestrator.service`` for these options."""
    exec_start = orchestrator_exec_start(share_type, heartbeat, extra_flags)
    return (
        "# HATs orchestrator: fetches and measures the workload, obtains its secrets\n"
        "# from the TVS through the launcher and runs it. Rendered by `hats image build`.\n"
        "[Unit]\n"
        "Description=HATs Orchestrator\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n"
        "# Keep the VM up when the orchestrator stops, so its logs can be read.\n"
        "FailureAction=none\n"
        "SuccessAction=none\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={exec_start}\n"
        "ExecStopPost=/usr/bin/journalctl --sync --flush\n"
        "ProtectSystem=strict\n"
        "RuntimeDirectory=oak_containers_orchestrator\n"
        "ReadWritePaths=/oak\n"
        "PassEnvironment=LAUNCHER_ADDR\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    ).encode()


def render_syslogd_unit() -> bytes:
    """``/etc/systemd/system/oak-syslogd.service``."""
    return (
        "# HATs log forwarder: sends the journal to the launcher as OTLP logs.\n"
        "# Rendered by `hats image build`.\n"
        "[Unit]\n"
        "Description=HATs Log Forwarder\n"
        "Before=oak-orchestrator.service\n"
        "After=network-online.target\n"
        "Wants=network-online.target systemd-journald.service\n"
        "\n"
        "[Service]\n"
        "Type=exec\n"
        "Restart=always\n"
        f"ExecStart={SYSLOGD_BIN} ${{LAUNCHER_ADDR}}\n"
        "ProtectSystem=strict\n"
        "# The forwarder cannot log through the journal it forwards: its own errors\n"
        "# go to the serial console.\n"
        "StandardOutput=tty\n"
        "StandardError=tty\n"
        "PassEnvironment=LAUNCHER_ADDR\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    ).encode()


def unit_directives(text: bytes) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file (any section), values in order."""
    out: dict[str, list[str]] = {}
    for raw in text.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def exec_binaries(text: bytes) -> list[str]:
    """Absolute program paths of a unit's ``Exec*`` lines (prefixes stripped)."""
    programs: list[str] = []
    for key, values in unit_directives(text).items():
        if not key.startswith("Exec"):
            continue
        for value in values:
            word = value.split()[0] if value.split() else ""
            word = word.lstrip("@-:+!")
            if word.startswith("/"):
                programs.append(word)
    return programs
