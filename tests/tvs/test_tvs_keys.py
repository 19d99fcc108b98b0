"""The key provider and the secrets file (wire-protocol §7.3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tvs_testing import CLIENT, OTHER_CLIENT, public

from hats.protocol.xor import XorSharing
from hats.tvs.keys import (
    KeyProvider,
    SecretsFileError,
    UnknownUserError,
    load_secrets_file,
    parse_secrets,
)
from hats.tvs.split import split_secret


def test_from_flags_has_the_reference_defaults() -> None:
    provider = KeyProvider.from_flags(public(CLIENT))
    assert provider.user_id_for_authentication_key(public(CLIENT)) == "1"
    assert provider.user_id_for_authentication_key(public(OTHER_CLIENT)) is None
    assert provider.user_id_for_authentication_key(public(CLIENT)[:33]) is None
    (secret,) = provider.secrets_for_user_id("1")
    assert (secret.key_id, secret.public_key, secret.private_key) == (
        "64",
        "some public key",
        b"secret",
    )
    with pytest.raises(UnknownUserError):
        provider.secrets_for_user_id("2")


def test_from_flags_rejects_a_bad_key() -> None:
    with pytest.raises(SecretsFileError, match="--user_authentication_public_key"):
        KeyProvider.from_flags(b"\x04" + b"\x00" * 64)


TOML = f"""
[[users]]
authentication_public_key = "{public(CLIENT).hex()}"

[[users.secrets]]
key_id = "1"
public_key = "pk1"
private_key = "00ff"

[[users.secrets]]
key_id = "2"
private_key_text = '{{"value":[1,2]}}'

[[users]]
id = "bob"
authentication_public_key = "{public(OTHER_CLIENT).hex()}"
"""


def test_toml_secrets_file(tmp_path: Path) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text(TOML)
    provider = load_secrets_file(path)
    assert provider.user_ids == ("1", "bob")
    first, second = provider.secrets_for_user_id("1")
    assert (first.key_id, first.public_key, first.private_key) == ("1", "pk1", b"\x00\xff")
    assert (second.public_key, second.private_key) == ("", b'{"value":[1,2]}')
    assert provider.secrets_for_user_id("bob") == ()
    assert provider.user_id_for_authentication_key(public(OTHER_CLIENT)) == "bob"


def test_json_secrets_file_with_shares(tmp_path: Path) -> None:
    shares = [s.decode() for s in split_secret("xor", 3, None, b"key material")]
    document = {
        "users": [
            {
                "id": "1",
                "authentication_public_key": public(CLIENT).hex(),
                "secrets": [{"key_id": "7", "public_key": "p", "shares": shares}],
            }
        ]
    }
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps(document))
    served = [
        load_secrets_file(path, share_index=i).secrets_for_user_id("1")[0].private_key
        for i in (1, 2, 3)
    ]
    assert served == [s.encode() for s in shares]
    assert XorSharing(3).recover(served) == b"key material"
    with pytest.raises(SecretsFileError, match="no share index"):
        load_secrets_file(path)
    with pytest.raises(SecretsFileError, match="share index 4 but only 3 shares"):
        load_secrets_file(path, share_index=4)


@pytest.mark.parametrize(
    ("document", "match"),
    [
        ({}, "at least one"),
        ({"users": [], "extra": 1}, "unknown key"),
        ({"users": [{"authentication_public_key": "zz"}]}, "not a hex string"),
        ({"users": [{"authentication_public_key": "04" * 65}]}, "not a point"),
        ({"users": [{"id": "1"}]}, "missing 'authentication_public_key'"),
        (
            {"users": [{"authentication_public_key": public(CLIENT).hex(), "secrets": [{}]}]},
            "missing 'key_id'",
        ),
        (
            {
                "users": [
                    {
                        "authentication_public_key": public(CLIENT).hex(),
                        "secrets": [{"key_id": "1", "private_key": "00", "shares": []}],
                    }
                ]
            },
            "exactly one of",
        ),
        (
            {
                "users": [
                    {"authentication_public_key": public(CLIENT).hex()},
                    {"authentication_public_key": public(CLIENT).hex()},
                ]
            },
            "same authentication public key",
        ),
        (
            {
                "users": [
                    {"id": "x", "authentication_public_key": public(CLIENT).hex()},
                    {"id": "x", "authentication_public_key": public(OTHER_CLIENT).hex()},
                ]
            },
            "used twice",
        ),
    ],
)
def test_bad_secrets_documents(document: dict[str, object], match: str) -> None:
    with pytest.raises(SecretsFileError, match=match):
        parse_secrets(document, "f.toml")


def test_errors_never_show_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        f'[[users]]\nauthentication_public_key = "{public(CLIENT).hex()}"\n'
        '[[users.secrets]]\nkey_id = "1"\nprivate_key = "deadbeefzz"\n'
    )
    with pytest.raises(SecretsFileError) as info:
        load_secrets_file(path)
    assert "deadbeef" not in str(info.value)
    assert "user 1 secret 1" in str(info.value)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(SecretsFileError, match="cannot read"):
        load_secrets_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("users = [")
    with pytest.raises(SecretsFileError, match="not TOML"):
        load_secrets_file(bad)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("[1]")
    with pytest.raises(SecretsFileError, match="JSON object"):
        load_secrets_file(bad_json)
