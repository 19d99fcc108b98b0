"""The one base class for failures caused by user input.

A :class:`HatsError` is something the user can fix (a bad file, a wrong
option); the CLI prints its message on one line and exits non-zero, with no
traceback. Messages name the file (and line) at fault and never contain key
material or secrets. Anything else escaping the CLI is a bug and keeps its
traceback.
"""


class HatsError(Exception):
    """A user-facing error: one line, names what is wrong and where."""

    exit_code = 1
