"""The launcher's lifecycle core (``hats.launcher.run``), in-process: the guest thread,
signals, start lines, shutdown order, the guest's error, telemetry file errors."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from hats.errors import HatsError
from hats.launcher import run as core
from hats.launcher.config import LauncherImages
from hats.launcher.services import build_metadata
from hats.launcher.telemetry import MetricsStore
from hats.vm.launch import VmOptions


def _run(sock_dir: Path, lines: list[str] | None = None) -> None:
    core.run(
        f"unix:{sock_dir / 'l.sock'}",
        LauncherImages(),
        build_metadata("", "", b""),
        [],
        None,
        None,
        core.Telemetry(None, None),
        VmOptions(),
        start_lines=lines,
    )


def test_the_guest_ending_stops_the_launcher_after_its_start_lines(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str] = []

    def guest(vm: VmOptions, address: str, stop: threading.Event, say: object) -> int:
        seen.append(address)
        return 0

    monkeypatch.setattr("hats.vm.launch.serve_with_vm", guest)
    before = signal.getsignal(signal.SIGTERM)
    _run(sock_dir, ["vm: first", "vm: second"])
    out = capsys.readouterr().out.splitlines()
    assert out == [f"listening on unix:{sock_dir / 'l.sock'}", "vm: first", "vm: second", "stopped"]
    assert seen == [f"unix:{sock_dir / 'l.sock'}"]
    assert signal.getsignal(signal.SIGTERM) is before  # handlers put back


def test_sigterm_stops_the_guest_before_the_services(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    order: list[str] = []

    def guest(vm: VmOptions, address: str, stop: threading.Event, say: object) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(10)
        order.append("guest powered off")
        return 0

    monkeypatch.setattr("hats.vm.launch.serve_with_vm", guest)
    _run(sock_dir)
    order.append("run returned")
    assert order == ["guest powered off", "run returned"]
    assert capsys.readouterr().out.splitlines()[-1] == "stopped"


def test_a_guest_failure_is_raised_once_the_services_are_down(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def guest(vm: VmOptions, address: str, stop: threading.Event, say: object) -> int:
        raise HatsError("qemu: cannot start: No such file or directory")

    monkeypatch.setattr("hats.vm.launch.serve_with_vm", guest)
    with pytest.raises(HatsError, match="cannot start"):
        _run(sock_dir)
    assert capsys.readouterr().out.splitlines()[-1] == "stopped"


def test_a_metrics_file_error_is_said_once_until_a_write_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    telemetry = core.Telemetry(None, tmp_path / "missing-dir" / "m.json")
    store = MetricsStore()
    telemetry.save_metrics(store)
    telemetry.save_metrics(store)
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 1 and errors[0].startswith("hats launcher: metrics file: ")
    (tmp_path / "missing-dir").mkdir()
    telemetry.save_metrics(store)
    assert (tmp_path / "missing-dir" / "m.json").exists()
    (tmp_path / "missing-dir" / "m.json").unlink()
    (tmp_path / "missing-dir").rmdir()
    telemetry.save_metrics(store)
    assert len(capsys.readouterr().err.splitlines()) == 1  # said again after a success


def test_without_vmm_sevsnp_needs_only_the_vcek(tmp_path: Path) -> None:
    from hats.launcher.config import parse_launcher_config
    from hats.launcher.vcek import VcekError

    config = parse_launcher_config("cvm_config { cvm_type: CVMTYPE_SEVSNP }", "t")
    with pytest.raises(VcekError, match="no VCEK for tee_certificate"):
        core.tee_certificate(config, None, None, None, None)
    assert core.tee_certificate(None, None, None, None, None) == b""
