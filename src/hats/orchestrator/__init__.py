"""``orchestrator_main``: the HATs orchestrator agent (``python3 -m hats.orchestrator``).

:func:`main` parses the command line (the reference's flags, wire-protocol
§1, plus ours below), sets up logging (:mod:`.logging_setup`), resolves the
runtime user, runs start-up (:mod:`.startup`: metadata, keys, bundle,
evidence, first attestation round, heartbeat), then serves the IPC socket
(:mod:`.services`), unpacks the bundle (:mod:`.bundle`) and runs the
container (:mod:`.runtime`) until it exits. Any
:class:`~hats.errors.HatsError` ends the process with one line on stderr
(and in the log) and exit status 1.

Flags beyond the reference's: ``--dice-file``, ``--max-secret-staleness``,
``--unwrap-secrets``, ``--rpc-timeout``, ``--runtime``,
``--enable-instance-signing``, ``--key-provisioning-addr`` and
``--log-to-stderr``.

This module runs inside the system image on Debian's ``python3`` with only
the agents tree's packages: import nothing but the standard library at module
level (``--help`` must work without grpc).
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hats.agent_common import DEFAULT_LAUNCHER_ADDR, EXIT_NOT_IMPLEMENTED, agent_epilog
from hats.sharetype import DEFAULT_SHARE_TYPE, SHARE_TYPES

if TYPE_CHECKING:
    from hats.orchestrator.startup import StartupConfig

PROG = "orchestrator_main"
__all__ = ["DEFAULT_LAUNCHER_ADDR", "EXIT_NOT_IMPLEMENTED", "PROG", "build_parser", "main"]
DEFAULT_ORCHESTRATOR_ADDR = "0.0.0.0:4000"
DEFAULT_CONTAINER_DIR = "/oak_container"
DEFAULT_IPC_SOCKET_PATH = "/oak_utils/orchestrator_ipc"
DEFAULT_RUNTIME_USER = "oakc"
DEFAULT_TVS_PUBLIC_KEYS_FILE = "/hats/tvs_public_keys.txt"
#: Alphabetical: the order the orchestrator's --help and usage errors list them.
SECRET_SHARE_TYPES = tuple(sorted(SHARE_TYPES))
DEFAULT_SECRET_SHARE_TYPE = DEFAULT_SHARE_TYPE.value
DEFAULT_TVS_HEARTBEAT_FREQUENCY = 3600
DEFAULT_DICE_FILE = "/oak/dice"
DEFAULT_RPC_TIMEOUT = 30.0
RUNTIMES = ("runc", "process")
DEFAULT_RUNTIME = "runc"
EXIT_FAILURE = 1
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


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The orchestrator's argument parser (the reference's flags and defaults)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        epilog=agent_epilog(PROG, "hats.orchestrator", "hats orchestrator"),
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
    parser.add_argument(
        "--dice-file",
        metavar="PATH",
        default=DEFAULT_DICE_FILE,
        help="stage1's DICE data; overwritten with zeros once read (default: %(default)s)",
    )
    parser.add_argument(
        "--max-secret-staleness",
        metavar="SECONDS",
        type=positive_seconds,
        default=None,
        help="stop serving the secrets when the last good refresh is older than this "
        "(default: serve them forever, as the reference)",
    )
    parser.add_argument(
        "--unwrap-secrets",
        action="store_true",
        help="unwrap the recovered secrets with the launcher's private-key wrapping keys "
        "(off by default, as the reference)",
    )
    parser.add_argument(
        "--rpc-timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=DEFAULT_RPC_TIMEOUT,
        help="deadline of every call to the launcher and of each TVS session; the bundle "
        "download gets 20 times it (default: %(default)s)",
    )
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default=DEFAULT_RUNTIME,
        help="how the container runs (default: %(default)s)",
    )
    parser.add_argument(
        "--enable-instance-signing",
        action="store_true",
        help="serve OrchestratorCrypto.Sign with the instance key (off by default: it signs "
        "with the key that proves the VM to the TVS, spec §8.2)",
    )
    parser.add_argument(
        "--key-provisioning-addr",
        metavar="HOST:PORT",
        default=None,
        help="serve Oak's KeyProvisioning on this TCP address (default: off; the "
        "ORCHESTRATOR_ADDR positional is kept for compatibility and not used)",
    )
    parser.add_argument(
        "--log-to-stderr",
        action="store_true",
        help="log to stderr even when syslog (/dev/log) is present",
    )
    return parser


def positive_seconds(text: str) -> float:
    """A finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds above 0")
    return value


def startup_config(args: argparse.Namespace) -> StartupConfig:
    """The start-up settings from parsed arguments."""
    from hats.orchestrator.startup import StartupConfig

    return StartupConfig(
        launcher_addr=args.launcher_addr,
        tvs_public_keys_file=Path(args.tvs_public_keys_file),
        secret_share_type=args.secret_share_type,
        heartbeat_period=float(args.tvs_heartbeat_frequency),
        dice_file=Path(args.dice_file),
        max_secret_staleness=args.max_secret_staleness,
        unwrap_secrets=args.unwrap_secrets,
        rpc_timeout=args.rpc_timeout,
    )


def resolve_user(name: str) -> tuple[int, int]:
    """``--runtime-user`` → (uid, gid)."""
    import pwd

    from hats.errors import HatsError

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise HatsError(f"--runtime-user: user `{name}` not found") from None
    return entry.pw_uid, entry.pw_gid


def run(args: argparse.Namespace) -> int:
    """Start up, serve, run the container; its exit status."""
    from hats.orchestrator.startup import start

    uid, gid = resolve_user(args.runtime_user)
    started = start(startup_config(args))
    log = logging.getLogger("hats.orchestrator")
    key_provisioning = None
    try:
        # Imported only now: nothing before the first TVS round needs them.
        from hats.orchestrator import bundle, runtime, services

        # Oak's KeyProvisioning (§3.8) only when asked for, never on 0.0.0.0 by default.
        key_provisioning = services.serve_key_provisioning(
            args.key_provisioning_addr, started.state
        )
        server = services.serve_ipc(
            args.ipc_socket_path,
            started.state,
            enable_instance_signing=args.enable_instance_signing,
            runtime_uid=uid,
            runtime_gid=gid,
        )
        try:
            container_dir = bundle.unpack_bundle(
                started.state.bundle,
                Path(args.container_dir),
                uid=uid,
                gid=gid,
                ipc_socket_path=args.ipc_socket_path,
            )
            status = runtime.run_container(
                container_dir,
                runtime=args.runtime,
                ipc_socket_path=args.ipc_socket_path,
                uid=uid,
                gid=gid,
            )
        finally:
            server.stop(grace=1.0)
    finally:
        if key_provisioning is not None:
            key_provisioning.stop(grace=1.0)
        started.close()
    log.info("container exited with status %d", status)
    return status


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Parse the command line, run the orchestrator; return the exit status.

    A :class:`~hats.errors.HatsError` ends it with one line on stderr and in
    the log, and exit status 1.
    """
    args = build_parser(prog).parse_args(argv)
    from hats.errors import HatsError
    from hats.orchestrator.logging_setup import setup_logging

    handler = setup_logging(to_stderr=args.log_to_stderr)
    log = logging.getLogger("hats.orchestrator")
    try:
        return run(args)
    except HatsError as exc:
        message = " ".join(str(exc).split())
        log.error("%s", message)
        if isinstance(handler, logging.handlers.SysLogHandler):
            print(f"{PROG}: {message}", file=sys.stderr)  # stderr has not seen it yet
        return EXIT_FAILURE
