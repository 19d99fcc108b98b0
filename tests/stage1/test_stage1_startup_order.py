"""Stage1 says its first console line before it imports gRPC, protobuf or cryptography.

The VM bench reads "QEMU start → stage1's first line" as the cost of the
firmware, the kernel, the initramfs and the interpreter's start; the heavy
imports (gRPC and protobuf for the fetch, cryptography and the DICE code for
the evidence) belong to the steps that use them. Checked in a fresh
interpreter, so nothing imported by the test run hides a module.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
HEAVY = ("grpc", "google.protobuf", "cryptography", "hats.attestation", "hats.pb")

_PROBE = """\
import sys
sys.path.insert(0, {src!r})
from pathlib import Path
from hats.stage1 import guest

cmdline = Path({cmdline!r})
guest.PROC_CMDLINE = cmdline

class FirstLine(Exception):
    pass

def log(message):
    loaded = sorted(name for name in sys.modules if name.startswith({heavy!r}))
    print("FIRST", message)
    print("LOADED", " ".join(loaded))
    raise FirstLine

guest.log = log
try:
    guest.run(["--launcher-addr=10.0.2.100:8080"])
except FirstLine:
    pass
"""


def test_first_line_comes_before_the_heavy_imports(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("console=ttyS0 quiet -- --launcher-addr=10.0.2.100:8080\n")
    code = _PROBE.format(src=str(SRC), cmdline=str(cmdline), heavy=HEAVY)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    lines: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" ")
        lines[key] = value
    assert lines["FIRST"].startswith("launcher 10.0.2.100:8080")
    assert lines["LOADED"] == ""
