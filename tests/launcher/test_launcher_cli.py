"""``hats launcher serve`` as a subprocess, over TCP and a unix socket."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import tarfile
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2
from launcher_support import KEY, RUN, WRAP, launcher

from hats.pb.oak.attestation.v1 import evidence_pb2
from hats.pb.oak.containers import interfaces_pb2, interfaces_pb2_grpc
from hats.pb.pcit.client import launcher_pb2_grpc


def _bundle(path: Path, image: bytes) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in (("./kernel_bin", b"k"), ("./system.tar.xz", image)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_serve_tcp_from_config(tmp_path: Path) -> None:
    image = os.urandom(3 * 1024 * 1024 + 5)
    _bundle(tmp_path / "system_bundle.tar", image)
    (tmp_path / "bundle.tar").write_bytes(b"container bundle")
    config = tmp_path / "launcher_config.txtpb"
    config.write_text(
        'cvm_config {\n  hats_system_bundle: "./system_bundle.tar"\n'
        '  runc_runtime_bundle: "./bundle.tar"\n  num_cpus: 4\n}\n'
    )
    evidence_file = tmp_path / "evidence.binpb"
    args = [
        "--launcher_config_path",
        str(config),
        f"--tvs_authentication_key={KEY}",
        "--private_key_wrapping_keys",
        WRAP,
        "--tvs_addresses",
        "127.0.0.1:1",
        "--evidence-out",
        str(evidence_file),
        "--listen",
        "127.0.0.1:0",
    ]
    with launcher(args, tmp_path) as running:
        assert running.address.startswith("127.0.0.1:")
        assert not running.address.endswith(":0")
        channel = grpc.insecure_channel(running.address)
        try:
            oak = interfaces_pb2_grpc.LauncherStub(channel)
            chunks = [r.image_chunk for r in oak.GetOakSystemImage(empty_pb2.Empty())]
            assert [len(c) for c in chunks] == [3 * 1024 * 1024, 5]
            assert b"".join(chunks) == image
            bundle = [r.image_chunk for r in oak.GetContainerBundle(empty_pb2.Empty())]
            assert bundle == [b"container bundle"]
            evidence = evidence_pb2.Evidence()
            evidence.root_layer.remote_attestation_report = b"r" * 100
            oak.SendAttestationEvidence(
                interfaces_pb2.SendAttestationEvidenceRequest(dice_evidence=evidence)
            )
            oak.NotifyAppReady(empty_pb2.Empty())
            metadata = launcher_pb2_grpc.LauncherServiceStub(channel).FetchOrchestratorMetadata(
                empty_pb2.Empty()
            )
        finally:
            channel.close()
        code, stderr = running.stop()
    assert code == 0, stderr
    assert metadata.tvs_authentication_key == bytes.fromhex(KEY)
    assert metadata.private_key_wrapping_keys.primary == b"\x11" * 32
    assert list(metadata.private_key_wrapping_keys.active) == [b"\x22" * 32]
    assert evidence_pb2.Evidence.FromString(evidence_file.read_bytes()) == evidence
    assert any(line.startswith("received attestation evidence") for line in running.lines)
    assert "app ready" in running.lines
    assert running.lines[-1] == "stopped"
    output = "\n".join(running.lines) + stderr
    assert KEY not in output
    assert "11" * 32 not in output


def test_serve_unix_with_plain_paths(tmp_path: Path, sock_dir: Path) -> None:
    image = tmp_path / "system.tar.xz"
    image.write_bytes(b"")
    sock = sock_dir / "launcher.sock"
    with launcher(["--listen", f"unix:{sock}", "--system-image", str(image)], tmp_path) as running:
        assert running.address == f"unix:{sock}"
        channel = grpc.insecure_channel(running.address)
        try:
            oak = interfaces_pb2_grpc.LauncherStub(channel)
            assert [r.image_chunk for r in oak.GetOakSystemImage(empty_pb2.Empty())] == [b""]
            with pytest.raises(grpc.RpcError) as info:
                list(oak.GetContainerBundle(empty_pb2.Empty()))
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        finally:
            channel.close()
        running.process.send_signal(signal.SIGINT)
        assert running.process.wait(10) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tvs_access_token", "tok-secret"], "needs --use_tls"),
        (["--tvs_authentication_key", "not-hex-secret"], "--tvs_authentication_key"),
        (["--listen", "vsock://2:0"], "explicit port"),
        (["--launcher_config_path", "missing.txtpb"], "cannot read"),
    ],
)
def test_serve_errors(args: list[str], message: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [*RUN, "serve", *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "secret" not in result.stderr.replace(message, "")
    assert "listening on" not in result.stdout
