"""Private-key wrapping: the ``hats_secret`` AES-256-GCM format (spec wire-protocol §5.4).

The launcher hands the orchestrator symmetric *private-key wrapping keys*
(``FetchOrchestratorMetadataResponse.private_key_wrapping_keys``, a
``PrivateKeyWrappingKeys{bytes primary = 1; repeated bytes active = 2;}``;
launcher flag ``--private_key_wrapping_keys=hex1,hex2,…``, the first is
``primary``). The TVS-side provisioning encrypts a secret with such a key
*before* splitting it. The wrapped form is::

    nonce (15 random bytes) || AES-256-GCM ciphertext || tag (16 bytes)

with the associated data ``b"hats_secret"`` (GCM with a 15-byte nonce: the
counter block is derived with GHASH, as for every nonce that is not 12 bytes).

Rules:

* Keys are exactly 32 bytes (AES-256) (:class:`WrappingKeyLengthError`).
* Wrapping uses one key (the provisioning side's, normally the primary).
* Unwrapping tries ``primary`` first, then each ``active`` key in order; the
  first key whose tag verifies wins. A blob shorter than nonce + tag is
  :class:`WrappedSecretTooShortError`; no key verifying is
  :class:`UnwrapError`. GCM authenticates, so a corrupted blob or a wrong key
  is always an error, never garbage.

The reference orchestrator receives these keys and never uses them (secrets
reach the workload still wrapped); unwrapping is therefore an explicit option
for the caller, off by default. A wrapped 32-byte key is 15 + 32 + 16 = 63
bytes, too long for Shamir sharing (at most 60): only XOR sharing carries it.

No key, plaintext or ciphertext ever appears in a message or a repr.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hats.errors import HatsError
from hats.protocol.secret_sharing import RandomBytes, random_bytes

WRAPPING_KEY_LENGTH = 32
"""Bytes in a wrapping key (AES-256)."""

WRAPPING_NONCE_LENGTH = 15
"""Bytes of the random nonce that starts a wrapped secret."""

WRAPPING_TAG_LENGTH = 16
"""Bytes of the GCM tag that ends a wrapped secret."""

WRAPPING_OVERHEAD = WRAPPING_NONCE_LENGTH + WRAPPING_TAG_LENGTH
"""A wrapped secret is this many bytes longer than the secret (31)."""

SECRET_AD = b"hats_secret"
"""The associated data of every wrapped secret."""


class KeyWrappingError(HatsError):
    """Wrapping or unwrapping a private key failed."""


class WrappingKeyLengthError(KeyWrappingError):
    """A wrapping key is not 32 bytes long."""


class WrappedSecretTooShortError(KeyWrappingError):
    """A wrapped secret is shorter than a nonce and a tag (31 bytes)."""


class UnwrapError(KeyWrappingError):
    """No wrapping key (primary, then the active ones) authenticates the wrapped secret."""


def _check_key(key: bytes, name: str) -> bytes:
    key = bytes(key)
    if len(key) != WRAPPING_KEY_LENGTH:
        raise WrappingKeyLengthError(
            f"{name} is {len(key)} bytes, expected {WRAPPING_KEY_LENGTH} (AES-256)"
        )
    return key


class PrivateKeyWrappingKeys:
    """The ``PrivateKeyWrappingKeys`` message: ``primary`` and the ``active`` keys.

    Every key must be 32 bytes (:class:`WrappingKeyLengthError` names which one
    is not, never its value). Equality compares the keys; the repr shows only
    how many there are.
    """

    __slots__ = ("_active", "_primary")

    def __init__(self, primary: bytes, active: Sequence[bytes] = ()) -> None:
        self._primary = _check_key(primary, "the primary wrapping key")
        self._active = tuple(
            _check_key(key, f"active wrapping key {number}") for number, key in enumerate(active, 1)
        )

    @property
    def primary(self) -> bytes:
        """The key the provisioning side encrypts with, and the first one tried."""
        return self._primary

    @property
    def active(self) -> tuple[bytes, ...]:
        """Further keys tried in order when unwrapping (rotation)."""
        return self._active

    @property
    def candidates(self) -> tuple[bytes, ...]:
        """All keys in the order unwrapping tries them: primary, then active."""
        return (self._primary, *self._active)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PrivateKeyWrappingKeys):
            return NotImplemented
        return self.candidates == other.candidates

    def __hash__(self) -> int:
        return hash(self.candidates)

    def __repr__(self) -> str:
        return f"PrivateKeyWrappingKeys(primary=<hidden>, active=<{len(self._active)} keys>)"


def wrap_secret(key: bytes, secret: bytes, *, rng: RandomBytes | None = None) -> bytes:
    """``nonce(15) || AES-256-GCM(key, nonce, secret, ad=b"hats_secret") || tag(16)``.

    ``rng`` (default :func:`secrets.token_bytes`) supplies the nonce.
    """
    aead = AESGCM(_check_key(key, "the wrapping key"))
    nonce = random_bytes(rng, WRAPPING_NONCE_LENGTH)
    return nonce + aead.encrypt(nonce, bytes(secret), SECRET_AD)


def unwrap_secret(keys: PrivateKeyWrappingKeys, wrapped: bytes) -> bytes:
    """The secret inside ``wrapped``: the first of primary, active… whose tag verifies."""
    unwrapped = unwrap_secret_with_key(keys, wrapped)
    return unwrapped[1]


def unwrap_secret_with_key(keys: PrivateKeyWrappingKeys, wrapped: bytes) -> tuple[int, bytes]:
    """Like :func:`unwrap_secret`, also returning which key worked.

    The key number is 0 for ``primary`` and ``k`` for ``active[k-1]`` (useful to
    log that a secret still uses a rotated-out key).
    """
    wrapped = bytes(wrapped)
    if len(wrapped) < WRAPPING_OVERHEAD:
        raise WrappedSecretTooShortError(
            f"wrapped secret is {len(wrapped)} bytes, shorter than nonce and tag "
            f"({WRAPPING_OVERHEAD} bytes)"
        )
    nonce = wrapped[:WRAPPING_NONCE_LENGTH]
    sealed = wrapped[WRAPPING_NONCE_LENGTH:]
    for number, key in enumerate(keys.candidates):
        try:
            return number, AESGCM(key).decrypt(nonce, sealed, SECRET_AD)
        except InvalidTag:
            continue
    count = len(keys.active)
    tried = "the primary key"
    if count:
        tried += f" and {count} active key{'s' if count > 1 else ''}"
    raise UnwrapError(
        f"no wrapping key authenticates the wrapped secret (tried {tried}): "
        "wrong keys, or the secret is corrupted or not wrapped"
    )
