"""Benchmark the TVS handshake plus one Crypter round trip, against its crypto floor.

One *session* is what one orchestrator↔TVS exchange costs, both sides in one
process (spec wire-protocol §3.3, §4): the initiator builds message 1, the
responder answers with message 2, the initiator processes it, then message 3
(initiator → responder) and message 4 (responder → initiator) are sealed and
opened with the Crypters (1 KiB payloads). Measured in one run, on this
machine:

- ours (bytes keys): ``hats.protocol`` with the static keys given as bytes,
  as the orchestrator and TVS get them (each session parses and checks them);
- ours (key objects): the static keys given as ``cryptography`` key objects,
  loaded once;
- floor: the same cryptographic operations called directly on
  ``cryptography`` with no state machine or validation (2 key generations,
  2 point decodings, 6 ECDH, about 14 HKDF-SHA256, 8 AES-256-GCM seal/open), i.e.
  what any Python implementation of §4 on this library must at least spend;
- ECDH: bare P-256 ECDH operations per second, to put the numbers in scale.

Prints sessions per second and, for ours, the time per session as a multiple
of the floor's (x1.00 = no overhead). The rates depend on the machine; the
multiples much less so.

Usage: .venv/bin/python bench/handshake_bench.py [--seconds S]
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hats.protocol.handshake import HandshakeInitiator, respond
from hats.protocol.p256 import PrivateKey, PublicKey

CURVE = ec.SECP256R1()
PAYLOAD = bytes(1024)
TVS_PRIVATE = (0x5EED).to_bytes(32, "big")
CLIENT_PRIVATE = (0xC11E27).to_bytes(32, "big")


def public_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def derive(private: bytes) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(private, "big"), CURVE)


def session_ours(
    tvs_private: PrivateKey,
    tvs_public: PublicKey,
    client_private: PrivateKey,
    client_public: PublicKey,
) -> Callable[[], None]:
    def run() -> None:
        initiator = HandshakeInitiator(tvs_public, client_private)
        response = respond(tvs_private, client_public, initiator.build_initial_message())
        result = initiator.process_response(response.message)
        request = result.crypter.encrypt(PAYLOAD)
        if response.result.crypter.decrypt(request) != PAYLOAD:
            raise SystemExit("bench: message 3 did not round-trip")
        reply = response.result.crypter.encrypt(PAYLOAD)
        if result.crypter.decrypt(reply) != PAYLOAD:
            raise SystemExit("bench: message 4 did not round-trip")

    return run


def session_floor() -> Callable[[], None]:
    """The cryptographic operations of one session, called directly (a minimal §4 transcript)."""
    s_r, s_i = derive(TVS_PRIVATE), derive(CLIENT_PRIVATE)
    S_r, S_i = s_r.public_key(), s_i.public_key()
    prologue = public_bytes(s_r) + public_bytes(s_i)
    ss_hash = hashlib.sha256(public_bytes(s_i) + public_bytes(s_r)).digest()
    initial = b"Noise_KK_P256_AESGCM_SHA256".ljust(32, b"\x00")
    nonce = bytes(12)

    def sha(*parts: bytes) -> bytes:
        return hashlib.sha256(b"".join(parts)).digest()

    def hkdf(ck: bytes, ikm: bytes) -> bytes:
        return HKDF(hashes.SHA256(), 64, ck, b"").derive(ikm)

    def chain(ck: bytes, *ikms: bytes) -> tuple[bytes, bytes]:
        """MixKey for each ikm: the final (ck, k)."""
        k = b""
        for ikm in ikms:
            out = hkdf(ck, ikm)
            ck, k = out[:32], out[32:]
        return ck, k

    def run() -> None:
        # initiator: message 1
        e_i = ec.generate_private_key(CURVE)
        e_i_bytes = public_bytes(e_i)
        h_i = sha(sha(sha(initial, prologue), prologue), e_i_bytes)
        ck_i, k_i = chain(initial, e_i_bytes, e_i.exchange(ec.ECDH(), S_r), ss_hash)
        c1 = AESGCM(k_i).encrypt(nonce, b"", h_i)
        h_i = sha(h_i, c1)
        # responder: message 1, then message 2
        E_i = ec.EllipticCurvePublicKey.from_encoded_point(CURVE, e_i_bytes)
        h_r = sha(sha(sha(initial, prologue), prologue), e_i_bytes)
        ck_r, k_r = chain(initial, e_i_bytes, s_r.exchange(ec.ECDH(), E_i), ss_hash)
        AESGCM(k_r).decrypt(nonce, c1, h_r)
        h_r = sha(h_r, c1)
        e_r = ec.generate_private_key(CURVE)
        e_r_bytes = public_bytes(e_r)
        h_r = sha(h_r, e_r_bytes)
        ck_r, k_r = chain(
            ck_r, e_r_bytes, e_r.exchange(ec.ECDH(), E_i), s_r.exchange(ec.ECDH(), S_i)
        )
        c2 = AESGCM(k_r).encrypt(nonce, b"", h_r)
        keys_r = hkdf(ck_r, b"")
        # initiator: message 2
        E_r = ec.EllipticCurvePublicKey.from_encoded_point(CURVE, e_r_bytes)
        h_i = sha(h_i, e_r_bytes)
        ck_i, k_i = chain(
            ck_i, e_r_bytes, e_i.exchange(ec.ECDH(), E_r), s_i.exchange(ec.ECDH(), S_r)
        )
        AESGCM(k_i).decrypt(nonce, c2, h_i)
        keys_i = hkdf(ck_i, b"")
        # messages 3 and 4
        padded = PAYLOAD + bytes(31) + b"\x1f"
        request = AESGCM(keys_i[:32]).encrypt(nonce, padded, b"")
        AESGCM(keys_r[:32]).decrypt(nonce, request, b"")
        reply = AESGCM(keys_r[32:]).encrypt(nonce, padded, b"")
        AESGCM(keys_i[32:]).decrypt(nonce, reply, b"")

    return run


def ecdh_only() -> Callable[[], None]:
    key, peer = derive(TVS_PRIVATE), derive(CLIENT_PRIVATE).public_key()

    def run() -> None:
        key.exchange(ec.ECDH(), peer)

    return run


def rate(run: Callable[[], None], seconds: float, repeats: int = 3) -> float:
    """Best of ``repeats`` runs of about ``seconds / repeats`` each, in calls per second."""
    run()  # warm up
    best = 0.0
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        deadline = start + seconds / repeats
        while True:
            for _ in range(10):
                run()
            count += 10
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = parser.parse_args()

    tvs_key, client_key = derive(TVS_PRIVATE), derive(CLIENT_PRIVATE)
    tvs_public, client_public = public_bytes(tvs_key), public_bytes(client_key)
    ours_bytes = rate(
        session_ours(TVS_PRIVATE, tvs_public, CLIENT_PRIVATE, client_public), args.seconds
    )
    ours_objects = rate(
        session_ours(tvs_key, tvs_key.public_key(), client_key, client_key.public_key()),
        args.seconds,
    )
    floor = rate(session_floor(), args.seconds)
    ecdh = rate(ecdh_only(), args.seconds)

    def row(label: str, per_second: float, unit: str = "sessions/s", note: str = "") -> None:
        print(f"  {label:<26}{per_second:9.0f} {unit:<11}{note}".rstrip())

    print("handshake + one Crypter round trip (1 KiB each way), both sides, one core:")
    row("ours, keys as bytes", ours_bytes, note=f"time x{floor / ours_bytes:.2f} the floor")
    row("ours, keys as objects", ours_objects, note=f"time x{floor / ours_objects:.2f} the floor")
    row("floor (bare crypto calls)", floor)
    row("bare P-256 ECDH", ecdh, "ops/s", f"= {ecdh / floor:.1f} ECDH per floor session")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
