"""``hats launcher serve --vmm qemu`` with Oak stage0: -bios from --stage0 or the system
bundle's ``stage0_bin``, and the QEMU version check (a fake QEMU records its command line)."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

FAKE_QEMU = """#!/bin/sh
if [ "$1" = --version ]; then echo 'QEMU emulator version {version} (fake)'; exit 0; fi
printf '%s\\n' "$@" > {out}/argv
prev=
for arg in "$@"; do
  if [ "$prev" = -bios ]; then cat "$arg" > {out}/bios; fi
  prev="$arg"
done
exit 0
"""


def _fake_qemu(tmp_path: Path, version: str) -> Path:
    qemu = tmp_path / "qemu"
    qemu.write_text(FAKE_QEMU.format(version=version, out=tmp_path))
    qemu.chmod(0o755)
    return qemu


def _serve(tmp_path: Path, qemu: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "launcher_config.txtpb"
    config.write_text(f'cvm_config {{ vmm_binary: "{qemu}" }}\n')
    (tmp_path / "vmlinuz").write_bytes(b"kernel")
    (tmp_path / "initrd").write_bytes(b"initrd")
    args = ["--launcher_config_path", str(config), "--vmm", "qemu", "--accel", "tcg"]
    args += ["--kernel", str(tmp_path / "vmlinuz"), "--initrd", str(tmp_path / "initrd")]
    args += ["--console-log", str(tmp_path / "console.log"), *extra]
    return subprocess.run(
        [sys.executable, "-m", "hats", "launcher", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _bundle(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_system_bundle_stage0_is_booted_with_bios(tmp_path: Path) -> None:
    bundle = _bundle(
        tmp_path / "bundle.tar",
        {"x/hats_system.tar.xz": b"\xfd7zXZ\x00 image", "x/stage0_bin": b"firmware bytes"},
    )
    result = _serve(tmp_path, _fake_qemu(tmp_path, "10.0.2"), "--system-bundle", str(bundle))
    assert "vm: firmware: Oak stage0" in result.stdout, result.stdout + result.stderr
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[argv.index("-machine") + 1] == "microvm,acpi=on,pcie=on"
    assert argv[argv.index("-bios") + 1].endswith("stage0_bin")
    assert (tmp_path / "bios").read_bytes() == b"firmware bytes"
    assert not Path(argv[argv.index("-bios") + 1]).exists()  # the extracted copy is removed


def test_stage0_with_qemu_7_says_what_to_do(tmp_path: Path) -> None:
    stage0 = tmp_path / "stage0_bin"
    stage0.write_bytes(b"firmware")
    image = tmp_path / "image.tar.xz"
    image.write_bytes(b"\xfd7zXZ\x00 image")
    qemu = _fake_qemu(tmp_path, "7.2.22")
    result = _serve(tmp_path, qemu, "--system-image", str(image), "--stage0", str(stage0))
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if "stage0 needs QEMU >= 8" in line]
    assert len(errors) == 1 and "scripts/setup.sh" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "argv").exists()  # QEMU was never started


def test_stage0_needs_vmm_qemu(tmp_path: Path) -> None:
    stage0 = tmp_path / "stage0_bin"
    stage0.write_bytes(b"firmware")
    result = subprocess.run(
        [sys.executable, "-m", "hats", "launcher", "serve", "--stage0", str(stage0)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "--stage0 need --vmm qemu" in result.stderr
