"""A TVS (TEE verification service) wire-compatible with the reference (spec wire-protocol §7).

``session`` is the pure per-stream request handler, ``keys`` the key provider
(users, secrets, secrets files), ``split`` the share maker, ``server`` the
gRPC transport and ``cli`` the ``hats tvs`` commands.
"""

from hats.tvs.keys import KeyProvider, Secret, User, load_secrets_file
from hats.tvs.session import PolicyChecker, RequestHandler, TvsConfig, TvsRequestError
from hats.tvs.split import split_secret

__all__ = [
    "KeyProvider",
    "PolicyChecker",
    "RequestHandler",
    "Secret",
    "TvsConfig",
    "TvsRequestError",
    "User",
    "load_secrets_file",
    "split_secret",
]
