"""OrchestratorCrypto's HPKE receiver and signatures (spec wire-protocol §3.7)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hats.orchestrator import ipc_crypto
from hats.protocol import p256, signature

# RFC 9180 Appendix A.7.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, export-only AEAD, base mode.
A7_INFO = bytes.fromhex("4f6465206f6e2061204772656369616e2055726e")
A7_SKRM = bytes.fromhex("33d196c830a12f9ac65d6e565a590d80f04ee9b19c83c87f2c170d972a812848")
A7_ENC = bytes.fromhex("e5e8f9bfff6c2f29791fc351d2c25ce1299aa5eaca78a757c0b4fb4bcd830918")
A7_EXPORTER_SECRET = "79dc8e0509cf4a3364ca027e5a0138235281611ca910e435e8ed58167c72f79b"
A7_EXPORTS = [
    (b"", "7a36221bd56d50fb51ee65edfd98d06a23c4dc87085aa5866cb7087244bd2a36"),
    (b"\x00", "d5535b87099c6c3ce80dc112a2671c6ec8e811a2f284f948cec6dd1708ee33f0"),
    (b"TestContext", "ffaabc85a776136ca0c378e5d084c9140ab552b78f039d2e8775f26efff4c70e"),
]


def test_rfc9180_export_only_vectors() -> None:
    recipient = x25519.X25519PrivateKey.from_private_bytes(A7_SKRM)
    context = ipc_crypto.setup_base_receiver(
        A7_ENC, recipient, A7_INFO, aead_id=ipc_crypto.AEAD_EXPORT_ONLY
    )
    assert context.exporter_secret.hex() == A7_EXPORTER_SECRET
    for exporter_context, expected in A7_EXPORTS:
        assert context.export(exporter_context, 32).hex() == expected
    assert "79dc" not in repr(context)


def test_key_schedule_matches_cryptography_hpke_sender() -> None:
    """Our AES-256-GCM key/nonce decrypt what cryptography's HPKE sender encrypts."""
    recipient = x25519.X25519PrivateKey.generate()
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    sealed = suite.encrypt(b"hello oak", recipient.public_key(), info=ipc_crypto.OAK_HPKE_INFO)
    enc, ciphertext = sealed[:32], sealed[32:]
    context = ipc_crypto.setup_base_receiver(enc, recipient, ipc_crypto.OAK_HPKE_INFO)
    assert AESGCM(context.key).decrypt(context.base_nonce, ciphertext, b"") == b"hello oak"
    request_key, response_key = ipc_crypto.derive_session_keys(recipient, enc)
    assert request_key == context.export(b"request_key", 32)
    assert response_key == context.export(b"response_key", 32)
    assert len(request_key) == 32 and request_key != response_key


def test_derive_session_keys_rejects_bad_encapsulated_keys() -> None:
    recipient = x25519.X25519PrivateKey.generate()
    with pytest.raises(ipc_crypto.IpcCryptoError, match="has 31 bytes, expected 32"):
        ipc_crypto.derive_session_keys(recipient, b"\x01" * 31)
    with pytest.raises(ipc_crypto.IpcCryptoError, match="all-zero"):
        ipc_crypto.derive_session_keys(recipient, bytes(32))


def test_sign_and_bind_session_are_raw_ecdsa_over_the_right_bytes() -> None:
    key = p256.generate_private_key()
    public = p256.public_key_bytes(key)
    sig = ipc_crypto.sign_message(key, b"message")
    assert len(sig) == 64
    signature.verify(public, b"message", sig)
    bound = ipc_crypto.bind_session(key, b"transcript", b"-ad")
    signature.verify(public, b"transcript-ad", bound)
    with pytest.raises(signature.SignatureMismatchError):
        signature.verify(public, b"transcript", bound)
