"""Splitting a secret into share JSONs for split-trust TVSes (spec wire-protocol §5).

Pure, over :mod:`hats.protocol.xor` and :mod:`hats.protocol.shamir`: each
share is the compact JSON document a TVS serves as ``Secret.private_key``
(``{"value":[…]}`` for XOR, ``{"value":[…],"index":i}`` for Shamir), in share
order (TVS 1 first, as in ``tvs_public_keys.txt``).
"""

from __future__ import annotations

from hats.errors import HatsError
from hats.protocol.secret_sharing import SecretSplitter
from hats.protocol.shamir import ShamirSharing
from hats.protocol.xor import XorSharing
from hats.sharetype import ShareType

SCHEMES = (ShareType.XOR.value, ShareType.SHAMIR.value)


class SplitError(HatsError):
    """Parameters that cannot split a secret."""


def default_threshold(scheme: str, shares: int) -> int:
    """XOR: every share; Shamir: ``max(shares - 1, 2)`` (as the orchestrator and provisioning)."""
    if scheme == ShareType.XOR:
        return ShareType.XOR.threshold(shares)
    return max(ShareType.SHAMIR.threshold(shares), 2)


def splitter_for(scheme: str, shares: int, threshold: int | None = None) -> SecretSplitter:
    """The splitter for ``scheme`` (``xor`` or ``shamir``) with ``shares`` shares."""
    if scheme == ShareType.XOR:
        if threshold is not None and threshold != shares:
            raise SplitError(f"XOR sharing needs all {shares} shares: threshold must be {shares}")
        return XorSharing(shares)
    if scheme == ShareType.SHAMIR:
        return ShamirSharing(
            shares, default_threshold(scheme, shares) if threshold is None else threshold
        )
    raise SplitError(f"unknown sharing scheme {scheme!r} (expected one of {', '.join(SCHEMES)})")


def split_secret(scheme: str, shares: int, threshold: int | None, secret: bytes) -> list[bytes]:
    """``secret`` split into ``shares`` share JSONs (UTF-8 bytes), in share order."""
    return splitter_for(scheme, shares, threshold).split(bytes(secret))
