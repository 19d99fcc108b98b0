"""One TVS session: the reference ``RequestHandler`` as a pure class (spec wire-protocol §7.1).

One ``TeeVerificationService/VerifyReport`` stream gets one
:class:`RequestHandler`; the transport feeds it each
``OpaqueMessage.binary_message`` and writes back what :meth:`RequestHandler.handle`
returns. A rejected request raises a :class:`TvsRequestError` whose
``message`` is the reference's text (the transport answers every one with
``INVALID_ARGUMENT "Invalid or malformed command. UNKNOWN: <message>"``,
upstream-facts F8) and whose ``detail`` says more, for the TVS's own log.
Nothing here does I/O.

Whose fault it is (as h11's Remote/LocalProtocolError, :mod:`hats.errors`):

- :class:`BadRequestError` (a :class:`~hats.errors.RemoteProtocolError`): the
  client sent something wrong: a request that does not decode, a second
  handshake, an unknown key, a bad signature, evidence no policy accepts, …;
- :class:`TvsServiceError`: the request was right, the TVS's own data cannot
  serve it (an authenticated user without secrets): the reference's text all
  the same, but the operator's problem, not the client's;
- :class:`SessionStateError` (a :class:`~hats.errors.LocalProtocolError`, not a
  :class:`~hats.errors.HatsError`): our own code called :meth:`RequestHandler.handle`
  after the handler terminated; the transport must end the stream instead
  (``TvsServicer`` does), so this is a bug and keeps its traceback.

``handle`` decodes an ``AttestReportRequest`` (``Failed to decode (serialize)
AttestReportRequest.``; no ``request`` set: ``AttestReportRequest is
malformed``), then:

``init_session_request``, in order:

1. a second init on this handler: ``Handshake has already been made.``
2. ``tvs_public_key`` must be the primary TVS public key, or the secondary
   one if configured: ``Unknown public key``
3. ``client_public_key`` must be a registered user's authentication key
   (exact bytes): ``Unauthenticated, provided public key is not registered:
   Failed to lookup user: UNAUTHENTICATED: unregistered or expired public key.``
   (upstream-facts F8: no key bytes; the key's length is only in ``detail``)
4. :func:`hats.protocol.handshake.respond` with the selected key (prologue
   ``tvs_public_key || client_public_key``): ``Invalid handshake.``
5. reply ``init_session_response{response_for_client = message 2}``.

``verify_report_request``, in order (the handler is **terminated** by it,
whether it succeeds or fails; a new handshake needs a new stream):

1. no handshake yet: ``A successful handshake is require prior to process any
   request.`` (sic)
2. decrypt with the session's crypter: ``Failed to decrypt request.``; decode
   ``VerifyReportRequest``: ``Failed to decode (serialize) request proto``
3. ``evidence`` unset: ``Request does not have `evidence` proto.``
4. the raw r‖s ``signature`` over the handshake hash, under the signing key
   of ``evidence.application_keys.signing_public_key_certificate`` (checked
   before the evidence itself): ``Failed to parse signature. <why>`` /
   ``Signature does not match. <why>``. A certificate the key cannot be
   taken from gives ``Failed to extract the signing key from the evidence.
   <why>`` (the spec gives no text for this case).
5. the evidence verified and appraised (:class:`PolicyChecker`):
   ``Failed to verify report. No matching appraisal policy found`` (the
   reason is only in ``detail``)
6. the user's secrets: ``Failed to get secret for user ID: <id>``
7. reply ``verify_report_response{response_for_client = crypter.encrypt(VerifyReportResponse)}``.

Messages and details never contain private keys or secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from google.protobuf.message import DecodeError

from hats.attestation import policy as policy_mod
from hats.attestation.amd.certs import AmdRoots
from hats.attestation.verify import application_signing_key, verify_evidence
from hats.errors import HatsError, LocalProtocolError, RemoteProtocolError
from hats.pb.oak.attestation.v1 import evidence_pb2
from hats.pb.pcit.tvs import appraisal_policies_pb2, tvs_messages_pb2
from hats.protocol import handshake, p256, signature
from hats.protocol.crypter import Crypter
from hats.protocol.crypto_errors import MalformedSignatureError, SignatureMismatchError
from hats.tvs.keys import KeyProvider, UnknownUserError

ERR_DECODE_REQUEST = "Failed to decode (serialize) AttestReportRequest."
ERR_MALFORMED_REQUEST = "AttestReportRequest is malformed"
ERR_HANDSHAKE_DONE = "Handshake has already been made."
ERR_UNKNOWN_PUBLIC_KEY = "Unknown public key"
ERR_UNAUTHENTICATED = (
    "Unauthenticated, provided public key is not registered: Failed to lookup user: "
    "UNAUTHENTICATED: unregistered or expired public key."
)
"""Upstream's text, exactly (upstream-facts F8): it names no key."""
ERR_INVALID_HANDSHAKE = "Invalid handshake."
ERR_NO_HANDSHAKE = "A successful handshake is require prior to process any request."
ERR_DECRYPT = "Failed to decrypt request."
ERR_DECODE_VERIFY = "Failed to decode (serialize) request proto"
ERR_NO_EVIDENCE = "Request does not have `evidence` proto."
ERR_SIGNING_KEY = "Failed to extract the signing key from the evidence. "
ERR_PARSE_SIGNATURE = "Failed to parse signature. "
ERR_SIGNATURE_MISMATCH = "Signature does not match. "
ERR_NO_POLICY = "Failed to verify report. No matching appraisal policy found"
ERR_SECRETS = "Failed to get secret for user ID: "
ERR_TERMINATED = "The session is terminated: a new handshake needs a new stream."


class TvsRequestError(HatsError):
    """A rejected request: ``message`` is the reference's text, ``detail`` is for logs.

    The base of the two faults (module docstring); the transport answers both alike.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class BadRequestError(TvsRequestError, RemoteProtocolError):
    """The client's fault: its request breaks the protocol or fails a check."""


class TvsServiceError(TvsRequestError):
    """The TVS's fault: a valid request for an authenticated user its data cannot serve."""


class SessionStateError(LocalProtocolError):
    """Our fault: :meth:`RequestHandler.handle` called after the handler terminated (a bug)."""


class EvidenceChecker(Protocol):
    """Step 5: verify ``evidence`` and appraise it; return a description of what matched.

    Raises :class:`HatsError` (any subclass) with the reason when it does not pass.
    """

    def check(self, evidence: evidence_pb2.Evidence, tee_certificate: bytes) -> str: ...


@dataclass(frozen=True)
class PolicyChecker:
    """Evidence vs. appraisal policies (§7.2, static mode), with :mod:`hats.attestation`.

    ``now``: the time at which certificates must be valid (``None``: the
    current time at each check). ``accept_insecure`` also lets
    ``TEE_PLATFORM_NONE`` evidence verify (it can only match an ``insecure``
    policy, which loads only when insecure policies are accepted).
    """

    policies: appraisal_policies_pb2.AppraisalPolicies
    accept_insecure: bool = False
    amd_roots: dict[str, AmdRoots] | None = None
    now: datetime | None = None

    def check(self, evidence: evidence_pb2.Evidence, tee_certificate: bytes) -> str:
        verified = verify_evidence(
            evidence,
            tee_certificate=bytes(tee_certificate) or None,
            amd_roots=self.amd_roots,
            now=self.now,
            allow_insecure=self.accept_insecure,
        )
        index = policy_mod.appraise(verified, self.policies, accept_insecure=self.accept_insecure)
        return f"policy {index}"


@dataclass(frozen=True, repr=False)
class TvsConfig:
    """What every session of one TVS shares: its keys, users and evidence checker.

    ``primary_private_key``/``secondary_private_key`` are 32-byte P-256
    scalars (checked here, :class:`~hats.protocol.crypto_errors.InvalidPrivateKeyError`).
    """

    primary_private_key: bytes
    key_provider: KeyProvider
    evidence_checker: EvidenceChecker
    secondary_private_key: bytes | None = None
    primary_public_key: bytes = field(init=False)
    secondary_public_key: bytes | None = field(init=False)

    def __post_init__(self) -> None:
        primary = p256.load_private_key(self.primary_private_key, "primary TVS private key")
        object.__setattr__(self, "primary_public_key", p256.public_key_bytes(primary))
        secondary: bytes | None = None
        if self.secondary_private_key is not None:
            key = p256.load_private_key(self.secondary_private_key, "secondary TVS private key")
            secondary = p256.public_key_bytes(key)
        object.__setattr__(self, "secondary_public_key", secondary)

    def __repr__(self) -> str:
        return (
            f"TvsConfig({self.key_provider!r}, secondary={self.secondary_public_key is not None})"
        )

    def private_key_for(self, tvs_public_key: bytes) -> bytes | None:
        """The private key whose public key is ``tvs_public_key`` (primary first), or ``None``."""
        if tvs_public_key == self.primary_public_key:
            return self.primary_private_key
        if self.secondary_private_key is not None and tvs_public_key == self.secondary_public_key:
            return self.secondary_private_key
        return None

    def new_handler(self) -> RequestHandler:
        """A handler for one new stream."""
        return RequestHandler(self)


@dataclass(frozen=True, repr=False)
class _Session:
    user_id: str
    handshake_hash: bytes
    crypter: Crypter


class RequestHandler:
    """One ``VerifyReport`` stream: an init, then one verify (see the module docstring)."""

    def __init__(self, config: TvsConfig) -> None:
        self._config = config
        self._session: _Session | None = None
        self._terminated = False
        self.outcome = ""
        """A one-line description of the last request that succeeded (for logs)."""

    def __repr__(self) -> str:
        return (
            f"RequestHandler(handshake={self._session is not None}, terminated={self._terminated})"
        )

    @property
    def terminated(self) -> bool:
        """True once a ``verify_report_request`` was processed (successfully or not)."""
        return self._terminated

    @property
    def user_id(self) -> str | None:
        """The user authenticated by the handshake, once there was one."""
        return None if self._session is None else self._session.user_id

    def handle(self, binary_message: bytes) -> bytes:
        """Process one serialized ``AttestReportRequest``; return the serialized response."""
        if self._terminated:
            raise SessionStateError(ERR_TERMINATED)
        request = tvs_messages_pb2.AttestReportRequest()
        try:
            request.ParseFromString(bytes(binary_message))
        except DecodeError:
            raise BadRequestError(ERR_DECODE_REQUEST) from None
        which = request.WhichOneof("request")
        if which == "init_session_request":
            response = self._init_session(request.init_session_request)
        elif which == "verify_report_request":
            response = self._verify_report(request.verify_report_request)
        else:
            raise BadRequestError(ERR_MALFORMED_REQUEST)
        return response.SerializeToString()

    def _init_session(
        self, request: tvs_messages_pb2.InitSessionRequest
    ) -> tvs_messages_pb2.AttestReportResponse:
        if self._session is not None:
            raise BadRequestError(ERR_HANDSHAKE_DONE)
        private_key = self._config.private_key_for(request.tvs_public_key)
        if private_key is None:
            raise BadRequestError(
                ERR_UNKNOWN_PUBLIC_KEY,
                f"tvs_public_key ({len(request.tvs_public_key)} bytes) is not this TVS's key",
            )
        client_key = bytes(request.client_public_key)
        user_id = self._config.key_provider.user_id_for_authentication_key(client_key)
        if user_id is None:
            raise BadRequestError(ERR_UNAUTHENTICATED, _describe_key(client_key))
        try:
            reply = handshake.respond(private_key, client_key, request.client_message)
        except HatsError as exc:
            raise BadRequestError(ERR_INVALID_HANDSHAKE, str(exc)) from None
        self._session = _Session(
            user_id=user_id,
            handshake_hash=reply.result.handshake_hash,
            crypter=reply.result.crypter,
        )
        self.outcome = f"handshake accepted for user {user_id!r}"
        return tvs_messages_pb2.AttestReportResponse(
            init_session_response=tvs_messages_pb2.InitSessionResponse(
                response_for_client=reply.message
            )
        )

    def _verify_report(
        self, request: tvs_messages_pb2.VerifyReportRequestEncrypted
    ) -> tvs_messages_pb2.AttestReportResponse:
        self._terminated = True
        session = self._session
        if session is None:
            raise BadRequestError(ERR_NO_HANDSHAKE)
        try:
            plaintext = session.crypter.decrypt(request.client_message)
        except HatsError as exc:
            raise BadRequestError(ERR_DECRYPT, str(exc)) from None
        inner = tvs_messages_pb2.VerifyReportRequest()
        try:
            inner.ParseFromString(plaintext)
        except DecodeError:
            raise BadRequestError(ERR_DECODE_VERIFY) from None
        if not inner.HasField("evidence"):
            raise BadRequestError(ERR_NO_EVIDENCE)
        self._check_signature(inner.evidence, session.handshake_hash, inner.signature)
        try:
            matched = self._config.evidence_checker.check(inner.evidence, inner.tee_certificate)
        except HatsError as exc:
            raise BadRequestError(ERR_NO_POLICY, str(exc)) from None
        try:
            secrets = self._config.key_provider.secrets_for_user_id(session.user_id)
        except UnknownUserError as exc:
            raise TvsServiceError(ERR_SECRETS + session.user_id, str(exc)) from None
        reply = tvs_messages_pb2.VerifyReportResponse(
            secrets=[
                tvs_messages_pb2.Secret(
                    key_id=s.key_id, public_key=s.public_key, private_key=s.private_key
                )
                for s in secrets
            ]
        )
        ciphertext = session.crypter.encrypt(reply.SerializeToString())
        key_ids = ", ".join(repr(s.key_id) for s in secrets) or "none"
        self.outcome = (
            f"report accepted for user {session.user_id!r} ({matched}); "
            f"{len(secrets)} secret(s) released, key ids {key_ids}"
        )
        return tvs_messages_pb2.AttestReportResponse(
            verify_report_response=tvs_messages_pb2.VerifyReportResponseEncrypted(
                response_for_client=ciphertext
            )
        )

    @staticmethod
    def _check_signature(
        evidence: evidence_pb2.Evidence, handshake_hash: bytes, raw_signature: bytes
    ) -> None:
        try:
            key = application_signing_key(evidence)
        except HatsError as exc:
            raise BadRequestError(ERR_SIGNING_KEY + str(exc)) from None
        try:
            signature.verify_handshake_hash(key, handshake_hash, raw_signature)
        except MalformedSignatureError as exc:
            raise BadRequestError(ERR_PARSE_SIGNATURE + str(exc)) from None
        except SignatureMismatchError as exc:
            raise BadRequestError(ERR_SIGNATURE_MISMATCH + str(exc)) from None
        except HatsError as exc:
            raise BadRequestError(ERR_SIGNING_KEY + str(exc)) from None


def _describe_key(key: bytes) -> str:
    """A registered-key miss, for the log: the key's length only."""
    if not key:
        return "the client public key is empty"
    return f"a {len(key)}-byte client public key that no user has"
