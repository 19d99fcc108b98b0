"""The orchestrator's wire protocol with the TVS, as pure (sans-I/O) code.

One module per concern: the Noise-style handshake, secret sharing (XOR and
Shamir share formats) and private-key wrapping. Nothing here opens a socket
or reads a file; every failure is a :class:`~hats.errors.HatsError` subclass
whose message never contains key material, secrets or shares.
"""

# The TVS secure channel: handshake (§4.1-4.5), Crypter (§4.6), signatures (§4.7).
from hats.protocol.channel_errors import ChannelError as ChannelError
from hats.protocol.crypter import Crypter as Crypter
from hats.protocol.handshake import HandshakeInitiator as HandshakeInitiator
from hats.protocol.handshake import HandshakeResponse as HandshakeResponse
from hats.protocol.handshake import HandshakeResult as HandshakeResult
from hats.protocol.handshake import respond as respond
from hats.protocol.signature import sign_handshake_hash as sign_handshake_hash
from hats.protocol.signature import verify_handshake_hash as verify_handshake_hash

# isort: split
# Secret sharing (§5.1-5.2) and private-key wrapping (§5.4).
from hats.protocol.key_wrapping import KeyWrappingError as KeyWrappingError
from hats.protocol.key_wrapping import PrivateKeyWrappingKeys as PrivateKeyWrappingKeys
from hats.protocol.key_wrapping import unwrap_secret as unwrap_secret
from hats.protocol.key_wrapping import unwrap_secret_with_key as unwrap_secret_with_key
from hats.protocol.key_wrapping import wrap_secret as wrap_secret
from hats.protocol.secret_sharing import SecretSharingError as SecretSharingError
from hats.protocol.secret_sharing import SecretSplitter as SecretSplitter
from hats.protocol.shamir import ShamirSharing as ShamirSharing
from hats.protocol.xor import XorSharing as XorSharing
