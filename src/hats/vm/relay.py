"""``python -m hats.vm.relay TARGET``: join stdin/stdout to a TCP or unix socket.

QEMU's user network runs this once per guest connection to the launcher's
guest-forwarded address (``guestfwd=…-cmd:``): the guest's bytes arrive on
stdin and the launcher's replies go to stdout. ``TARGET`` is ``HOST:PORT``
or ``unix:PATH``. Standard library only; exits when either side closes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading

_CHUNK = 1 << 16


def connect(target: str) -> socket.socket:
    if target.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(target[len("unix:") :])
        return sock
    host, _, port = target.rpartition(":")
    return socket.create_connection((host.strip("[]"), int(port)))


def _guest_to_launcher(sock: socket.socket) -> None:
    try:
        while data := os.read(0, _CHUNK):
            sock.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)


def relay(target: str) -> int:
    try:
        sock = connect(target)
    except (OSError, ValueError) as exc:
        print(f"hats relay: cannot connect to {target}: {exc}", file=sys.stderr)
        return 1
    threading.Thread(target=_guest_to_launcher, args=(sock,), daemon=True).start()
    try:
        while data := sock.recv(_CHUNK):
            view = memoryview(data)
            while view:
                written = os.write(1, view)
                view = view[written:]
    except OSError:
        pass
    finally:
        sock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hats.vm.relay HOST:PORT|unix:PATH", file=sys.stderr)
        return 2
    return relay(args[0])


if __name__ == "__main__":
    sys.exit(main())
