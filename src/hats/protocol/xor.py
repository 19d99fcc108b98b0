"""XOR secret sharing (n-of-n), format-compatible with the reference (spec §5.1).

Rules:

* ``XorSharing(n)`` needs ``n >= 1``.
* Split: shares 1 … n-1 are fresh random byte strings as long as the secret;
  share n is the secret XOR all of them. Any length works, the empty secret
  included (all shares are then ``{"value":[]}``); ``n == 1`` gives the
  secret itself as the only share.
* Recover: exactly ``n`` shares, all the same length; the secret is the XOR of
  their values (the order does not matter).

XOR sharing has no redundancy: a corrupted share (that still parses) yields a
wrong secret and nothing can detect it. Wrapping the secret before splitting
(:mod:`hats.protocol.key_wrapping`) adds that integrity check.
"""

from __future__ import annotations

from collections.abc import Sequence

from hats.protocol.secret_sharing import (
    RandomBytes,
    ShareCountError,
    ShareLengthMismatchError,
    SharingParametersError,
    random_bytes,
)
from hats.protocol.share_format import XorShare, format_xor_share, parse_xor_share


class XorSharing:
    """n-of-n XOR sharing; ``rng`` defaults to :func:`secrets.token_bytes`."""

    def __init__(self, num_shares: int, *, rng: RandomBytes | None = None) -> None:
        if type(num_shares) is not int or num_shares < 1:
            raise SharingParametersError(f"XOR sharing needs at least 1 share, got {num_shares!r}")
        self._num_shares = num_shares
        self._rng = rng

    @property
    def num_shares(self) -> int:
        """The number of shares ``split`` makes and ``recover`` needs."""
        return self._num_shares

    def __repr__(self) -> str:
        return f"XorSharing(num_shares={self._num_shares})"

    def split(self, secret: bytes) -> list[bytes]:
        """Split ``secret`` into ``num_shares`` share documents (``{"value":[…]}``)."""
        size = len(secret)
        last = int.from_bytes(secret, "big")
        values = []
        for _ in range(self._num_shares - 1):
            value = random_bytes(self._rng, size)
            last ^= int.from_bytes(value, "big")
            values.append(value)
        values.append(last.to_bytes(size, "big"))
        return [format_xor_share(XorShare(value)) for value in values]

    def recover(self, shares: Sequence[bytes]) -> bytes:
        """The XOR of exactly ``num_shares`` share documents of one length.

        Raises :class:`ShareCountError`, a
        :class:`~hats.protocol.secret_sharing.ShareFormatError` subclass (naming
        the share by its 1-based position) or :class:`ShareLengthMismatchError`.
        """
        if len(shares) != self._num_shares:
            raise ShareCountError(
                f"XOR recovery needs exactly {self._num_shares} shares, got {len(shares)}"
            )
        parsed = [parse_xor_share(data, position) for position, data in enumerate(shares, 1)]
        size = len(parsed[0].value)
        result = 0
        for position, share in enumerate(parsed, 1):
            if len(share.value) != size:
                raise ShareLengthMismatchError(
                    f"share {position} holds {len(share.value)} bytes but share 1 holds "
                    f"{size}: XOR shares of one secret have the same length"
                )
            result ^= int.from_bytes(share.value, "big")
        return result.to_bytes(size, "big")
