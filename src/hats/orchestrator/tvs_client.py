"""One attestation session with a TVS, through the launcher (spec wire-protocol §3.2-3.3, §4).

:class:`AttestationSession` is the pure protocol (bytes in, bytes out);
:func:`attest` runs it over ``pcit.client.LauncherService/VerifyReport``, a
bidirectional stream on which the launcher proxies in lock-step to the TVS
chosen by the first message's ``tvs_id``::

    → ForwardingTvsMessage{tvs_id, AttestReportRequest{init_session_request{
          client_message = msg1, tvs_public_key = S_r, client_public_key = S_i}}}
    ← OpaqueMessage{AttestReportResponse{init_session_response{msg2}}}
    → ForwardingTvsMessage{tvs_id, AttestReportRequest{verify_report_request{
          client_message = crypter.encrypt(VerifyReportRequest{evidence, tee_certificate,
                                                               signature = sign(h)})}}}
    ← OpaqueMessage{AttestReportResponse{verify_report_response{encrypted}}}
    → half-close

Every session has a fresh ephemeral key and a deadline (the reference has
none). Failures raise :class:`TvsSessionError` naming the TVS (``TVS <index>
(line <n>)``) — :class:`TvsProtocolError` when the TVS's reply is at fault (a
:class:`~hats.errors.RemoteProtocolError`); calling the session's steps out of
order is our bug, a :class:`~hats.errors.LocalProtocolError`. The gRPC status
detail, which the launcher fills with the TVS's own error text (``Failed to
read from stream. …``), is kept on one line and shortened. Messages never
contain a key, a share or a secret.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.message import DecodeError

from hats.errors import HatsError, LocalProtocolError, RemoteProtocolError
from hats.keys.keyfile import TvsKey
from hats.orchestrator.state import Secret
from hats.pb.oak.attestation.v1 import evidence_pb2
from hats.pb.pcit.client import launcher_pb2, launcher_pb2_grpc
from hats.pb.pcit.tvs import tvs_messages_pb2, tvs_pb2
from hats.protocol.channel_errors import ChannelError
from hats.protocol.crypter import Crypter
from hats.protocol.crypto_errors import CryptoError
from hats.protocol.handshake import HandshakeInitiator
from hats.protocol.signature import sign_handshake_hash

DEFAULT_RPC_TIMEOUT = 30.0
_MAX_DETAIL = 300


class TvsSessionError(HatsError):
    """An attestation session with one TVS failed; the message starts with the TVS's name."""

    def __init__(self, tvs: str, message: str) -> None:
        super().__init__(f"{tvs}: {message}")
        self.tvs = tvs
        self.reason = message


class TvsProtocolError(TvsSessionError, RemoteProtocolError):
    """The TVS's reply breaks the protocol (does not parse, authenticate or decrypt)."""


def tvs_name(tvs: TvsKey) -> str:
    """How messages name a TVS: ``TVS <index> (line <n>)``."""
    return f"TVS {tvs.index} (line {tvs.line})"


def one_line(text: str, limit: int = _MAX_DETAIL) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True, repr=False)
class AttestationParameters:
    """What every session needs besides the TVS: the same for all TVSes and rounds."""

    authentication_key: bytes
    """The launcher's ``tvs_authentication_key``: the Noise initiator static key (32 bytes)."""
    evidence: evidence_pb2.Evidence
    tee_certificate: bytes
    signing_key: ec.EllipticCurvePrivateKey
    """The instance signing key: signs the handshake hash (§4.7)."""

    def __repr__(self) -> str:
        return f"AttestationParameters(tee_certificate=<{len(self.tee_certificate)} bytes>)"


class AttestationSession:
    """The orchestrator's side of one TVS session, without I/O.

    :meth:`first_message` → send; :meth:`handle_init_response` (message 2) →
    send its result; :meth:`handle_verify_response` (message 4) → secrets.
    Errors raise :class:`TvsSessionError` naming the TVS (:class:`TvsProtocolError`
    for a bad reply); a step out of order raises :class:`~hats.errors.LocalProtocolError`.
    """

    def __init__(self, tvs: TvsKey, parameters: AttestationParameters) -> None:
        self._tvs = tvs
        self._name = tvs_name(tvs)
        self._parameters = parameters
        try:
            self._initiator = HandshakeInitiator(tvs.public_key, parameters.authentication_key)
        except (ChannelError, CryptoError) as exc:
            raise TvsSessionError(self._name, str(exc)) from None
        self._crypter: Crypter | None = None

    def __repr__(self) -> str:
        return f"AttestationSession({self._name})"

    @property
    def name(self) -> str:
        """``TVS <index> (line <n>)``."""
        return self._name

    def _wrap(
        self, request: tvs_messages_pb2.AttestReportRequest
    ) -> launcher_pb2.ForwardingTvsMessage:
        return launcher_pb2.ForwardingTvsMessage(
            tvs_id=self._tvs.index,
            opaque_message=tvs_pb2.OpaqueMessage(
                binary_message=request.SerializeToString(deterministic=True)
            ),
        )

    def first_message(self) -> launcher_pb2.ForwardingTvsMessage:
        """Message 1: ``InitSessionRequest``."""
        message1 = self._initiator.build_initial_message()
        return self._wrap(
            tvs_messages_pb2.AttestReportRequest(
                init_session_request=tvs_messages_pb2.InitSessionRequest(
                    client_message=message1,
                    tvs_public_key=self._initiator.responder_static_public_key,
                    client_public_key=self._initiator.initiator_static_public_key,
                )
            )
        )

    def _response(self, reply: tvs_pb2.OpaqueMessage, expected: str) -> bytes:
        response = tvs_messages_pb2.AttestReportResponse()
        try:
            response.ParseFromString(reply.binary_message)
        except DecodeError:
            raise TvsProtocolError(self._name, "the reply is not an AttestReportResponse") from None
        kind = response.WhichOneof("response")
        if kind != expected:
            raise TvsProtocolError(
                self._name, f"unexpected reply: expected {expected}, got {kind or 'nothing'}"
            )
        if kind == "init_session_response":
            return response.init_session_response.response_for_client
        return response.verify_report_response.response_for_client

    def handle_init_response(
        self, reply: tvs_pb2.OpaqueMessage
    ) -> launcher_pb2.ForwardingTvsMessage:
        """Process message 2; return message 3 (the encrypted, signed ``VerifyReportRequest``)."""
        message2 = self._response(reply, "init_session_response")
        try:
            result = self._initiator.process_response(message2)
        except (ChannelError, CryptoError) as exc:
            raise TvsProtocolError(self._name, f"handshake failed: {exc}") from None
        signature = sign_handshake_hash(self._parameters.signing_key, result.handshake_hash)
        request = tvs_messages_pb2.VerifyReportRequest(
            evidence=self._parameters.evidence,
            tee_certificate=self._parameters.tee_certificate,
            signature=signature,
        )
        self._crypter = result.crypter
        encrypted = result.crypter.encrypt(request.SerializeToString(deterministic=True))
        return self._wrap(
            tvs_messages_pb2.AttestReportRequest(
                verify_report_request=tvs_messages_pb2.VerifyReportRequestEncrypted(
                    client_message=encrypted
                )
            )
        )

    def handle_verify_response(self, reply: tvs_pb2.OpaqueMessage) -> list[Secret]:
        """Process message 4: the decrypted ``VerifyReportResponse`` as :class:`Secret` list."""
        if self._crypter is None:
            raise LocalProtocolError(f"{self._name}: message 4 before the handshake finished")
        encrypted = self._response(reply, "verify_report_response")
        try:
            plaintext = self._crypter.decrypt(encrypted)
        except ChannelError as exc:
            raise TvsProtocolError(self._name, f"cannot decrypt the reply: {exc}") from None
        response = tvs_messages_pb2.VerifyReportResponse()
        try:
            response.ParseFromString(plaintext)
        except DecodeError:
            raise TvsProtocolError(self._name, "the reply is not a VerifyReportResponse") from None
        return [
            Secret(key_id=item.key_id, public_key=item.public_key, private_key=item.private_key)
            for item in response.secrets
        ]


def _rpc_error(name: str, exc: grpc.RpcError, timeout: float) -> TvsSessionError:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return TvsSessionError(name, f"no answer within {timeout:g} s (--rpc-timeout)")
    details = exc.details() if isinstance(exc, grpc.Call) else None
    label = code.name if code is not None else "error"
    return TvsSessionError(
        name, f"launcher VerifyReport failed: {label}: {one_line(details or '')}"
    )


def attest(
    stub: launcher_pb2_grpc.LauncherServiceStub,
    tvs: TvsKey,
    parameters: AttestationParameters,
    *,
    timeout: float = DEFAULT_RPC_TIMEOUT,
) -> list[Secret]:
    """One full session with ``tvs`` over the launcher (module docstring); its secrets."""
    session = AttestationSession(tvs, parameters)
    outbox: queue.SimpleQueue[launcher_pb2.ForwardingTvsMessage | None] = queue.SimpleQueue()

    def requests() -> Iterator[launcher_pb2.ForwardingTvsMessage]:
        while (item := outbox.get()) is not None:
            yield item

    outbox.put(session.first_message())
    call = stub.VerifyReport(requests(), timeout=timeout)
    error: TvsSessionError | None = None
    try:
        replies = iter(call)
        reply = next(replies, None)
        if reply is None:
            raise TvsSessionError(session.name, "the launcher ended the stream before message 2")
        outbox.put(session.handle_init_response(reply))
        reply = next(replies, None)
        if reply is None:
            raise TvsSessionError(session.name, "the launcher ended the stream before message 4")
        secrets = session.handle_verify_response(reply)
        outbox.put(None)  # half-close: the launcher ends the stream with OK
        try:
            for _ in replies:
                pass
        except grpc.RpcError:
            pass  # the secrets are authenticated already; how the stream ends does not matter
        return secrets
    except grpc.RpcError as exc:
        error = _rpc_error(session.name, exc, timeout)
    finally:
        outbox.put(None)
        call.cancel()
    raise error
