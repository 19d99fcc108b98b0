"""A running QEMU guest: start, watch the console, power off through QMP.

:class:`Machine` owns the QEMU process of a :class:`~hats.vm.qemu.VmConfig`.
Rules:

* QEMU's own stdout/stderr go to ``<console log>.qemu`` (its warnings and
  errors); the guest's serial console goes to the console log;
* :meth:`Machine.power_off` presses the ACPI power button (QMP
  ``system_powerdown``) so the guest's systemd shuts down cleanly, waits up to
  ``timeout`` seconds for QEMU to exit, then kills it; it returns whether the
  shutdown was clean;
* a guest whose kernel could not enable ACPI (Oak stage0 on ``q35`` leaves the
  FADT's PM1a event block at zero: "ACPI: Unable to enable ACPI") has no power
  button: :meth:`Machine.acpi_unusable` says so from the console, and
  :meth:`Machine.quit` stops QEMU with QMP ``quit`` instead of waiting for the kill;
* QEMU is always killed when the context manager exits.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from hats.vm.qemu import QemuError, VmConfig, qemu_argv

ACPI_UNUSABLE = "ACPI: Unable to enable ACPI"


class Machine:
    def __init__(self, config: VmConfig, argv: list[str] | None = None) -> None:
        """``argv``: run this command line instead of ``qemu_argv(config)`` (the launcher's
        reference mode); ``config`` still names the console log and the QMP socket."""
        self.config = config
        self.argv = argv
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    @property
    def qemu_log(self) -> Path:
        return self.config.console_log.with_name(self.config.console_log.name + ".qemu")

    def start(self) -> None:
        argv = self.argv if self.argv is not None else qemu_argv(self.config)
        self.config.console_log.write_bytes(b"")
        with open(self.qemu_log, "wb") as log:
            try:
                self.process = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
                )
            except OSError as exc:
                raise QemuError(f"{argv[0]}: cannot start: {exc.strerror}") from None
        self.started = time.monotonic()

    def __enter__(self) -> Machine:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def console(self) -> str:
        try:
            return self.config.console_log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait(self, timeout: float | None = None) -> int | None:
        """QEMU's exit status, or ``None`` if it still runs after ``timeout``."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def qmp(self, command: str, timeout: float = 5.0) -> dict[str, object]:
        """Run one QMP command; its reply."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.config.qmp_socket))
            stream = sock.makefile("rwb")
            json.loads(stream.readline())  # greeting
            for request in ({"execute": "qmp_capabilities"}, {"execute": command}):
                stream.write(json.dumps(request).encode() + b"\n")
                stream.flush()
                while True:
                    reply: dict[str, object] = json.loads(stream.readline())
                    if "return" in reply or "error" in reply:
                        break
            return reply

    def power_off(self, timeout: float = 120.0) -> bool:
        """Press the power button and wait; True if the guest shut down by itself."""
        if not self.running():
            return True
        try:
            self.qmp("system_powerdown")
        except (OSError, ValueError):
            self.kill()
            return False
        if self.wait(timeout) is not None:
            return True
        self.kill()
        return False

    def acpi_unusable(self) -> bool:
        """The guest kernel said it cannot enable ACPI (stage0 on q35): no power button."""
        return ACPI_UNUSABLE in self.console()

    def quit(self, timeout: float = 10.0) -> bool:
        """Stop QEMU itself with QMP ``quit`` (no guest shutdown); True if it exited."""
        if not self.running():
            return True
        try:
            self.qmp("quit")
        except (OSError, ValueError):
            return False
        return self.wait(timeout) is not None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
