"""``hats vm demo --guest-kernel-arg``: the policy is made for the line the launcher boots.

No VM: the demo's launcher options are captured and parsed by the launcher's
own ``serve`` options, its VmConfig is built as ``boot`` builds it, and the
command line the policy step gives ``hats stage1 simulate`` is compared.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from hats.launcher.cli import serve_command
from hats.launcher.run import ServeSettings, _vm_options
from hats.vm import demo
from hats.vm.cli import demo_command
from hats.vm.qemu import VmConfig

ARGS = ("ipv6.disable=1", "loglevel=3")


class _Stop(Exception):
    pass


def _launcher_args(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ``hats launcher serve`` options ``boot_and_wait`` starts the launcher with."""
    captured: list[str] = []

    def start_launcher(setup: Any, running: Any, extra: Any = ()) -> None:
        captured.extend(map(str, extra))
        raise _Stop

    monkeypatch.setattr(demo, "start_tvs", lambda *args, **kwargs: None)
    monkeypatch.setattr(demo, "start_launcher", start_launcher)
    setup = SimpleNamespace(work=tmp_path, expected_fingerprint="00" * 8)
    options = demo.VmDemoOptions(workdir=tmp_path, guest_kernel_args=ARGS)
    with pytest.raises(_Stop):
        demo.boot_and_wait(setup, options, lambda line: None)  # type: ignore[arg-type]
    return captured


def test_the_launcher_boots_the_line_the_policy_is_made_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = _launcher_args(tmp_path, monkeypatch)
    assert args.count("--guest-kernel-arg") == len(ARGS)
    params = serve_command.make_context("serve", args).params
    settings = ServeSettings(vmm="qemu", guest_kernel_args=params["guest_kernel_args"])
    vm = _vm_options(settings, None)
    launched = VmConfig(
        kernel=Path("k"),
        initrd=Path("i"),
        launcher_target="127.0.0.1:1",
        console_log=Path("c"),
        qmp_socket=Path("q"),
        ramdrive_size_kb=vm.ramdrive_size_kb,
        network_mode=vm.network_mode,
        kernel_args=vm.kernel_args,
    ).cmdline
    assert launched == demo.guest_cmdline(ARGS)
    assert " quiet ipv6.disable=1 loglevel=3 -- --launcher-addr=" in launched


def test_the_policy_step_records_the_same_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []

    def simulate(image: Path, out: Path, env: Any, *, step: str, extra: Any) -> Path:
        calls.append([str(word) for word in extra])
        return out

    monkeypatch.setattr(demo, "simulate_stage1", simulate)
    monkeypatch.setattr(demo, "make_vm_policy", lambda out, **kwargs: out)
    options = demo.VmDemoOptions(workdir=tmp_path, guest_kernel_args=ARGS)
    dice, policy = demo.guest_policy(
        options,
        image=tmp_path / "image.tar.xz",
        image_sha256="ab" * 32,
        bundle=tmp_path / "bundle.tar",
        env={},
        steps=lambda line: None,
        name="ipv6",
    )
    assert (dice.name, policy.name) == ("reference_dice-ipv6.bin", "policy-ipv6.txtpb")
    [extra] = calls
    line = extra[extra.index("--kernel-cmdline") + 1]
    assert line == demo.guest_cmdline(ARGS) != demo.guest_cmdline()
    assert line.replace(" ipv6.disable=1 loglevel=3", "") == demo.guest_cmdline()


def test_stage0_measures_the_same_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assets = SimpleNamespace(kernel=tmp_path / "k", initrd=tmp_path / "i")
    monkeypatch.setattr("hats.vm.assets.ensure_guest_assets", lambda **kwargs: assets)
    options = demo.VmDemoOptions(workdir=tmp_path, stage0=tmp_path / "s", guest_kernel_args=ARGS)
    assert demo.stage0_config(options).cmdline == demo.guest_cmdline(ARGS)


def test_hats_vm_demo_refuses_a_bad_argument_before_building(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        demo_command, ["--workdir", str(tmp_path), "--guest-kernel-arg", 'a="b c"']
    )
    assert result.exit_code != 0
    assert "--guest-kernel-arg" in str(result.exception) and "quotes" in str(result.exception)
    assert list(tmp_path.iterdir()) == []
