"""What one TVS lets its (unauthenticated) callers hold: the numbers only.

A TVS faces the network and cannot tell a CVM from an attacker before the
handshake, so every ``VerifyReport`` stream is capped and timed (enforced by
:mod:`hats.streamlimits` in :mod:`hats.tvs.server`). Kept apart from the
server so that ``hats tvs serve --help`` shows them without importing grpc.
"""

from __future__ import annotations

from hats.streamlimits import StreamLimits

DEFAULT_LIMITS = StreamLimits(max_streams=128, message_timeout=10.0, session_timeout=30.0)
"""The stream cap and deadlines of ``VerifyReport``."""
SPARE_WORKERS = 4
"""Worker threads beyond the stream cap: there is always one to refuse a stream."""
MAX_MESSAGE_BYTES = 1 << 20
"""The largest request message the TVS receives."""
