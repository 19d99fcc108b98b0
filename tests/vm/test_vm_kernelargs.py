"""--guest-kernel-arg: the checker and the composed kernel command line (hats.vm.kernelargs)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hats.errors import HatsError
from hats.vm.kernelargs import (
    COMMAND_LINE_MAX,
    MAX_KERNEL_ARGS,
    KernelArgError,
    check_kernel_args,
    insert_kernel_args,
    kernel_args_line,
)
from hats.vm.qemu import LAUNCHER_GUEST_ADDR, kernel_cmdline

#: The reference's §3.5 string for the SLIRP inbound_only mode (system-image.md §3.5).
REFERENCE = (
    " console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size=1572864 brd.max_part=1"
    " ip=10.0.2.15:::255.255.255.0::enp0s1:off quiet -- --launcher-addr=http://10.0.2.100:8080"
)

# What an accepted argument may be made of: printable ASCII, no space, quotes or backslash.
_ALLOWED = "".join(c for c in string.printable if "!" <= c <= "~" and c not in "\"'\\")
_ARG = st.text(alphabet=_ALLOWED, min_size=1, max_size=40).filter(lambda a: not a.startswith("-"))


def test_no_extra_arguments_leave_the_reference_line() -> None:
    line = kernel_cmdline(launcher_addr=LAUNCHER_GUEST_ADDR, ramdrive_size_kb=1536 * 1024)
    assert line == REFERENCE
    assert insert_kernel_args(REFERENCE, ()) == REFERENCE


def test_arguments_go_before_stage1s_separator_in_order() -> None:
    line = kernel_cmdline(
        launcher_addr=LAUNCHER_GUEST_ADDR,
        ramdrive_size_kb=1536 * 1024,
        kernel_args=("ipv6.disable=1", "sysctl.net.ipv6.conf.all.accept_dad=0"),
    )
    assert line == REFERENCE.replace(
        " quiet -- ", " quiet ipv6.disable=1 sysctl.net.ipv6.conf.all.accept_dad=0 -- "
    )


@pytest.mark.parametrize(
    ("arg", "why"),
    [
        ("", "empty"),
        ("ipv6.disable=1 init=/bin/sh", "whitespace"),
        ("a\tb", "whitespace"),
        ("a\nb", "whitespace"),
        ("a\x00b", "control"),
        ("a\x7fb", "control"),
        ("café", "ASCII"),
        ('a="b c"', "quotes"),
        ("a='b'", "quotes"),
        ("a\\b", "backslash"),
        ("--", "stage1"),
        ("--init=/bin/sh", "stage1"),
        ("-x", "stage1"),
    ],
)
def test_bad_arguments_are_refused_naming_them(arg: str, why: str) -> None:
    with pytest.raises(KernelArgError) as info:
        check_kernel_args([arg])
    message = str(info.value)
    assert isinstance(info.value, HatsError)
    assert "\n" not in message
    assert message.startswith(f"--guest-kernel-arg {arg!a}")
    words = {
        "empty": "empty",
        "whitespace": "whitespace",
        "control": "control",
        "ASCII": "ASCII",
        "quotes": "quotes",
        "backslash": "backslashes",
        "stage1": "stage1",
    }
    assert words[why] in message


def test_the_count_is_bounded() -> None:
    check_kernel_args(["a=1"] * MAX_KERNEL_ARGS)
    with pytest.raises(KernelArgError, match=f"at most {MAX_KERNEL_ARGS}"):
        check_kernel_args(["a=1"] * (MAX_KERNEL_ARGS + 1))


def test_the_whole_line_stays_within_the_x86_limit() -> None:
    # x86 COMMAND_LINE_SIZE is 2048 with the NUL: 2047 characters fit, 2048 do not.
    room = 2047 - len(REFERENCE) - 1  # one space before the argument
    fits = insert_kernel_args(REFERENCE, ["x" * room])
    assert len(fits) == 2047 == COMMAND_LINE_MAX
    with pytest.raises(KernelArgError, match="2048 bytes, over the x86 kernel's 2047"):
        insert_kernel_args(REFERENCE, ["x" * (room + 1)])


def test_a_line_without_stage1s_separator_is_refused() -> None:
    with pytest.raises(KernelArgError, match="no ' -- '"):
        insert_kernel_args(" console=ttyS0 quiet", ["ipv6.disable=1"])


def test_the_start_line_says_the_line_is_not_the_references() -> None:
    assert kernel_args_line(()) == ""
    line = kernel_args_line(("ipv6.disable=1",))
    assert line.startswith("vm: ") and "\n" not in line
    assert "ipv6.disable=1" in line and "not the reference's" in line and "policy" in line


@given(st.lists(_ARG, max_size=8))
def test_accepted_arguments_round_trip_as_words_before_the_separator(args: list[str]) -> None:
    assert check_kernel_args(args) == tuple(args)
    line = insert_kernel_args(REFERENCE, args)
    head, separator, tail = line.partition(" -- ")
    assert separator and tail == REFERENCE.partition(" -- ")[2]
    base = REFERENCE.partition(" -- ")[0].split()
    assert head.split() == [*base, *args]


@given(
    st.text(min_size=0, max_size=10),
    st.sampled_from([" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x00", "\x1b", "\x7f", "\x85"]),
    st.text(min_size=0, max_size=10),
)
def test_whitespace_or_control_characters_are_always_refused(
    before: str, bad: str, after: str
) -> None:
    with pytest.raises(KernelArgError):
        check_kernel_args(["ok=1", before + bad + after])
