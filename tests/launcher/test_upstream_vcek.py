"""F5: the launcher hands out the VCEK for a SEV-SNP CVM, and refuses to start without one.

End to end: ``hats launcher serve`` (a process) with the real Genoa VCEK,
our orchestrator's start-up, and our TVS (in process), which must receive the
certificate bytes exactly as in the file.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2
from launcher_support import KEY, RUN, WRAP, launcher

import shared_data
from hats.attestation.dice import encode_dice_data
from hats.attestation.simulate import simulate_stage1
from hats.keys.keyfile import format_key_file
from hats.launcher.vcek import VcekError, VcekKey, add_to_cache, find_in_cache, vcek_key
from hats.orchestrator.startup import RetryPolicy, StartupConfig, start
from hats.pb.oak.attestation.v1 import evidence_pb2
from hats.pb.pcit.client import launcher_pb2_grpc
from hats.protocol import p256
from hats.tvs.keys import KeyProvider, Secret, User
from hats.tvs.server import serve_bound
from hats.tvs.session import TvsConfig

VCEK_FILE = shared_data.EVIDENCE / "vcek_genoa.crt"
VCEK = VCEK_FILE.read_bytes()
TVS_PRIVATE = (7).to_bytes(32, "big")
SEVSNP_CONFIG = (
    'cvm_config {\n  cvm_type: CVMTYPE_SEVSNP\n  runc_runtime_bundle: "./bundle.tar"\n}\n'
)
GENOA_TCB = "10/0/25/84"
HATS = [sys.executable, "-m", "hats", "launcher"]


def _public(private: bytes) -> bytes:
    return p256.public_key_bytes(p256.load_private_key(private, "test"))


class RecordingChecker:
    """Accepts any evidence and keeps the tee_certificate bytes it was given."""

    def __init__(self) -> None:
        self.certificates: list[bytes] = []
        self.lock = threading.Lock()

    def check(self, evidence: evidence_pb2.Evidence, tee_certificate: bytes) -> str:
        with self.lock:
            self.certificates.append(bytes(tee_certificate))
        return "recorded"


def test_f5_launcher_serves_the_vcek_and_the_tvs_gets_it_unchanged(
    tmp_path: Path, sock_dir: Path
) -> None:
    (tmp_path / "bundle.tar").write_bytes(b"container bundle")
    config = tmp_path / "launcher_config.txtpb"
    config.write_text(SEVSNP_CONFIG)
    checker = RecordingChecker()
    tvs = TvsConfig(
        primary_private_key=TVS_PRIVATE,
        key_provider=KeyProvider(
            [
                User(
                    user_id="1",
                    authentication_public_key=_public(bytes.fromhex(KEY)),
                    secrets=(Secret("9", "pk", b"secret"),),
                )
            ]
        ),
        evidence_checker=checker,
    )
    server, tvs_address = serve_bound(f"unix:{sock_dir / 'tvs.sock'}", tvs.new_handler)
    keys = tmp_path / "keys.txt"
    keys.write_bytes(format_key_file([_public(TVS_PRIVATE)]))
    dice = tmp_path / "dice"
    dice.write_bytes(encode_dice_data(simulate_stage1(hashlib.sha256(b"image").digest())))
    args = ["--launcher_config_path", str(config), f"--tvs_authentication_key={KEY}"]
    args += ["--private_key_wrapping_keys", WRAP, "--tvs_addresses", tvs_address]
    args += ["--tee-certificate", str(VCEK_FILE), "--listen", f"unix:{sock_dir / 'l.sock'}"]
    try:
        with launcher(args, tmp_path) as running:
            started = start(
                StartupConfig(
                    launcher_addr=running.address,
                    tvs_public_keys_file=keys,
                    secret_share_type="no-split",
                    dice_file=dice,
                    rpc_timeout=10.0,
                    retry=RetryPolicy(initial=0.05, cap=0.2, budget=10.0),
                    start_heartbeat=False,
                )
            )
            started.close()
            code, stderr = running.stop()
        assert code == 0, stderr
    finally:
        server.stop(None)
    assert checker.certificates == [VCEK]


def _serve_error(tmp_path: Path, *extra: str) -> str:
    config = tmp_path / "launcher_config.txtpb"
    config.write_text(SEVSNP_CONFIG)
    (tmp_path / "bundle.tar").write_bytes(b"b")
    result = subprocess.run(
        [*HATS, "serve", "--launcher_config_path", str(config), *extra],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_f5_sevsnp_launch_without_a_vcek_is_refused_in_one_line(tmp_path: Path) -> None:
    line = _serve_error(tmp_path)
    assert "CVMTYPE_SEVSNP" in line and "--tee-certificate" in line and "--vcek-cache" in line


def test_f5_a_file_that_is_not_a_vcek_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "vcek.crt"
    bad.write_bytes(b"not a certificate")
    line = _serve_error(tmp_path, "--tee-certificate", str(bad))
    assert str(bad) in line and "not a VCEK" in line


def test_f5_other_cvm_types_hand_out_no_certificate(tmp_path: Path, sock_dir: Path) -> None:
    (tmp_path / "bundle.tar").write_bytes(b"b")
    config = tmp_path / "launcher_config.txtpb"
    config.write_text('cvm_config {\n  runc_runtime_bundle: "./bundle.tar"\n}\n')
    args = ["--launcher_config_path", str(config), f"--tvs_authentication_key={KEY}"]
    args += ["--tee-certificate", str(VCEK_FILE), "--listen", f"unix:{sock_dir / 'l.sock'}"]
    with launcher(args, tmp_path) as running:
        with grpc.insecure_channel(running.address) as channel:
            stub = launcher_pb2_grpc.LauncherServiceStub(channel)
            metadata = stub.FetchOrchestratorMetadata(empty_pb2.Empty())
        code, stderr = running.stop()
    assert code == 0
    assert metadata.tee_certificate == b""
    assert "not CVMTYPE_SEVSNP" in stderr


# --- the cache ---------------------------------------------------------------------------


def test_f5_vcek_cache_uses_the_kds_layout(tmp_path: Path) -> None:
    key = vcek_key(VCEK, "genoa")
    assert key.product == "Genoa" and len(key.hwid) == 64
    path = add_to_cache(tmp_path / "cache", VCEK_FILE)
    assert path == (
        tmp_path
        / "cache/vcek/v1/Genoa"
        / key.hwid.hex()
        / "blSPL=10&teeSPL=0&snpSPL=25&ucodeSPL=84"
    )
    assert path.read_bytes() == VCEK


def test_f5_vcek_cache_lookup_by_chip_id_and_tcb(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    add_to_cache(cache, VCEK_FILE)
    chip = vcek_key(VCEK, "genoa").hwid.hex()
    assert find_in_cache(cache, product=None, chip_id=chip, tcb=GENOA_TCB) == VCEK
    assert find_in_cache(cache, product=None, chip_id=None, tcb=None) == VCEK  # the only one
    with pytest.raises(VcekError, match="no VCEK for this chip at TCB 10/0/25/85"):
        find_in_cache(cache, product=None, chip_id=chip, tcb="10/0/25/85")
    with pytest.raises(VcekError, match="--tcb is missing"):
        find_in_cache(cache, product=None, chip_id=chip, tcb=None)
    with pytest.raises(VcekError, match="no VCEK in the cache"):
        find_in_cache(tmp_path / "empty", product=None, chip_id=None, tcb=None)


def test_f5_turin_query_carries_the_fmc_first() -> None:
    from hats.attestation.amd.report import TcbVersion

    key = VcekKey("Turin", bytes(range(8)), TcbVersion(1, 2, 3, 4, fmc=5))
    assert key.relative_path().as_posix() == (
        "vcek/v1/Turin/0001020304050607/fmcSPL=5&blSPL=1&teeSPL=2&snpSPL=3&ucodeSPL=4"
    )


def test_f5_serve_with_a_filled_cache(tmp_path: Path, sock_dir: Path) -> None:
    cache = tmp_path / "cache"
    fill = subprocess.run(
        [*RUN, "vcek-cache", "add", str(cache), str(VCEK_FILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fill.returncode == 0, fill.stderr
    (tmp_path / "bundle.tar").write_bytes(b"b")
    config = tmp_path / "launcher_config.txtpb"
    config.write_text(SEVSNP_CONFIG)
    chip = vcek_key(VCEK, "genoa").hwid.hex()
    args = ["--launcher_config_path", str(config), f"--tvs_authentication_key={KEY}"]
    args += ["--vcek-cache", str(cache), "--chip-id", chip, "--tcb", GENOA_TCB]
    args += ["--listen", f"unix:{sock_dir / 'l.sock'}"]
    with launcher(args, tmp_path) as running:
        with grpc.insecure_channel(running.address) as channel:
            stub = launcher_pb2_grpc.LauncherServiceStub(channel)
            metadata = stub.FetchOrchestratorMetadata(empty_pb2.Empty())
        running.stop()
    assert metadata.tee_certificate == VCEK
    shutil.rmtree(cache)
