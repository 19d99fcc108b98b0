"""The one base class for failures caused by user input.

A :class:`HatsError` is something the user can fix (a bad file, a wrong
option); the CLI prints its message on one line and exits non-zero, with no
traceback. Messages name the file (and line) at fault and never contain key
material or secrets. Anything else escaping the CLI is a bug and keeps its
traceback.

Two more kinds say whose fault a protocol failure is: :class:`RemoteProtocolError`
(the peer's: a :class:`HatsError`) and :class:`LocalProtocolError` (ours, a bug:
a :class:`RuntimeError`).
"""


class HatsError(Exception):
    """A user-facing error: one line, names what is wrong and where."""

    exit_code = 1


class RemoteProtocolError(HatsError):
    """The peer (a TVS, the orchestrator, the launcher) sent something the protocol forbids.

    Its fault, not the user's and not ours; still a :class:`HatsError` (one line,
    no secrets) because it comes from outside input. After h11's
    ``RemoteProtocolError``.
    """


class LocalProtocolError(RuntimeError):
    """Our own code called a protocol object in the wrong order (twice, too early, after a failure).

    A bug, never the user's or the peer's fault: deliberately *not* a
    :class:`HatsError`, so no handler for user errors hides it and it keeps its
    traceback. After h11's ``LocalProtocolError``.
    """
