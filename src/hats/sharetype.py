"""How the secret is split across the TVSes: the one place the share types' rules live.

=============  ============  =======================  ===================================
share type     TVSes         replies needed           orchestrator flag
=============  ============  =======================  ===================================
``no-split``   exactly 1     1                        ``--secret-share-type=no-split``
``xor``        2 to 10       every TVS (N)            ``--secret-share-type=xor``
``shamir``     3 to 10       N - 1 (at least 2)       ``--secret-share-type=shamir``
=============  ============  =======================  ===================================

The upper bound is the key file's (:data:`hats.keys.keyfile.MAX_KEYS`: the
reference reads a TVS index as one character). Shamir needs three TVSes
because its threshold N - 1 must be at least 2. Pure: no imports beyond the
standard library, so every layer (image builder, orchestrator, TVS tools,
demo) can use it.
"""

from __future__ import annotations

import enum

#: The most TVSes a key file may list (equal to ``hats.keys.keyfile.MAX_KEYS``).
MAX_TVS = 10


class ShareType(enum.StrEnum):
    """A secret share type; its value is the spelling on every command line and in units."""

    NO_SPLIT = "no-split"
    XOR = "xor"
    SHAMIR = "shamir"

    @property
    def min_tvs(self) -> int:
        """The fewest TVSes the type works with."""
        return _MIN_TVS[self]

    @property
    def max_tvs(self) -> int:
        """The most TVSes the type works with."""
        return 1 if self is ShareType.NO_SPLIT else MAX_TVS

    @property
    def unit_flag(self) -> str:
        """The orchestrator flag selecting this type, as written in its unit's ``ExecStart``."""
        return f"--secret-share-type={self.value}"

    def threshold(self, num_tvs: int) -> int:
        """How many of ``num_tvs`` TVSes must answer for the secret to be recovered."""
        return num_tvs - 1 if self is ShareType.SHAMIR else num_tvs


_MIN_TVS = {ShareType.NO_SPLIT: 1, ShareType.XOR: 2, ShareType.SHAMIR: 3}

#: Every share type's spelling, in the order command lines list them.
SHARE_TYPES: tuple[str, ...] = tuple(t.value for t in ShareType)
#: The share type when none is given (one TVS, the secret whole).
DEFAULT_SHARE_TYPE = ShareType.NO_SPLIT
