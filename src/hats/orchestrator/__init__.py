"""``orchestrator_main``: the HATs orchestrator agent (``python3 -m hats.orchestrator``).

Only the command line exists so far (wire-protocol.md §1); the agent itself
comes in a later version. Until then :func:`main` parses the arguments
(``--help`` works, bad arguments exit 2) and then exits with
:data:`EXIT_NOT_IMPLEMENTED` after one line on stderr.

This module runs inside the system image on Debian's ``python3`` with only
the agents tree's packages: import nothing but the standard library at module
level.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from hats.agent_common import DEFAULT_LAUNCHER_ADDR, EXIT_NOT_IMPLEMENTED, not_implemented

PROG = "orchestrator_main"
__all__ = ["DEFAULT_LAUNCHER_ADDR", "EXIT_NOT_IMPLEMENTED", "PROG", "build_parser", "main"]
DEFAULT_ORCHESTRATOR_ADDR = "0.0.0.0:4000"
DEFAULT_CONTAINER_DIR = "/oak_container"
DEFAULT_IPC_SOCKET_PATH = "/oak_utils/orchestrator_ipc"
DEFAULT_RUNTIME_USER = "oakc"
DEFAULT_TVS_PUBLIC_KEYS_FILE = "/hats/tvs_public_keys.txt"
SECRET_SHARE_TYPES = ("no-split", "shamir", "xor")
DEFAULT_SECRET_SHARE_TYPE = "no-split"
DEFAULT_TVS_HEARTBEAT_FREQUENCY = 3600
_U64_MAX = 2**64 - 1


def heartbeat_seconds(text: str) -> int:
    """``--tvs-heartbeat-frequency``: whole seconds, 1 … 2**64-1.

    The reference (a Rust u64) accepts 0 and its heartbeat task then panics
    silently; here 0 is a usage error.
    """
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds")
    value = int(text, 10)
    if value == 0:
        raise argparse.ArgumentTypeError(
            "0 is not allowed: the heartbeat period is at least 1 second"
        )
    if value > _U64_MAX:
        raise argparse.ArgumentTypeError(f"{text} is out of range (1 to {_U64_MAX} seconds)")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The orchestrator's argument parser (the reference's flags and defaults)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="HATs orchestrator: attests the VM to the TVS through the launcher, "
        "obtains the workload's secrets and runs the container.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "orchestrator_addr",
        metavar="ORCHESTRATOR_ADDR",
        nargs="?",
        default=DEFAULT_ORCHESTRATOR_ADDR,
        help="host:port on which the KeyProvisioning gRPC server listens (default: %(default)s)",
    )
    parser.add_argument(
        "--launcher-addr",
        metavar="URI",
        default=DEFAULT_LAUNCHER_ADDR,
        help="address of the HATs launcher, vsock://CID:PORT or http://HOST:PORT "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--container-dir",
        metavar="PATH",
        default=DEFAULT_CONTAINER_DIR,
        help="where the container bundle is unpacked (default: %(default)s)",
    )
    parser.add_argument(
        "--ipc-socket-path",
        metavar="PATH",
        default=DEFAULT_IPC_SOCKET_PATH,
        help="Unix socket on which the workload's services are served (default: %(default)s)",
    )
    parser.add_argument(
        "--runtime-user",
        metavar="NAME",
        default=DEFAULT_RUNTIME_USER,
        help="user the container runs as (default: %(default)s)",
    )
    parser.add_argument(
        "--tvs-public-keys-file",
        metavar="PATH",
        default=DEFAULT_TVS_PUBLIC_KEYS_FILE,
        help="TVS public keys, one 'INDEX:HEX' line per TVS (default: %(default)s)",
    )
    parser.add_argument(
        "--secret-share-type",
        choices=SECRET_SHARE_TYPES,
        default=DEFAULT_SECRET_SHARE_TYPE,
        help="how the secret is split across TVSes (default: %(default)s)",
    )
    parser.add_argument(
        "--tvs-heartbeat-frequency",
        metavar="SECONDS",
        type=heartbeat_seconds,
        default=DEFAULT_TVS_HEARTBEAT_FREQUENCY,
        help="seconds between re-attestations to the TVS (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line; return the exit status."""
    build_parser().parse_args(argv)
    return not_implemented(PROG, "orchestrator")
