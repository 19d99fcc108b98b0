"""Stage1's external tools (busybox) and the QEMU version probe go through hats.toolrun.

Stage1 runs in our initramfs with the standard library and ``hats`` only, so
the runner it uses must import nothing else.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hats.stage1 import guest
from hats.stage1.errors import Stage1Error
from hats.vm.qemu import QemuError, check_stage0_qemu

SRC = Path(__file__).resolve().parents[2] / "src"


def test_toolrun_imports_only_the_stdlib() -> None:
    """Without site-packages (``-I -S``): hats.toolrun loads the stdlib and hats.errors only."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(SRC)!r})\n"
        "import hats.toolrun\n"
        "print(' '.join(sorted(name for name in sys.modules\n"
        "    if name.split('.')[0] not in sys.stdlib_module_names and name != '__main__')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["hats", "hats.errors", "hats.toolrun"]


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_a_failing_busybox_applet_is_one_stage1_error_in_toolrun_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _script(tmp_path / "busybox", "echo 'ip: RTNETLINK answers: File exists' >&2; exit 2")
    monkeypatch.setattr(guest, "BUSYBOX", str(fake))
    with pytest.raises(Stage1Error) as info:
        guest.busybox("ip", "addr", "add", "10.0.2.15/24", "dev", "eth0")
    assert str(info.value) == (
        "ip addr add 10.0.2.15/24 dev eth0: busybox failed (exit 2): "
        "ip: RTNETLINK answers: File exists"
    )
    _script(fake, "exit 0")
    guest.busybox("ip", "link", "set", "lo", "up")  # success: nothing raised


def test_the_qemu_version_probe_fails_in_toolrun_form(tmp_path: Path) -> None:
    broken = _script(tmp_path / "qemu", "echo 'qemu: cannot open libfoo.so' >&2; exit 127")
    with pytest.raises(QemuError) as info:
        check_stage0_qemu(str(broken))
    assert str(info.value) == f"{broken} --version failed (exit 127): qemu: cannot open libfoo.so"
    missing = tmp_path / "nope"
    with pytest.raises(QemuError) as info:
        check_stage0_qemu(str(missing))
    assert str(info.value) == f"{missing} --version is not installed"
    silent = _script(tmp_path / "qemu-silent", "exit 0")
    with pytest.raises(QemuError, match="no 'QEMU emulator version' line"):
        check_stage0_qemu(str(silent))
