"""The TVS over real gRPC: unix socket and TCP, real client streams."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from tvs_testing import OTHER_CLIENT, Client, Stream, config, full_session

from hats.tvs.server import ServeError, serve, serve_bound


@pytest.fixture
def unix_target(tmp_path: Path) -> Iterator[str]:
    server, bound = serve_bound(f"unix:{tmp_path / 'tvs.sock'}", config().new_handler)
    assert bound == f"unix:{tmp_path / 'tvs.sock'}"
    yield bound
    server.stop(None).wait()


@pytest.fixture
def tcp_target() -> Iterator[str]:
    server, bound = serve_bound("127.0.0.1:0", config().new_handler)
    host, _, port = bound.rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0
    yield bound
    server.stop(None).wait()


def test_full_session_over_a_unix_socket(
    unix_target: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hats.tvs"):
        assert full_session(unix_target) == [("64", "some public key", b"secret")]
    text = caplog.text
    assert "handshake accepted for user '1'" in text
    assert "report accepted" in text
    assert "secret'" not in text and "736563726574" not in text


def test_full_session_over_tcp(tcp_target: str) -> None:
    assert full_session(tcp_target)[0][2] == b"secret"
    # A second stream is a new session.
    assert full_session(tcp_target)[0][2] == b"secret"


def test_f8_rejection_is_invalid_argument_with_the_reference_text(
    unix_target: str, caplog: pytest.LogCaptureFixture
) -> None:
    stream = Stream(unix_target)
    with caplog.at_level(logging.INFO, logger="hats.tvs"), pytest.raises(grpc.RpcError) as info:
        stream.exchange(Client(client_key=OTHER_CLIENT).init_request())
    error = info.value
    assert isinstance(error, grpc.Call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    # upstream-facts F8, word for word: the UNKNOWN status text, no key bytes.
    assert error.details() == (
        "Invalid or malformed command. UNKNOWN: Unauthenticated, provided public key is not"
        " registered: Failed to lookup user: UNAUTHENTICATED: unregistered or expired public key."
    )
    assert "rejected: Unauthenticated" in caplog.text
    key_hex = Client(client_key=OTHER_CLIENT).initiator.initiator_static_public_key.hex()
    assert key_hex not in caplog.text
    stream.channel.close()


def test_bad_signature_ends_the_stream(unix_target: str) -> None:
    client = Client()
    stream = Stream(unix_target)
    client.process_init_response(stream.exchange(client.init_request()))
    with pytest.raises(grpc.RpcError) as info:
        stream.exchange(client.verify_request(key=OTHER_CLIENT))
    assert isinstance(info.value, grpc.Call)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details() or ""
    assert details.startswith("Invalid or malformed command. UNKNOWN: Signature does not match. ")
    stream.channel.close()


def test_stream_ends_ok_after_the_verify_whatever_comes_next(unix_target: str) -> None:
    client = Client()
    stream = Stream(unix_target)
    client.process_init_response(stream.exchange(client.init_request()))
    assert client.secrets(stream.exchange(client.verify_request()))
    stream.send_only(Client().init_request())  # read, then the loop sees "terminated"
    assert stream.close() == []


def test_client_half_close_without_requests(unix_target: str) -> None:
    assert Stream(unix_target).close() == []


def test_serve_returns_a_running_server(tmp_path: Path) -> None:
    server = serve(f"unix:{tmp_path / 's'}", config().new_handler)
    try:
        assert full_session(f"unix:{tmp_path / 's'}")
    finally:
        server.stop(None).wait()


def test_unusable_address() -> None:
    with pytest.raises(ServeError, match="cannot listen"):
        serve_bound("unix:/nonexistent-dir/x/tvs.sock", config().new_handler)
