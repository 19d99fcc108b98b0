"""The orchestrator's wire protocol with the TVS, as pure (sans-I/O) code.

One module per concern: the Noise-style handshake, secret sharing (XOR and
Shamir share formats) and private-key wrapping. Nothing here opens a socket
or reads a file; every failure is a :class:`~hats.errors.HatsError` subclass
whose message never contains key material, secrets or shares.

Import what you use from its module (``hats.protocol.handshake``, …): the
package itself imports nothing, so that ``import hats.protocol.p256`` stays cheap.
"""
