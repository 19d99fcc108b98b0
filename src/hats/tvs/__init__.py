"""A TVS (TEE verification service) wire-compatible with the reference (spec wire-protocol §7).

``session`` is the pure per-stream request handler, ``keys`` the key provider
(users, secrets, secrets files), ``split`` the share maker, ``server`` the
gRPC transport and ``cli`` the ``hats tvs`` commands.

The package imports nothing itself: ``hats tvs --help`` and users of one module
do not pay for the others (grpc, the verifier).
"""
