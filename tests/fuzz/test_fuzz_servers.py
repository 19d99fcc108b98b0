"""Fuzzing the servers' entry points: the launcher's config parser and the TVS session.

- ``hats.launcher.config``: hostile bytes as a ``--launcher_config_path``
  file, text-proto-shaped hostile text, hostile member names for the bundle
  selection, hostile bytes as a system bundle;
- ``hats.tvs.session.RequestHandler`` (what every ``VerifyReport`` message
  reaches, before any authentication): hostile ``AttestReportRequest`` bytes
  in every state (fresh, after a real handshake, after the verify request),
  hostile messages of the right shape, and — after a real handshake —
  hostile ``VerifyReportRequest`` plaintexts encrypted with the session's
  key, including mutations of the real evidence, so decryption passes and
  the evidence checks get the hostile input.

Only :class:`hats.errors.HatsError` may escape, within the time and memory
bounds of :func:`fuzz_support.check_hostile`.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fuzz_support import check_hostile
from hypothesis import given, settings
from hypothesis import strategies as st

from hats.errors import HatsError
from hats.launcher.config import (
    BundleMember,
    load_launcher_config,
    open_system_bundle,
    parse_launcher_config,
    select_bundle_members,
)
from hats.pb.pcit.tvs import tvs_messages_pb2
from hats.protocol import signature
from hats.tvs.session import RequestHandler, SessionStateError, TvsConfig

sys.path.insert(0, str(Path(__file__).parents[1] / "tvs"))
from tvs_testing import (
    CLIENT,
    Client,
    config,
    evidence,
    public,
    signing_key,
    vcek,
)

FUZZ = settings(max_examples=200, deadline=None)
FEW = settings(max_examples=100, deadline=None)

# ------------------------------------------------------------------ the launcher's config

_FIELDS = [
    "cvm_config",
    "cvm_type",
    "runc_runtime_bundle",
    "hats_system_bundle",
    "num_cpus",
    "ramdrive_size_kb",
    "ram_size_kb",
    "debug_telnet_port",
    "vmm_binary",
    "network_config",
    "inbound_only",
    "virtual_bridge",
    "virtio_guest_cid",
    "host_enclave_app_proxy_port",
    "[pcit.client.LauncherConfig]",
    "CVMTYPE_SEVSNP",
]
_TOKENS = st.one_of(
    st.sampled_from(_FIELDS),
    st.sampled_from(["{", "}", "<", ">", ":", ";", ",", "[", "]", "#", "\n", " ", '"', "'"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["0x", "1e999", "-0", "inf", "nan", "\\x", "\\u12", "\\777", "\\"]),
    st.text(max_size=12).map(lambda t: '"' + t + '"'),
)
_CONFIG_TEXT = st.one_of(
    st.lists(_TOKENS, max_size=60).map(" ".join),
    st.integers(min_value=1, max_value=3000).map(lambda n: "cvm_config {" * n + "}" * n),
    st.integers(min_value=1, max_value=3000).map(
        lambda n: "cvm_config { network_config { inbound_only {" * n
    ),
    st.text(max_size=300),
)


@FUZZ
@given(_CONFIG_TEXT)
def test_fuzz_launcher_config_text(text: str) -> None:
    check_hostile(lambda: parse_launcher_config(text, "fuzz.txtpb"))


_CONFIG_DIR = tempfile.TemporaryDirectory(prefix="hats-fuzz-")


@FUZZ
@given(st.one_of(st.binary(max_size=400), _CONFIG_TEXT.map(lambda t: t.encode("utf-8"))))
def test_fuzz_launcher_config_file(data: bytes) -> None:
    path = Path(_CONFIG_DIR.name) / "launcher_config.txtpb"
    path.write_bytes(data)
    check_hostile(lambda: load_launcher_config(path))


_NAMES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "/", "..", "./", "a/../", "\\", "\0", "//"]).flatmap(
        lambda prefix: st.sampled_from(
            ["system.tar.xz", "kernel_bin", "stage0_bin", "initrd.cpio.xz"]
        ).map(lambda suffix: prefix + suffix)
    ),
)


@FUZZ
@given(st.lists(st.tuples(_NAMES, st.booleans()), max_size=12))
def test_fuzz_bundle_member_selection(members: list[tuple[str, bool]]) -> None:
    check_hostile(
        lambda: select_bundle_members((BundleMember(n, f) for n, f in members), "fuzz.tar")
    )


@FEW
@given(st.binary(max_size=2048))
def test_fuzz_system_bundle_bytes(data: bytes) -> None:
    path = Path(_CONFIG_DIR.name) / "bundle.tar"
    path.write_bytes(data)

    def open_it() -> object:
        bundle = open_system_bundle(path, temp_root=Path(_CONFIG_DIR.name))
        bundle.cleanup()
        return bundle

    check_hostile(open_it)


# ------------------------------------------------------------------ the TVS session

_CONFIG: TvsConfig = config()
_EVIDENCE_BYTES = evidence().SerializeToString()


def _fresh() -> RequestHandler:
    return _CONFIG.new_handler()


def _after_handshake() -> tuple[RequestHandler, Client]:
    handler = _CONFIG.new_handler()
    client = Client()
    client.process_init_response(handler.handle(client.init_request()))
    return handler, client


def _terminated() -> RequestHandler:
    handler, client = _after_handshake()
    handler.handle(client.verify_request())
    assert handler.terminated
    return handler


# The states a peer's message can reach: the server never calls a terminated
# handler (it ends the stream first), so that state is a bug of ours, tested below.
_STATES: dict[str, Callable[[], RequestHandler]] = {
    "fresh": _fresh,
    "after handshake": lambda: _after_handshake()[0],
}

_SHAPED = st.one_of(
    st.builds(
        lambda m, t, c: tvs_messages_pb2.AttestReportRequest(
            init_session_request=tvs_messages_pb2.InitSessionRequest(
                client_message=m, tvs_public_key=t, client_public_key=c
            )
        ).SerializeToString(),
        st.binary(max_size=200),
        st.one_of(st.binary(max_size=80), st.just(Client().tvs_public_key)),
        st.one_of(st.binary(max_size=80), st.just(public(CLIENT))),
    ),
    st.binary(max_size=300).map(
        lambda m: tvs_messages_pb2.AttestReportRequest(
            verify_report_request=tvs_messages_pb2.VerifyReportRequestEncrypted(client_message=m)
        ).SerializeToString()
    ),
)


@FUZZ
@given(
    st.sampled_from(sorted(_STATES)),
    st.one_of(st.binary(max_size=600), _SHAPED),
)
def test_fuzz_tvs_request_in_every_state(state: str, data: bytes) -> None:
    make = _STATES[state]
    check_hostile(lambda: make().handle(data))


@FUZZ
@given(st.one_of(st.binary(max_size=600), _SHAPED))
def test_fuzz_a_terminated_handler_refuses_everything_as_our_bug(data: bytes) -> None:
    handler = _terminated()
    with pytest.raises(SessionStateError) as info:
        handler.handle(data)
    assert not isinstance(info.value, HatsError)  # a LocalProtocolError: never the peer's


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buffer = bytearray(data)
    for position, value in edits:
        buffer[position % len(buffer)] = value
    return bytes(buffer[:cut] if cut is not None else buffer)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


_VCEK = vcek()
_SIGNING_KEY = signing_key()


def _mutations(data: bytes) -> st.SearchStrategy[bytes]:
    return st.builds(
        _mutate,
        st.just(data),
        st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=6),
        st.one_of(st.none(), st.integers(min_value=0, max_value=len(data))),
    )


@FEW
@given(
    st.one_of(st.binary(max_size=600), _mutations(_EVIDENCE_BYTES)),
    st.one_of(st.just(_VCEK), st.binary(max_size=200), _mutations(_VCEK)),
    st.booleans(),
)
def test_fuzz_tvs_encrypted_verify_request(evidence_bytes: bytes, cert: bytes, sign: bool) -> None:
    """Hostile evidence and certificate behind a valid channel (and signature, if it can be)."""

    def run() -> bytes:
        handler, client = _after_handshake()
        assert client.result is not None
        inner = _field(1, evidence_bytes) + _field(2, cert)
        if sign:
            raw = signature.sign_handshake_hash(_SIGNING_KEY, client.result.handshake_hash)
            inner += _field(3, raw)
        return handler.handle(client.verify_request(inner=inner))

    check_hostile(run)


@FEW
@given(st.binary(max_size=600))
def test_fuzz_tvs_encrypted_verify_plaintext(inner: bytes) -> None:
    def run() -> bytes:
        handler, client = _after_handshake()
        return handler.handle(client.verify_request(inner=inner))

    check_hostile(run)
