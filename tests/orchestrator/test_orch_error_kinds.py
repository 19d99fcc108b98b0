"""Whose fault a TVS-session failure is: the TVS's (remote), the configuration's, or ours."""

from __future__ import annotations

import pytest

from hats.errors import HatsError, LocalProtocolError, RemoteProtocolError
from hats.keys.keyfile import TvsKey
from hats.orchestrator.state import InstanceKeys
from hats.orchestrator.tvs_client import (
    AttestationParameters,
    AttestationSession,
    TvsProtocolError,
    TvsSessionError,
)
from hats.pb.oak.attestation.v1 import evidence_pb2
from hats.pb.pcit.tvs import tvs_messages_pb2, tvs_pb2
from hats.protocol import p256


def _session(public_key: bytes | None = None) -> AttestationSession:
    keys = InstanceKeys.generate()
    auth = p256.generate_private_key().private_numbers().private_value.to_bytes(32, "big")
    tvs_public = public_key or p256.public_key_bytes(p256.generate_private_key())
    parameters = AttestationParameters(auth, evidence_pb2.Evidence(), b"", keys.signing_key)
    return AttestationSession(TvsKey(index=3, public_key=tvs_public, line=4), parameters)


def _reply(response: tvs_messages_pb2.AttestReportResponse) -> tvs_pb2.OpaqueMessage:
    return tvs_pb2.OpaqueMessage(binary_message=response.SerializeToString())


def test_message_4_before_the_handshake_is_our_bug() -> None:
    session = _session()
    reply = _reply(tvs_messages_pb2.AttestReportResponse())
    with pytest.raises(LocalProtocolError, match=r"^TVS 3 \(line 4\): message 4 before") as info:
        session.handle_verify_response(reply)
    assert not isinstance(info.value, HatsError)


def test_a_reply_that_does_not_parse_is_the_tvss_fault() -> None:
    session = _session()
    session.first_message()
    garbage = tvs_pb2.OpaqueMessage(binary_message=b"\xff\xff\xff")
    with pytest.raises(TvsProtocolError, match=r"^TVS 3 \(line 4\): the reply is not an") as info:
        session.handle_init_response(garbage)
    assert isinstance(info.value, RemoteProtocolError)
    assert isinstance(info.value, TvsSessionError)  # callers catching the old class still do


def test_the_wrong_reply_kind_is_the_tvss_fault() -> None:
    session = _session()
    session.first_message()
    wrong = tvs_messages_pb2.AttestReportResponse(
        verify_report_response=tvs_messages_pb2.VerifyReportResponseEncrypted()
    )
    with pytest.raises(TvsProtocolError, match="unexpected reply: expected init_session_response"):
        session.handle_init_response(_reply(wrong))


def test_a_message_2_that_does_not_authenticate_is_the_tvss_fault() -> None:
    session = _session()
    session.first_message()
    bogus = tvs_messages_pb2.AttestReportResponse(
        init_session_response=tvs_messages_pb2.InitSessionResponse(
            response_for_client=p256.public_key_bytes(p256.generate_private_key()) + bytes(16)
        )
    )
    with pytest.raises(TvsProtocolError, match=r"^TVS 3 \(line 4\): handshake failed: "):
        session.handle_init_response(_reply(bogus))


def test_a_bad_key_in_the_key_file_is_a_configuration_error_not_the_peers() -> None:
    with pytest.raises(TvsSessionError, match=r"^TVS 3 \(line 4\): ") as info:
        _session(public_key=b"\x04" + bytes(64))
    assert not isinstance(info.value, RemoteProtocolError)
