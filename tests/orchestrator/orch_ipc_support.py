"""Shared helpers for the orchestrator workload-side tests (stub state, bundle tars)."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from hats.errors import HatsError
from hats.orchestrator.state import InstanceKeys, OrchestratorState, Secret
from hats.pb.oak.attestation.v1 import evidence_pb2

SECRETS = [
    Secret("64", "pub-sixty-four", b"TOPSECRET-key-sixty-four-0123456"),
    Secret("7", "", b"\x00\x01TOPSECRET-seven\xff"),
]


class StaleError(HatsError):
    """Stand-in for the secret manager's stale-secrets error."""


@dataclass
class StubSecretManager:
    secrets: list[Secret] = field(default_factory=lambda: list(SECRETS))
    fail: Callable[[], Exception] | None = None

    def current(self) -> list[Secret]:
        if self.fail is not None:
            raise self.fail()
        return list(self.secrets)


def make_state(
    secret_manager: Any = None, launcher_target: str = "unix:/nonexistent/launcher"
) -> OrchestratorState:
    evidence = evidence_pb2.Evidence()
    evidence.root_layer.eca_public_key = b"root-eca"
    evidence.event_log.encoded_events.append(b"event-0")
    return OrchestratorState(
        evidence=evidence,
        instance_keys=InstanceKeys.generate(),
        bundle=b"",
        secret_manager=secret_manager or cast(Any, StubSecretManager()),
        launcher_target=launcher_target,
        rpc_timeout=5.0,
    )


def tar_bytes(*entries: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def reg(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def directory(name: str, mode: int = 0o755) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    return info, None


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def device(name: str, kind: bytes = tarfile.CHRTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    return info, None


def config_json(**overrides: Any) -> bytes:
    config: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": {"args": ["/bin/true"], "env": ["PATH=/bin"], "cwd": "/"},
        "root": {"path": "rootfs"},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
            "gidMappings": [
                {"containerID": 0, "hostID": 1000, "size": 1},
                {"containerID": 1, "hostID": 1001, "size": 1},
            ],
        },
    }
    config.update(overrides)
    return json.dumps(config).encode()


def minimal(*extra: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    """A valid bundle (config.json + rootfs/) followed by ``extra`` members."""
    return tar_bytes(reg("config.json", config_json()), directory("rootfs"), *extra)
