"""Extra guest kernel arguments (``--guest-kernel-arg``), checked and put into the command line.

Pure. The guest's kernel command line is the reference's string (system-image
§3.5: ``… ip=… quiet -- --launcher-addr=…``); stage1 records it into the
evidence (real stage0 measures it) and the appraisal policy matches it, so
extra arguments are an explicit opt-in and the policy must be made for the
resulting line.

Rules for each extra argument (:func:`check_kernel_args`):

* non-empty, printable ASCII (``!`` to ``~``): no whitespace, no control
  character, no quote (``"``, ``'``) and no backslash — the kernel's own
  parser (``next_arg``) gives quotes a meaning, and one word must stay one
  word of the line;
* not starting with ``-``: everything after the ``--`` is stage1's argv, and a
  bare word before it that the kernel does not know is handed to ``/init``
  (stage1) as an argument too, so a ``--flag`` (or ``-x``) here would reach
  stage1;
* at most :data:`MAX_KERNEL_ARGS` arguments.

:func:`insert_kernel_args` puts them, in the order given, before the first
``" -- "`` of the line (one space each), and refuses a line longer than the
x86 kernel takes (:data:`COMMAND_LINE_MAX`). With no extra arguments the
line is returned unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from hats.errors import HatsError

#: x86's ``COMMAND_LINE_SIZE`` is 2048 bytes with the terminating NUL (the boot
#: protocol's ``cmdline_size`` is 2047): longer lines are cut by the kernel.
COMMAND_LINE_SIZE = 2048
COMMAND_LINE_MAX = COMMAND_LINE_SIZE - 1
MAX_KERNEL_ARGS = 32
#: Where stage1's own flags start (system-image §3.5).
STAGE1_SEPARATOR = " -- "
_FORBIDDEN = frozenset("\"'\\")
_SHOWN = 60


class KernelArgError(HatsError):
    """An extra guest kernel argument (``--guest-kernel-arg``) that cannot be used."""


def _shown(arg: str) -> str:
    """``arg`` for a one-line message: escaped (``ascii``), cut at :data:`_SHOWN` characters."""
    text = ascii(arg)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def check_kernel_arg(arg: str) -> str:
    """``arg`` if it may be an extra kernel argument (module rules), else :class:`KernelArgError`
    naming it."""
    where = f"--guest-kernel-arg {_shown(arg)}"
    if not arg:
        raise KernelArgError("--guest-kernel-arg '': an empty kernel argument")
    for char in arg:
        if not ("!" <= char <= "~"):
            raise KernelArgError(
                f"{where}: only printable ASCII without whitespace or control characters"
                f" (found {char!a})"
            )
        if char in _FORBIDDEN:
            raise KernelArgError(
                f"{where}: quotes and backslashes are not allowed (found {char!r})"
            )
    if arg.startswith("-"):
        raise KernelArgError(
            f"{where}: starts with '-': flags after (or like) '--' are stage1's, not the kernel's"
        )
    return arg


def check_kernel_args(args: Sequence[str]) -> tuple[str, ...]:
    """Every argument checked (:func:`check_kernel_arg`) and their count bounded."""
    if len(args) > MAX_KERNEL_ARGS:
        raise KernelArgError(
            f"--guest-kernel-arg given {len(args)} times: at most {MAX_KERNEL_ARGS}"
        )
    return tuple(check_kernel_arg(arg) for arg in args)


def insert_kernel_args(cmdline: str, args: Sequence[str]) -> str:
    """``cmdline`` with ``args`` (checked) before its first ``" -- "``; within the x86 limit."""
    extra = check_kernel_args(args)
    if not extra:
        return cmdline
    head, separator, tail = cmdline.partition(STAGE1_SEPARATOR)
    if not separator:
        raise KernelArgError(
            "the guest kernel command line has no ' -- ' before stage1's flags: cannot add"
            " --guest-kernel-arg"
        )
    line = f"{head} {' '.join(extra)}{separator}{tail}"
    size = len(line.encode())
    if size > COMMAND_LINE_MAX:
        raise KernelArgError(
            f"--guest-kernel-arg: the guest kernel command line would be {size} bytes, over the"
            f" x86 kernel's {COMMAND_LINE_MAX} (COMMAND_LINE_SIZE {COMMAND_LINE_SIZE} with its NUL)"
        )
    return line


def kernel_args_line(args: Sequence[str], prefix: str = "vm: ") -> str:
    """The launcher's start line for (checked) extra arguments (empty when none)."""
    if not args:
        return ""
    return (
        f"{prefix}the guest's kernel command line is not the reference's: it adds {' '.join(args)}"
        " before ' -- '; the appraisal policy must be made for this command line"
    )
