"""The workload services on the unix socket (spec wire-protocol §3.4, §3.6-3.8, §8.1-8.2)."""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import cast

import grpc
import pytest
from cryptography.hazmat.primitives import hpke
from google.protobuf import empty_pb2
from orch_ipc_support import SECRETS, StaleError, StubSecretManager, make_state

from hats.orchestrator import ipc_crypto, services
from hats.orchestrator.state import OrchestratorState
from hats.pb.oak.containers import interfaces_pb2_grpc
from hats.pb.oak.containers.v1 import orchestrator_crypto_pb2 as crypto_pb2
from hats.pb.oak.containers.v1 import orchestrator_crypto_pb2_grpc as crypto_pb2_grpc
from hats.pb.oak.key_provisioning.v1 import key_provisioning_pb2, key_provisioning_pb2_grpc
from hats.pb.pcit.server_common import orchestrator_pb2_grpc
from hats.protocol import signature

AUTHORITY = [("grpc.default_authority", "[::]:0")]


@pytest.fixture
def sock(tmp_path: Path) -> str:
    # Short path: unix socket paths are limited to 107 bytes.
    return str(tmp_path / "oak_utils" / "orchestrator_ipc")


def _serve(path: str, state: OrchestratorState, *, signing: bool = False) -> grpc.Server:
    return services.serve_ipc(
        path, state, enable_instance_signing=signing, runtime_uid=None, runtime_gid=None
    )


@pytest.fixture
def channel_for() -> Iterator[object]:
    opened: list[tuple[grpc.Server, grpc.Channel]] = []

    def factory(path: str, state: OrchestratorState, *, signing: bool = False) -> grpc.Channel:
        server = _serve(path, state, signing=signing)
        channel = grpc.insecure_channel(f"unix:{path}", options=AUTHORITY)
        opened.append((server, channel))
        return channel

    yield factory
    for server, channel in opened:
        channel.close()
        server.stop(None).wait()


def _error(call: object) -> grpc.RpcError:
    assert isinstance(call, grpc.RpcError)
    return call


def test_get_keys_over_the_unix_socket_with_the_sdk_authority(sock: str, channel_for) -> None:
    channel = channel_for(sock, make_state())
    response = orchestrator_pb2_grpc.HatsOrchestratorStub(channel).GetKeys(
        empty_pb2.Empty(), timeout=10
    )
    assert [(k.key_id, k.public_key, k.private_key) for k in response.keys] == [
        (s.key_id, s.public_key, s.private_key) for s in SECRETS
    ]


def test_get_keys_maps_secret_manager_errors_without_secrets(sock: str, channel_for) -> None:
    manager = StubSecretManager(fail=lambda: StaleError("the secrets are 99 s old\nsecond line"))
    stub = orchestrator_pb2_grpc.HatsOrchestratorStub(channel_for(sock, make_state(manager)))
    with pytest.raises(grpc.RpcError) as info:
        stub.GetKeys(empty_pb2.Empty(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info.value.details() == "secrets unavailable: the secrets are 99 s old second line"

    manager.fail = lambda: RuntimeError("TOPSECRET-key-sixty-four")
    with pytest.raises(grpc.RpcError) as info:
        stub.GetKeys(empty_pb2.Empty(), timeout=10)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "TOPSECRET" not in (info.value.details() or "")
    assert info.value.details() == "internal error (RuntimeError)"


def test_socket_is_0660_owned_by_the_runtime_user_and_parent_created(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "ipc"
    gid = next((g for g in os.getgroups() if g != os.getgid()), os.getgid())
    server = services.serve_ipc(
        str(path),
        make_state(),
        enable_instance_signing=False,
        runtime_uid=os.getuid(),
        runtime_gid=gid,
    )
    try:
        info = path.lstat()
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o660
        assert (info.st_uid, info.st_gid) == (os.getuid(), gid)
        assert sorted(p.name for p in path.parent.iterdir()) == ["ipc"]  # staging dir gone
    finally:
        server.stop(None).wait()


def test_chown_to_a_foreign_user_fails_cleanly(tmp_path: Path) -> None:
    if os.getuid() == 0:
        pytest.skip("root may chown to anyone")
    path = tmp_path / "ipc"
    with pytest.raises(services.IpcServerError, match="cannot set up the socket"):
        services.serve_ipc(
            str(path), make_state(), enable_instance_signing=False, runtime_uid=0, runtime_gid=0
        )
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_paths(tmp_path: Path) -> None:
    regular = tmp_path / "file"
    regular.write_text("keep me")
    with pytest.raises(services.IpcServerError, match="exists and is not a socket"):
        _serve(str(regular), make_state())
    assert regular.read_text() == "keep me"

    live = tmp_path / "live"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(live))
    listener.listen(1)
    try:
        with pytest.raises(services.IpcServerError, match="another process is listening"):
            _serve(str(live), make_state())
    finally:
        listener.close()
    # Now stale (nobody listens): replaced.
    server = _serve(str(live), make_state())
    try:
        with grpc.insecure_channel(f"unix:{live}") as channel:
            stub = orchestrator_pb2_grpc.HatsOrchestratorStub(channel)
            assert len(stub.GetKeys(empty_pb2.Empty(), timeout=10).keys) == 2
    finally:
        server.stop(None).wait()


def test_sign_with_the_instance_key_is_refused_unless_enabled(tmp_path: Path, channel_for) -> None:
    state = make_state()
    request = crypto_pb2.SignRequest(
        key_origin=crypto_pb2.INSTANCE, message=b"32-byte handshake hash........."
    )
    off = crypto_pb2_grpc.OrchestratorCryptoStub(channel_for(str(tmp_path / "a"), state))
    with pytest.raises(grpc.RpcError) as info:
        off.Sign(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "--enable-instance-signing" in (info.value.details() or "")

    on = crypto_pb2_grpc.OrchestratorCryptoStub(
        channel_for(str(tmp_path / "b"), state, signing=True)
    )
    sig = on.Sign(request, timeout=10).signature.signature
    signature.verify(state.instance_keys.signing_public_key, request.message, sig)

    for origin, code in (
        (crypto_pb2.GROUP, grpc.StatusCode.UNIMPLEMENTED),
        (crypto_pb2.KEY_ORIGIN_UNSPECIFIED, grpc.StatusCode.INVALID_ARGUMENT),
        (cast(crypto_pb2.KeyOrigin, 7), grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.RpcError) as info:
            on.Sign(crypto_pb2.SignRequest(key_origin=origin, message=b"m"), timeout=10)
        assert info.value.code() == code


def test_bind_session_signs_transcript_and_additional_data(sock: str, channel_for) -> None:
    state = make_state()
    stub = crypto_pb2_grpc.OrchestratorCryptoStub(channel_for(sock, state))
    response = stub.BindSession(
        crypto_pb2.BindSessionRequest(transcript=b"abc", additional_data=b"def"), timeout=10
    )
    sig = response.signature.signature
    assert len(sig) == 64
    signature.verify(state.instance_keys.session_binding_public_key, b"abcdef", sig)
    with pytest.raises(signature.SignatureMismatchError):
        signature.verify(state.instance_keys.signing_public_key, b"abcdef", sig)


def test_derive_session_keys_instance_and_group(sock: str, channel_for) -> None:
    state = make_state()
    stub = crypto_pb2_grpc.OrchestratorCryptoStub(channel_for(sock, state))
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    keys = state.instance_keys
    for origin, private in (
        (crypto_pb2.INSTANCE, keys.encryption_key),
        (crypto_pb2.GROUP, keys.group_encryption_key),
    ):
        enc = suite.encrypt(b"", private.public_key(), info=ipc_crypto.OAK_HPKE_INFO)[:32]
        response = stub.DeriveSessionKeys(
            crypto_pb2.DeriveSessionKeysRequest(
                key_origin=origin, serialized_encapsulated_public_key=enc
            ),
            timeout=10,
        )
        context = ipc_crypto.setup_base_receiver(enc, private, ipc_crypto.OAK_HPKE_INFO)
        assert response.session_keys.request_key == context.export(b"request_key", 32)
        assert response.session_keys.response_key == context.export(b"response_key", 32)

    with pytest.raises(grpc.RpcError) as info:
        stub.DeriveSessionKeys(
            crypto_pb2.DeriveSessionKeysRequest(serialized_encapsulated_public_key=enc),
            timeout=10,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "unspecified key origin"
    with pytest.raises(grpc.RpcError) as info:
        stub.DeriveSessionKeys(
            crypto_pb2.DeriveSessionKeysRequest(
                key_origin=crypto_pb2.INSTANCE, serialized_encapsulated_public_key=b"short"
            ),
            timeout=10,
        )
    assert info.value.code() == grpc.StatusCode.INTERNAL


def test_oak_orchestrator_service(sock: str, channel_for) -> None:
    state = make_state()
    stub = interfaces_pb2_grpc.OrchestratorStub(channel_for(sock, state))
    assert stub.GetApplicationConfig(empty_pb2.Empty(), timeout=10).config == b""
    endorsed = stub.GetEndorsedEvidence(empty_pb2.Empty(), timeout=10)
    assert endorsed.evidence == state.evidence
    assert endorsed.endorsements.SerializeToString() == b"\x12\x00"


class _Launcher(interfaces_pb2_grpc.LauncherServicer):
    def __init__(self) -> None:
        self.notified = threading.Event()

    def NotifyAppReady(self, request, context):
        self.notified.set()
        return empty_pb2.Empty()


def test_notify_app_ready_is_forwarded_to_the_launcher(tmp_path: Path, channel_for) -> None:
    launcher = _Launcher()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    interfaces_pb2_grpc.add_LauncherServicer_to_server(launcher, server)
    target = f"unix:{tmp_path / 'launcher'}"
    server.add_insecure_port(target)
    server.start()
    try:
        stub = interfaces_pb2_grpc.OrchestratorStub(
            channel_for(str(tmp_path / "ipc"), make_state(launcher_target=target))
        )
        stub.NotifyAppReady(empty_pb2.Empty(), timeout=10)
        assert launcher.notified.is_set()
    finally:
        server.stop(None).wait()
    # Launcher gone: INTERNAL "couldn't send notification: …".
    down = interfaces_pb2_grpc.OrchestratorStub(
        channel_for(str(tmp_path / "ipc2"), make_state(launcher_target=target))
    )
    with pytest.raises(grpc.RpcError) as info:
        down.NotifyAppReady(empty_pb2.Empty(), timeout=10)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert (info.value.details() or "").startswith("couldn't send notification: UNAVAILABLE")


def test_key_provisioning_is_off_without_an_address_and_unimplemented() -> None:
    assert services.serve_key_provisioning(None, make_state()) is None
    running = services.serve_key_provisioning("127.0.0.1:0", make_state())
    assert running is not None and running.port > 0
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = key_provisioning_pb2_grpc.KeyProvisioningStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.GetGroupKeys(key_provisioning_pb2.GetGroupKeysRequest(), timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            full = key_provisioning_pb2.GetGroupKeysRequest()
            full.evidence.SetInParent()
            full.endorsements.oak_containers.SetInParent()
            with pytest.raises(grpc.RpcError) as info:
                stub.GetGroupKeys(full, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        running.stop()
    with pytest.raises(services.IpcServerError, match="KeyProvisioning address"):
        services.serve_key_provisioning("not an address", make_state())


def test_no_repr_or_error_shows_keys(sock: str) -> None:
    state = make_state()
    servicer = services.OrchestratorCryptoServicer(state, enable_instance_signing=True)
    assert "PRIVATE" not in repr(servicer.__dict__)
    assert repr(state.instance_keys) == "InstanceKeys(<hidden>)"
