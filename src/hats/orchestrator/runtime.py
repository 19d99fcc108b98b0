"""Running the unpacked container (spec wire-protocol §2 step 14).

Two runtimes:

``runc`` (the reference, inside the image)
    :func:`runc_command` is exactly the reference's command line::

        /bin/systemd-run --property=RuntimeDirectory=oakc --property=ProtectSystem=strict
          --property=ReadWritePaths=<container_dir> --uid=<uid> --gid=<gid> --pty --wait
          --collect /bin/runc --root=${RUNTIME_DIRECTORY}/runc run
          --bundle=<container_dir> oakc

    (``${RUNTIME_DIRECTORY}`` is passed literally; systemd-run expands it.) The
    workload sees the IPC socket at ``/oak_utils/orchestrator_ipc`` through
    the bind mount that :mod:`hats.orchestrator.bundle` added to
    ``config.json``, and runs as root of a user namespace mapped to the runtime
    user.

``process`` (machines without runc/systemd: tests, the local demo)
    No isolation at all. ``config.json``'s ``process`` is run directly on the
    host:

    * ``args`` as given; ``args[0]`` without ``/`` is looked up in the
      orchestrator's own ``PATH``; an absolute ``args[0]`` is taken from the
      rootfs when the bundle has it as a regular file there, else it is the
      host path; a relative one with ``/`` is relative to the working directory;
    * ``cwd`` (default ``/``) is resolved under the rootfs (``root.path``,
      default ``rootfs``); every component must be a real directory (no
      symbolic links, no ``..``);
    * the environment is exactly ``process.env`` plus
      ``HATS_ORCHESTRATOR_IPC=<the IPC socket's host path>`` (the socket is
      not mounted anywhere; the sample workload reads this variable and
      otherwise uses ``/oak_utils/orchestrator_ipc``);
    * it runs as ``uid``/``gid`` when given (needs privileges), else as the
      orchestrator's user; stdin is ``/dev/null``, stdout/stderr are inherited.

Both return the exit status (a signal ``n`` gives ``128 + n``, as a shell).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from hats.errors import HatsError
from hats.orchestrator.bundle import BundleError, load_config, safe_parts

SYSTEMD_RUN = "/bin/systemd-run"
RUNC = "/bin/runc"
#: Where Debian puts runc (its package installs /usr/sbin/runc, and merged /usr
#: gives no /bin/runc): used when the reference's path does not exist.
RUNC_FALLBACKS = ("/usr/sbin/runc", "/usr/bin/runc")
RUNTIMES = ("runc", "process")
IPC_ENV = "HATS_ORCHESTRATOR_IPC"
"""The variable through which the ``process`` runtime tells the workload the socket path."""
CONTAINER_ID = "oakc"


class ContainerRuntimeError(HatsError):
    """The container cannot be started."""


def find_runc() -> str | None:
    """:data:`RUNC` if it exists, else the first of :data:`RUNC_FALLBACKS` that does."""
    for candidate in (RUNC, *RUNC_FALLBACKS):
        if os.path.exists(candidate):
            return candidate
    return None


def runc_command(container_dir: Path | str, uid: int, gid: int, runc: str = RUNC) -> list[str]:
    """The reference's ``systemd-run … runc run`` command line, word for word."""
    return [
        SYSTEMD_RUN,
        "--property=RuntimeDirectory=oakc",
        "--property=ProtectSystem=strict",
        f"--property=ReadWritePaths={container_dir}",
        f"--uid={uid}",
        f"--gid={gid}",
        "--pty",
        "--wait",
        "--collect",
        runc,
        "--root=${RUNTIME_DIRECTORY}/runc",
        "run",
        f"--bundle={container_dir}",
        CONTAINER_ID,
    ]


@dataclass(frozen=True)
class ProcessSpec:
    """What the ``process`` runtime executes."""

    args: list[str]
    cwd: Path
    env: dict[str, str] = field(repr=False)


def _real_dir(base: Path, parts: tuple[str, ...], what: str) -> Path:
    """``base/parts…``, checking that each component is a directory, not a link."""
    path = base
    for part in parts:
        path = path / part
        try:
            info = path.lstat()
        except FileNotFoundError:
            raise ContainerRuntimeError(f"{what}: {path} does not exist") from None
        if not stat.S_ISDIR(info.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a directory"
            raise ContainerRuntimeError(f"{what}: {path} is {kind}")
    return path


def _str_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ContainerRuntimeError(f"config.json: {what} is not a list of strings")
    return list(value)


def process_spec(container_dir: Path, ipc_socket_path: str) -> ProcessSpec:
    """Read ``config.json`` and work out the ``process`` runtime's command (module doc)."""
    try:
        config = load_config(container_dir)
        root = config.get("root") or {}
        if not isinstance(root, dict):
            raise ContainerRuntimeError("config.json: 'root' is not an object")
        root_path = root.get("path", "rootfs")
        if not isinstance(root_path, str):
            raise ContainerRuntimeError("config.json: 'root.path' is not a string")
        rootfs = _real_dir(container_dir, safe_parts(root_path, "root.path"), "root.path")
        process = config.get("process")
        if not isinstance(process, dict):
            raise ContainerRuntimeError("config.json: no 'process' object")
        args = _str_list(process.get("args"), "'process.args'")
        if not args or not args[0]:
            raise ContainerRuntimeError("config.json: 'process.args' is empty")
        env_list = _str_list(process.get("env", []), "'process.env'")
        cwd_text = process.get("cwd", "/")
        if not isinstance(cwd_text, str):
            raise ContainerRuntimeError("config.json: 'process.cwd' is not a string")
        cwd = _real_dir(rootfs, safe_parts(cwd_text.lstrip("/"), "process.cwd"), "process.cwd")
    except BundleError as exc:
        raise ContainerRuntimeError(str(exc)) from None
    env: dict[str, str] = {}
    for entry in env_list:
        name, sep, value = entry.partition("=")
        if not sep or not name:
            raise ContainerRuntimeError(f"config.json: 'process.env' entry {name!r} has no '='")
        env[name] = value
    env[IPC_ENV] = ipc_socket_path
    program = args[0]
    if program.startswith("/"):
        inside = rootfs.joinpath(*safe_parts(program.lstrip("/"), "process.args[0]"))
        if inside.is_file() and not inside.is_symlink():
            program = str(inside)
    elif "/" not in program:
        found = shutil.which(program, path=os.environ.get("PATH", os.defpath))
        if found is None:
            raise ContainerRuntimeError(f"process runtime: {program!r} is not on the PATH")
        program = found
    return ProcessSpec(args=[program, *args[1:]], cwd=cwd, env=env)


def _status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def run_container(
    container_dir: Path,
    *,
    runtime: str,
    ipc_socket_path: str,
    uid: int | None,
    gid: int | None,
) -> int:
    """Run the unpacked bundle with ``runtime`` (``runc`` or ``process``); its exit status."""
    if runtime == "runc":
        runc = find_runc()
        missing = [SYSTEMD_RUN] if not os.path.exists(SYSTEMD_RUN) else []
        if runc is None:
            missing.append(RUNC)
        if missing:
            raise ContainerRuntimeError(
                f"runtime runc needs {' and '.join(missing)}; use --runtime process "
                "on machines without runc/systemd"
            )
        if uid is None or gid is None:
            raise ContainerRuntimeError("runtime runc needs the runtime user's uid and gid")
        assert runc is not None
        command = runc_command(container_dir, uid, gid, runc)
        try:
            return _status(subprocess.run(command, check=False).returncode)
        except OSError as exc:
            raise ContainerRuntimeError(f"{SYSTEMD_RUN}: cannot start: {exc.strerror}") from None
    if runtime != "process":
        raise ContainerRuntimeError(
            f"unknown runtime {runtime!r} (expected one of {', '.join(RUNTIMES)})"
        )
    spec = process_spec(container_dir, ipc_socket_path)
    try:
        completed = subprocess.run(
            spec.args,
            cwd=spec.cwd,
            env=spec.env,
            stdin=subprocess.DEVNULL,
            user=uid,
            group=gid,
            extra_groups=[] if gid is not None else None,
            check=False,
        )
    except OSError as exc:
        raise ContainerRuntimeError(f"{spec.args[0]}: cannot start: {exc.strerror}") from None
    return _status(completed.returncode)
