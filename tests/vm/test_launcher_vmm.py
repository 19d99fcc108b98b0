"""``hats launcher serve --vmm qemu`` when the guest cannot start: one line, exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _serve(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    image = tmp_path / "image.tar.xz"
    image.write_bytes(b"\xfd7zXZ\x00 not really")
    return subprocess.run(
        [sys.executable, "-m", "hats", "launcher", "serve", "--system-image", str(image), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_missing_vmm_binary_stops_the_launcher_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "launcher_config.txtpb"
    config.write_text(f'cvm_config {{ vmm_binary: "{tmp_path}/no-qemu" }}\n')
    (tmp_path / "vmlinuz").write_bytes(b"kernel")
    (tmp_path / "initrd").write_bytes(b"initrd")
    result = _serve(
        tmp_path,
        "--launcher_config_path",
        str(config),
        "--vmm",
        "qemu",
        "--accel",
        "tcg",
        "--kernel",
        str(tmp_path / "vmlinuz"),
        "--initrd",
        str(tmp_path / "initrd"),
        "--console-log",
        str(tmp_path / "console.log"),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "no-qemu" in line]
    assert len(errors) == 1 and "cannot start" in errors[0]
    assert "stopped" in result.stdout


def test_vmm_needs_a_tcp_or_unix_listen_address(tmp_path: Path) -> None:
    result = _serve(tmp_path, "--vmm", "qemu", "--listen", "vsock://2:5000")
    assert result.returncode == 1
    assert "TCP or a unix socket" in result.stderr and "Traceback" not in result.stderr
