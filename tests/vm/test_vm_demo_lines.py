"""How the VM demo recognises the workload's key line and the orchestrator's refusal."""

from __future__ import annotations

import pytest

from hats.vm import demo

KEY = (
    "oak-orchestrator.service: key_id=64 public_key=demo public key "
    "private_key_sha256=ffe0aec7942178dd (32 bytes)"
)
REFUSED = (
    "oak-orchestrator.service: orchestrator_main: no-split needs all 1 TVS, 1 failed: TVS 0 "
    "(line 1): launcher VerifyReport failed: UNKNOWN: … No matching appraisal policy found"
)


def test_key_line() -> None:
    match = demo._KEY_LINE.search(KEY)
    assert match is not None
    assert match.groups() == ("64", "ffe0aec7942178dd")
    assert demo._FAILURE.search(KEY) is None


def test_refusal_line() -> None:
    assert demo._FAILURE.search(REFUSED) is not None
    assert demo._KEY_LINE.search(REFUSED) is None
    # Progress lines of the orchestrator are not failures.
    assert demo._FAILURE.search("oak-orchestrator.service: launcher metadata received") is None


def test_guest_cmdline_is_the_reference_form() -> None:
    text = demo.guest_cmdline()
    assert text.startswith(" console=ttyS0 panic=-1 brd.rd_nr=1 ")
    assert text.endswith(" -- --launcher-addr=http://10.0.2.100:8080")


class _Stop(Exception):
    pass


def test_the_vm_demo_shows_the_image_builds_progress(tmp_path, monkeypatch) -> None:
    """Step 1 runs `hats image build` without -q, its stderr on ours (not 108 silent s)."""
    calls: list[tuple[str, list[str], bool]] = []

    def record(step: str, args: list[str], env: dict[str, str], *, show_progress: bool = False):
        calls.append((step, args, show_progress))
        raise _Stop

    monkeypatch.setattr(demo, "run_step", record)
    lines: list[str] = []
    with pytest.raises(_Stop):
        demo.prepare_vm(demo.VmDemoOptions(workdir=tmp_path), lines.append)
    step, args, show_progress = calls[0]
    assert step == "system image"
    assert args[3:5] == ["image", "build"]  # [python, -m, hats, image, build, ...]
    assert "-q" not in args and show_progress
    # Numbered by hats.console.Steps: the header, then the step's line under it.
    assert lines[:2] == ["[1/6] system image", "      building (progress on stderr)"]
    assert lines[2].startswith("[1/6] system image: failed after ")


def test_a_step_with_progress_streams_its_stderr(capfd) -> None:
    import os
    import sys

    from hats.demo.harness import DemoError, run_step

    code = "import sys; print('out'); print('hats: 10% composed', file=sys.stderr)"
    assert run_step("step", [sys.executable, "-c", code], {}, show_progress=True) == "out\n"
    assert "hats: 10% composed" in capfd.readouterr().err
    failing = "import sys; print('boom', file=sys.stderr); sys.exit(1)"
    with pytest.raises(DemoError) as failed:
        run_step("step", [sys.executable, "-c", failing], {}, show_progress=True)
    # hats.toolrun's one error form; the tool's own lines are already on the screen.
    python = os.path.basename(sys.executable)
    assert str(failed.value) == f"step: {python} failed (exit 1): see its output above"
    assert "boom" in capfd.readouterr().err
