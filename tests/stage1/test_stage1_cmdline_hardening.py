"""Our stage1 refuses extra stage1 flags a host could add to the command line (item 1, F10).

Oak's stage1 takes ``--init=PATH``; with a policy regex ending in ``.*$`` a host
can append `` --init=/bin/sh`` and still match. Our stage1 (the guest and
``hats stage1 simulate``) refuses a flag given twice and any ``--init`` but
``/sbin/init`` (``--allow-other-init`` on simulate only).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hats.attestation.simulate import DEFAULT_KERNEL_CMDLINE
from hats.stage1 import guest
from hats.stage1.cmdline import (
    DEFAULT_INIT,
    Stage1Args,
    parse_proc_cmdline,
    parse_stage1_args,
    stage1_argv,
)
from hats.stage1.errors import CmdlineError
from hats.stage1.simulate_cli import stage1_group
from hats.vm.qemu import IP_CONFIG, LAUNCHER_GUEST_ADDR, kernel_cmdline

# The reference's command line shape (upstream-facts F10 / system-image §3.5).
REFERENCE = (
    " console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size=10485760 brd.max_part=1"
    " ip=10.0.2.15:::255.255.255.0::enp0s1:off quiet -- --launcher-addr=vsock://2:1061704822"
)


def args_of(cmdline: str, **options: bool) -> Stage1Args:
    return parse_stage1_args(stage1_argv(parse_proc_cmdline(cmdline)), **options)


def test_the_reference_command_line_is_accepted() -> None:
    args = parse_stage1_args(stage1_argv(parse_proc_cmdline(REFERENCE)))
    assert args.init == DEFAULT_INIT
    assert args.launcher_addr == "vsock://2:1061704822"


@pytest.mark.parametrize(
    ("appended", "message"),
    [
        (" --init=/bin/sh", "--init: only /sbin/init is allowed"),
        (" --init /bin/sh", "--init: only /sbin/init is allowed"),
        (" --launcher-addr=vsock://2:1", "--launcher-addr: cannot be used multiple times"),
        (" --init=/sbin/init --init=/bin/sh", "--init: cannot be used multiple times"),
        (" --eth0-address=a --eth0-address=b", "--eth0-address: cannot be used multiple times"),
    ],
)
def test_appended_stage1_flags_are_refused(appended: str, message: str) -> None:
    with pytest.raises(CmdlineError, match=message):
        args_of(REFERENCE + appended)


def test_init_before_the_separator_is_seen() -> None:
    """The kernel hands init its unknown words without '=' before ``--`` too."""
    cmdline = REFERENCE.replace(" quiet --", " quiet --init /bin/sh --")
    assert stage1_argv(parse_proc_cmdline(cmdline))[-3:-1] == ["--init", "/bin/sh"]
    with pytest.raises(CmdlineError, match="--init: only /sbin/init"):
        args_of(cmdline)


def test_sbin_init_explicitly_is_fine_and_allow_other_init_is_the_override() -> None:
    assert args_of(REFERENCE + " --init=/sbin/init").init == DEFAULT_INIT
    assert args_of(REFERENCE + " --init=/bin/sh", allow_other_init=True).init == "/bin/sh"
    with pytest.raises(CmdlineError, match="multiple times"):
        args_of(REFERENCE + " --init=/a --init=/b", allow_other_init=True)


@pytest.mark.parametrize("mode", sorted(IP_CONFIG))
@pytest.mark.parametrize("debug", [False, True])
def test_the_command_lines_our_vm_boots_with_are_accepted(mode: str, debug: bool) -> None:
    cmdline = kernel_cmdline(
        launcher_addr=LAUNCHER_GUEST_ADDR, ramdrive_size_kb=1024, network_mode=mode, debug=debug
    )
    assert args_of(cmdline).launcher_addr == LAUNCHER_GUEST_ADDR
    assert args_of(DEFAULT_KERNEL_CMDLINE).init == DEFAULT_INIT


def test_the_guest_stops_before_anything_on_another_init(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert guest.main(["--launcher-addr=vsock://2:1", "--init=/bin/sh"]) == 1
    out = capsys.readouterr().out
    assert out == (
        "hats-stage1: error: --init: only /sbin/init is allowed"
        " (another init would run before the attested image's)\n"
    )


# --- hats stage1 simulate --------------------------------------------------------------------


def simulate(tmp_path: Path, *extra: str) -> Path:
    image = tmp_path / "image.tar.xz"
    image.write_bytes(b"an image")
    output = tmp_path / "dice"
    args = ["simulate", "--system-image", str(image), "-o", str(output), *extra]
    stage1_group.main(args, prog_name="hats stage1", standalone_mode=False)
    return output


def test_simulate_refuses_an_appended_init(tmp_path: Path) -> None:
    with pytest.raises(CmdlineError, match=r"^--kernel-cmdline: --init: only /sbin/init"):
        simulate(tmp_path, "--kernel-cmdline", REFERENCE + " --init=/bin/sh")
    assert not (tmp_path / "dice").exists()


def test_simulate_refuses_a_repeated_flag_even_with_the_override(tmp_path: Path) -> None:
    with pytest.raises(CmdlineError, match="--launcher-addr: cannot be used multiple times"):
        simulate(
            tmp_path,
            "--allow-other-init",
            "--kernel-cmdline",
            REFERENCE + " --launcher-addr=vsock://2:9",
        )


def test_simulate_allow_other_init(tmp_path: Path) -> None:
    output = simulate(
        tmp_path, "--allow-other-init", "--kernel-cmdline", REFERENCE + " --init=/bin/sh"
    )
    assert output.exists()
