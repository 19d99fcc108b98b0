"""hats.stage1.cmdline: stage1's argv, LAUNCHER_ADDR and /proc/cmdline."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hats.stage1.cmdline import (
    DEFAULT_INIT,
    DEFAULT_LAUNCHER_ADDR,
    KernelCmdline,
    Stage1Args,
    launcher_addr_env,
    parse_proc_cmdline,
    parse_stage1_args,
)
from hats.stage1.errors import CmdlineError, LauncherAddrError

HATS_CMDLINE = (
    " console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size=10000000 brd.max_part=1 "
    "ip=10.0.2.15:::255.255.255.0::enp0s1:off quiet -- --launcher-addr=vsock://2:40123"
    " --oak-dice=0x17000 --oak-event-log=0x18000 --oak-dice-length=4096\n"
)


def test_defaults() -> None:
    args = parse_stage1_args([])
    assert args == Stage1Args()
    assert (args.launcher_addr, args.init) == (DEFAULT_LAUNCHER_ADDR, DEFAULT_INIT)
    assert args.launcher_env == {"LAUNCHER_ADDR": "http://10.0.2.100:8080/"}


def test_the_hats_command_line_end_to_end() -> None:
    kernel, init = parse_proc_cmdline(HATS_CMDLINE)
    assert kernel[0] == "console=ttyS0" and kernel[-1] == "quiet"
    assert "ip=10.0.2.15:::255.255.255.0::enp0s1:off" in kernel
    args = parse_stage1_args(init)
    assert args.launcher_addr == "vsock://2:40123"
    assert (args.oak_dice, args.oak_event_log, args.oak_dice_length) == (0x17000, 0x18000, 4096)
    assert args.unknown == ()
    assert args.launcher_env == {"LAUNCHER_ADDR": "vsock://2:40123/"}


def test_both_flag_forms_eth0_addresses_and_unknown_arguments() -> None:
    args = parse_stage1_args(
        [
            "--init",
            "/usr/lib/systemd/systemd",
            "--verbose",
            "--launcher-addr",
            "http://10.0.2.2:8080",
            "stray",
            "--eth0-address",
            "10.0.2.15/24,fe80::2/64,10.0.3.15/24",
            "--oak-dice-length=+12",
            "--",
            "--init=/after-the-separator",
        ],
        allow_other_init=True,
    )
    assert args.init == "/usr/lib/systemd/systemd"
    assert args.launcher_addr == "http://10.0.2.2:8080"
    assert args.eth0_address == ("10.0.2.15/24", "fe80::2/64", "10.0.3.15/24")
    assert args.oak_dice_length == 12
    assert args.unknown == ("--verbose", "stray", "--", "--init=/after-the-separator")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--init"], "--init: a value is required"),
        (["--init", "--verbose"], "--init: a value is required"),
        (["--oak-dice", "-1"], "--oak-dice: a value is required"),
        (["--init=/a", "--init=/b"], "cannot be used multiple times"),
        (["--eth0-address=a", "--eth0-address", "b"], "--eth0-address: cannot be used multiple"),
        (["--init", "/bin/sh"], "--init: only /sbin/init is allowed"),
        (["--oak-dice=0X10"], "not a decimal number"),
        (["--oak-dice=0x"], "not a hex number"),
        (["--oak-dice=-1"], "not a decimal number"),
        (["--oak-dice=12 "], "not a decimal number"),
        (["--oak-event-log=0x10000000000000"], "invalid physical address"),
        (["--oak-dice-length=18446744073709551616"], "too large"),
        (["--launcher-addr=vsock://2:1 234"], "--launcher-addr: invalid uri character"),
        (["--launcher-addr="], "--launcher-addr: empty string"),
    ],
)
def test_bad_arguments(argv: list[str], message: str) -> None:
    with pytest.raises(CmdlineError, match=message):
        parse_stage1_args(argv)


def test_physical_addresses_below_2_52() -> None:
    args = parse_stage1_args(["--oak-dice=0xFFFFFFFFFFFFF", "--oak-event-log=4503599627370495"])
    assert args.oak_dice == args.oak_event_log == (1 << 52) - 1


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("http://10.0.2.100:8080", "http://10.0.2.100:8080/"),
        ("vsock://2:1234", "vsock://2:1234/"),
        ("vsock://2:1234/", "vsock://2:1234/"),
        ("HTTP://Host:1", "http://Host:1/"),
        ("HTTPS://h", "https://h/"),
        ("Vsock://2:1", "Vsock://2:1/"),
        ("http://h:1/p/a?q=1&r#frag", "http://h:1/p/a?q=1&r"),
        ("http://h#frag", "http://h/"),
        ("http://h?x", "http://h/?x"),
        ("http://user@[::1]:8080", "http://user@[::1]:8080/"),
        ("10.0.2.100:8080", "10.0.2.100:8080"),
        ("/only/a/path", "/only/a/path"),
        ("*", "*"),
    ],
)
def test_launcher_addr_is_shown_as_tonic_displays_it(value: str, shown: str) -> None:
    assert launcher_addr_env(value) == shown


@pytest.mark.parametrize(
    "value",
    ["", "http://", "unix:/tmp/sock", "a:1:2", "http://a b", "http://[::1", "http://h/é", "x@"],
)
def test_uris_tonic_rejects(value: str) -> None:
    with pytest.raises(LauncherAddrError):
        launcher_addr_env(value)


@given(
    scheme=st.sampled_from(["http", "https", "vsock", "grpc+unix"]),
    host=st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True),
    port=st.integers(0, 65535),
    path=st.from_regex(r"(/[a-z0-9._-]{0,8}){0,3}", fullmatch=True),
)
def test_a_uri_gets_a_slash_only_when_its_path_is_empty(
    scheme: str, host: str, port: int, path: str
) -> None:
    shown = launcher_addr_env(f"{scheme}://{host}:{port}{path}")
    assert shown == f"{scheme}://{host}:{port}{path or '/'}"
    assert launcher_addr_env(shown) == shown


@given(st.text(max_size=40))
def test_launcher_addr_parses_or_fails_cleanly(value: str) -> None:
    try:
        shown = launcher_addr_env(value)
    except LauncherAddrError:
        return
    assert launcher_addr_env(shown) == shown


@given(st.lists(st.sampled_from(["--init", "--oak-dice", "x", "0x10", "--eth0-address", "-v"])))
def test_argv_parses_or_fails_with_a_cmdline_error(argv: list[str]) -> None:
    try:
        args = parse_stage1_args(argv)
    except CmdlineError:
        return
    assert set(args.unknown) <= set(argv) - {"--init", "--oak-dice", "--eth0-address"}
    assert args.init == DEFAULT_INIT or args.init in argv
    assert args.oak_dice in (None, 0x10)


def test_proc_cmdline_quotes_like_the_kernel() -> None:
    text = 'a="b c"  "d e"\tf=" g " h="i"j "k=l m" =n =o=p q="" -- x="y z" w -- dropped\n'
    assert parse_proc_cmdline(text) == KernelCmdline(
        ["a=b c", "d e", "f= g ", 'h=i"j', "k=l m", "=n", "=o=p", "q="], ["x=y z", "w"]
    )
    # An unbalanced quote runs to the end of the line, spaces and "--" included.
    assert parse_proc_cmdline('q=" -- x="y z" w -- end') == (['q= -- x="y', 'z" w -- end'], [])


def test_proc_cmdline_without_separator_and_with_a_quoted_one() -> None:
    assert parse_proc_cmdline("  quiet  console=ttyS0 \n") == (["quiet", "console=ttyS0"], [])
    assert parse_proc_cmdline('quiet "--" --init=/bin/sh') == (["quiet"], ["--init=/bin/sh"])
    assert parse_proc_cmdline("") == ([], [])


WORD = st.from_regex(r"[A-Za-z0-9_.:/,=+-]{1,12}", fullmatch=True).filter(lambda w: w != "--")


@given(
    kernel=st.lists(WORD, max_size=6),
    init=st.lists(WORD, max_size=6),
    spaces=st.sampled_from([" ", "  ", "\t", " \n "]),
)
def test_plain_words_split_on_whitespace_at_the_first_separator(
    kernel: list[str], init: list[str], spaces: str
) -> None:
    text = spaces.join([*kernel, "--", *init]) + "\n"
    assert parse_proc_cmdline(text) == KernelCmdline(kernel, init)


@given(
    param=st.from_regex(r"[a-z._-]{1,8}", fullmatch=True),
    value=st.text(st.characters(blacklist_characters='"\x00', codec="utf-8"), max_size=12),
)
def test_a_quoted_value_keeps_its_spaces(param: str, value: str) -> None:
    assert parse_proc_cmdline(f'{param}="{value}" next') == ([f"{param}={value}", "next"], [])
