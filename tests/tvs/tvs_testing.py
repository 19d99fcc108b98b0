"""Helpers for the TVS tests: the real evidence, keys, and an orchestrator-like client."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc

import shared_data
from hats.attestation.policy import load_policies
from hats.pb.oak.attestation.v1 import evidence_pb2
from hats.pb.pcit.tvs import tvs_messages_pb2, tvs_pb2, tvs_pb2_grpc
from hats.protocol import p256, signature
from hats.protocol.handshake import HandshakeInitiator, HandshakeResult
from hats.tvs.keys import KeyProvider
from hats.tvs.session import PolicyChecker, TvsConfig

NOW = datetime(2026, 11, 26, tzinfo=UTC)
EVIDENCE_PATH = shared_data.EVIDENCE / "evidence_v1_genoa.binarypb"
VCEK_PATH = shared_data.EVIDENCE / "vcek_genoa.crt"
POLICY_PATH = shared_data.EVIDENCE / "on-perm-reference.txtpb"
SIGNING_KEY_PATH = shared_data.EVIDENCE / "evidence_v1_genoa_signing_key"

PRIMARY = (1).to_bytes(32, "big")
"""TVS primary private key: S_r is the key of tvs-keys/test_single.txt."""
SECONDARY = (2).to_bytes(32, "big")
CLIENT = bytes.fromhex("f1af8f26497c24e3944709baccd6b6f4c9326fd902317189f4b2c4adfe2e6af9")
"""The reference README's test tvs_authentication_key."""
OTHER_CLIENT = (3).to_bytes(32, "big")


def public(private: bytes) -> bytes:
    return p256.public_key_bytes(p256.load_private_key(private, "test key"))


def evidence() -> evidence_pb2.Evidence:
    value = evidence_pb2.Evidence()
    value.ParseFromString(EVIDENCE_PATH.read_bytes())
    return value


def vcek() -> bytes:
    return VCEK_PATH.read_bytes()


def signing_key() -> bytes:
    return bytes.fromhex(SIGNING_KEY_PATH.read_text().strip())


def policy_text() -> str:
    return POLICY_PATH.read_text()


def checker(text: str | None = None, now: datetime = NOW) -> PolicyChecker:
    policies = load_policies(
        policy_text() if text is None else text, "policy", accept_insecure=False
    )
    return PolicyChecker(policies=policies, now=now)


def config(
    provider: KeyProvider | None = None,
    *,
    policy: str | None = None,
    now: datetime = NOW,
    secondary: bytes | None = None,
) -> TvsConfig:
    return TvsConfig(
        primary_private_key=PRIMARY,
        secondary_private_key=secondary,
        key_provider=provider or KeyProvider.from_flags(public(CLIENT)),
        evidence_checker=checker(policy, now),
    )


@dataclass
class Client:
    """The orchestrator's side of one session (wire-protocol §3.3 exchange)."""

    tvs_public_key: bytes = b""
    client_key: bytes = CLIENT

    def __post_init__(self) -> None:
        if not self.tvs_public_key:
            self.tvs_public_key = public(PRIMARY)
        self.initiator = HandshakeInitiator(self.tvs_public_key, self.client_key)
        self.result: HandshakeResult | None = None

    def init_request(self, *, claimed_tvs_key: bytes | None = None) -> bytes:
        request = tvs_messages_pb2.AttestReportRequest(
            init_session_request=tvs_messages_pb2.InitSessionRequest(
                client_message=self.initiator.build_initial_message(),
                tvs_public_key=self.tvs_public_key if claimed_tvs_key is None else claimed_tvs_key,
                client_public_key=public(self.client_key),
            )
        )
        return request.SerializeToString()

    def process_init_response(self, data: bytes) -> HandshakeResult:
        response = tvs_messages_pb2.AttestReportResponse()
        response.ParseFromString(data)
        assert response.WhichOneof("response") == "init_session_response"
        self.result = self.initiator.process_response(
            response.init_session_response.response_for_client
        )
        return self.result

    def verify_request(
        self,
        *,
        evidence_message: evidence_pb2.Evidence | None = None,
        key: bytes | None = None,
        raw_signature: bytes | None = None,
        inner: bytes | None = None,
    ) -> bytes:
        assert self.result is not None
        if inner is None:
            if raw_signature is None:
                raw_signature = signature.sign_handshake_hash(
                    signing_key() if key is None else key, self.result.handshake_hash
                )
            message = tvs_messages_pb2.VerifyReportRequest(
                evidence=evidence() if evidence_message is None else evidence_message,
                tee_certificate=vcek(),
                signature=raw_signature,
            )
            inner = message.SerializeToString()
        request = tvs_messages_pb2.AttestReportRequest(
            verify_report_request=tvs_messages_pb2.VerifyReportRequestEncrypted(
                client_message=self.result.crypter.encrypt(inner)
            )
        )
        return request.SerializeToString()

    def secrets(self, data: bytes) -> list[tuple[str, str, bytes]]:
        assert self.result is not None
        response = tvs_messages_pb2.AttestReportResponse()
        response.ParseFromString(data)
        assert response.WhichOneof("response") == "verify_report_response"
        plain = self.result.crypter.decrypt(response.verify_report_response.response_for_client)
        reply = tvs_messages_pb2.VerifyReportResponse()
        reply.ParseFromString(plain)
        return [(s.key_id, s.public_key, s.private_key) for s in reply.secrets]


class Stream:
    """A lock-step client of ``TeeVerificationService/VerifyReport`` over a real channel."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        stub = tvs_pb2_grpc.TeeVerificationServiceStub(self.channel)
        self._requests: queue.Queue[tvs_pb2.OpaqueMessage | None] = queue.Queue()
        self._responses: Iterator[tvs_pb2.OpaqueMessage] = stub.VerifyReport(
            iter(self._requests.get, None), timeout=30
        )

    def exchange(self, message: bytes) -> bytes:
        self._requests.put(tvs_pb2.OpaqueMessage(binary_message=message))
        return next(self._responses).binary_message

    def close(self) -> list[tvs_pb2.OpaqueMessage]:
        """Half-close and return what else the server sent (normally nothing)."""
        self._requests.put(None)
        rest = list(self._responses)
        self.channel.close()
        return rest

    def send_only(self, message: bytes) -> None:
        self._requests.put(tvs_pb2.OpaqueMessage(binary_message=message))


def full_session(target: str) -> list[tuple[str, str, bytes]]:
    """Handshake and verify over gRPC like the orchestrator; return the secrets."""
    client = Client()
    stream = Stream(target)
    client.process_init_response(stream.exchange(client.init_request()))
    secrets = client.secrets(stream.exchange(client.verify_request()))
    assert stream.close() == []
    return secrets
