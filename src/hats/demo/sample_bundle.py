"""The demo's container bundle: ``hats/demo/workload/get_keys.py`` as an OCI bundle tar.

Layout (deterministic: owner 0:0, mtime 946684800, sorted)::

    config.json              OCI runtime spec: process.args = [PYTHON, "get_keys.py"],
                             cwd /app, env PATH + PYTHONUNBUFFERED=1, rootless user
                             namespace (uid/gid 0 mapped; hostID rewritten at unpack)
    rootfs/
    rootfs/app/
    rootfs/app/get_keys.py

The rootfs holds only the script: with the ``process`` runtime the host's
``python3`` (with ``grpcio``) runs it. For ``runc`` put the script into a
rootfs that has ``python3`` and ``grpcio``.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

from hats.demo.workload import GET_KEYS_SCRIPT as DEFAULT_SCRIPT
from hats.demo.workload import SCRIPT_NAME
from hats.errors import HatsError
from hats.fsio import atomic_output
from hats.reproducible import EPOCH

__all__ = ["DEFAULT_SCRIPT", "SCRIPT_NAME", "make_sample_bundle", "sample_config"]
_MTIME = EPOCH


class SampleBundleError(HatsError):
    """The sample workload script cannot be found."""


def sample_config(python: str = "python3") -> dict[str, Any]:
    """The sample bundle's ``config.json``."""
    namespaces = ["pid", "ipc", "uts", "mount", "user"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": [python, SCRIPT_NAME],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "PYTHONUNBUFFERED=1",
            ],
            "cwd": "/app",
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "hats-sample",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
        ],
        "linux": {
            "namespaces": [{"type": kind} for kind in namespaces],
            "uidMappings": [{"containerID": 0, "hostID": 0, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 0, "size": 1}],
        },
    }


def _info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = _MTIME
    return info


def sample_bundle_bytes(*, python: str = "python3", script: Path | None = None) -> bytes:
    """The bundle tar's bytes."""
    source = script or DEFAULT_SCRIPT
    try:
        code = source.read_bytes()
    except OSError as exc:
        raise SampleBundleError(
            f"{source}: cannot read the sample workload: {exc.strerror}"
        ) from None
    config = (json.dumps(sample_config(python), indent=2) + "\n").encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(_info("config.json", tarfile.REGTYPE, 0o644, len(config)), io.BytesIO(config))
        tar.addfile(_info("rootfs", tarfile.DIRTYPE, 0o755))
        tar.addfile(_info("rootfs/app", tarfile.DIRTYPE, 0o755))
        tar.addfile(
            _info(f"rootfs/app/{SCRIPT_NAME}", tarfile.REGTYPE, 0o644, len(code)),
            io.BytesIO(code),
        )
    return buffer.getvalue()


def make_sample_bundle(out: Path, *, python: str = "python3", script: Path | None = None) -> Path:
    """Write the sample bundle tar to ``out`` (atomically); return ``out``.

    ``python`` is ``process.args[0]``; ``script`` defaults to the repository's
    ``hats/demo/workload/get_keys.py``.
    """
    data = sample_bundle_bytes(python=python, script=script)
    with atomic_output(out) as handle:
        handle.write(data)
    return out
