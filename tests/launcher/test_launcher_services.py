"""The Oak Launcher, LauncherService metadata and OTLP logs over real unix-socket gRPC."""

from __future__ import annotations

import io
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2

from hats.launcher.server import ListenError, listen_target, start_server
from hats.launcher.services import (
    CHUNK_SIZE,
    HatsLauncherService,
    LauncherFlagError,
    LogsService,
    OakLauncher,
    build_metadata,
    chunk_count,
    iter_chunks,
    log_lines,
    split_tvs_addresses,
    tvs_channel_credentials,
)
from hats.pb.oak.attestation.v1 import evidence_pb2
from hats.pb.oak.containers import interfaces_pb2, interfaces_pb2_grpc
from hats.pb.pcit.client import launcher_pb2_grpc

MIB3 = 3 * 1024 * 1024


def test_chunk_size_is_3_mib() -> None:
    assert CHUNK_SIZE == MIB3


@pytest.mark.parametrize(
    ("size", "lengths"),
    [(0, [0]), (1, [1]), (5, [5]), (4, [4, 0]), (9, [4, 4, 1]), (8, [4, 4, 0])],
)
def test_iter_chunks_small(size: int, lengths: list[int]) -> None:
    data = bytes(range(size))
    chunks = list(iter_chunks(io.BytesIO(data), size=4 if size != 5 else 8))
    assert [len(c) for c in chunks] == lengths
    assert b"".join(chunks) == data
    assert chunk_count(size, 4 if size != 5 else 8) == len(lengths)


def _oak_server(
    sock_dir: Path, oak: OakLauncher
) -> tuple[grpc.Server, interfaces_pb2_grpc.LauncherStub, grpc.Channel]:
    server, address = start_server(f"unix:{sock_dir / 'l.sock'}", oak=oak)
    channel = grpc.insecure_channel(address.grpc_target())
    return server, interfaces_pb2_grpc.LauncherStub(channel), channel


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, [0]),
        (1, [1]),
        (MIB3, [MIB3, 0]),
        (MIB3 + 1, [MIB3, 1]),
        (2 * MIB3, [MIB3, MIB3, 0]),
    ],
)
def test_streams_in_3_mib_chunks(
    size: int, expected: list[int], tmp_path: Path, sock_dir: Path
) -> None:
    data = (bytes(range(256)) * (size // 256 + 1))[:size]
    image = tmp_path / "system.tar.xz"
    image.write_bytes(data)
    container = tmp_path / "bundle.tar"
    container.write_bytes(data[::-1])
    server, stub, channel = _oak_server(sock_dir, OakLauncher(image, container))
    try:
        chunks = [r.image_chunk for r in stub.GetOakSystemImage(empty_pb2.Empty())]
        assert [len(c) for c in chunks] == expected
        assert b"".join(chunks) == data
        chunks = [r.image_chunk for r in stub.GetContainerBundle(empty_pb2.Empty())]
        assert [len(c) for c in chunks] == expected
        assert b"".join(chunks) == data[::-1]
    finally:
        channel.close()
        server.stop(None)


def test_file_is_read_lazily(tmp_path: Path, sock_dir: Path) -> None:
    """The file is opened per call: a changed file is served as it is then."""
    image = tmp_path / "system.tar.xz"
    image.write_bytes(b"one")
    server, stub, channel = _oak_server(sock_dir, OakLauncher(image))
    try:
        assert [r.image_chunk for r in stub.GetOakSystemImage(empty_pb2.Empty())] == [b"one"]
        image.write_bytes(b"two")
        assert [r.image_chunk for r in stub.GetOakSystemImage(empty_pb2.Empty())] == [b"two"]
        image.unlink()
        with pytest.raises(grpc.RpcError) as info:
            list(stub.GetOakSystemImage(empty_pb2.Empty()))
        assert info.value.code() == grpc.StatusCode.INTERNAL
        with pytest.raises(grpc.RpcError) as info:
            list(stub.GetContainerBundle(empty_pb2.Empty()))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "no container bundle" in (info.value.details() or "")
    finally:
        channel.close()
        server.stop(None)


def test_evidence_app_ready_and_unimplemented(sock_dir: Path) -> None:
    seen: list[evidence_pb2.Evidence] = []
    ready: list[bool] = []
    oak = OakLauncher(on_evidence=seen.append, on_app_ready=lambda: ready.append(True))
    server, stub, channel = _oak_server(sock_dir, oak)
    try:
        assert oak.evidence is None
        assert not oak.app_ready.is_set()
        evidence = evidence_pb2.Evidence()
        evidence.root_layer.remote_attestation_report = b"report"
        stub.SendAttestationEvidence(
            interfaces_pb2.SendAttestationEvidenceRequest(dice_evidence=evidence)
        )
        assert oak.evidence_received.is_set()
        assert oak.evidence == evidence
        assert seen == [evidence]
        stub.NotifyAppReady(empty_pb2.Empty())
        stub.NotifyAppReady(empty_pb2.Empty())
        assert oak.app_ready.is_set()
        assert ready == [True]
        for method in (stub.GetApplicationConfig, stub.GetEndorsements):
            with pytest.raises(grpc.RpcError) as info:
                method(empty_pb2.Empty())
            assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        channel.close()
        server.stop(None)


KEY = "c0ffee" * 10 + "abcd"


def test_fetch_orchestrator_metadata(sock_dir: Path) -> None:
    metadata = build_metadata(KEY, "00112233,44556677 , 8899")
    server, address = start_server(
        f"unix:{sock_dir / 'l.sock'}", hats=HatsLauncherService(metadata, {})
    )
    channel = grpc.insecure_channel(address.grpc_target())
    try:
        response = launcher_pb2_grpc.LauncherServiceStub(channel).FetchOrchestratorMetadata(
            empty_pb2.Empty()
        )
    finally:
        channel.close()
        server.stop(None)
    assert response.tvs_authentication_key == bytes.fromhex(KEY)
    assert response.tee_certificate == b""
    assert response.private_key_wrapping_keys.primary == bytes.fromhex("00112233")
    assert list(response.private_key_wrapping_keys.active) == [
        bytes.fromhex("44556677"),
        bytes.fromhex("8899"),
    ]


def test_metadata_wrapping_keys_always_present() -> None:
    response = build_metadata()
    assert response.HasField("private_key_wrapping_keys")
    assert response.SerializeToString() == b"\x1a\x00"
    one = build_metadata("", "aa")
    assert one.private_key_wrapping_keys.primary == b"\xaa"
    assert list(one.private_key_wrapping_keys.active) == []


def test_bad_hex_never_echoed() -> None:
    secret = "zz" + KEY
    with pytest.raises(LauncherFlagError) as info:
        build_metadata(secret)
    assert "--tvs_authentication_key" in str(info.value)
    assert KEY not in str(info.value)
    with pytest.raises(LauncherFlagError, match=r"key 2") as info:
        build_metadata("", "aa,secretnothex")
    assert "secret" not in str(info.value)


def test_tvs_flags() -> None:
    assert split_tvs_addresses("") == []
    assert split_tvs_addresses("a:1, b:2") == ["a:1", "b:2"]
    with pytest.raises(LauncherFlagError, match="entry 1 is empty"):
        split_tvs_addresses("a:1,,b:2")
    assert tvs_channel_credentials(False) is None
    assert tvs_channel_credentials(True) is not None
    assert tvs_channel_credentials(True, access_token="tok") is not None
    with pytest.raises(LauncherFlagError, match="needs --use_tls") as info:
        tvs_channel_credentials(False, access_token="sekrit-token")
    assert "sekrit" not in str(info.value)


def _record(body: common_pb2.AnyValue, **attributes: str) -> logs_pb2.LogRecord:
    return logs_pb2.LogRecord(
        body=body,
        attributes=[
            common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))
            for k, v in attributes.items()
        ],
    )


def _request(*records: logs_pb2.LogRecord) -> logs_service_pb2.ExportLogsServiceRequest:
    return logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(scope_logs=[logs_pb2.ScopeLogs(log_records=list(records))])
        ]
    )


def test_log_lines_filter() -> None:
    text = common_pb2.AnyValue
    request = _request(
        _record(text(string_value="hello"), _SYSTEMD_UNIT="orchestrator.service", PRIORITY="6"),
        _record(text(string_value="no unit"), PRIORITY="6"),
        _record(text(bytes_value=b"binary"), _SYSTEMD_UNIT="x.service"),
        _record(text(int_value=5), _SYSTEMD_UNIT="x.service"),
        _record(common_pb2.AnyValue(), _SYSTEMD_UNIT="x.service"),
        _record(text(string_value="two\nlines\x1b[31m"), _SYSTEMD_UNIT="y.service"),
    )
    assert log_lines(request) == [
        "orchestrator.service: hello",
        "y.service: two\\x0alines\\x1b[31m",
    ]


def test_logs_service_export(sock_dir: Path) -> None:
    lines: list[str] = []
    server, address = start_server(f"unix:{sock_dir / 'l.sock'}", logs=LogsService(lines.append))
    channel = grpc.insecure_channel(address.grpc_target())
    try:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)  # type: ignore[no-untyped-call]
        request = _request(
            _record(common_pb2.AnyValue(string_value="started"), _SYSTEMD_UNIT="a.service"),
            _record(common_pb2.AnyValue(string_value="dropped")),
        )
        response = stub.Export(request)
        assert isinstance(response, logs_service_pb2.ExportLogsServiceResponse)
        stub.Export(logs_service_pb2.ExportLogsServiceRequest())
    finally:
        channel.close()
        server.stop(None)
    assert lines == ["a.service: started"]


def test_all_three_services_on_one_tcp_server(tmp_path: Path) -> None:
    image = tmp_path / "i"
    image.write_bytes(b"image")
    lines: list[str] = []
    server, address = start_server(
        "127.0.0.1:0",
        oak=OakLauncher(image),
        hats=HatsLauncherService(build_metadata("01"), {}),
        logs=LogsService(lines.append),
    )
    assert address.kind == "tcp"
    assert address.port != 0
    channel = grpc.insecure_channel(address.grpc_target())
    try:
        oak = interfaces_pb2_grpc.LauncherStub(channel)
        assert [r.image_chunk for r in oak.GetOakSystemImage(empty_pb2.Empty())] == [b"image"]
        hats = launcher_pb2_grpc.LauncherServiceStub(channel)
        metadata = hats.FetchOrchestratorMetadata(empty_pb2.Empty())
        assert metadata.tvs_authentication_key == b"\x01"
        logs = logs_service_pb2_grpc.LogsServiceStub(channel)  # type: ignore[no-untyped-call]
        logs.Export(_request(_record(common_pb2.AnyValue(string_value="b"), _SYSTEMD_UNIT="u")))
    finally:
        channel.close()
        server.stop(None)
    assert lines == ["u: b"]


def test_vsock_listen_targets() -> None:
    address, target = listen_target("vsock://2:5000")
    assert (address.kind, target) == ("vsock", "vsock:2:5000")
    assert listen_target("vsock://:7777")[1] == "vsock:2:7777"
    for text in ("vsock://2:0", "vsock://2:4294967295"):
        with pytest.raises(ListenError, match="explicit port"):
            listen_target(text)
    assert listen_target("unix:/run/l.sock")[1] == "unix:/run/l.sock"
    assert listen_target("localhost:0")[1] == "localhost:0"


def test_listen_failure_is_a_hats_error(sock_dir: Path) -> None:
    with pytest.raises(ListenError, match="cannot listen"):
        start_server(f"unix:{sock_dir / 'missing-dir' / 'l.sock'}")
