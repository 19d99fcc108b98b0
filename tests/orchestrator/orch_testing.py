"""A fake launcher (HATs LauncherService + Oak Launcher) in front of real TVS sessions.

The launcher proxies ``VerifyReport`` in lock-step to an in-process TVS
(:class:`hats.tvs.session.RequestHandler`) chosen by the first message's
``tvs_id``, as the real one does; it serves a bundle in chunks and records
the evidence it is sent. TVSes use the test keys 1·G, 2·G, 3·G; the evidence
checker really verifies the DICE chain of the simulated (insecure) evidence
and the bundle digest.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import empty_pb2

from hats.attestation.dice import encode_dice_data
from hats.attestation.simulate import simulate_stage1
from hats.attestation.verify import verify_evidence
from hats.errors import HatsError
from hats.keys.keyfile import format_key_file
from hats.pb.oak.attestation.v1 import eventlog_pb2, evidence_pb2
from hats.pb.oak.containers import interfaces_pb2, interfaces_pb2_grpc
from hats.pb.pcit.client import launcher_pb2, launcher_pb2_grpc
from hats.pb.pcit.tvs import tvs_pb2
from hats.protocol import p256
from hats.tvs.keys import KeyProvider, Secret, User
from hats.tvs.session import TvsConfig, TvsRequestError

AUTH_KEY = bytes.fromhex("f1af8f26497c24e3944709baccd6b6f4c9326fd902317189f4b2c4adfe2e6af9")
"""The launcher's tvs_authentication_key (the reference README's test key)."""
TVS_PRIVATE_KEYS = [(i).to_bytes(32, "big") for i in (1, 2, 3)]
BUNDLE = b"bundle-tar-bytes " * 20000  # 340 000 bytes: several chunks


def public(private: bytes) -> bytes:
    return p256.public_key_bytes(p256.load_private_key(private, "test key"))


def key_file(path: Path, count: int) -> Path:
    path.write_bytes(format_key_file([public(k) for k in TVS_PRIVATE_KEYS[:count]]))
    return path


def dice_file(path: Path) -> Path:
    data = simulate_stage1(hashlib.sha256(b"system image").digest())
    path.write_bytes(encode_dice_data(data))
    return path


class SimulatedEvidenceChecker:
    """Verifies the DICE chain (insecure root allowed) and the container bundle digest."""

    def __init__(self, bundle: bytes) -> None:
        self.bundle_sha256 = hashlib.sha256(bundle).digest()

    def check(self, evidence: evidence_pb2.Evidence, tee_certificate: bytes) -> str:
        verify_evidence(evidence, tee_certificate=None, allow_insecure=True)
        event = eventlog_pb2.Event()
        event.ParseFromString(evidence.event_log.encoded_events[-1])
        data = eventlog_pb2.ContainerLayerData()
        data.ParseFromString(event.event.value)
        if event.tag != "ORCHESTRATOR" or data.bundle.sha2_256 != self.bundle_sha256:
            raise HatsError("container bundle digest does not match")
        return "simulated"


def tvs_config(index: int, secrets: list[Secret], bundle: bytes = BUNDLE) -> TvsConfig:
    return TvsConfig(
        primary_private_key=TVS_PRIVATE_KEYS[index],
        key_provider=KeyProvider(
            [User(user_id="1", authentication_public_key=public(AUTH_KEY), secrets=tuple(secrets))]
        ),
        evidence_checker=SimulatedEvidenceChecker(bundle),
    )


@dataclass
class FakeLauncher(launcher_pb2_grpc.LauncherServiceServicer, interfaces_pb2_grpc.LauncherServicer):
    tvs: dict[int, TvsConfig]
    bundle: bytes = BUNDLE
    wrapping_keys: list[bytes] | None = None
    down: set[int] = field(default_factory=set)
    """TVS ids whose channel fails like an unreachable TVS."""
    hang: set[int] = field(default_factory=set)
    """TVS ids that never answer (until ``release`` is set)."""
    barrier: threading.Barrier | None = None
    """Every session waits here before answering message 1 (proves concurrency)."""
    metadata_calls: int = 0
    sessions: list[int] = field(default_factory=list)
    evidence: list[evidence_pb2.Evidence] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def FetchOrchestratorMetadata(
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> launcher_pb2.FetchOrchestratorMetadataResponse:
        with self.lock:
            self.metadata_calls += 1
        response = launcher_pb2.FetchOrchestratorMetadataResponse(
            tee_certificate=b"", tvs_authentication_key=AUTH_KEY
        )
        keys = self.wrapping_keys or [b""]
        response.private_key_wrapping_keys.primary = keys[0]
        response.private_key_wrapping_keys.active.extend(keys[1:])
        return response

    def VerifyReport(
        self,
        request_iterator: Iterator[launcher_pb2.ForwardingTvsMessage],
        context: grpc.ServicerContext,
    ) -> Iterator[tvs_pb2.OpaqueMessage]:
        handler = None
        for message in request_iterator:
            if handler is None:
                tvs_id = message.tvs_id
                with self.lock:
                    self.sessions.append(tvs_id)
                if tvs_id not in self.tvs:
                    context.abort(grpc.StatusCode.UNKNOWN, f"Failed to find tvs_id {tvs_id}")
                if tvs_id in self.down:
                    context.abort(
                        grpc.StatusCode.UNKNOWN,
                        "Failed to read from stream. failed to connect to all addresses",
                    )
                if self.barrier is not None:
                    self.barrier.wait()
                if tvs_id in self.hang:
                    self.release.wait(30)
                    return
                handler = self.tvs[tvs_id].new_handler()
            try:
                reply = handler.handle(message.opaque_message.binary_message)
            except TvsRequestError as exc:
                context.abort(
                    grpc.StatusCode.UNKNOWN,
                    "Failed to read from stream. Invalid or malformed command. UNKNOWN: "
                    + exc.message,
                )
            yield tvs_pb2.OpaqueMessage(binary_message=reply)

    def GetContainerBundle(
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> Iterator[interfaces_pb2.GetImageResponse]:
        chunk = 100_000
        for start in range(0, len(self.bundle), chunk):
            yield interfaces_pb2.GetImageResponse(image_chunk=self.bundle[start : start + chunk])
        yield interfaces_pb2.GetImageResponse(image_chunk=b"")

    def SendAttestationEvidence(
        self, request: interfaces_pb2.SendAttestationEvidenceRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        with self.lock:
            self.evidence.append(request.dice_evidence)
        return empty_pb2.Empty()


def serve(launcher: FakeLauncher, socket_path: Path) -> grpc.Server:
    server = grpc.server(ThreadPoolExecutor(max_workers=16))
    launcher_pb2_grpc.add_LauncherServiceServicer_to_server(launcher, server)
    interfaces_pb2_grpc.add_LauncherServicer_to_server(launcher, server)
    assert server.add_insecure_port(f"unix:{socket_path}") == 1
    server.start()
    return server


def serve_later(launcher: FakeLauncher, socket_path: Path, delay: float) -> list[grpc.Server]:
    """Start the launcher after ``delay`` seconds in a thread; the list gets the server."""
    servers: list[grpc.Server] = []

    def run() -> None:
        time.sleep(delay)
        servers.append(serve(launcher, socket_path))

    threading.Thread(target=run, daemon=True).start()
    return servers
