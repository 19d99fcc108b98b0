"""Shamir secret sharing (t-of-n), format-compatible with the reference (spec §5.2).

Rules:

* The field is the integers mod the 512-bit prime :data:`SHAMIR_PRIME` (``P``).
* The secret is encoded as ``S = int.from_bytes(b"hats" + secret, "big")``; the
  label keeps the secret's leading zero bytes and lets recovery check its
  result. ``S < P`` holds for every secret of 1 to 60 bytes
  (:data:`MAX_SHAMIR_SECRET_LENGTH`); longer secrets are refused
  (:class:`SecretTooLongError`) and so is the empty secret
  (:class:`EmptySecretError`), which the reference splits but cannot recover.
* ``ShamirSharing(num_shares, threshold)`` needs ``num_shares >= 2``,
  ``threshold >= 2`` and ``threshold <= num_shares``.
* Split: ``f(x) = S + a1 x + … + a(t-1) x^(t-1) mod P`` with every ``a_j``
  uniform in ``[1, P)``; share ``x`` for ``x = 1 … n`` is
  ``{"value":[minimal big-endian bytes of f(x)],"index":x}``.
* Recover, stricter than the reference (which reads only the first ``t``
  shares and returns whatever comes out):

  1. at least ``threshold`` shares (:class:`ShareCountError`), each a
     well-formed Shamir share (:class:`ShareFormatError` subclasses);
  2. no two shares with the same index (:class:`DuplicateShareIndexError`);
  3. Lagrange interpolation through the first ``threshold`` shares, in the
     order given (as the reference); every further share must lie on that
     polynomial (:class:`InconsistentSharesError`). With more shares than the
     threshold, any single corrupted share is therefore always detected;
  4. ``f(0)`` must start with ``b"hats"`` (:class:`LabelMismatchError`) and
     carry at least one byte after it (:class:`EmptySecretError`); the secret
     is what follows the label. With exactly ``threshold`` shares, the label
     is the only check: it catches a share from another secret or a random
     corruption (all but about 2**-32 of them), not every small change.

Shares from the reference's split always pass these checks; the reference's
recovery accepts every share this module writes.
"""

from __future__ import annotations

from collections.abc import Sequence

from hats.protocol.secret_sharing import (
    DuplicateShareIndexError,
    EmptySecretError,
    InconsistentSharesError,
    LabelMismatchError,
    RandomBytes,
    SecretTooLongError,
    ShareCountError,
    SharingParametersError,
    random_bytes,
)
from hats.protocol.share_format import (
    SHAMIR_PRIME,
    ShamirShare,
    format_shamir_share,
    parse_shamir_share,
)

SHAMIR_LABEL = b"hats"
"""Prefixed to the secret before it becomes a field element."""

MAX_SHAMIR_SECRET_LENGTH = 60
"""Longest secret that fits: ``b"hats"`` + 60 bytes < P (``0x68`` < ``0xC9``), 61 do not."""

_COEFFICIENT_BYTES = 80
"""Random bytes per coefficient: 640 bits reduced mod P-1, bias below 2**-128."""

__all__ = [
    "MAX_SHAMIR_SECRET_LENGTH",
    "SHAMIR_LABEL",
    "SHAMIR_PRIME",
    "ShamirSharing",
]


class ShamirSharing:
    """t-of-n Shamir sharing over :data:`SHAMIR_PRIME`; ``rng`` defaults to ``secrets``."""

    def __init__(self, num_shares: int, threshold: int, *, rng: RandomBytes | None = None) -> None:
        for name, number in (("number of shares", num_shares), ("threshold", threshold)):
            if type(number) is not int or number < 2:
                raise SharingParametersError(
                    f"Shamir sharing needs a {name} of at least 2, got {number!r}"
                )
        if threshold > num_shares:
            raise SharingParametersError(
                f"Shamir threshold {threshold} is above the number of shares {num_shares}"
            )
        self._num_shares = num_shares
        self._threshold = threshold
        self._rng = rng

    @property
    def num_shares(self) -> int:
        """The number of shares ``split`` makes."""
        return self._num_shares

    @property
    def threshold(self) -> int:
        """The number of shares ``recover`` needs at least."""
        return self._threshold

    def __repr__(self) -> str:
        return f"ShamirSharing(num_shares={self._num_shares}, threshold={self._threshold})"

    def split(self, secret: bytes) -> list[bytes]:
        """Split ``secret`` (1-60 bytes) into share documents for indices 1 … n."""
        if not secret:
            raise EmptySecretError("Shamir sharing cannot carry an empty secret")
        if len(secret) > MAX_SHAMIR_SECRET_LENGTH:
            raise SecretTooLongError(
                f"Shamir sharing carries at most {MAX_SHAMIR_SECRET_LENGTH} bytes, the secret "
                f"has {len(secret)} (a wrapped 32-byte key has 63: use XOR sharing for it)"
            )
        constant = int.from_bytes(SHAMIR_LABEL + bytes(secret), "big")
        coefficients = [constant] + [self._coefficient() for _ in range(self._threshold - 1)]
        shares = []
        for index in range(1, self._num_shares + 1):
            value = 0
            for coefficient in reversed(coefficients):
                value = (value * index + coefficient) % SHAMIR_PRIME
            shares.append(format_shamir_share(ShamirShare(index=index, value=value)))
        return shares

    def _coefficient(self) -> int:
        """A random coefficient, uniform in ``[1, P)`` up to a bias below 2**-128."""
        draw = int.from_bytes(random_bytes(self._rng, _COEFFICIENT_BYTES), "big")
        return 1 + draw % (SHAMIR_PRIME - 1)

    def recover(self, shares: Sequence[bytes]) -> bytes:
        """Recover the secret from at least ``threshold`` share documents (see the module rules).

        Errors name shares by their 1-based position in ``shares``.
        """
        if len(shares) < self._threshold:
            raise ShareCountError(
                f"Shamir recovery needs at least {self._threshold} shares, got {len(shares)}"
            )
        parsed = [parse_shamir_share(data, position) for position, data in enumerate(shares, 1)]
        first_with: dict[int, int] = {}
        for position, share in enumerate(parsed, 1):
            earlier = first_with.setdefault(share.index, position)
            if earlier != position:
                raise DuplicateShareIndexError(
                    f"shares {earlier} and {position} both have index {share.index}"
                )
        base = parsed[: self._threshold]
        for position, share in enumerate(parsed[self._threshold :], self._threshold + 1):
            if _interpolate(base, share.index) != share.value:
                raise InconsistentSharesError(
                    f"share {position} does not agree with shares 1-{self._threshold}: "
                    "a share is corrupted or belongs to another secret"
                )
        recovered = _interpolate(base, 0)
        data = recovered.to_bytes((recovered.bit_length() + 7) // 8, "big")
        if not data.startswith(SHAMIR_LABEL):
            raise LabelMismatchError(
                'the recovered value does not start with the "hats" label: the shares are '
                "corrupted or belong to different secrets"
            )
        if len(data) == len(SHAMIR_LABEL):
            raise EmptySecretError("the shares hold an empty secret, which Shamir cannot carry")
        return data[len(SHAMIR_LABEL) :]


def _interpolate(points: Sequence[ShamirShare], x: int) -> int:
    """The polynomial through ``points`` (distinct indices), evaluated at ``x``, mod P."""
    total = 0
    for i, point in enumerate(points):
        numerator = 1
        denominator = 1
        for j, other in enumerate(points):
            if i != j:
                numerator = numerator * (x - other.index) % SHAMIR_PRIME
                denominator = denominator * (point.index - other.index) % SHAMIR_PRIME
        total = (total + point.value * numerator * pow(denominator, -1, SHAMIR_PRIME)) % (
            SHAMIR_PRIME
        )
    return total
