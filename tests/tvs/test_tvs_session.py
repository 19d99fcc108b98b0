"""The pure TVS session (wire-protocol §7.1) against the real v1 Genoa evidence."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tvs_testing import (
    CLIENT,
    OTHER_CLIENT,
    PRIMARY,
    SECONDARY,
    Client,
    config,
    evidence,
    policy_text,
    public,
)

from hats.errors import HatsError, LocalProtocolError, RemoteProtocolError
from hats.pb.pcit.tvs import tvs_messages_pb2
from hats.tvs.keys import KeyProvider, Secret, UnknownUserError, User
from hats.tvs.session import (
    BadRequestError,
    RequestHandler,
    SessionStateError,
    TvsConfig,
    TvsRequestError,
    TvsServiceError,
)


def handshaken(handler: RequestHandler | None = None) -> tuple[Client, RequestHandler]:
    handler = handler or config().new_handler()
    client = Client()
    client.process_init_response(handler.handle(client.init_request()))
    return client, handler


def rejected(handler: RequestHandler, message: bytes) -> TvsRequestError:
    """The client's fault: a :class:`BadRequestError`, a :class:`RemoteProtocolError`."""
    with pytest.raises(BadRequestError) as info:
        handler.handle(message)
    assert isinstance(info.value, RemoteProtocolError)
    return info.value


def test_handshake_then_verify_returns_the_secrets() -> None:
    client, handler = handshaken()
    assert handler.user_id == "1"
    assert not handler.terminated
    assert client.result is not None
    secrets = client.secrets(handler.handle(client.verify_request()))
    assert secrets == [("64", "some public key", b"secret")]
    assert handler.terminated
    assert "accepted" in handler.outcome and "secret" not in handler.outcome.split(";")[0]


def test_secondary_key_is_accepted_when_configured() -> None:
    handler = config(secondary=SECONDARY).new_handler()
    client = Client(tvs_public_key=public(SECONDARY))
    client.process_init_response(handler.handle(client.init_request()))
    assert client.secrets(handler.handle(client.verify_request()))[0][2] == b"secret"


def test_unknown_tvs_key() -> None:
    handler = config().new_handler()
    client = Client(tvs_public_key=public(SECONDARY))
    assert rejected(handler, client.init_request()).message == "Unknown public key"


def test_tvs_key_not_matching_the_message_is_an_invalid_handshake() -> None:
    # The client encrypts to SECONDARY but claims PRIMARY.
    client = Client(tvs_public_key=public(SECONDARY))
    request = client.init_request(claimed_tvs_key=public(PRIMARY))
    assert rejected(config().new_handler(), request).message == "Invalid handshake."


def test_f8_unregistered_client_key_text_names_no_key() -> None:
    client = Client(client_key=OTHER_CLIENT)
    error = rejected(config().new_handler(), client.init_request())
    assert error.message == (
        "Unauthenticated, provided public key is not registered: Failed to lookup user:"
        " UNAUTHENTICATED: unregistered or expired public key."
    )
    assert public(OTHER_CLIENT).hex() not in error.message + error.detail


def test_corrupted_handshake_message() -> None:
    request = tvs_messages_pb2.AttestReportRequest()
    request.ParseFromString(Client().init_request())
    message = bytearray(request.init_session_request.client_message)
    message[-1] ^= 1
    request.init_session_request.client_message = bytes(message)
    error = rejected(config().new_handler(), request.SerializeToString())
    assert error.message == "Invalid handshake."
    request.init_session_request.client_message = b""
    assert rejected(config().new_handler(), request.SerializeToString()).message == (
        "Invalid handshake."
    )


def test_second_init_is_refused() -> None:
    _, handler = handshaken()
    error = rejected(handler, Client().init_request())
    assert error.message == "Handshake has already been made."


def test_verify_before_handshake() -> None:
    handler = config().new_handler()
    request = tvs_messages_pb2.AttestReportRequest(
        verify_report_request=tvs_messages_pb2.VerifyReportRequestEncrypted(client_message=b"x")
    )
    error = rejected(handler, request.SerializeToString())
    assert error.message == "A successful handshake is require prior to process any request."
    assert handler.terminated


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"\xff\xff\xff", "Failed to decode (serialize) AttestReportRequest."),
        (b"", "AttestReportRequest is malformed"),
    ],
)
def test_undecodable_or_empty_request(message: bytes, expected: str) -> None:
    assert rejected(config().new_handler(), message).message == expected


def test_request_that_does_not_decrypt() -> None:
    _, handler = handshaken()
    request = tvs_messages_pb2.AttestReportRequest(
        verify_report_request=tvs_messages_pb2.VerifyReportRequestEncrypted(
            client_message=b"\x00" * 48
        )
    )
    assert rejected(handler, request.SerializeToString()).message == "Failed to decrypt request."
    assert handler.terminated


def test_request_that_is_not_a_verify_report_request() -> None:
    client, handler = handshaken()
    error = rejected(handler, client.verify_request(inner=b"\xff\xff\xff"))
    assert error.message == "Failed to decode (serialize) request proto"


def test_request_without_evidence() -> None:
    client, handler = handshaken()
    inner = tvs_messages_pb2.VerifyReportRequest(signature=b"\x01" * 64).SerializeToString()
    error = rejected(handler, client.verify_request(inner=inner))
    assert error.message == "Request does not have `evidence` proto."


def test_signature_by_another_key_does_not_match() -> None:
    client, handler = handshaken()
    error = rejected(handler, client.verify_request(key=OTHER_CLIENT))
    assert error.message.startswith("Signature does not match. ")


def test_signature_over_another_hash_does_not_match() -> None:
    from tvs_testing import signing_key

    from hats.protocol import signature

    client, handler = handshaken()
    wrong = signature.sign_handshake_hash(signing_key(), b"\x00" * 32)
    error = rejected(handler, client.verify_request(raw_signature=wrong))
    assert error.message.startswith("Signature does not match. ")


@pytest.mark.parametrize("raw", [b"", b"\x01" * 63, b"\x00" * 64, b"\xff" * 64])
def test_signature_that_does_not_parse(raw: bytes) -> None:
    client, handler = handshaken()
    error = rejected(handler, client.verify_request(raw_signature=raw))
    assert error.message.startswith("Failed to parse signature. ")


def test_signature_is_checked_before_the_evidence() -> None:
    handler = config(now=datetime(2020, 1, 1, tzinfo=UTC)).new_handler()
    client, handler = handshaken(handler)
    error = rejected(handler, client.verify_request(key=OTHER_CLIENT))
    assert error.message.startswith("Signature does not match. ")


def test_evidence_without_a_signing_key_certificate() -> None:
    client, handler = handshaken()
    value = evidence()
    value.application_keys.signing_public_key_certificate = b"\x00"
    error = rejected(handler, client.verify_request(evidence_message=value))
    assert error.message.startswith("Failed to extract the signing key from the evidence. ")


def test_evidence_not_matching_the_policies() -> None:
    digest = "b0803886a6e096bf1c9eacaa77dd1514134d2e88a7734af9ba2dbf650884f899"
    other = policy_text().replace(digest, "00" * 32)
    client, handler = handshaken(config(policy=other).new_handler())
    error = rejected(handler, client.verify_request())
    assert error.message == "Failed to verify report. No matching appraisal policy found"
    assert "container_binary_sha256" in error.detail
    assert handler.terminated


def test_evidence_outside_the_vcek_validity() -> None:
    handler = config(now=datetime(2033, 1, 1, tzinfo=UTC)).new_handler()
    client, handler = handshaken(handler)
    error = rejected(handler, client.verify_request())
    assert error.message == "Failed to verify report. No matching appraisal policy found"


def test_tampered_evidence_fails_verification() -> None:
    client, handler = handshaken()
    value = evidence()
    events = value.event_log.encoded_events
    events[2] = events[2] + b"\x00"
    error = rejected(handler, client.verify_request(evidence_message=value))
    assert error.message == "Failed to verify report. No matching appraisal policy found"


def test_user_without_secrets_entry_gets_an_empty_list() -> None:
    provider = KeyProvider([User("7", public(CLIENT), ())])
    client, handler = handshaken(config(provider).new_handler())
    assert client.secrets(handler.handle(client.verify_request())) == []


def test_several_users_get_their_own_secrets() -> None:
    provider = KeyProvider(
        [
            User("a", public(OTHER_CLIENT), (Secret("1", "p1", b"one"),)),
            User("b", public(CLIENT), (Secret("2", "p2", b"two"), Secret("3", "", b"three"))),
        ]
    )
    client, handler = handshaken(config(provider).new_handler())
    assert handler.user_id == "b"
    assert client.secrets(handler.handle(client.verify_request())) == [
        ("2", "p2", b"two"),
        ("3", "", b"three"),
    ]


def test_handler_refuses_requests_after_termination() -> None:
    """Our misuse (the transport must end the stream): a bug, not a user error."""
    client, handler = handshaken()
    handler.handle(client.verify_request())
    with pytest.raises(SessionStateError) as info:
        handler.handle(Client().init_request())
    assert isinstance(info.value, LocalProtocolError)
    assert not isinstance(info.value, HatsError)


class _NoSecrets(KeyProvider):
    """A provider that authenticates the client but has lost its secrets."""

    def secrets_for_user_id(self, user_id: str) -> tuple[Secret, ...]:
        raise UnknownUserError(f"no secrets for user {user_id}")


def test_missing_secrets_are_the_tvs_fault_with_the_reference_text() -> None:
    provider = _NoSecrets.from_flags(public(CLIENT))
    client, handler = handshaken(config(provider).new_handler())
    with pytest.raises(TvsServiceError) as info:
        handler.handle(client.verify_request())
    assert info.value.message == "Failed to get secret for user ID: 1"
    assert not isinstance(info.value, RemoteProtocolError)
    assert handler.terminated


def test_config_hides_keys_and_checks_them() -> None:
    cfg = config(secondary=SECONDARY)
    assert PRIMARY.hex() not in repr(cfg) and "secret" not in repr(cfg.key_provider)
    with pytest.raises(Exception, match="primary TVS private key"):
        TvsConfig(
            primary_private_key=b"\x00" * 32,
            key_provider=cfg.key_provider,
            evidence_checker=cfg.evidence_checker,
        )


def test_error_texts_do_not_contain_the_secret() -> None:
    provider = KeyProvider([User("1", public(CLIENT), (Secret("k", "", b"topsecret"),))])
    cfg = config(provider)
    assert "topsecret" not in repr(provider.secrets_for_user_id("1"))
    client, handler = handshaken(cfg.new_handler())
    error = rejected(handler, client.verify_request(key=OTHER_CLIENT))
    assert "topsecret" not in str(error) + error.detail
