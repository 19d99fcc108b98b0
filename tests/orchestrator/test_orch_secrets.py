"""Secret combination rules, the secret cache and the heartbeat (fake clock)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence

import pytest

from hats.errors import HatsError
from hats.orchestrator.secret_manager import (
    AttestationRoundError,
    Heartbeat,
    SecretCombiner,
    SecretConfigError,
    SecretManager,
    SecretRecoveryError,
    StaleSecretsError,
    TvsReply,
    check_heartbeat_settings,
    make_splitter,
    next_delay,
    sort_secrets,
)
from hats.orchestrator.state import Secret
from hats.protocol.key_wrapping import PrivateKeyWrappingKeys, wrap_secret
from hats.protocol.shamir import ShamirSharing
from hats.protocol.share_format import SHAMIR_PRIME, ShamirShare, format_shamir_share
from hats.protocol.xor import XorSharing
from suite_support import assert_no_values

SECRET = bytes(range(7, 39))  # 32 bytes
SECRET_2 = b"\x00\x01second-secret"


def names(n: int) -> list[str]:
    return [f"TVS {i} (line {i + 1})" for i in range(n)]


def replies_for(shares_by_key: dict[str, list[bytes]], n: int) -> list[TvsReply]:
    return [
        TvsReply(
            tvs=name,
            secrets=tuple(
                Secret(key_id, f"pub-{key_id}", shares[i])
                for key_id, shares in shares_by_key.items()
            ),
        )
        for i, name in enumerate(names(n))
    ]


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("share_type", "n", "words"),
    [
        ("no-split", 0, "exactly one TVS"),
        ("no-split", 2, "exactly one TVS"),
        ("xor", 1, "at least two TVSes"),
        ("xor", 0, "at least two TVSes"),
        ("shamir", 2, "at least three TVSes"),
        ("shamir", 0, "at least three TVSes"),
    ],
)
def test_share_type_must_fit_the_number_of_tvses(share_type: str, n: int, words: str) -> None:
    with pytest.raises(SecretConfigError, match=words):
        make_splitter(share_type, n)


def test_splitters_for_good_configurations() -> None:
    assert make_splitter("no-split", 1) is None
    assert isinstance(make_splitter("xor", 2), XorSharing)
    shamir = make_splitter("shamir", 3)
    assert isinstance(shamir, ShamirSharing)
    assert (shamir.num_shares, shamir.threshold) == (3, 2)


# --- no-split ------------------------------------------------------------------------------------


def test_no_split_uses_the_single_reply_sorted() -> None:
    combiner = SecretCombiner("no-split", 1)
    reply = TvsReply(
        tvs="TVS 0 (line 1)",
        secrets=(Secret("64", "pk", SECRET), Secret("7", "pk7", b"x")),
    )
    assert combiner.combine([reply]) == [Secret("7", "pk7", b"x"), Secret("64", "pk", SECRET)]


def test_no_split_failure_names_the_tvs() -> None:
    combiner = SecretCombiner("no-split", 1)
    with pytest.raises(AttestationRoundError, match=r"TVS 0 \(line 1\): Unknown public key"):
        combiner.combine([TvsReply(tvs="TVS 0 (line 1)", error="Unknown public key")])


# --- xor -----------------------------------------------------------------------------------------


def test_xor_recovers_from_all_tvses() -> None:
    shares = {"1": XorSharing(3).split(SECRET), "2": XorSharing(3).split(SECRET_2)}
    result = SecretCombiner("xor", 3).combine(replies_for(shares, 3))
    assert result == [Secret("1", "pub-1", SECRET), Secret("2", "pub-2", SECRET_2)]


def test_xor_needs_every_tvs_and_names_the_failed_one() -> None:
    replies = replies_for({"1": XorSharing(3).split(SECRET)}, 3)
    replies[1] = TvsReply(tvs=replies[1].tvs, error="no answer within 5 s (--rpc-timeout)")
    with pytest.raises(AttestationRoundError) as failure:
        SecretCombiner("xor", 3).combine(replies)
    message = str(failure.value)
    assert "xor needs all 3 TVSes, 1 failed" in message
    assert "TVS 1 (line 2): no answer within 5 s" in message
    assert "TVS 0" not in message and "TVS 2" not in message


def test_xor_key_missing_from_one_tvs_is_named() -> None:
    replies = replies_for({"1": XorSharing(3).split(SECRET)}, 3)
    replies[2] = TvsReply(tvs=replies[2].tvs, secrets=())
    with pytest.raises(SecretRecoveryError, match=r"key_id '1'.*missing from TVS 2 \(line 3\)"):
        SecretCombiner("xor", 3).combine(replies)


def test_malformed_share_names_the_tvs_not_the_share() -> None:
    shares = XorSharing(3).split(SECRET)
    shares[1] = b'{"value":"TOPSECRETSHARE"}'
    with pytest.raises(SecretRecoveryError) as failure:
        SecretCombiner("xor", 3).combine(replies_for({"9": shares}, 3))
    message = str(failure.value)
    assert "key_id '9': the share from TVS 1 (line 2) is malformed" in message
    assert "TOPSECRETSHARE" not in message
    assert_no_values(message, shares[0], shares[2], SECRET)


# --- shamir --------------------------------------------------------------------------------------


@pytest.mark.parametrize("down", [0, 1, 2])
def test_shamir_k_of_n_survives_any_one_missing_tvs(down: int) -> None:
    shares = {"64": ShamirSharing(3, 2).split(SECRET)}
    replies = replies_for(shares, 3)
    replies[down] = TvsReply(tvs=replies[down].tvs, error="Failed to read from stream.")
    assert SecretCombiner("shamir", 3).combine(replies) == [Secret("64", "pub-64", SECRET)]


def test_shamir_k_of_n_with_five_tvses_one_down() -> None:
    shares = {"64": ShamirSharing(5, 4).split(SECRET)}
    replies = replies_for(shares, 5)
    replies[3] = TvsReply(tvs=replies[3].tvs, error="down")
    assert SecretCombiner("shamir", 5).combine(replies)[0].private_key == SECRET


def test_shamir_below_threshold_fails_naming_the_tvses() -> None:
    replies = replies_for({"64": ShamirSharing(3, 2).split(SECRET)}, 3)
    replies[0] = TvsReply(tvs=replies[0].tvs, error="down A")
    replies[2] = TvsReply(tvs=replies[2].tvs, error="down B")
    with pytest.raises(AttestationRoundError) as failure:
        SecretCombiner("shamir", 3).combine(replies)
    message = str(failure.value)
    assert "needs at least 2 of 3 TVSes, 2 failed" in message
    assert "TVS 0 (line 1): down A" in message and "TVS 2 (line 3): down B" in message


def test_shamir_key_id_with_too_few_shares() -> None:
    shares = ShamirSharing(3, 2).split(SECRET)
    replies = replies_for({"64": shares}, 3)
    replies[1] = TvsReply(tvs=replies[1].tvs, secrets=())
    replies[2] = TvsReply(tvs=replies[2].tvs, error="down")
    with pytest.raises(SecretRecoveryError, match=r"key_id '64': 1 of the TVSes sent a share"):
        SecretCombiner("shamir", 3).combine(replies)


def test_shamir_inconsistent_extra_share_is_detected() -> None:
    good = ShamirSharing(3, 2).split(SECRET)
    other = ShamirSharing(3, 2).split(SECRET_2)
    shares = [good[0], good[1], other[2]]  # the third TVS holds a share of another secret
    with pytest.raises(SecretRecoveryError) as failure:
        SecretCombiner("shamir", 3).combine(replies_for({"64": shares}, 3))
    message = str(failure.value)
    assert "does not agree" in message
    assert "TVS 0 (line 1), TVS 1 (line 2), TVS 2 (line 3)" in message
    assert_no_values(message, SECRET, SECRET_2, *shares)


def test_shamir_wrong_label_is_an_error_not_garbage() -> None:
    # A 2-of-3 polynomial whose constant is not "hats" + secret.
    constant = int.from_bytes(b"nope" + SECRET, "big")
    slope = 123456789
    shares = [
        format_shamir_share(ShamirShare(index=x, value=(constant + slope * x) % SHAMIR_PRIME))
        for x in (1, 2, 3)
    ]
    with pytest.raises(SecretRecoveryError, match='"hats" label'):
        SecretCombiner("shamir", 3).combine(replies_for({"64": shares}, 3))


def test_public_key_disagreement_is_an_error() -> None:
    replies = replies_for({"64": ShamirSharing(3, 2).split(SECRET)}, 3)
    secret = replies[2].secrets[0]  # type: ignore[index]
    replies[2] = TvsReply(tvs=replies[2].tvs, secrets=(Secret("64", "other", secret.private_key),))
    with pytest.raises(SecretRecoveryError, match="disagree on its public key"):
        SecretCombiner("shamir", 3).combine(replies)


def test_duplicate_key_id_in_one_reply_is_an_error() -> None:
    shares = XorSharing(2).split(SECRET)
    replies = replies_for({"1": shares}, 2)
    replies[0] = TvsReply(
        tvs=replies[0].tvs,
        secrets=(Secret("1", "pub-1", shares[0]), Secret("1", "pub-1", shares[0])),
    )
    with pytest.raises(SecretRecoveryError, match=r"TVS 0 \(line 1\) sent key_id '1' twice"):
        SecretCombiner("xor", 2).combine(replies)


# --- order and unwrapping ------------------------------------------------------------------------


def test_stable_key_id_order() -> None:
    ids = ["10", "abc", "9", "2", "0", "B"]
    expected = ["0", "2", "9", "10", "B", "abc"]
    for seed in range(5):
        shuffled = ids[:]
        random.Random(seed).shuffle(shuffled)
        split = {key_id: XorSharing(2).split(key_id.encode()) for key_id in shuffled}
        result = SecretCombiner("xor", 2).combine(replies_for(split, 2))
        assert [s.key_id for s in result] == expected
        assert [s.private_key for s in result] == [k.encode() for k in expected]
    assert [s.key_id for s in sort_secrets([Secret(k, "", b"") for k in ids])] == expected


def test_unwrap_with_primary_or_active_key() -> None:
    primary, active = bytes(range(32)), bytes(range(1, 33))
    keys = PrivateKeyWrappingKeys(primary, [active])
    split = {
        "1": XorSharing(2).split(wrap_secret(primary, SECRET)),
        "2": XorSharing(2).split(wrap_secret(active, SECRET_2)),
    }
    result = SecretCombiner("xor", 2, wrapping_keys=keys).combine(replies_for(split, 2))
    assert [s.private_key for s in result] == [SECRET, SECRET_2]


def test_unwrap_failure_names_the_key_id() -> None:
    keys = PrivateKeyWrappingKeys(bytes(32))
    split = {"5": XorSharing(2).split(wrap_secret(bytes(range(32)), SECRET))}
    with pytest.raises(SecretRecoveryError, match="key_id '5': cannot unwrap") as failure:
        SecretCombiner("xor", 2, wrapping_keys=keys).combine(replies_for(split, 2))
    assert_no_values(str(failure.value), SECRET)


def test_secret_repr_hides_the_private_key() -> None:
    secret = Secret("64", "pk", SECRET)
    assert SECRET.hex() not in repr(secret) and repr(SECRET) not in repr(secret)
    assert "32 bytes" in repr(secret)


# --- the cache and the heartbeat, with a fake clock ----------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


class Refresher:
    """A refresh function: records when it runs, can take time and can fail."""

    def __init__(self, clock: FakeClock, *, duration: float = 0.0) -> None:
        self.clock = clock
        self.duration = duration
        self.calls: list[float] = []
        self.fail = False
        self.value = [Secret("1", "pk", b"new")]

    def __call__(self) -> Sequence[Secret]:
        self.calls.append(self.clock.now)
        self.clock.now += self.duration
        if self.fail:
            raise HatsError("TVS 0 (line 1): no answer within 30 s (--rpc-timeout)")
        return self.value


def make(
    period: float = 100.0,
    *,
    duration: float = 0.0,
    draw: float = 0.5,
    staleness: float | None = None,
) -> tuple[FakeClock, Refresher, SecretManager, Heartbeat]:
    clock = FakeClock()
    refresher = Refresher(clock, duration=duration)
    manager = SecretManager([Secret("1", "pk", b"old")], max_staleness=staleness, clock=clock)
    heartbeat = Heartbeat(manager, refresher, period, jitter=0.1, rng=lambda: draw, wait=clock.wait)
    return clock, refresher, manager, heartbeat


def test_first_refresh_after_one_period_not_immediately() -> None:
    clock, refresher, manager, heartbeat = make()
    start = clock.now
    heartbeat.run(rounds=1)
    assert refresher.calls == [start + 100.0]
    assert manager.current() == [Secret("1", "pk", b"new")]


def test_no_burst_catch_up_after_a_slow_round() -> None:
    clock, refresher, _, heartbeat = make(duration=350.0)  # each round takes 3.5 periods
    start = clock.now
    heartbeat.run(rounds=3)
    # Each refresh starts one period after the previous one *ended*: no back-to-back rounds.
    assert refresher.calls == [start + 100, start + 100 + 350 + 100, start + 2 * (450) + 100]
    assert clock.waits == [100.0, 100.0, 100.0]


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 90.0), (0.5, 100.0), (0.999999, 110.0)])
def test_jitter_bounds(draw: float, expected: float) -> None:
    clock, _, _, heartbeat = make(draw=draw)
    heartbeat.run(rounds=1)
    assert clock.waits[0] == pytest.approx(expected, abs=1e-3)


def test_jitter_stays_within_ten_percent() -> None:
    rng = random.Random(7)
    delays = [next_delay(60.0, 0.1, rng.random()) for _ in range(2000)]
    assert all(54.0 <= d < 66.0 for d in delays)
    assert max(delays) - min(delays) > 10.0  # it really varies


def test_failure_keeps_the_last_good_secrets_and_exposes_their_age(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, refresher, manager, heartbeat = make()
    heartbeat.run(rounds=1)
    refresher.fail = True
    heartbeat.run(rounds=2)
    assert manager.current() == [Secret("1", "pk", b"new")]
    assert manager.age() == pytest.approx(200.0)
    assert manager.consecutive_failures == 2
    assert "no answer within 30 s" in (manager.last_error or "")
    assert "refresh failed, keeping secrets 200 s old" in caplog.text
    refresher.fail = False
    heartbeat.run(rounds=1)
    assert manager.consecutive_failures == 0 and manager.last_error is None
    assert manager.age() == 0.0


def test_staleness_limit_stops_serving_until_a_good_refresh() -> None:
    _, refresher, manager, heartbeat = make(staleness=250.0)
    refresher.fail = True
    heartbeat.run(rounds=2)
    assert manager.current()  # 200 s old: still fine
    heartbeat.run(rounds=1)  # 300 s old
    with pytest.raises(StaleSecretsError) as failure:
        manager.current()
    message = str(failure.value)
    assert "300 s old" in message and "3 refreshes failed" in message
    assert "old" in message and "b'old'" not in message
    refresher.fail = False
    heartbeat.run(rounds=1)
    assert manager.current() == [Secret("1", "pk", b"new")]


def test_unexpected_exception_in_refresh_keeps_serving(caplog: pytest.LogCaptureFixture) -> None:
    clock, _, manager, _ = make()

    def broken() -> Sequence[Secret]:
        raise RuntimeError("bug")

    Heartbeat(manager, broken, 10.0, wait=clock.wait).run(rounds=1)
    assert manager.current() == [Secret("1", "pk", b"old")]
    assert manager.last_error == "internal error (RuntimeError)"


@pytest.mark.parametrize(
    ("period", "staleness", "words"),
    [
        (0, None, "at least 1 second"),
        (-1, None, "at least 1 second"),
        (100, 110, "must exceed the longest heartbeat interval"),
        (100, 50, "must exceed"),
    ],
)
def test_bad_heartbeat_settings_are_rejected(
    period: float, staleness: float | None, words: str
) -> None:
    with pytest.raises(SecretConfigError, match=words):
        check_heartbeat_settings(period, staleness)


def test_heartbeat_settings_accepted() -> None:
    check_heartbeat_settings(1, None)
    check_heartbeat_settings(100, 111)


def test_heartbeat_thread_runs_and_stops() -> None:
    manager = SecretManager([Secret("1", "pk", b"old")])
    calls: list[float] = []
    done = threading.Event()

    def refresh() -> Sequence[Secret]:
        calls.append(time.monotonic())
        if len(calls) >= 3:
            done.set()
        return [Secret("1", "pk", str(len(calls)).encode())]

    started = time.monotonic()
    manager.start_heartbeat(refresh, 0.05)
    assert done.wait(10)
    manager.stop()
    count = len(calls)
    time.sleep(0.2)
    assert len(calls) == count  # stopped
    assert calls[0] - started >= 0.045  # first refresh after one period (minus jitter)
    assert manager.current()[0].private_key == str(count).encode()
