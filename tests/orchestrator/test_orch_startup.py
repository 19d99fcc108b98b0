"""Start-up and TVS sessions over real gRPC (unix sockets) against real TVS sessions."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from orch_testing import (
    AUTH_KEY,
    BUNDLE,
    FakeLauncher,
    dice_file,
    key_file,
    public,
    serve,
    serve_later,
    tvs_config,
)

from hats import orchestrator
from hats.attestation.dice import load_dice_data
from hats.attestation.verify import verify_evidence
from hats.errors import HatsError
from hats.keys.keyfile import KeyFileError
from hats.orchestrator.secret_manager import AttestationRoundError, SecretConfigError
from hats.orchestrator.startup import (
    LauncherUnavailableError,
    RetryPolicy,
    StartupConfig,
    StartupError,
    call_with_retry,
    start,
)
from hats.orchestrator.state import Secret as OrchSecret
from hats.orchestrator.tvs_client import AttestationParameters, TvsSessionError, attest
from hats.pb.oak.attestation.v1 import eventlog_pb2
from hats.pb.pcit.client import launcher_pb2_grpc
from hats.protocol.key_wrapping import wrap_secret
from hats.protocol.shamir import ShamirSharing
from hats.protocol.xor import XorSharing
from hats.tvs.keys import Secret

SECRET = bytes.fromhex("5ec2e7" * 10 + "01")  # 31 bytes, fits Shamir
FAST_RETRY = RetryPolicy(initial=0.05, cap=0.2, budget=10.0)


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    return {
        "socket": tmp_path / "launcher.sock",
        "dice": dice_file(tmp_path / "dice"),
        "keys1": key_file(tmp_path / "keys1.txt", 1),
        "keys3": key_file(tmp_path / "keys3.txt", 3),
    }


@pytest.fixture
def servers() -> Iterator[list[grpc.Server]]:
    started: list[grpc.Server] = []
    yield started
    for server in started:
        server.stop(None)


def config(paths: dict[str, Path], n: int, share_type: str, **kwargs: object) -> StartupConfig:
    options: dict[str, object] = {
        "launcher_addr": f"unix:{paths['socket']}",
        "tvs_public_keys_file": paths[f"keys{n}"],
        "secret_share_type": share_type,
        "dice_file": paths["dice"],
        "rpc_timeout": 10.0,
        "retry": FAST_RETRY,
        "start_heartbeat": False,
    }
    options.update(kwargs)
    return StartupConfig(**options)  # type: ignore[arg-type]


def shamir_launcher(secret: bytes = SECRET) -> FakeLauncher:
    shares = ShamirSharing(3, 2).split(secret)
    return FakeLauncher({i: tvs_config(i, [Secret("64", "pk64", shares[i])]) for i in range(3)})


def xor_launcher(secret: bytes = SECRET) -> FakeLauncher:
    shares = XorSharing(3).split(secret)
    return FakeLauncher({i: tvs_config(i, [Secret("64", "pk64", shares[i])]) for i in range(3)})


# --- the happy path ------------------------------------------------------------------------------


def test_no_split_start_up_end_to_end(paths: dict[str, Path], servers: list[grpc.Server]) -> None:
    launcher = FakeLauncher(
        {0: tvs_config(0, [Secret("64", "some public key", b"secret"), Secret("7", "pk", b"k")])}
    )
    servers.append(serve(launcher, paths["socket"]))
    dice_before = paths["dice"].read_bytes()
    started = start(config(paths, 1, "no-split"))
    try:
        state = started.state
        assert state.secret_manager.current() == [
            OrchSecret("7", "pk", b"k"),
            OrchSecret("64", "some public key", b"secret"),
        ]
        assert state.bundle == BUNDLE
        assert launcher.metadata_calls == 1
        assert launcher.sessions == [0]
        # The evidence sent to the launcher is the final one, and it verifies.
        assert launcher.evidence == [state.evidence]
        verify_evidence(state.evidence, tee_certificate=None, allow_insecure=True)
        assert len(state.evidence.layers) == 3
        event = eventlog_pb2.Event()
        event.ParseFromString(state.evidence.event_log.encoded_events[-1])
        data = eventlog_pb2.ContainerLayerData()
        data.ParseFromString(event.event.value)
        assert data.bundle.sha2_256 == hashlib.sha256(BUNDLE).digest()
        assert data.signing_public_key == state.instance_keys.signing_public_key
        # The DICE file was zeroed in place (same length, kept).
        after = paths["dice"].read_bytes()
        assert len(after) == len(dice_before) and after == bytes(len(after))
        # The evidence builds on what the file held.
        original = load_dice_data(dice_before).evidence
        assert state.evidence.layers[0] == original.layers[0]
        assert "bytes" in repr(state) and "bundle-tar" not in repr(state)
    finally:
        started.close()


@pytest.mark.parametrize("down", [0, 1, 2])
def test_shamir_start_up_with_one_tvs_down(
    paths: dict[str, Path],
    servers: list[grpc.Server],
    down: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    launcher = shamir_launcher()
    launcher.down = {down}
    servers.append(serve(launcher, paths["socket"]))
    with caplog.at_level(logging.WARNING):
        started = start(config(paths, 3, "shamir"))
    try:
        assert started.state.secret_manager.current() == [OrchSecret("64", "pk64", SECRET)]
        assert sorted(launcher.sessions) == [0, 1, 2]
        assert f"TVS {down} (line {down + 1}) failed, continuing with 2 of 3" in caplog.text
    finally:
        started.close()


def test_xor_start_up_fails_naming_the_failed_tvs(
    paths: dict[str, Path], servers: list[grpc.Server]
) -> None:
    launcher = xor_launcher()
    launcher.down = {2}
    servers.append(serve(launcher, paths["socket"]))
    with pytest.raises(AttestationRoundError) as failure:
        start(config(paths, 3, "xor"))
    message = str(failure.value)
    assert (
        "xor needs all 3 TVSes, 1 failed: TVS 2 (line 3): launcher VerifyReport failed" in message
    )
    assert "UNKNOWN: Failed to read from stream" in message
    assert "\n" not in message


def test_xor_start_up_succeeds_with_all(paths: dict[str, Path], servers: list[grpc.Server]) -> None:
    servers.append(serve(xor_launcher(), paths["socket"]))
    started = start(config(paths, 3, "xor"))
    try:
        assert started.state.secret_manager.current() == [OrchSecret("64", "pk64", SECRET)]
    finally:
        started.close()


def test_sessions_run_concurrently(paths: dict[str, Path], servers: list[grpc.Server]) -> None:
    launcher = shamir_launcher()
    # Each session waits until all three have sent message 1: sequential sessions would
    # break the barrier (timeout) and fail the round.
    launcher.barrier = threading.Barrier(3, timeout=5)
    servers.append(serve(launcher, paths["socket"]))
    started = start(config(paths, 3, "shamir"))
    try:
        assert started.state.secret_manager.current()[0].private_key == SECRET
        assert not launcher.barrier.broken
    finally:
        started.close()


def test_a_hung_tvs_hits_the_deadline(paths: dict[str, Path], servers: list[grpc.Server]) -> None:
    launcher = xor_launcher()
    launcher.hang = {1}
    servers.append(serve(launcher, paths["socket"]))
    began = time.monotonic()
    try:
        with pytest.raises(
            AttestationRoundError, match=r"TVS 1 \(line 2\): no answer within 0.5 s"
        ):
            start(config(paths, 3, "xor", rpc_timeout=0.5))
    finally:
        launcher.release.set()
    assert time.monotonic() - began < 8


def test_shamir_tolerates_a_hung_tvs(paths: dict[str, Path], servers: list[grpc.Server]) -> None:
    launcher = shamir_launcher()
    launcher.hang = {0}
    servers.append(serve(launcher, paths["socket"]))
    try:
        started = start(config(paths, 3, "shamir", rpc_timeout=0.5))
        started.close()
        assert started.state.secret_manager.current()[0].private_key == SECRET
    finally:
        launcher.release.set()


def test_unwrap_secrets_with_the_launchers_wrapping_keys(
    paths: dict[str, Path], servers: list[grpc.Server]
) -> None:
    primary, active = bytes(range(32)), bytes(range(100, 132))
    wrapped = wrap_secret(active, SECRET)
    launcher = xor_launcher(wrapped)
    launcher.wrapping_keys = [primary, active]
    servers.append(serve(launcher, paths["socket"]))
    started = start(config(paths, 3, "xor", unwrap_secrets=True))
    try:
        assert started.state.secret_manager.current()[0].private_key == SECRET
    finally:
        started.close()
    # Off by default: the workload gets the wrapped blob, as with the reference.
    paths["dice"] = dice_file(paths["dice"])
    started = start(config(paths, 3, "xor"))
    try:
        assert started.state.secret_manager.current()[0].private_key == wrapped
    finally:
        started.close()


def test_unwrap_without_wrapping_keys_is_a_start_up_error(
    paths: dict[str, Path], servers: list[grpc.Server]
) -> None:
    servers.append(serve(xor_launcher(), paths["socket"]))
    with pytest.raises(StartupError, match="--unwrap-secrets: the launcher sent no"):
        start(config(paths, 3, "xor", unwrap_secrets=True))


def test_heartbeat_refreshes_over_grpc(paths: dict[str, Path], servers: list[grpc.Server]) -> None:
    launcher = FakeLauncher({0: tvs_config(0, [Secret("1", "pk", b"first")])})
    servers.append(serve(launcher, paths["socket"]))
    started = start(config(paths, 1, "no-split", heartbeat_period=0.2, start_heartbeat=True))
    try:
        manager = started.state.secret_manager
        assert manager.current() == [OrchSecret("1", "pk", b"first")]
        launcher.tvs[0] = tvs_config(0, [Secret("1", "pk", b"second")])
        deadline = time.monotonic() + 10
        while manager.current()[0].private_key != b"second":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert launcher.metadata_calls == 1  # heartbeats reuse the metadata
    finally:
        started.close()


# --- launcher availability -----------------------------------------------------------------------


def test_start_up_retries_until_the_launcher_appears(
    paths: dict[str, Path], servers: list[grpc.Server], caplog: pytest.LogCaptureFixture
) -> None:
    launcher = FakeLauncher({0: tvs_config(0, [Secret("1", "pk", b"k")])})
    late = serve_later(launcher, paths["socket"], 0.6)
    try:
        with caplog.at_level(logging.WARNING):
            started = start(config(paths, 1, "no-split"))
        started.close()
    finally:
        for _ in range(50):
            if late:
                break
            time.sleep(0.1)
        servers.extend(late)
    assert started.state.secret_manager.current() == [OrchSecret("1", "pk", b"k")]
    assert launcher.metadata_calls == 1
    assert "launcher FetchOrchestratorMetadata: UNAVAILABLE (attempt 1), retrying" in caplog.text


def test_start_up_gives_up_after_the_retry_budget(paths: dict[str, Path]) -> None:
    policy = RetryPolicy(initial=0.05, cap=0.1, budget=0.4)
    began = time.monotonic()
    with pytest.raises(LauncherUnavailableError, match=r"no answer after \d+ attempts in 0\.4 s"):
        start(config(paths, 1, "no-split", retry=policy))
    assert time.monotonic() - began < 5
    assert paths["dice"].read_bytes() != bytes(len(paths["dice"].read_bytes()))  # not consumed


def test_backoff_is_exponential_capped_and_jittered() -> None:
    waits: list[float] = []
    clock = [0.0]

    class Unavailable(grpc.RpcError, grpc.Call):  # type: ignore[misc]
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.UNAVAILABLE

        def details(self) -> str:
            return "connection refused"

    attempts = [0]

    def call() -> str:
        attempts[0] += 1
        if attempts[0] < 8:
            raise Unavailable()  # type: ignore[abstract]
        return "ok"

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    policy = RetryPolicy(initial=1.0, cap=8.0, jitter=0.5, budget=1000)
    result = call_with_retry(
        "X", call, policy, sleep=sleep, clock=lambda: clock[0], rng=lambda: 0.0
    )
    assert result == "ok"
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    jittered = [policy.delay(3, draw) for draw in (0.0, 0.5, 0.999)]
    assert jittered[0] == 8.0 and jittered[1] == 6.0 and 4.0 < jittered[2] < 4.01


def test_non_retryable_launcher_error_fails_at_once() -> None:
    class Denied(grpc.RpcError, grpc.Call):  # type: ignore[misc]
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.PERMISSION_DENIED

        def details(self) -> str:
            return "no\nway"

    def call() -> None:
        raise Denied()  # type: ignore[abstract]

    with pytest.raises(StartupError, match=r"launcher X failed: PERMISSION_DENIED: no way$"):
        call_with_retry("X", call, FAST_RETRY, sleep=lambda s: None)


# --- configuration errors before any network traffic ---------------------------------------------


def test_single_tvs_with_xor_is_rejected_at_start_up(paths: dict[str, Path]) -> None:
    # No launcher at all: the error must come before any connection attempt.
    with pytest.raises(SecretConfigError, match="xor needs at least two TVSes"):
        start(config(paths, 1, "xor"))
    with pytest.raises(SecretConfigError, match="shamir needs at least three TVSes"):
        start(config(paths, 1, "shamir"))


def test_key_file_quirks_are_one_line_errors(tmp_path: Path, paths: dict[str, Path]) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"10:" + public(AUTH_KEY).hex().encode() + b"\n")
    with pytest.raises(KeyFileError) as failure:
        start(config(paths, 1, "no-split", tvs_public_keys_file=bad))
    message = str(failure.value)
    assert message.startswith(f"{bad}:1: ") and "\n" not in message
    assert public(AUTH_KEY).hex() not in message
    with pytest.raises(StartupError, match="cannot read the TVS key file"):
        start(config(paths, 1, "no-split", tvs_public_keys_file=tmp_path / "missing"))


def test_staleness_limit_must_exceed_the_heartbeat(paths: dict[str, Path]) -> None:
    with pytest.raises(SecretConfigError, match="--max-secret-staleness"):
        start(config(paths, 1, "no-split", heartbeat_period=60.0, max_secret_staleness=60.0))


def test_bad_dice_file_is_an_error_and_is_zeroed(
    paths: dict[str, Path], servers: list[grpc.Server]
) -> None:
    servers.append(serve(FakeLauncher({0: tvs_config(0, [])}), paths["socket"]))
    paths["dice"].write_bytes(b"\x05abc")
    with pytest.raises(HatsError, match="DICE data"):
        start(config(paths, 1, "no-split"))
    assert paths["dice"].read_bytes() == bytes(4)


# --- the TVS session on its own ------------------------------------------------------------------


def test_session_with_a_wrong_tvs_key_names_the_tvs(
    paths: dict[str, Path], servers: list[grpc.Server]
) -> None:
    # The key file says TVS 0 has key 2·G, the TVS holds 1·G.
    from hats.keys.keyfile import TvsKey

    launcher = FakeLauncher({0: tvs_config(0, [])})
    servers.append(serve(launcher, paths["socket"]))
    from hats.orchestrator.state import InstanceKeys

    keys = InstanceKeys.generate()
    from hats.pb.oak.attestation.v1 import evidence_pb2

    parameters = AttestationParameters(AUTH_KEY, evidence_pb2.Evidence(), b"", keys.signing_key)
    tvs = TvsKey(index=0, public_key=public((2).to_bytes(32, "big")), line=1)
    with grpc.insecure_channel(f"unix:{paths['socket']}") as channel:
        stub = launcher_pb2_grpc.LauncherServiceStub(channel)
        with pytest.raises(TvsSessionError) as failure:
            attest(stub, tvs, parameters, timeout=5)
        assert str(failure.value).startswith("TVS 0 (line 1): launcher VerifyReport failed")
        assert "Unknown public key" in str(failure.value)
        # Bad evidence: the TVS rejects it after the handshake (signature check).
        tvs = TvsKey(index=0, public_key=public((1).to_bytes(32, "big")), line=1)
        with pytest.raises(TvsSessionError, match=r"Failed to extract the signing key|signature"):
            attest(stub, tvs, parameters, timeout=5)


# --- logs never carry secrets --------------------------------------------------------------------


def test_no_secret_share_or_key_in_any_log_line(
    paths: dict[str, Path], servers: list[grpc.Server], caplog: pytest.LogCaptureFixture
) -> None:
    secret = bytes.fromhex("c0ffee" * 10)
    shares = XorSharing(3).split(secret)
    launcher = FakeLauncher({i: tvs_config(i, [Secret("64", "pk64", shares[i])]) for i in range(3)})
    servers.append(serve(launcher, paths["socket"]))
    dice_bytes = paths["dice"].read_bytes()
    eca_key = load_dice_data(dice_bytes).certificate_authority.eca_private_key
    caplog.set_level(logging.DEBUG)
    started = start(config(paths, 3, "xor"))
    try:
        # A failing heartbeat round and a good one, logged too.
        launcher.down = {1}
        from hats.orchestrator.secret_manager import Heartbeat

        heartbeat = Heartbeat(
            started.state.secret_manager, started.round, 10.0, wait=lambda s: False
        )
        heartbeat.run(rounds=1)
        launcher.down = set()
        heartbeat.run(rounds=1)
        keys = started.state.instance_keys
        assert started.state.secret_manager.current()[0].private_key == secret
    finally:
        started.close()
    text = caplog.text + "\n".join(repr(r.args) for r in caplog.records)
    assert "refresh failed" in text and "TVS 1 (line 2)" in text
    from cryptography.hazmat.primitives import serialization

    forbidden = [
        secret,
        AUTH_KEY,
        eca_key,
        keys.signing_key.private_numbers().private_value.to_bytes(32, "big"),
        keys.encryption_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        ),
        *shares,
    ]
    for value in forbidden:
        assert value.hex() not in text
        assert repr(value) not in text
        assert value.decode("latin-1") not in text
        assert ",".join(map(str, value)) not in text  # share JSON form


# --- main ----------------------------------------------------------------------------------------


def test_main_reports_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.txt"
    status = orchestrator.main(
        [
            "--log-to-stderr",
            "--runtime-user=root",
            f"--tvs-public-keys-file={missing}",
            "--launcher-addr=unix:/nonexistent",
        ]
    )
    assert status == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1
    assert f"{missing}: cannot read the TVS key file" in lines[0]


def test_main_rejects_an_unknown_runtime_user(capsys: pytest.CaptureFixture[str]) -> None:
    status = orchestrator.main(["--log-to-stderr", "--runtime-user=no-such-user-hats"])
    assert status == 1
    assert "user `no-such-user-hats` not found" in capsys.readouterr().err


def test_new_flags_parse() -> None:
    args = orchestrator.build_parser().parse_args(
        [
            "--dice-file=/tmp/d",
            "--max-secret-staleness=7200",
            "--unwrap-secrets",
            "--rpc-timeout=2.5",
            "--runtime=process",
            "--enable-instance-signing",
            "--key-provisioning-addr=0.0.0.0:4000",
            "--log-to-stderr",
        ]
    )
    assert args.dice_file == "/tmp/d" and args.max_secret_staleness == 7200.0
    assert args.unwrap_secrets and args.enable_instance_signing and args.log_to_stderr
    assert args.rpc_timeout == 2.5 and args.runtime == "process"
    defaults = orchestrator.build_parser().parse_args([])
    assert defaults.dice_file == "/oak/dice" and defaults.runtime == "runc"
    assert defaults.max_secret_staleness is None and defaults.key_provisioning_addr is None
    assert not defaults.unwrap_secrets and not defaults.enable_instance_signing
    for bad in ("--rpc-timeout=0", "--rpc-timeout=nan", "--max-secret-staleness=-1"):
        with pytest.raises(SystemExit):
            orchestrator.build_parser().parse_args([bad])


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    for handler in list(root.handlers):
        if handler.get_name() == "oak_containers_orchestrator":
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
