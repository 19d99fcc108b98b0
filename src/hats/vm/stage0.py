"""Real Oak stage0 under QEMU: what it measured, read from its console (pure), and a short run.

Stage0 prints its measurements at debug level on the serial console, as
``stage0 DEBUG: <label>: sha2-256:<hex>`` and ``stage0 DEBUG: Kernel command-line: <text>``
(``tests/data/oak-stage0/stage0-console.log``). Rules:

* :func:`parse_console` takes the six values (kernel image, setup data, initrd,
  ACPI tables, E820 map digests and the command line); a missing one is a
  :class:`Stage0RunError`;
* the kernel image, setup data and initrd digests and the command line can be
  computed from the artifacts (:func:`hats.attestation.measure.kernel_digests`,
  SHA-256 of the initrd): :func:`mismatches` lists those stage0 measured
  differently. The ACPI and E820 digests depend on the VMM and the machine
  configuration (QEMU version, machine type, memory, vCPUs, devices) and can
  only come from a boot;
* :func:`measure_with_stage0` starts QEMU with the guest's exact command line
  until stage0 prints ``jumping to kernel``, then stops it (the guest never
  runs): the values a real boot with that configuration measures.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from hats.errors import HatsError
from hats.vm.qemu import VmConfig, qemu_argv

LABELS = {
    "kernel_image_sha256": "Kernel image digest",
    "kernel_setup_data_sha256": "Kernel setup data digest",
    "init_ram_fs_sha256": "Initial RAM disk digest",
    "acpi_table_sha256": "ACPI table generation digest",
    "memory_map_sha256": "E820 table digest",
}
JUMP = "stage0 INFO: jumping to kernel"


class Stage0RunError(HatsError):
    """Stage0 did not run, or its console lacks a measurement."""


@dataclass(frozen=True)
class Stage0Values:
    """What stage0 measured (hex SHA-256 digests, and the command line as measured)."""

    kernel_image_sha256: str
    kernel_setup_data_sha256: str
    init_ram_fs_sha256: str
    acpi_table_sha256: str
    memory_map_sha256: str
    kernel_cmdline: str


def parse_console(text: str, source: str = "stage0 console") -> Stage0Values:
    """The measurements of the first stage0 run in ``text`` (module rules)."""
    values: dict[str, str] = {}
    for key, label in LABELS.items():
        match = re.search(rf"stage0 DEBUG: {re.escape(label)}: sha2-256:([0-9a-f]{{64}})", text)
        if match is None:
            raise Stage0RunError(f"{source}: no '{label}' line")
        values[key] = match.group(1)
    match = re.search(r"^stage0 DEBUG: Kernel command-line: ?(.*?)\r?$", text, re.M)
    if match is None:
        raise Stage0RunError(f"{source}: no 'Kernel command-line' line")
    return Stage0Values(kernel_cmdline=match.group(1), **values)


def mismatches(values: Stage0Values, *, kernel: Path, initrd: Path, cmdline: str) -> list[str]:
    """The values computable from the artifacts that stage0 measured differently."""
    from hats.attestation.measure import kernel_digests

    digests = kernel_digests(kernel.read_bytes(), str(kernel))
    expected = {
        "kernel_image_sha256": digests.kernel_image_sha256,
        "kernel_setup_data_sha256": digests.kernel_setup_data_sha256,
        "init_ram_fs_sha256": hashlib.sha256(initrd.read_bytes()).hexdigest(),
    }
    wrong = [
        f"{LABELS[key]}: stage0 {getattr(values, key)[:16]}…, computed {value[:16]}…"
        for key, value in expected.items()
        if getattr(values, key) != value
    ]
    if values.kernel_cmdline.strip() != cmdline.strip():
        wrong.append(f"command line: stage0 {values.kernel_cmdline!r}, given {cmdline!r}")
    return wrong


def measure_with_stage0(config: VmConfig, timeout: float = 120.0) -> Stage0Values:
    """Run ``config`` (with its ``bios``) until stage0 jumps to the kernel; its values."""
    if config.bios is None:
        raise Stage0RunError("no stage0 (-bios) in the VM configuration")
    with tempfile.TemporaryDirectory(prefix="hats-stage0-") as work:
        console = Path(work) / "console.log"
        run = replace(config, console_log=console, qmp_socket=Path(work) / "qmp.sock")
        with open(Path(work) / "qemu.log", "wb") as log:
            process = subprocess.Popen(
                qemu_argv(run), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        text = ""
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                text = console.read_text(errors="replace") if console.exists() else ""
                if JUMP in text or process.poll() is not None:
                    break
                time.sleep(0.2)
        finally:
            process.kill()
            process.wait()
        if JUMP not in text:
            tail = [line for line in text.splitlines() if line.strip()][-1:] or ["no output"]
            raise Stage0RunError(
                f"stage0 did not reach the kernel within {timeout:.0f} s: {tail[0]}"
            )
        return parse_console(text, f"stage0 run of {config.bios}")


REPO_STAGE0 = Path(__file__).resolve().parents[3] / "tests" / "data" / "oak-stage0" / "stage0_bin"
"""The stage0 HATs pins, in a source checkout's test data (absent from an installed package)."""


def default_stage0(qemu: str = "qemu-system-x86_64") -> tuple[Path | None, str]:
    """The checkout's ``stage0_bin`` when it exists and ``qemu`` can run it; else why not."""
    from hats.vm.qemu import QemuError, check_stage0_qemu

    if not REPO_STAGE0.is_file():
        return None, f"no {REPO_STAGE0}"
    try:
        check_stage0_qemu(qemu)
    except QemuError as exc:
        return None, str(exc)
    return REPO_STAGE0, f"Oak stage0 from the test data ({REPO_STAGE0})"
