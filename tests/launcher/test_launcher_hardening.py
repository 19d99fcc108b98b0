"""The launcher against other local users and idle callers (issue "[hardening]" items 6 and 8).

- 100 idle ``VerifyReport`` streams do not keep the orchestrator from its
  secret; beyond the cap a stream is refused at once; an idle or stalled
  stream ends at the message deadline (and its TVS call with it);
- image streams that are never read hold at most their cap, unary calls
  still work;
- without ``--listen`` the launcher listens on a unix socket in a private
  directory, which another user cannot connect to; a TCP listener is warned
  about.
"""

from __future__ import annotations

import os
import pwd
import queue
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2

from hats.keys.keyfile import TvsKey
from hats.launcher.server import start_server
from hats.launcher.services import (
    PROXY_LIMITS,
    HatsLauncherService,
    OakLauncher,
    build_metadata,
    make_tvs_channels,
)
from hats.orchestrator.tvs_client import AttestationParameters, attest
from hats.pb.oak.containers import interfaces_pb2_grpc
from hats.pb.pcit.client import launcher_pb2, launcher_pb2_grpc
from hats.pb.pcit.tvs import tvs_pb2
from hats.protocol import p256
from hats.protocol.handshake import HandshakeInitiator
from hats.streamlimits import StreamLimits
from hats.tvs.server import TvsServicer, serve_servicer

sys.path.insert(0, str(Path(__file__).parents[1] / "tvs"))
from launcher_support import KEY, launcher
from tvs_testing import (
    CLIENT,
    PRIMARY,
    config,
    evidence,
    public,
    signing_key,
    vcek,
)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def status_of(call: Iterator[object]) -> grpc.StatusCode:
    try:
        for _ in call:
            pass
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[attr-defined,no-any-return]
    return grpc.StatusCode.OK


class IdleStream:
    """A launcher ``VerifyReport`` stream that sends only what it is told to."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._requests: queue.Queue[launcher_pb2.ForwardingTvsMessage | None] = queue.Queue()
        stub = launcher_pb2_grpc.LauncherServiceStub(channel)
        self.call = stub.VerifyReport(iter(self._requests.get, None), timeout=60)

    def send(self, message: bytes, tvs_id: int = 0) -> None:
        self._requests.put(
            launcher_pb2.ForwardingTvsMessage(
                tvs_id=tvs_id, opaque_message=tvs_pb2.OpaqueMessage(binary_message=message)
            )
        )

    def stop(self) -> None:
        self._requests.put(None)
        self.call.cancel()


@dataclass
class Setup:
    tvs: TvsServicer
    launcher: HatsLauncherService
    target: str


@contextmanager
def launcher_and_tvs(sock_dir: Path, limits: StreamLimits) -> Iterator[Setup]:
    tvs = TvsServicer(config().new_handler)
    tvs_server, tvs_target = serve_servicer(f"unix:{sock_dir / 'tvs.sock'}", tvs)
    channels = make_tvs_channels([tvs_target])
    service = HatsLauncherService(build_metadata(KEY), channels, limits)
    server, address = start_server(f"unix:{sock_dir / 'launcher.sock'}", hats=service)
    try:
        yield Setup(tvs, service, address.grpc_target())
    finally:
        server.stop(None).wait()
        for channel in channels.values():
            channel.close()
        tvs_server.stop(None).wait()


def real_attest(target: str) -> list[tuple[str, bytes]]:
    """The orchestrator's own TVS client, through the launcher."""
    parameters = AttestationParameters(
        authentication_key=CLIENT,
        evidence=evidence(),
        tee_certificate=vcek(),
        signing_key=p256.load_private_key(signing_key(), "signing key"),
    )
    tvs = TvsKey(index=0, public_key=public(PRIMARY), line=1)
    with grpc.insecure_channel(target) as channel:
        secrets = attest(launcher_pb2_grpc.LauncherServiceStub(channel), tvs, parameters)
    return [(s.key_id, s.private_key) for s in secrets]


def test_100_idle_streams_do_not_keep_the_orchestrator_from_its_secret(sock_dir: Path) -> None:
    limits = StreamLimits(max_streams=101, message_timeout=30.0, session_timeout=60.0)
    with launcher_and_tvs(sock_dir, limits) as setup:
        gate = setup.launcher.gate
        channel = grpc.insecure_channel(setup.target)
        idle = [IdleStream(channel) for _ in range(100)]
        try:
            wait_until(lambda: gate.active == 100)
            start = time.monotonic()
            assert real_attest(setup.target) == [("64", b"secret")]
            assert time.monotonic() - start < 1.0
            wait_until(lambda: gate.active == 100)
            idle.append(IdleStream(channel))
            wait_until(lambda: gate.active == 101)
            start = time.monotonic()
            assert status_of(IdleStream(channel).call) == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert time.monotonic() - start < 1.0
        finally:
            for stream in idle:
                stream.stop()
            channel.close()
        wait_until(lambda: gate.active == 0)


def test_the_default_cap_leaves_room_for_100_idle_streams() -> None:
    assert PROXY_LIMITS.max_streams > 100


def test_an_idle_stream_ends_at_the_message_deadline(sock_dir: Path) -> None:
    limits = StreamLimits(max_streams=4, message_timeout=0.3, session_timeout=30.0)
    with launcher_and_tvs(sock_dir, limits) as setup:
        with grpc.insecure_channel(setup.target) as channel:
            stream = IdleStream(channel)
            start = time.monotonic()
            assert status_of(stream.call) == grpc.StatusCode.DEADLINE_EXCEEDED
            assert 0.25 < time.monotonic() - start < 3.0
            stream.stop()
        wait_until(lambda: setup.launcher.gate.active == 0)


def test_a_stalled_handshake_ends_at_the_deadline_and_so_does_its_tvs_call(
    sock_dir: Path,
) -> None:
    limits = StreamLimits(max_streams=4, message_timeout=0.3, session_timeout=30.0)
    with launcher_and_tvs(sock_dir, limits) as setup:
        with grpc.insecure_channel(setup.target) as channel:
            from hats.pb.pcit.tvs import tvs_messages_pb2

            initiator = HandshakeInitiator(public(PRIMARY), CLIENT)
            init = tvs_messages_pb2.AttestReportRequest(
                init_session_request=tvs_messages_pb2.InitSessionRequest(
                    client_message=initiator.build_initial_message(),
                    tvs_public_key=public(PRIMARY),
                    client_public_key=public(CLIENT),
                )
            )
            stream = IdleStream(channel)
            stream.send(init.SerializeToString())
            next(iter(stream.call))  # message 2; message 3 never comes
            assert setup.tvs.gate.active == 1
            start = time.monotonic()
            assert status_of(stream.call) == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - start < 3.0
            stream.stop()
        wait_until(lambda: setup.launcher.gate.active == 0)
        wait_until(lambda: setup.tvs.gate.active == 0)


def test_unread_image_streams_hold_at_most_their_cap(sock_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "system.tar.xz"
    with open(image, "wb") as handle:
        handle.truncate(64 << 20)  # sparse: more than any flow-control window
    oak = OakLauncher(image, max_image_streams=2)
    hats = HatsLauncherService(build_metadata(KEY), {})
    server, address = start_server(f"unix:{sock_dir / 'l.sock'}", oak=oak, hats=hats)
    try:
        with grpc.insecure_channel(address.grpc_target()) as channel:
            stub = interfaces_pb2_grpc.LauncherStub(channel)
            held = [stub.GetOakSystemImage(empty_pb2.Empty(), timeout=30) for _ in range(2)]
            wait_until(lambda: oak.image_gate.active == 2)
            refused = stub.GetOakSystemImage(empty_pb2.Empty(), timeout=30)
            assert status_of(refused) == grpc.StatusCode.RESOURCE_EXHAUSTED
            metadata = launcher_pb2_grpc.LauncherServiceStub(channel).FetchOrchestratorMetadata(
                empty_pb2.Empty(), timeout=5
            )
            assert metadata.tvs_authentication_key == bytes.fromhex(KEY)
            for call in held:
                call.cancel()
            wait_until(lambda: oak.image_gate.active == 0)
    finally:
        server.stop(None).wait()


def test_a_unix_socket_is_made_0600(sock_dir: Path) -> None:
    socket_path = sock_dir / "l.sock"
    old = os.umask(0)
    try:
        server, _ = start_server(
            f"unix:{socket_path}", hats=HatsLauncherService(build_metadata(), {})
        )
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    finally:
        server.stop(None).wait()


# --------------------------------------------------------------------------- the CLI listener

FETCH = """
import sys, grpc
from google.protobuf import empty_pb2
from hats.pb.pcit.client import launcher_pb2_grpc
with grpc.insecure_channel(sys.argv[1]) as channel:
    try:
        reply = launcher_pb2_grpc.LauncherServiceStub(channel).FetchOrchestratorMetadata(
            empty_pb2.Empty(), timeout=5)
    except grpc.RpcError as exc:
        print("refused", exc.code().name)
    else:
        print("key", reply.tvs_authentication_key.hex())
"""


def fetch_as(target: str, user: str | None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", FETCH, target],
        capture_output=True,
        text=True,
        timeout=30,
        user=user,
        cwd="/",
    )
    return result.stdout.strip()


def test_without_listen_the_launcher_is_on_a_private_unix_socket(tmp_path: Path) -> None:
    with launcher([], tmp_path, key=KEY) as running:
        address = running.address
        assert address.startswith("unix:"), address
        socket_path = Path(address[len("unix:") :])
        directory = socket_path.parent
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert directory.stat().st_uid == os.getuid()
        assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
        assert fetch_as(address, None) == f"key {KEY}"
        code, stderr = running.stop()
        assert code == 0
        assert "WARNING" not in stderr
    assert not directory.exists()


def connect_as(address: str, user: str) -> str:
    """Connect to a launcher address as ``user`` (a forked child): "connected" or the error."""
    entry = pwd.getpwnam(user)
    "localhost".encode("idna")  # the child may not be able to import the codec
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only system calls, then _exit whatever happens
        result = b"connected"
        try:
            os.setgroups([])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            if address.startswith("unix:"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(address[len("unix:") :])
            else:
                host, _, port = address.rpartition(":")
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.settimeout(5)
                sock.connect((host, int(port)))
            sock.close()
        except OSError as exc:
            result = (exc.strerror or "error").encode()
        except BaseException as exc:
            result = type(exc).__name__.encode()
        finally:
            os.write(write_end, result)
            os._exit(0)
    os.close(write_end)
    try:
        answer = os.read(read_end, 200).decode()
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    return answer


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_another_local_user_cannot_reach_the_default_listener(tmp_path: Path) -> None:
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")
    with launcher([], tmp_path, key=KEY) as running:
        assert connect_as(running.address, "nobody") == "Permission denied"
        assert connect_as(running.address, "root") == "connected"


def test_a_tcp_listener_is_warned_about(tmp_path: Path) -> None:
    with launcher(["--listen", "127.0.0.1:0"], tmp_path, key=KEY) as running:
        assert running.address.startswith("127.0.0.1:")
        code, stderr = running.stop()
        assert code == 0
    assert "WARNING: listening on TCP 127.0.0.1:0" in stderr
    assert "TVS authentication key" in stderr
    assert KEY not in stderr


def test_threads_are_not_left_behind() -> None:
    # Every reader thread of the tests above ended with its stream.
    wait_until(
        lambda: not any(t.name.endswith("-reader") for t in threading.enumerate()), timeout=10
    )
