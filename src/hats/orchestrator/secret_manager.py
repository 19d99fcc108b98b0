"""The workload's secrets: combining the TVSes' replies, caching them, the heartbeat.

Pure parts (no I/O, no threads): :func:`make_splitter` and
:class:`SecretCombiner` (spec wire-protocol §5.3, with the reference's gaps
fixed), :func:`next_delay`. :class:`SecretManager` holds the last good
secrets behind a lock; :class:`Heartbeat` refreshes them from a thread.

Combination rules (one *round* = one attestation session per TVS, run
concurrently; each TVS gives a list of secrets or fails):

* ``no-split`` needs exactly one TVS (else a start-up error); its secrets are
  used as they are.
* ``xor`` needs at least two TVSes (one TVS with xor is a start-up error:
  the reference would hand the raw share JSON to the workload) and **every**
  TVS: a failed TVS fails the round, and the error says which one and why.
  Every key_id must come from every TVS.
* ``shamir`` with N TVSes (N >= 3) has threshold N-1, as the reference, but
  gives real k-of-n availability: the round succeeds when at least N-1 TVSes
  answer; each key_id needs shares from at least N-1 of them; every share
  beyond the threshold is cross-checked against the polynomial of the others,
  and the recovered value must carry the ``"hats"`` label.
* Split types: a key_id twice in one reply, or two TVSes disagreeing on a
  key_id's ``public_key``, fail the round.
* The result is sorted by key_id (numeric key_ids by value, then the others
  by text), so the order is stable between rounds (the reference's is random).
* With wrapping keys (``--unwrap-secrets``, §5.4), each recovered private key
  is unwrapped (primary key first, then the active ones); failure names the
  key_id.

Heartbeat rules: the first refresh comes one period after start (the
reference refreshes immediately); each later one one period after the
previous one *ended*, so a slow or hung round never causes a burst of
catch-up rounds; every delay is jittered by ±``jitter`` of the period; a
failed round keeps the last good secrets, whose age :meth:`SecretManager.age`
reports; with ``max_staleness`` set, :meth:`SecretManager.current` raises
:class:`StaleSecretsError` once they are older than that.

No message or log line contains a private key, a share or a wrapping key:
only TVS names, key_ids, counts and the (secret-free) errors of the
protocol modules.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hats.errors import HatsError
from hats.orchestrator.state import Secret
from hats.protocol.secret_sharing import SecretSharingError, SecretSplitter, ShareFormatError
from hats.sharetype import ShareType

if TYPE_CHECKING:
    from hats.protocol.key_wrapping import PrivateKeyWrappingKeys

# Imported where used, not here (start-up time, issue [boot-fast]): the xor and
# shamir splitters (their share format pulls in json) only for those share
# types, the key wrapping only with --unwrap-secrets.

logger = logging.getLogger(__name__)

DEFAULT_JITTER = 0.1
"""Heartbeat delays are uniform in ``period * [1 - jitter, 1 + jitter]``."""


class SecretConfigError(HatsError):
    """The share type does not fit the number of TVSes, or bad heartbeat settings."""


class AttestationRoundError(HatsError):
    """Too few TVSes answered for the share type (the message names the failed ones)."""


class SecretRecoveryError(HatsError):
    """The TVSes' replies cannot be combined into secrets (the message names key_id and TVS)."""


class StaleSecretsError(HatsError):
    """The last good secrets are older than ``--max-secret-staleness``."""


# --- configuration ----------------------------------------------------------------------------


def make_splitter(share_type: str, num_tvs: int) -> SecretSplitter | None:
    """The splitter for ``share_type`` and ``num_tvs`` TVSes (None for ``no-split``).

    Raises :class:`SecretConfigError` for combinations that cannot work:
    ``no-split`` with other than one TVS, ``xor`` with fewer than two,
    ``shamir`` with fewer than three (threshold N-1 must be at least 2).
    """
    if share_type == ShareType.NO_SPLIT:
        if num_tvs != ShareType.NO_SPLIT.min_tvs:
            raise SecretConfigError(
                f"--secret-share-type=no-split needs exactly one TVS, the key file lists {num_tvs}"
            )
        return None
    if share_type == ShareType.XOR:
        if num_tvs < ShareType.XOR.min_tvs:
            raise SecretConfigError(
                f"--secret-share-type=xor needs at least two TVSes, the key file lists {num_tvs} "
                "(with one TVS use no-split)"
            )
        from hats.protocol.xor import XorSharing

        return XorSharing(num_tvs)
    if share_type == ShareType.SHAMIR:
        if num_tvs < ShareType.SHAMIR.min_tvs:
            raise SecretConfigError(
                f"--secret-share-type=shamir needs at least three TVSes (threshold N-1 >= 2), "
                f"the key file lists {num_tvs}"
            )
        from hats.protocol.shamir import ShamirSharing

        return ShamirSharing(num_tvs, ShareType.SHAMIR.threshold(num_tvs))
    raise SecretConfigError(f"unknown secret share type {share_type!r}")


def required_replies(share_type: str, num_tvs: int) -> int:
    """How many TVSes must answer for a round to succeed (:meth:`ShareType.threshold`)."""
    if share_type == ShareType.SHAMIR:
        return ShareType.SHAMIR.threshold(num_tvs)
    return num_tvs


def check_heartbeat_settings(
    period: float, max_staleness: float | None, jitter: float = DEFAULT_JITTER
) -> None:
    """Reject a period of 0 (or less) and a staleness limit the heartbeat cannot meet."""
    if not period > 0:
        raise SecretConfigError("--tvs-heartbeat-frequency must be at least 1 second")
    if not 0 <= jitter < 1:
        raise SecretConfigError(f"heartbeat jitter {jitter} is not in [0, 1)")
    if max_staleness is not None and max_staleness <= period * (1 + jitter):
        raise SecretConfigError(
            f"--max-secret-staleness={max_staleness:g} must exceed the longest heartbeat "
            f"interval ({period * (1 + jitter):g} s = period + {jitter:.0%} jitter)"
        )


# --- combination --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TvsReply:
    """What one TVS gave in a round: its secrets, or the (secret-free) reason it failed."""

    tvs: str
    """Who it is, for messages: e.g. ``TVS 1 (line 2)``."""
    secrets: tuple[Secret, ...] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True if the TVS answered."""
        return self.secrets is not None


def key_id_order(key_id: str) -> tuple[int, int, str]:
    """Sort key: decimal key_ids by value first, then the others by text."""
    if key_id.isascii() and key_id.isdigit():
        return (0, int(key_id), key_id)
    return (1, 0, key_id)


def sort_secrets(secrets: Sequence[Secret]) -> list[Secret]:
    """``secrets`` in stable key_id order (see :func:`key_id_order`)."""
    return sorted(secrets, key=lambda secret: key_id_order(secret.key_id))


def _strip_position(exc: ShareFormatError) -> str:
    message = str(exc)
    prefix = f"share {exc.position}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


class SecretCombiner:
    """Combines one round's :class:`TvsReply` list into secrets (module rules). Pure."""

    def __init__(
        self,
        share_type: str,
        num_tvs: int,
        *,
        wrapping_keys: PrivateKeyWrappingKeys | None = None,
    ) -> None:
        self._splitter = make_splitter(share_type, num_tvs)
        self._share_type = share_type
        self._num_tvs = num_tvs
        self._required = required_replies(share_type, num_tvs)
        self._wrapping_keys = wrapping_keys

    @property
    def share_type(self) -> str:
        """``no-split``, ``xor`` or ``shamir``."""
        return self._share_type

    @property
    def required(self) -> int:
        """How many TVSes must answer in a round."""
        return self._required

    def __repr__(self) -> str:
        return (
            f"SecretCombiner({self._share_type!r}, num_tvs={self._num_tvs}, "
            f"unwrap={self._wrapping_keys is not None})"
        )

    def combine(self, replies: Sequence[TvsReply]) -> list[Secret]:
        """The round's secrets, sorted by key_id; raises a :class:`HatsError` subclass."""
        if len(replies) != self._num_tvs:
            raise ValueError(f"expected {self._num_tvs} replies, got {len(replies)}")
        answered = [reply for reply in replies if reply.ok]
        failed = [reply for reply in replies if not reply.ok]
        if len(answered) < self._required:
            reasons = "; ".join(f"{reply.tvs}: {reply.error}" for reply in failed)
            need = "all" if self._required == self._num_tvs else f"at least {self._required} of"
            raise AttestationRoundError(
                f"{self._share_type} needs {need} {self._num_tvs} TVS"
                f"{'es' if self._num_tvs != 1 else ''}, {len(failed)} failed: {reasons}"
            )
        for reply in failed:
            logger.warning(
                "%s failed, continuing with %d of %d TVSes: %s",
                reply.tvs,
                len(answered),
                self._num_tvs,
                reply.error,
            )
        if self._splitter is None:
            secrets = list(answered[0].secrets or ())
        else:
            secrets = self._recover(answered, self._splitter)
        if self._wrapping_keys is not None:
            secrets = [self._unwrap(secret, self._wrapping_keys) for secret in secrets]
        return sort_secrets(secrets)

    def _recover(self, answered: Sequence[TvsReply], splitter: SecretSplitter) -> list[Secret]:
        # key_id -> [(reply, secret)] in TVS order
        by_key: dict[str, list[tuple[TvsReply, Secret]]] = {}
        for reply in answered:
            seen: set[str] = set()
            for secret in reply.secrets or ():
                if secret.key_id in seen:
                    raise SecretRecoveryError(
                        f"{reply.tvs} sent key_id {secret.key_id!r} twice in one reply"
                    )
                seen.add(secret.key_id)
                by_key.setdefault(secret.key_id, []).append((reply, secret))
        result = []
        for key_id, entries in by_key.items():
            first_reply, first = entries[0]
            for reply, secret in entries[1:]:
                if secret.public_key != first.public_key:
                    raise SecretRecoveryError(
                        f"key_id {key_id!r}: {reply.tvs} and {first_reply.tvs} disagree on "
                        "its public key (the TVS databases are out of step)"
                    )
            if len(entries) < self._required:
                have = {reply.tvs for reply, _ in entries}
                missing = ", ".join(reply.tvs for reply in answered if reply.tvs not in have)
                raise SecretRecoveryError(
                    f"key_id {key_id!r}: {len(entries)} of the TVSes sent a share, "
                    f"{self._required} needed (missing from {missing})"
                )
            names = [reply.tvs for reply, _ in entries]
            try:
                private_key = splitter.recover([secret.private_key for _, secret in entries])
            except ShareFormatError as exc:
                where = names[exc.position - 1] if exc.position else ", ".join(names)
                error = SecretRecoveryError(
                    f"key_id {key_id!r}: the share from {where} is malformed: "
                    f"{_strip_position(exc)}"
                )
            except SecretSharingError as exc:
                error = SecretRecoveryError(
                    f"key_id {key_id!r}: cannot recover from the shares of "
                    f"{', '.join(names)} (shares numbered in that order): {exc}"
                )
            else:
                result.append(Secret(key_id, first.public_key, private_key))
                continue
            raise error
        return result

    @staticmethod
    def _unwrap(secret: Secret, keys: PrivateKeyWrappingKeys) -> Secret:
        from hats.protocol.key_wrapping import KeyWrappingError, unwrap_secret

        try:
            private_key = unwrap_secret(keys, secret.private_key)
        except KeyWrappingError as exc:
            error = SecretRecoveryError(f"key_id {secret.key_id!r}: cannot unwrap: {exc}")
        else:
            return Secret(secret.key_id, secret.public_key, private_key)
        raise error


# --- the cache ---------------------------------------------------------------------------------

Clock = Callable[[], float]


class SecretManager:
    """The last good secrets, their age, and the heartbeat that refreshes them. Thread-safe.

    ``max_staleness`` (seconds, None = no limit, the reference's behaviour)
    makes :meth:`current` raise :class:`StaleSecretsError` once the last good
    secrets are older than that.
    """

    def __init__(
        self,
        secrets: Sequence[Secret],
        *,
        max_staleness: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._secrets = sort_secrets(secrets)
        self._updated_at = clock()
        self._max_staleness = max_staleness
        self._last_error: str | None = None
        self._failures = 0
        self._heartbeat: Heartbeat | None = None

    def __repr__(self) -> str:
        with self._lock:
            return (
                f"SecretManager(secrets={len(self._secrets)}, "
                f"key_ids={[secret.key_id for secret in self._secrets]!r}, "
                f"failures={self._failures})"
            )

    def current(self) -> list[Secret]:
        """The last good secrets in key_id order; :class:`StaleSecretsError` if too old."""
        with self._lock:
            age = self._clock() - self._updated_at
            if self._max_staleness is not None and age > self._max_staleness:
                reason = f": {self._last_error}" if self._last_error else ""
                raise StaleSecretsError(
                    f"the secrets are {age:.0f} s old, older than --max-secret-staleness="
                    f"{self._max_staleness:g} ({self._failures} refreshes failed{reason})"
                )
            return list(self._secrets)

    def age(self) -> float:
        """Seconds since the last good secrets were obtained."""
        with self._lock:
            return self._clock() - self._updated_at

    @property
    def consecutive_failures(self) -> int:
        """Refreshes that failed since the last good one."""
        with self._lock:
            return self._failures

    @property
    def last_error(self) -> str | None:
        """Why the last refresh failed (None after a good one)."""
        with self._lock:
            return self._last_error

    def update(self, secrets: Sequence[Secret]) -> None:
        """Replace the secrets with a fresh good set."""
        ordered = sort_secrets(secrets)
        with self._lock:
            self._secrets = ordered
            self._updated_at = self._clock()
            self._last_error = None
            self._failures = 0

    def record_failure(self, message: str) -> None:
        """A refresh failed: keep the last good secrets, remember why."""
        with self._lock:
            self._last_error = message
            self._failures += 1

    def start_heartbeat(
        self,
        refresh: Callable[[], Sequence[Secret]],
        period: float,
        *,
        jitter: float = DEFAULT_JITTER,
        rng: Callable[[], float] = random.random,
    ) -> Heartbeat:
        """Start refreshing in a daemon thread (first refresh after one period)."""
        heartbeat = Heartbeat(self, refresh, period, jitter=jitter, rng=rng)
        heartbeat.start()
        self._heartbeat = heartbeat
        return heartbeat

    def stop(self) -> None:
        """Stop the heartbeat, if any (waits for a running refresh to end)."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None


def next_delay(period: float, jitter: float, draw: float) -> float:
    """The wait before the next refresh: ``period * (1 - jitter + 2 * jitter * draw)``.

    ``draw`` is uniform in [0, 1), so the result is in
    ``[period * (1 - jitter), period * (1 + jitter))``.
    """
    return period * (1 - jitter + 2 * jitter * draw)


class Heartbeat:
    """Refreshes a :class:`SecretManager` every period (module rules).

    ``wait(seconds)`` returns True when the heartbeat should stop; it defaults
    to waiting on an internal event that :meth:`stop` sets. Tests inject a
    fake ``wait`` that advances a fake clock and call :meth:`run` directly.
    """

    def __init__(
        self,
        manager: SecretManager,
        refresh: Callable[[], Sequence[Secret]],
        period: float,
        *,
        jitter: float = DEFAULT_JITTER,
        rng: Callable[[], float] = random.random,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        check_heartbeat_settings(period, None, jitter)
        self._manager = manager
        self._refresh = refresh
        self._period = period
        self._jitter = jitter
        self._rng = rng
        self._stopped = threading.Event()
        self._wait = wait if wait is not None else self._stopped.wait
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Heartbeat(period={self._period:g}, jitter={self._jitter:g})"

    def run(self, rounds: int | None = None) -> None:
        """Wait, refresh, repeat (``rounds`` times, or until stopped)."""
        done = 0
        while rounds is None or done < rounds:
            if self._wait(next_delay(self._period, self._jitter, self._rng())):
                return
            if self._stopped.is_set():
                return
            self.refresh_once()
            done += 1

    def refresh_once(self) -> bool:
        """One refresh; True if it succeeded. Failures keep the last good secrets."""
        try:
            secrets = self._refresh()
        except HatsError as exc:
            message = str(exc)
        except Exception as exc:  # a bug: keep serving, keep the traceback in the log
            logger.exception("heartbeat: unexpected %s", type(exc).__name__)
            message = f"internal error ({type(exc).__name__})"
        else:
            self._manager.update(secrets)
            logger.info("heartbeat: secrets refreshed (%d)", len(secrets))
            return True
        self._manager.record_failure(message)
        logger.error(
            "heartbeat: refresh failed, keeping secrets %.0f s old: %s",
            self._manager.age(),
            message,
        )
        return False

    def start(self) -> None:
        """Run in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="tvs-heartbeat", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to stop and wait for it."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout)
