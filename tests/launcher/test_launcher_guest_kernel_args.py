"""``--guest-kernel-arg`` from the launcher's options to the QEMU command line it boots.

Insecure mode (our VmConfig) and reference mode (F7's argv), through the
launcher's own steps (:func:`_vm_options`, :func:`guest_plan`, :func:`boot`)
with QEMU replaced by a recorder; ``hats launcher qemu-command`` and
``serve``'s refusals through the CLI. The reference words are written from
system-image §3.5 / upstream-facts F7.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from hats.cli import main
from hats.launcher import qemu_argv as qa
from hats.launcher import run as launcher_run
from hats.launcher.config import LauncherImages, parse_launcher_config
from hats.launcher.run import ServeSettings, guest_plan
from hats.vm import launch
from hats.vm.kernelargs import KernelArgError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "launcher"
PINNED = qa.Draw(cid=555555, tap=42, mac_byte=0x0B)
#: §3.5's line for the SLIRP inbound_only mode, the guest reaching the launcher at 10.0.2.100.
SLIRP_LINE = (
    " console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size=1572864 brd.max_part=1"
    " ip=10.0.2.15:::255.255.255.0::enp0s1:off quiet -- --launcher-addr=http://10.0.2.100:8080"
)
IPV6 = " quiet ipv6.disable=1 -- "


class _Recorder:
    """Stands for :class:`hats.vm.machine.Machine`: records the config and argv it is given."""

    made: ClassVar[list[tuple[Any, list[str] | None]]] = []

    def __init__(self, config: Any, argv: list[str] | None = None) -> None:
        _Recorder.made.append((config, argv))

    def start(self) -> None:
        pass


def _boot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: ServeSettings
) -> tuple[str, list[str]]:
    """The ``-append`` string the launcher would boot with ``settings``, and its start lines."""
    monkeypatch.setattr(launch, "Machine", _Recorder)
    monkeypatch.setattr(launch, "check_stage0_qemu", lambda qemu: (10, 0))
    monkeypatch.setattr(launch, "VHOST_VSOCK", tmp_path / "no-vhost-vsock")
    monkeypatch.setattr("hats.vm.qemu.VHOST_VSOCK", tmp_path / "no-vhost-vsock")
    _Recorder.made.clear()
    vm = launcher_run._vm_options(settings, None)
    vm, listen, lines = guest_plan(None, vm, LauncherImages(), settings, settings.listen)
    launch.boot(vm, listen or "unix:/l.sock", lambda line: None, tmp_path)
    [(config, argv)] = _Recorder.made
    if argv is None:
        return config.cmdline, lines
    return argv[argv.index("-append") + 1], lines


def _settings(tmp_path: Path, *args: str, stage0: bool = False) -> ServeSettings:
    kernel, initrd = tmp_path / "kernel", tmp_path / "initrd"
    kernel.write_bytes(b"k")
    initrd.write_bytes(b"i")
    return ServeSettings(
        vmm="qemu",
        accel="tcg",
        kernel=kernel,
        initrd=initrd,
        listen="127.0.0.1:8080",
        stage0=tmp_path / "stage0_bin" if stage0 else None,
        guest_kernel_args=args,
    )


def test_insecure_mode_boots_the_reference_line_without_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cmdline, lines = _boot(tmp_path, monkeypatch, _settings(tmp_path))
    assert cmdline == SLIRP_LINE
    assert not any("kernel command line" in line for line in lines)


def test_insecure_mode_adds_the_arguments_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, "ipv6.disable=1", "loglevel=3")
    cmdline, lines = _boot(tmp_path, monkeypatch, settings)
    assert cmdline == SLIRP_LINE.replace(" quiet -- ", " quiet ipv6.disable=1 loglevel=3 -- ")
    [said] = [line for line in lines if "kernel command line" in line]
    assert "not the reference's" in said and "ipv6.disable=1 loglevel=3" in said
    assert "policy" in said


def test_reference_mode_adds_the_arguments_to_f7s_append_string(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain, _ = _boot(tmp_path, monkeypatch, _settings(tmp_path, stage0=True))
    # F7's string (rd_size from the launcher's default ramdrive), vsock dropped: no vhost-vsock.
    assert plain == SLIRP_LINE
    cmdline, lines = _boot(
        tmp_path, monkeypatch, _settings(tmp_path, "ipv6.disable=1", stage0=True)
    )
    assert cmdline == SLIRP_LINE.replace(" quiet -- ", IPV6)
    assert lines[0].startswith("vm: reference mode")
    assert any("not the reference's" in line for line in lines)


def test_the_reference_argv_changes_only_in_its_append_string() -> None:
    config = parse_launcher_config((EXAMPLES / "inbound_only.txtpb").read_text(), "test")
    paths = qa.BundlePaths("/b/stage0_bin", "/b/kernel_bin", "/b/initrd.cpio.xz")
    plain = qa.qemu_argv(config, paths, launcher_vsock_port=41337, randomness=PINNED)
    extra = qa.qemu_argv(
        config, paths, launcher_vsock_port=41337, randomness=PINNED, kernel_args=["ipv6.disable=1"]
    )
    index = plain.argv.index("-append") + 1
    assert extra.argv[:index] == plain.argv[:index]
    assert extra.argv[index + 1 :] == plain.argv[index + 1 :]
    assert extra.argv[index] == (
        " console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size=10485760 brd.max_part=1"
        " ip=10.0.2.15:::255.255.255.0::enp0s1:off quiet ipv6.disable=1 --"
        " --launcher-addr=vsock://2:41337"
    )


def test_a_bad_argument_stops_the_launcher_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(KernelArgError, match="--guest-kernel-arg '--init=/bin/sh'"):
        launcher_run._vm_options(_settings(tmp_path, "--init=/bin/sh"), None)


def test_qemu_command_takes_the_option_and_says_the_line_is_not_the_references(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(qa, "draw", lambda randbelow: PINNED)
    path = str(EXAMPLES / "inbound_only.txtpb")
    common = ["launcher", "qemu-command", "--launcher_config_path", path]
    common += ["--launcher-vsock-port", "41337"]
    code = main([*common, "--guest-kernel-arg", "ipv6.disable=1"])
    out, err = capsys.readouterr()
    assert code == 0
    assert " quiet ipv6.disable=1 -- --launcher-addr=vsock://2:41337\n" in out
    assert err.count("\n") == 1 and "not the reference's" in err
    code = main([*common, "--guest-kernel-arg", "a b"])
    out, err = capsys.readouterr()
    assert code != 0 and out == ""
    assert "--guest-kernel-arg 'a b'" in err and err.count("\n") == 1


def test_serve_refuses_the_option_without_a_vm(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["launcher", "serve", "--guest-kernel-arg", "ipv6.disable=1"])
    _, err = capsys.readouterr()
    assert code != 0 and "--guest-kernel-arg need --vmm qemu" in err
