"""The TVS key provider: registered users and their secrets (spec wire-protocol §7.3).

A user is identified by the 65-byte P-256 public key of its
``tvs_authentication_key`` (the Noise static key of the orchestrator, sent as
``InitSessionRequest.client_public_key``); the lookup is an exact byte
comparison, as in the reference. Each user has a user id and a list of
secrets ``{key_id, public_key, private_key}`` that the TVS returns as
``VerifyReportResponse.secrets`` in the listed order.

Two ways to build one:

* :meth:`KeyProvider.from_flags`: the reference's local mode
  (``key-fetcher-local``): one user, id ``"1"``, one secret with
  ``key_id`` (default ``"64"``), ``public_key`` (default ``"some public key"``,
  copied verbatim) and ``private_key`` (default ``b"secret"``).
* :func:`load_secrets_file`: a TOML file (or JSON, chosen by a ``.json``
  suffix; same structure) for several users and keys::

      [[users]]
      id = "1"                                  # optional; default: position, from "1"
      authentication_public_key = "04ab…"       # hex, 65 bytes, uncompressed P-256

      [[users.secrets]]
      key_id = "64"
      public_key = "some public key"            # optional, default ""; any text
      private_key = "736563726574"              # hex of the bytes served, or:
      # private_key_text = '{"value":[1,2,3]}'  # UTF-8 text served as the bytes, or:
      # shares = ['{"value":[…]}', '{"value":[…]}']  # one share per TVS (see below)

  Exactly one of ``private_key``, ``private_key_text`` and ``shares`` per
  secret. **Split secrets**: in split-trust mode each TVS serves one share of
  the secret (its share JSON as ``private_key``, §5) under the same
  ``key_id``. ``shares`` lists the share JSONs of ``hats tvs split-secret``
  (in share order), so one file can serve every TVS: the TVS started with
  ``share_index=N`` serves ``shares[N-1]``. A file with ``shares`` needs a
  share index, and every ``shares`` list must have at least N entries.
  Alternatively give each TVS its own file with ``private_key_text`` set to
  its share.

Errors are :class:`SecretsFileError` naming the file and the user/secret
position; they never show private keys or secrets. :class:`Secret`'s
``repr`` hides ``private_key``.
"""

from __future__ import annotations

import binascii
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hats.errors import HatsError
from hats.protocol import p256

DEFAULT_USER_ID = "1"
"""The only user of the reference's local mode."""

DEFAULT_KEY_ID = "64"
"""``--user_key_id`` default."""

DEFAULT_PUBLIC_KEY = "some public key"
"""``--user_public_key`` default (copied verbatim into ``Secret.public_key``)."""

DEFAULT_SECRET = bytes.fromhex("736563726574")
"""``--user_secret`` default: hex ``736563726574`` = ``b"secret"``."""


class SecretsFileError(HatsError):
    """A secrets file or key-provider flag that cannot be used."""


class UnknownUserError(HatsError):
    """No secrets for a user id (the reference's ``Failed to get secret for user ID``)."""


@dataclass(frozen=True, repr=False)
class Secret:
    """One secret as served: ``private_key`` is raw bytes (a key, or a share JSON)."""

    key_id: str
    public_key: str
    private_key: bytes

    def __repr__(self) -> str:
        return f"Secret(key_id={self.key_id!r}, private_key=<{len(self.private_key)} bytes>)"


@dataclass(frozen=True)
class User:
    """A registered user: its id, 65-byte authentication public key and secrets."""

    user_id: str
    authentication_public_key: bytes
    secrets: tuple[Secret, ...]


class KeyProvider:
    """Users by authentication key, secrets by user id (pure, immutable)."""

    def __init__(self, users: Iterable[User]) -> None:
        self._by_key: dict[bytes, str] = {}
        self._secrets: dict[str, tuple[Secret, ...]] = {}
        for user in users:
            key = bytes(user.authentication_public_key)
            p256.load_public_key(key, f"user {user.user_id!r} authentication public key")
            if key in self._by_key:
                raise SecretsFileError(
                    f"users {self._by_key[key]!r} and {user.user_id!r} have the same "
                    "authentication public key"
                )
            if user.user_id in self._secrets:
                raise SecretsFileError(f"user id {user.user_id!r} is used twice")
            self._by_key[key] = user.user_id
            self._secrets[user.user_id] = tuple(user.secrets)

    def __repr__(self) -> str:
        return f"KeyProvider(users={len(self._secrets)})"

    @property
    def user_ids(self) -> tuple[str, ...]:
        """The registered user ids, in registration order."""
        return tuple(self._secrets)

    def user_id_for_authentication_key(self, public_key: bytes) -> str | None:
        """The id of the user registered with exactly these key bytes, or ``None``."""
        return self._by_key.get(bytes(public_key))

    def secrets_for_user_id(self, user_id: str) -> tuple[Secret, ...]:
        """The user's secrets; :class:`UnknownUserError` for an unknown id."""
        try:
            return self._secrets[user_id]
        except KeyError:
            raise UnknownUserError(f"no secrets for user id {user_id!r}") from None

    @classmethod
    def from_flags(
        cls,
        user_authentication_public_key: bytes,
        *,
        user_key_id: str = DEFAULT_KEY_ID,
        user_public_key: str = DEFAULT_PUBLIC_KEY,
        user_secret: bytes = DEFAULT_SECRET,
    ) -> KeyProvider:
        """The reference's local mode: one user ``"1"`` with one secret."""
        try:
            p256.load_public_key(user_authentication_public_key, "--user_authentication_public_key")
        except HatsError as exc:
            raise SecretsFileError(str(exc)) from None
        secret = Secret(key_id=user_key_id, public_key=user_public_key, private_key=user_secret)
        return cls(
            [
                User(
                    user_id=DEFAULT_USER_ID,
                    authentication_public_key=bytes(user_authentication_public_key),
                    secrets=(secret,),
                )
            ]
        )


def decode_hex(text: str, what: str) -> bytes:
    """Bytes from hex ``text`` (no ``0x``; whitespace around is ignored); never echoes it."""
    try:
        return bytes.fromhex(text.strip())
    except (ValueError, binascii.Error):
        raise SecretsFileError(f"{what}: not a hex string") from None


def _string(table: Mapping[str, Any], name: str, where: str, default: str | None = None) -> str:
    value = table.get(name, default)
    if value is None:
        raise SecretsFileError(f"{where}: missing {name!r}")
    if not isinstance(value, str):
        raise SecretsFileError(f"{where}: {name!r} must be a string")
    return value


def _parse_secret(table: Any, where: str, share_index: int | None) -> Secret:
    if not isinstance(table, dict):
        raise SecretsFileError(f"{where}: must be a table")
    unknown = set(table) - {"key_id", "public_key", "private_key", "private_key_text", "shares"}
    if unknown:
        raise SecretsFileError(f"{where}: unknown key(s) {', '.join(sorted(map(repr, unknown)))}")
    key_id = _string(table, "key_id", where)
    public_key = _string(table, "public_key", where, "")
    given = [name for name in ("private_key", "private_key_text", "shares") if name in table]
    if len(given) != 1:
        raise SecretsFileError(
            f"{where}: needs exactly one of 'private_key', 'private_key_text', 'shares'"
        )
    if given[0] == "private_key":
        private_key = decode_hex(_string(table, "private_key", where), f"{where}: 'private_key'")
    elif given[0] == "private_key_text":
        private_key = _string(table, "private_key_text", where).encode()
    else:
        shares = table["shares"]
        if not isinstance(shares, list) or not all(isinstance(s, str) for s in shares):
            raise SecretsFileError(f"{where}: 'shares' must be a list of strings")
        if share_index is None:
            raise SecretsFileError(f"{where}: has 'shares' but no share index was given")
        if share_index > len(shares):
            raise SecretsFileError(
                f"{where}: share index {share_index} but only {len(shares)} shares"
            )
        private_key = shares[share_index - 1].encode()
    return Secret(key_id=key_id, public_key=public_key, private_key=private_key)


def parse_secrets(
    document: Mapping[str, Any], source: str, *, share_index: int | None = None
) -> KeyProvider:
    """A :class:`KeyProvider` from a parsed secrets document (see the module docstring)."""
    if share_index is not None and share_index < 1:
        raise SecretsFileError(f"share index must be 1 or more, got {share_index}")
    unknown = set(document) - {"users"}
    if unknown:
        raise SecretsFileError(f"{source}: unknown key(s) {', '.join(sorted(map(repr, unknown)))}")
    users_data = document.get("users")
    if not isinstance(users_data, list) or not users_data:
        raise SecretsFileError(f"{source}: needs at least one [[users]] entry")
    users: list[User] = []
    for position, table in enumerate(users_data, start=1):
        where = f"{source}: user {position}"
        if not isinstance(table, dict):
            raise SecretsFileError(f"{where}: must be a table")
        unknown = set(table) - {"id", "authentication_public_key", "secrets"}
        if unknown:
            names = ", ".join(sorted(map(repr, unknown)))
            raise SecretsFileError(f"{where}: unknown key(s) {names}")
        user_id = _string(table, "id", where, str(position))
        key = decode_hex(
            _string(table, "authentication_public_key", where),
            f"{where}: 'authentication_public_key'",
        )
        try:
            p256.load_public_key(key, "'authentication_public_key'")
        except HatsError as exc:
            raise SecretsFileError(f"{where}: {exc}") from None
        secrets_data = table.get("secrets", [])
        if not isinstance(secrets_data, list):
            raise SecretsFileError(f"{where}: 'secrets' must be a list of tables")
        secrets = tuple(
            _parse_secret(item, f"{where} secret {index}", share_index)
            for index, item in enumerate(secrets_data, start=1)
        )
        users.append(User(user_id=user_id, authentication_public_key=key, secrets=secrets))
    try:
        return KeyProvider(users)
    except SecretsFileError as exc:
        raise SecretsFileError(f"{source}: {exc}") from None


def load_secrets_file(path: Path | str, *, share_index: int | None = None) -> KeyProvider:
    """Read a TOML (or ``.json``) secrets file; see the module docstring for the format."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SecretsFileError(
            f"{path}: cannot read: {exc.strerror or type(exc).__name__}"
        ) from None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise SecretsFileError(f"{path}: not UTF-8") from None
    document: Any
    if path.suffix.lower() == ".json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SecretsFileError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
        if not isinstance(document, dict):
            raise SecretsFileError(f"{path}: must be a JSON object")
    else:
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SecretsFileError(f"{path}: not TOML: {exc}") from None
    return parse_secrets(document, str(path), share_index=share_index)
