"""Sample HATs workload: fetch the workload's keys from the orchestrator and print fingerprints.

Connects to the orchestrator's IPC socket (``$HATS_ORCHESTRATOR_IPC`` or the
container path ``/oak_utils/orchestrator_ipc``) with target ``unix:PATH`` and
``:authority`` ``[::]:0`` as the HATs/Oak SDKs do, calls
``pcit.server_common.HatsOrchestrator/GetKeys`` and prints, per key, its id,
its public key text and the first 16 hex digits of SHA-256(private key) —
never the private key itself.

Needs only ``grpcio`` (the response is decoded by hand, so no generated code
is needed inside the container). Exit status: 0 on success, 1 on an RPC error.
"""

from __future__ import annotations

import hashlib
import os
import sys

import grpc

DEFAULT_SOCKET = "/oak_utils/orchestrator_ipc"
GET_KEYS = "/pcit.server_common.HatsOrchestrator/GetKeys"


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message (varint and length-delimited)."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            out.append((number, data[pos : pos + length]))
            pos += length
        elif wire_type in (1, 5):
            pos += 8 if wire_type == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
    return out


def parse_keys(response: bytes) -> list[tuple[str, str, bytes]]:
    """``GetKeysResponse`` bytes → ``[(key_id, public_key, private_key)]``."""
    keys = []
    for number, value in _fields(response):
        if number != 1 or not isinstance(value, bytes):
            continue
        key_id, public_key, private_key = "", "", b""
        for field, item in _fields(value):
            if not isinstance(item, bytes):
                continue
            if field == 1:
                key_id = item.decode()
            elif field == 2:
                public_key = item.decode()
            elif field == 3:
                private_key = item
        keys.append((key_id, public_key, private_key))
    return keys


def main() -> int:
    path = os.environ.get("HATS_ORCHESTRATOR_IPC", DEFAULT_SOCKET)
    options = [("grpc.default_authority", "[::]:0")]
    with grpc.insecure_channel(f"unix:{path}", options=options) as channel:
        get_keys: grpc.UnaryUnaryMultiCallable[None, bytes] = channel.unary_unary(
            GET_KEYS,
            request_serializer=lambda _: b"",
            response_deserializer=lambda raw: raw,
        )
        try:
            response = get_keys(None, timeout=30)
        except grpc.RpcError as exc:
            code = exc.code().name if isinstance(exc, grpc.Call) else "ERROR"
            details = exc.details() if isinstance(exc, grpc.Call) else ""
            print(f"get_keys: GetKeys failed: {code}: {details}", file=sys.stderr)
            return 1
    keys = parse_keys(response)
    print(f"{len(keys)} key(s) from the orchestrator")
    for key_id, public_key, private_key in keys:
        fingerprint = hashlib.sha256(private_key).hexdigest()[:16]
        print(
            f"key_id={key_id} public_key={public_key or '-'} "
            f"private_key_sha256={fingerprint} ({len(private_key)} bytes)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
