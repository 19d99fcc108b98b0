"""Untrusted text made safe to print on one terminal line.

Archive member names, guest log lines and other text from outside may hold
control characters: a newline forges a line of its own (``0 error(s), 0
warning(s)``), an ESC sequence rewrites the terminal. :func:`printable` shows
every character that is not printable (but tab) as an escape: ``\\xNN`` below
U+0100, ``\\uNNNN`` (or more digits) above, which also covers lone surrogates
(the bytes of a name that is not UTF-8). Printable text is returned as is.
JSON output needs none of this: JSON escapes control characters itself.
"""

from __future__ import annotations


def _escape(ch: str) -> str:
    if ch.isprintable() or ch == "\t":
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every non-printable character (but tab) escaped: one line, no
    terminal escapes."""
    if text.isprintable():
        return text
    return "".join(_escape(ch) for ch in text)
