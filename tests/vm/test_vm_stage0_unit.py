"""Booting through real Oak stage0, the quick parts: -bios, the QEMU version check,
stage0's console values (checked on the real console log), the power-off fallback."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import pytest

import shared_data
from hats.vm import stage0
from hats.vm.machine import ACPI_UNUSABLE, Machine
from hats.vm.qemu import QemuError, VmConfig, check_stage0_qemu, parse_qemu_version, qemu_argv

CONSOLE = (shared_data.OAK_STAGE0 / "stage0-console.log").read_text()


def _config(tmp_path: Path, **changes: object) -> VmConfig:
    config = VmConfig(
        kernel=Path("/k/vmlinuz"),
        initrd=Path("/k/initrd"),
        launcher_target="127.0.0.1:4000",
        console_log=tmp_path / "console.log",
        qmp_socket=tmp_path / "qmp.sock",
    )
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def test_stage0_is_booted_with_bios_on_the_reference_machine(tmp_path: Path) -> None:
    argv = qemu_argv(_config(tmp_path, bios=Path("/fw/stage0_bin")))
    assert argv[argv.index("-bios") + 1] == "/fw/stage0_bin"
    # The reference's machine (system-image §5.3); ACPI and PCIe work under stage0's tables.
    assert argv[argv.index("-machine") + 1] == "microvm,acpi=on,pcie=on"
    assert argv[argv.index("-kernel") + 1] == "/k/vmlinuz"  # stage0 loads and measures it
    plain = qemu_argv(_config(tmp_path))
    assert "-bios" not in plain and plain[plain.index("-machine") + 1] == "q35"
    forced = qemu_argv(_config(tmp_path, bios=Path("/fw/stage0_bin"), machine="q35"))
    assert forced[forced.index("-machine") + 1] == "q35"


def test_f11_qemu_7_cannot_run_stage0(tmp_path: Path) -> None:
    assert parse_qemu_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)") == (7, 2)
    assert parse_qemu_version("QEMU emulator version 10.0.2 (Debian …bpo12+1)") == (10, 0)
    assert parse_qemu_version("something else") is None
    old = tmp_path / "qemu-old"
    old.write_text("#!/bin/sh\necho 'QEMU emulator version 7.2.22 (Debian)'\n")
    old.chmod(0o755)
    with pytest.raises(QemuError, match=r"QEMU 7\.2, stage0 needs QEMU >= 8.*setup\.sh") as info:
        check_stage0_qemu(str(old))
    assert "\n" not in str(info.value)
    with pytest.raises(QemuError, match="--version"):
        check_stage0_qemu(str(tmp_path / "missing"))


def _logged(label: str) -> str:
    match = re.search(rf"{re.escape(label)}: sha2-256:([0-9a-f]{{64}})", CONSOLE)
    assert match
    return match.group(1)


def test_stage0_console_values_from_the_real_log() -> None:
    values = stage0.parse_console(CONSOLE)
    # Values as stage0 printed them (written from the log's own lines, not our code).
    assert values.kernel_image_sha256.startswith("579d3d5a57caf0e0")
    assert values.kernel_setup_data_sha256.startswith("eab06ac29b67dffa")
    assert values.init_ram_fs_sha256 == _logged("Initial RAM disk digest")
    assert values.acpi_table_sha256.startswith("7d52cab5c20101fb")
    assert values.memory_map_sha256.startswith("c13646fb8bfb58e8")
    assert values.kernel_cmdline == "console=ttyS0 panic=-1 quiet -- --launcher-addr=vsock://2:1234"


def test_stage0_console_without_a_value_is_refused() -> None:
    text = CONSOLE.replace("E820 table digest", "E820 table")
    with pytest.raises(stage0.Stage0RunError, match="no 'E820 table digest' line"):
        stage0.parse_console(text)


def test_mismatches_name_the_value_that_differs(tmp_path: Path) -> None:
    kernel = tmp_path / "vmlinuz"
    header = bytearray(1024)
    header[0x1F1] = 1  # setup_sects: 1024 bytes of setup
    header[0x202:0x206] = b"HdrS"
    header[0x206:0x208] = (0x20F).to_bytes(2, "little")
    kernel.write_bytes(bytes(header) + b"payload")
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"initrd")
    values = stage0.parse_console(CONSOLE)
    wrong = stage0.mismatches(values, kernel=kernel, initrd=initrd, cmdline="console=ttyS0")
    assert [w.split(":")[0] for w in wrong] == [
        "Kernel image digest",
        "Kernel setup data digest",
        "Initial RAM disk digest",
        "command line",
    ]
    assert (
        stage0.mismatches(
            dataclasses.replace(
                values,
                kernel_image_sha256=hashlib.sha256(b"payload").hexdigest(),
            ),
            kernel=kernel,
            initrd=initrd,
            cmdline=values.kernel_cmdline,
        )[0].split(":")[0]
        == "Kernel setup data digest"
    )


def test_a_guest_without_acpi_is_recognised_from_its_console(tmp_path: Path) -> None:
    config = _config(tmp_path)
    machine = Machine(config)
    assert not machine.acpi_unusable()
    config.console_log.write_text(
        "ACPI BIOS Error (bug): Required FADT field Pm1aEventBlock has zero address\n"
        f"{ACPI_UNUSABLE}\n"
    )
    assert machine.acpi_unusable()
    assert machine.quit()  # not running: nothing to stop


def test_demo_default_stage0_is_the_test_data_when_qemu_can_run_it(tmp_path: Path) -> None:
    assert stage0.REPO_STAGE0 == shared_data.OAK_STAGE0 / "stage0_bin"
    old = tmp_path / "qemu-old"
    old.write_text("#!/bin/sh\necho 'QEMU emulator version 7.2.22 (Debian)'\n")
    old.chmod(0o755)
    found, reason = stage0.default_stage0(str(old))
    assert found is None and "stage0 needs QEMU >= 8" in reason
    new = tmp_path / "qemu-new"
    new.write_text("#!/bin/sh\necho 'QEMU emulator version 10.0.2 (Debian)'\n")
    new.chmod(0o755)
    assert stage0.default_stage0(str(new))[0] == stage0.REPO_STAGE0
