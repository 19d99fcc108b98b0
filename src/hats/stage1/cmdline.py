"""Stage1's command line, pure (spec system-image §3.5).

The kernel gives ``/init`` everything after ``--`` on its command line as
argv. Stage1 (clap) knows ``--launcher-addr`` (a URI, default
``http://10.0.2.100:8080``), ``--init`` (default ``/sbin/init``),
``--oak-dice`` and ``--oak-event-log`` (physical addresses: ``0x`` hex or
decimal, below 2^52), ``--oak-dice-length`` and, in newer Oak, ``--eth0-address``
(comma-separated, repeatable). Each takes ``--flag=value`` or ``--flag value``.
Unlike clap, unknown arguments (and everything after a bare ``--``) are
recorded instead of fatal; a missing or repeated value or a bad number is a
:class:`~hats.stage1.errors.CmdlineError` as in clap.

Hardening (stricter than Oak's stage1; upstream-facts F10: the host writes the
command line, and a policy regex ending in ``.*`` lets it append flags):

* a flag given twice is a :class:`~hats.stage1.errors.CmdlineError`, also
  ``--eth0-address`` (give one comma-separated list instead);
* ``--init`` other than ``/sbin/init`` is a ``CmdlineError`` unless
  ``allow_other_init`` (``hats stage1 simulate --allow-other-init``). The guest
  stage1 never allows it: its only input is the host's command line, so an
  override there would be the host's to give.

:func:`stage1_argv` models the argv the kernel gives ``/init`` for a whole
command line, so that a ``--init /bin/sh`` placed before the ``--`` is seen too.

Stage1 execs init with the environment ``LAUNCHER_ADDR=<Uri>``: the value is
tonic's (``http``) ``Uri`` Display of the flag, which adds ``/`` after an
authority when the path is empty: :func:`launcher_addr_env`.

:func:`parse_proc_cmdline` splits ``/proc/cmdline`` text the way the kernel's
``parse_args``/``next_arg`` do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from hats.stage1.errors import CmdlineError, LauncherAddrError

DEFAULT_LAUNCHER_ADDR = "http://10.0.2.100:8080"
DEFAULT_INIT = "/sbin/init"
PHYS_ADDR_LIMIT = 1 << 52  # x86_64::PhysAddr::try_new: bits 52..64 must be clear
U64_LIMIT = 1 << 64

_SINGLE = ("--launcher-addr", "--init", "--oak-dice", "--oak-dice-length", "--oak-event-log")
_MULTI = ("--eth0-address",)
_DECIMAL = re.compile(r"\+?[0-9]+")
_HEX = re.compile(r"\+?[0-9a-fA-F]+")


@dataclass(frozen=True)
class Stage1Args:
    """Stage1's parsed arguments."""

    launcher_addr: str = DEFAULT_LAUNCHER_ADDR
    init: str = DEFAULT_INIT
    oak_dice: int | None = None
    oak_dice_length: int | None = None
    oak_event_log: int | None = None
    eth0_address: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()

    @property
    def launcher_env(self) -> dict[str, str]:
        """The whole environment stage1 gives init."""
        return {"LAUNCHER_ADDR": launcher_addr_env(self.launcher_addr)}


def _u64(flag: str, text: str) -> int:
    """Rust ``u64::from_str``: ASCII digits with an optional ``+``."""
    if not _DECIMAL.fullmatch(text):
        raise CmdlineError(f"{flag}: invalid value {text!r}: not a decimal number")
    value = int(text)
    if value >= U64_LIMIT:
        raise CmdlineError(f"{flag}: invalid value {text!r}: too large")
    return value


def parse_phys_addr(flag: str, text: str) -> int:
    """Stage1's ``try_parse_phys_addr``: ``0x`` hex, else decimal; below 2^52."""
    if text.startswith("0x"):
        digits = text[2:]
        if not _HEX.fullmatch(digits):
            raise CmdlineError(f"{flag}: invalid value {text!r}: not a hex number")
        value = int(digits, 16)
        if value >= U64_LIMIT:
            raise CmdlineError(f"{flag}: invalid value {text!r}: too large")
    else:
        value = _u64(flag, text)
    if value >= PHYS_ADDR_LIMIT:
        raise CmdlineError(f"{flag}: invalid physical address {value:#x}")
    return value


def parse_stage1_args(args: Sequence[str], *, allow_other_init: bool = False) -> Stage1Args:
    """Parse stage1's arguments (``argv[1:]``: without the program name).

    Raises :class:`CmdlineError` for a flag given twice and, unless
    ``allow_other_init``, for ``--init`` other than ``/sbin/init`` (module rules).
    """
    values: dict[str, str] = {}
    eth0: list[str] = []
    unknown: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":  # clap: everything after it is positional
            unknown.extend(args[index - 1 :])
            break
        flag, eq, inline = arg.partition("=")
        if flag not in _SINGLE and flag not in _MULTI:
            unknown.append(arg)
            continue
        if eq:
            value = inline
        elif index < len(args) and not (args[index].startswith("-") and args[index] != "-"):
            value = args[index]
            index += 1
        else:
            raise CmdlineError(f"{flag}: a value is required")
        if flag in values or (flag in _MULTI and eth0):
            raise CmdlineError(f"{flag}: cannot be used multiple times")
        if flag in _MULTI:
            eth0.extend(value.split(","))
            continue
        values[flag] = value
    init = values.get("--init", DEFAULT_INIT)
    if init != DEFAULT_INIT and not allow_other_init:
        raise CmdlineError(
            f"--init: only {DEFAULT_INIT} is allowed (another init would run before the"
            " attested image's)"
        )
    launcher_addr = values.get("--launcher-addr", DEFAULT_LAUNCHER_ADDR)
    try:
        launcher_addr_env(launcher_addr)
    except LauncherAddrError as exc:
        raise LauncherAddrError(f"--launcher-addr: {exc}") from None
    dice = values.get("--oak-dice")
    length = values.get("--oak-dice-length")
    event_log = values.get("--oak-event-log")
    return Stage1Args(
        launcher_addr=launcher_addr,
        init=init,
        oak_dice=None if dice is None else parse_phys_addr("--oak-dice", dice),
        oak_dice_length=None if length is None else _u64("--oak-dice-length", length),
        oak_event_log=None if event_log is None else parse_phys_addr("--oak-event-log", event_log),
        eth0_address=tuple(eth0),
        unknown=tuple(unknown),
    )


# -- tonic / http ``Uri`` ---------------------------------------------------

_URI_MAX_LEN = 0xFFFF - 1
_SCHEME_MAX_LEN = 64
_UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SCHEME_CHARS = _UNRESERVED - {ord("_"), ord("~")} | {ord("+")}
_AUTHORITY_CHARS = _UNRESERVED | set(b"!$&'()*+,;=")


def _path_byte(b: int) -> bool:
    return (
        b == 0x21
        or 0x24 <= b <= 0x3B
        or b == 0x3D
        or 0x40 <= b <= 0x5F
        or 0x61 <= b <= 0x7A
        or b in (0x7C, 0x7E, ord('"'), ord("{"), ord("}"))
    )


def _query_byte(b: int) -> bool:
    return b == 0x21 or 0x24 <= b <= 0x3B or b == 0x3D or 0x3F <= b <= 0x7E


def _scheme_end(raw: bytes) -> tuple[str | None, int]:
    """http ``Scheme2::parse``: the scheme (``http``/``https`` normalised) and its length."""
    lower = raw[:8].lower()
    if lower.startswith(b"http://"):
        return "http", 7
    if lower.startswith(b"https://"):
        return "https", 8
    if len(raw) > 3:
        for i, b in enumerate(raw):
            if b == ord(":"):
                if len(raw) < i + 3 or raw[i + 1 : i + 3] != b"//":
                    break
                if i > _SCHEME_MAX_LEN:
                    raise LauncherAddrError("scheme too long")
                return raw[:i].decode("ascii"), i + 3
            if b not in _SCHEME_CHARS:
                break
    return None, 0


def _authority_end(raw: bytes) -> int:
    """http ``Authority::parse``: where the authority ends; validates it."""
    colons = 0
    start_bracket = end_bracket = has_percent = False
    at_sign: int | None = None
    end = len(raw)
    for i, b in enumerate(raw):
        if b in b"/?#":
            end = i
            break
        if b == ord(":"):
            if colons >= 8:
                raise LauncherAddrError("invalid authority")
            colons += 1
        elif b == ord("["):
            if has_percent or start_bracket:
                raise LauncherAddrError("invalid authority")
            start_bracket = True
        elif b == ord("]"):
            if not start_bracket or end_bracket:
                raise LauncherAddrError("invalid authority")
            end_bracket = True
            colons = 0
            has_percent = False
        elif b == ord("@"):
            at_sign = i
            colons = 0
            has_percent = False
        elif b == ord("%"):
            has_percent = True
        elif b not in _AUTHORITY_CHARS:
            raise LauncherAddrError("invalid uri character")
    if start_bracket != end_bracket or colons > 1:
        raise LauncherAddrError("invalid authority")
    if end > 0 and at_sign == end - 1:
        raise LauncherAddrError("invalid authority")
    if has_percent:
        raise LauncherAddrError("invalid authority")
    return end


def _path_and_query(raw: bytes) -> tuple[bytes, bytes | None]:
    """http ``PathAndQuery::from_shared``: (path, query); the fragment is dropped."""
    i = 0
    while i < len(raw):
        b = raw[i]
        if b == ord("#"):
            return raw[:i], None
        if b == ord("?"):
            break
        if not _path_byte(b):
            raise LauncherAddrError("invalid uri character")
        i += 1
    else:
        return raw, None
    path, rest = raw[:i], raw[i + 1 :]
    for j, b in enumerate(rest):
        if b == ord("#"):
            return path, rest[:j]
        if not _query_byte(b):
            raise LauncherAddrError("invalid uri character")
    return path, rest


def launcher_addr_env(value: str) -> str:
    """``format!("{}", value.parse::<tonic::transport::Uri>())``, as stage1 sets
    ``LAUNCHER_ADDR``: ``http://10.0.2.100:8080`` → ``http://10.0.2.100:8080/``,
    ``vsock://2:1234`` → ``vsock://2:1234/``. Raises
    :class:`~hats.stage1.errors.LauncherAddrError` where the parse fails."""
    raw = value.encode("utf-8", "surrogateescape")
    if not raw:
        raise LauncherAddrError("empty string")
    if len(raw) > _URI_MAX_LEN:
        raise LauncherAddrError("uri too long")
    if raw == b"/" or raw == b"*":
        return value
    if raw[:1] == b"/":
        path, query = _path_and_query(raw)
        return _display(None, b"", path, query, has_scheme=False)
    scheme, skip = _scheme_end(raw)
    rest = raw[skip:]
    end = _authority_end(rest)
    if scheme is None:
        if end != len(rest) or not rest:
            raise LauncherAddrError("invalid format")
        return rest.decode("ascii")
    if end == 0:
        raise LauncherAddrError("invalid format: no authority")
    path, query = _path_and_query(rest[end:])
    return _display(scheme, rest[:end], path, query, has_scheme=True)


def _display(
    scheme: str | None, authority: bytes, path: bytes, query: bytes | None, *, has_scheme: bool
) -> str:
    out = f"{scheme}://" if scheme is not None else ""
    out += authority.decode("ascii")
    if path or query is not None or has_scheme:
        out += path.decode("ascii") or "/"
    if query is not None:
        out += "?" + query.decode("ascii")
    return out


# -- /proc/cmdline ----------------------------------------------------------

_KERNEL_SPACE = " \t\n\v\f\r"


class KernelCmdline(NamedTuple):
    """A kernel command line split as the kernel does.

    ``kernel_args`` are the words before the first bare ``--`` and
    ``init_args`` those after it (what the kernel appends to init's argv), each
    as ``param`` or ``param=value`` with the kernel's quote removal. Parsing of
    init arguments stops at a second bare ``--``, as in the kernel. (The
    kernel also passes init the unknown pre-``--`` words; which ones are
    unknown depends on the kernel build, so that is not modelled.)
    """

    kernel_args: list[str]
    init_args: list[str]


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _KERNEL_SPACE:
        pos += 1
    return pos


def _next_arg(text: str, pos: int) -> tuple[str, str | None, int]:
    """The kernel's ``next_arg``: (param, value or None, position after it)."""
    in_quote = quoted = False
    if text[pos] == '"':
        pos += 1
        in_quote = quoted = True
    length = 0
    equals = 0  # relative; 0 means "none", so a leading '=' is not a separator (as in C)
    while pos + length < len(text):
        ch = text[pos + length]
        if ch in _KERNEL_SPACE and not in_quote:
            break
        if equals == 0 and ch == "=":
            equals = length
        if ch == '"':
            in_quote = not in_quote
        length += 1
    end = pos + length
    last_is_quote = length > 0 and text[end - 1] == '"'
    if equals == 0:
        param = text[pos : end - 1] if quoted and last_is_quote else text[pos:end]
        value = None
    else:
        param = text[pos : pos + equals]
        start = pos + equals + 1
        cut = end
        if start < end and text[start] == '"':
            start += 1
            if last_is_quote:
                cut = end - 1
        if quoted and last_is_quote:
            cut = end - 1
        value = text[start:cut] if cut > start else ""
    after = end + 1 if end < len(text) else end
    return param, value, _skip_spaces(text, after)


def _words(text: str, pos: int) -> tuple[list[str], int | None]:
    words: list[str] = []
    pos = _skip_spaces(text, pos)
    while pos < len(text):
        param, value, pos = _next_arg(text, pos)
        if value is None and param == "--":
            return words, pos
        words.append(param if value is None else f"{param}={value}")
    return words, None


def parse_proc_cmdline(text: str) -> KernelCmdline:
    """Split ``/proc/cmdline`` text into kernel and init arguments."""
    kernel, rest = _words(text, 0)
    if rest is None:
        return KernelCmdline(kernel, [])
    init, _ = _words(text, rest)
    return KernelCmdline(kernel, init)


def stage1_argv(cmdline: KernelCmdline) -> list[str]:
    """The arguments ``/init`` may get for ``cmdline`` (``argv[1:]``), erring on the side of more.

    The kernel passes init the parameters it does not know that have no ``=``
    and no ``.`` (module parameters), then the words after ``--``. Which
    parameters are known depends on the kernel build, so every such word
    before ``--`` is taken (a known one such as ``quiet`` only adds an unknown
    stage1 argument).
    """
    forwarded = [word for word in cmdline.kernel_args if "=" not in word and "." not in word]
    return [*forwarded, *cmdline.init_args]
