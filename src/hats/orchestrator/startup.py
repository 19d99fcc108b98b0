"""The orchestrator's start-up, up to the first secrets (spec wire-protocol §2 steps 1-12).

:func:`start` runs, in order, stopping at the first error (a
:class:`~hats.errors.HatsError` with a one-line message):

1. read ``--tvs-public-keys-file`` as the reference does
   (:func:`hats.keys.keyfile.parse_key_file_as_reference`, upstream-facts F6:
   a file it fails on is a one-line error with the line number; what it
   accepts silently, such as duplicates, a one-line warning), and check the
   share type against the number of TVSes and the heartbeat settings — before
   any network traffic;
2. ``FetchOrchestratorMetadata`` **once** (the reference calls it once per
   TVS line on a new connection each time; the launcher's answer does not
   depend on the TVS, so one call gives the same data), retried while the
   launcher is not up yet (``UNAVAILABLE``/deadline) with capped exponential
   backoff and jitter (:class:`RetryPolicy`), within a total budget;
3. instance keys (X25519 HPKE, P-256 signing, P-256 session binding) and the
   group X25519 key;
4. ``GetContainerBundle`` (chunks concatenated and hashed as they arrive),
   with the same retry; a bundle larger than :func:`bundle_size_limit` (half
   the memory available at start: it is held in memory, then unpacked into
   the RAM-backed root) is refused as it arrives, instead of running the
   guest out of memory;
5. the DICE data from ``--dice-file`` (default ``/oak/dice``): read, then the
   file is overwritten with zeros of the same length and synced (kept, not
   removed, as the reference), then parsed;
6-8. the container event, :meth:`DiceAttester.extend`, application keys;
9. ``SendAttestationEvidence`` (with retry);
12. the first attestation round: one session per TVS, **concurrently**
   (threads), combined by :class:`SecretCombiner` (k-of-n for Shamir); then
   the heartbeat thread (first refresh after one period).

One gRPC channel to the launcher carries every call; every call has a
deadline (``--rpc-timeout``; the bundle download gets
:data:`BUNDLE_TIMEOUT_FACTOR` times it). The result is an
:class:`~hats.orchestrator.state.OrchestratorState` for the IPC services and
the runtime (steps 10, 13, 14 belong to them).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import grpc
from google.protobuf import empty_pb2

from hats.attestation.dice import DiceAttester, container_event_from_digest, load_dice_data
from hats.errors import HatsError
from hats.keys.keyfile import TvsKey, parse_key_file_as_reference
from hats.orchestrator.secret_manager import (
    DEFAULT_JITTER,
    SecretCombiner,
    SecretManager,
    TvsReply,
    check_heartbeat_settings,
    make_splitter,
)
from hats.orchestrator.state import InstanceKeys, OrchestratorState, Secret
from hats.orchestrator.tvs_client import (
    DEFAULT_RPC_TIMEOUT,
    AttestationParameters,
    TvsSessionError,
    attest,
    one_line,
    tvs_name,
)
from hats.pb.oak.attestation.v1 import evidence_pb2
from hats.pb.oak.containers import interfaces_pb2, interfaces_pb2_grpc
from hats.pb.pcit.client import launcher_pb2_grpc
from hats.protocol import p256
from hats.protocol.crypto_errors import InvalidPrivateKeyError
from hats.sharetype import DEFAULT_SHARE_TYPE
from hats.transport import parse_address

if TYPE_CHECKING:
    from hats.protocol.key_wrapping import PrivateKeyWrappingKeys

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_DICE_FILE = "/oak/dice"
BUNDLE_TIMEOUT_FACTOR = 20
"""The bundle download's deadline is this many times ``--rpc-timeout``."""
MAX_MESSAGE_LENGTH = 64 * 1024 * 1024
"""Largest gRPC message accepted from the launcher (its bundle chunks are 3 MiB)."""
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
FALLBACK_BUNDLE_SIZE_LIMIT = 16 << 30
"""The bundle size limit when ``/proc/meminfo`` says nothing usable."""


class StartupError(HatsError):
    """Start-up failed (the message says at which step and why)."""


class LauncherUnavailableError(StartupError):
    """The launcher did not answer within the retry budget."""


class BundleTooLargeError(StartupError):
    """The launcher's container bundle exceeds :func:`bundle_size_limit`."""


def bundle_size_limit(meminfo: str | None) -> int:
    """Half of ``MemAvailable`` in ``meminfo`` (the text of ``/proc/meminfo``), in
    bytes: the bundle is held in memory and then unpacked into the guest's
    RAM-backed root, so a larger one could never run. Without a usable
    ``MemAvailable`` line: :data:`FALLBACK_BUNDLE_SIZE_LIMIT`."""
    for line in (meminfo or "").splitlines():
        name, _, rest = line.partition(":")
        words = rest.split()
        if (
            name == "MemAvailable"
            and len(words) == 2
            and words[1] == "kB"
            and words[0].isascii()
            and words[0].isdigit()
            and int(words[0]) > 0
        ):
            return int(words[0]) * 1024 // 2
    return FALLBACK_BUNDLE_SIZE_LIMIT


def _read_meminfo() -> str | None:
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as handle:
            return handle.read(1 << 16)
    except OSError:
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter for calls to a launcher that may come up late.

    Attempt ``n`` (0-based) failing with ``UNAVAILABLE`` or a deadline waits
    ``min(cap, initial * multiplier**n) * uniform(1 - jitter, 1]`` seconds,
    never past ``budget`` seconds after the first attempt.
    """

    initial: float = 0.5
    cap: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    budget: float = 300.0

    def delay(self, attempt: int, draw: float) -> float:
        """The wait after failed attempt ``attempt`` for a uniform ``draw`` in [0, 1)."""
        base = min(self.cap, self.initial * self.multiplier**attempt)
        return base * (1 - self.jitter * draw)


@dataclass(frozen=True)
class StartupConfig:
    """The command-line settings start-up uses."""

    launcher_addr: str
    tvs_public_keys_file: Path
    secret_share_type: str = DEFAULT_SHARE_TYPE.value
    heartbeat_period: float = 3600.0
    dice_file: Path = Path(DEFAULT_DICE_FILE)
    max_secret_staleness: float | None = None
    unwrap_secrets: bool = False
    rpc_timeout: float = DEFAULT_RPC_TIMEOUT
    retry: RetryPolicy = RetryPolicy()
    heartbeat_jitter: float = DEFAULT_JITTER
    start_heartbeat: bool = True


@dataclass(frozen=True, repr=False)
class LauncherMetadata:
    """``FetchOrchestratorMetadataResponse``, checked; the repr hides the keys."""

    tee_certificate: bytes
    authentication_key: bytes
    wrapping_keys: tuple[bytes, ...] | None
    """``[primary] + active`` when the field is set (the primary may be empty)."""

    def __repr__(self) -> str:
        return f"LauncherMetadata(tee_certificate=<{len(self.tee_certificate)} bytes>)"


def _rpc_failure(what: str, exc: grpc.RpcError) -> StartupError:
    if isinstance(exc, grpc.Call):
        detail = one_line(exc.details() or "")
        return StartupError(f"launcher {what} failed: {exc.code().name}: {detail}")
    return StartupError(f"launcher {what} failed")


def call_with_retry(
    what: str,
    call: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
) -> T:
    """``call()``, retried per ``policy`` while it fails with UNAVAILABLE or a deadline."""
    started = clock()
    attempt = 0
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code not in RETRYABLE:
                failure = _rpc_failure(what, exc)
            else:
                failure = None
                last = code.name if code is not None else "error"
        if failure is not None:
            raise failure
        remaining = policy.budget - (clock() - started)
        if remaining <= 0:
            raise LauncherUnavailableError(
                f"launcher {what}: no answer after {attempt + 1} attempts in "
                f"{policy.budget:g} s (last: {last})"
            )
        delay = min(policy.delay(attempt, rng()), remaining)
        logger.warning(
            "launcher %s: %s (attempt %d), retrying in %.1f s", what, last, attempt + 1, delay
        )
        sleep(delay)
        attempt += 1


# --- steps ---------------------------------------------------------------------------------------


def read_key_file(path: Path) -> list[TvsKey]:
    """Step 0: the TVS keys in line order, read as the reference orchestrator reads them.

    Any file the reference runs, we run (upstream-facts F6: any single-digit
    index in any order, ``\r\n``, duplicates); what it would silently get
    wrong (a repeated key or index, a separator other than ``:``) is one
    warning line. Where the reference fails start-up, a one-line error naming
    file and line.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StartupError(f"{path}: cannot read the TVS key file: {exc.strerror}") from None
    keys, warning = parse_key_file_as_reference(data, str(path))
    if warning is not None:
        logger.warning("%s", warning)
    return keys


def fetch_metadata(
    stub: launcher_pb2_grpc.LauncherServiceStub,
    *,
    timeout: float,
    retry: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> LauncherMetadata:
    """Step 1: ``FetchOrchestratorMetadata`` with retry; checks the authentication key."""
    response = call_with_retry(
        "FetchOrchestratorMetadata",
        lambda: stub.FetchOrchestratorMetadata(empty_pb2.Empty(), timeout=timeout),
        retry,
        sleep=sleep,
    )
    key = bytes(response.tvs_authentication_key)
    try:
        p256.load_private_key(key, "the launcher's tvs_authentication_key")
    except InvalidPrivateKeyError as exc:
        raise StartupError(f"launcher metadata: {exc}") from None
    wrapping: tuple[bytes, ...] | None = None
    if response.HasField("private_key_wrapping_keys"):
        keys = response.private_key_wrapping_keys
        wrapping = (bytes(keys.primary), *(bytes(k) for k in keys.active))
    return LauncherMetadata(
        tee_certificate=bytes(response.tee_certificate),
        authentication_key=key,
        wrapping_keys=wrapping,
    )


def wrapping_keys_for_unwrap(metadata: LauncherMetadata) -> PrivateKeyWrappingKeys:
    """The launcher's wrapping keys for ``--unwrap-secrets`` (an error if unusable)."""
    if not metadata.wrapping_keys or not metadata.wrapping_keys[0]:
        raise StartupError(
            "--unwrap-secrets: the launcher sent no private-key wrapping keys "
            "(launcher flag --private_key_wrapping_keys)"
        )
    from hats.protocol.key_wrapping import KeyWrappingError, PrivateKeyWrappingKeys

    primary, *active = metadata.wrapping_keys
    try:
        return PrivateKeyWrappingKeys(primary, [key for key in active if key])
    except KeyWrappingError as exc:
        raise StartupError(f"--unwrap-secrets: launcher's wrapping keys: {exc}") from None


def fetch_bundle(
    stub: interfaces_pb2_grpc.LauncherStub,
    *,
    timeout: float,
    retry: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    max_size: int = FALLBACK_BUNDLE_SIZE_LIMIT,
) -> tuple[bytes, bytes]:
    """Step 4: ``GetContainerBundle``: every chunk concatenated in order, and the
    SHA-256 of those bytes, hashed as the chunks arrive (the bundle is hashed
    once, while the network is the bottleneck, not again for the evidence).
    More than ``max_size`` bytes: the call is cancelled and
    :class:`BundleTooLargeError` raised (not retried)."""

    def download() -> tuple[bytes, bytes]:
        digest = hashlib.sha256()
        pieces = []
        size = 0
        call = stub.GetContainerBundle(empty_pb2.Empty(), timeout=timeout)
        for chunk in call:
            piece = chunk.image_chunk
            size += len(piece)
            if size > max_size:
                call.cancel()
                raise BundleTooLargeError(
                    f"launcher GetContainerBundle: the bundle is larger than {max_size} bytes"
                    " (half the guest's available memory; it is held in memory and unpacked"
                    " into RAM): refused"
                )
            digest.update(piece)
            pieces.append(piece)
        return b"".join(pieces), digest.digest()

    return call_with_retry("GetContainerBundle", download, retry, sleep=sleep)


def read_dice_file(path: Path) -> bytes:
    """Step 5: the file's bytes; the file is then overwritten with zeros (same length), synced."""
    try:
        with open(path, "r+b") as handle:
            data = handle.read()
            handle.seek(0)
            handle.write(bytes(len(data)))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise StartupError(f"{path}: cannot read and clear the DICE data: {exc.strerror}") from None
    return data


def build_evidence(
    dice_file_data: bytes, bundle_sha256: bytes, keys: InstanceKeys
) -> evidence_pb2.Evidence:
    """Steps 5-8: the final evidence from the DICE data, the bundle's SHA-256 and
    the instance keys."""
    attester = DiceAttester(load_dice_data(dice_file_data))
    event = container_event_from_digest(
        bundle_sha256,
        keys.encryption_public_key,
        keys.signing_public_key,
        keys.session_binding_public_key,
    )
    attester.extend(event)
    attester.add_application_keys(
        encryption_public_key=keys.encryption_public_key,
        signing_public_key=keys.signing_public_key,
        group_encryption_public_key=keys.group_encryption_public_key,
        event=event,
    )
    return attester.evidence()


class AttestationRound:
    """One round: a session with every TVS, concurrently, combined into secrets."""

    def __init__(
        self,
        stub: launcher_pb2_grpc.LauncherServiceStub,
        tvs_keys: Sequence[TvsKey],
        parameters: AttestationParameters,
        combiner: SecretCombiner,
        *,
        timeout: float,
    ) -> None:
        self._stub = stub
        self._tvs_keys = list(tvs_keys)
        self._parameters = parameters
        self._combiner = combiner
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"AttestationRound(tvs={len(self._tvs_keys)}, combiner={self._combiner!r})"

    def _one(self, tvs: TvsKey) -> TvsReply:
        try:
            secrets = attest(self._stub, tvs, self._parameters, timeout=self._timeout)
        except TvsSessionError as exc:
            return TvsReply(tvs=exc.tvs, error=exc.reason)
        except HatsError as exc:
            return TvsReply(tvs=tvs_name(tvs), error=str(exc))
        return TvsReply(tvs=tvs_name(tvs), secrets=tuple(secrets))

    def __call__(self) -> list[Secret]:
        """Run the round; the combined secrets, or a HatsError naming the failed TVSes."""
        with ThreadPoolExecutor(
            max_workers=len(self._tvs_keys), thread_name_prefix="tvs-session"
        ) as pool:
            replies = list(pool.map(self._one, self._tvs_keys))
        return self._combiner.combine(replies)


def launcher_channel(target: str) -> grpc.Channel:
    """A channel to the launcher that accepts large bundle chunks."""
    return grpc.insecure_channel(
        target,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_LENGTH),
            ("grpc.max_send_message_length", MAX_MESSAGE_LENGTH),
        ],
    )


@dataclass(frozen=True, repr=False)
class Startup:
    """What :func:`start` returns: the state for the services, and the launcher channel."""

    state: OrchestratorState
    channel: grpc.Channel
    round: AttestationRound

    def close(self) -> None:
        """Stop the heartbeat and close the channel."""
        self.state.secret_manager.stop()
        self.channel.close()


def start(
    config: StartupConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
    instance_keys: InstanceKeys | None = None,
) -> Startup:
    """Run start-up steps 1-12 (module docstring)."""
    tvs_keys = read_key_file(config.tvs_public_keys_file)
    make_splitter(config.secret_share_type, len(tvs_keys))
    check_heartbeat_settings(
        config.heartbeat_period, config.max_secret_staleness, config.heartbeat_jitter
    )
    target = parse_address(config.launcher_addr).grpc_target()
    logger.info(
        "starting: launcher %s, %d TVS%s, share type %s",
        target,
        len(tvs_keys),
        "es" if len(tvs_keys) != 1 else "",
        config.secret_share_type,
    )
    channel = launcher_channel(target)
    try:
        return _start(config, tvs_keys, target, channel, sleep, instance_keys)
    except BaseException:
        channel.close()
        raise


def _start(
    config: StartupConfig,
    tvs_keys: list[TvsKey],
    target: str,
    channel: grpc.Channel,
    sleep: Callable[[float], None],
    instance_keys: InstanceKeys | None,
) -> Startup:
    hats_launcher = launcher_pb2_grpc.LauncherServiceStub(channel)
    oak_launcher = interfaces_pb2_grpc.LauncherStub(channel)
    timeout = config.rpc_timeout

    metadata = fetch_metadata(hats_launcher, timeout=timeout, retry=config.retry, sleep=sleep)
    wrapping = wrapping_keys_for_unwrap(metadata) if config.unwrap_secrets else None
    logger.info("launcher metadata received")
    combiner = SecretCombiner(config.secret_share_type, len(tvs_keys), wrapping_keys=wrapping)

    keys = instance_keys if instance_keys is not None else InstanceKeys.generate()
    bundle, bundle_sha256 = fetch_bundle(
        oak_launcher,
        timeout=timeout * BUNDLE_TIMEOUT_FACTOR,
        retry=config.retry,
        sleep=sleep,
        max_size=bundle_size_limit(_read_meminfo()),
    )
    logger.info("container bundle received: %d bytes, sha256 %s", len(bundle), bundle_sha256.hex())
    evidence = build_evidence(read_dice_file(config.dice_file), bundle_sha256, keys)
    logger.info("evidence extended with the container layer; %s cleared", config.dice_file)
    call_with_retry(
        "SendAttestationEvidence",
        lambda: oak_launcher.SendAttestationEvidence(
            interfaces_pb2.SendAttestationEvidenceRequest(dice_evidence=evidence), timeout=timeout
        ),
        config.retry,
        sleep=sleep,
    )

    parameters = AttestationParameters(
        authentication_key=metadata.authentication_key,
        evidence=evidence,
        tee_certificate=metadata.tee_certificate,
        signing_key=keys.signing_key,
    )
    attestation_round = AttestationRound(
        hats_launcher, tvs_keys, parameters, combiner, timeout=timeout
    )
    secrets = attestation_round()
    logger.info(
        "first attestation round done: %d secret%s (key_ids %s)",
        len(secrets),
        "" if len(secrets) == 1 else "s",
        ", ".join(secret.key_id for secret in secrets) or "none",
    )
    manager = SecretManager(secrets, max_staleness=config.max_secret_staleness)
    if config.start_heartbeat:
        manager.start_heartbeat(
            attestation_round, config.heartbeat_period, jitter=config.heartbeat_jitter
        )
    state = OrchestratorState(
        evidence=evidence,
        instance_keys=keys,
        bundle=bundle,
        secret_manager=manager,
        launcher_target=target,
        tee_certificate=metadata.tee_certificate,
        rpc_timeout=timeout,
    )
    return Startup(state=state, channel=channel, round=attestation_round)


__all__ = [
    "BUNDLE_TIMEOUT_FACTOR",
    "DEFAULT_DICE_FILE",
    "AttestationRound",
    "LauncherMetadata",
    "LauncherUnavailableError",
    "RetryPolicy",
    "Startup",
    "StartupConfig",
    "StartupError",
    "build_evidence",
    "call_with_retry",
    "fetch_bundle",
    "fetch_metadata",
    "read_dice_file",
    "read_key_file",
    "start",
]
