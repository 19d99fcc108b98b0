"""The container runtimes (wire-protocol §2 step 14) and the sample workload end to end."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from orch_ipc_support import (
    SECRETS,
    StaleError,
    StubSecretManager,
    directory,
    link,
    make_state,
    reg,
    tar_bytes,
)

from hats.demo.sample_bundle import make_sample_bundle, sample_bundle_bytes
from hats.orchestrator import runtime, services
from hats.orchestrator.bundle import unpack_bundle

REPO = Path(__file__).resolve().parents[2]


def test_runc_command_is_the_reference_command_line() -> None:
    assert runtime.runc_command(
        Path("/run/oak_containers_orchestrator/oak_container"), 999, 998
    ) == [
        "/bin/systemd-run",
        "--property=RuntimeDirectory=oakc",
        "--property=ProtectSystem=strict",
        "--property=ReadWritePaths=/run/oak_containers_orchestrator/oak_container",
        "--uid=999",
        "--gid=998",
        "--pty",
        "--wait",
        "--collect",
        "/bin/runc",
        "--root=${RUNTIME_DIRECTORY}/runc",
        "run",
        "--bundle=/run/oak_containers_orchestrator/oak_container",
        "oakc",
    ]


def test_runc_is_found_where_debian_installs_it(tmp_path: Path, monkeypatch) -> None:
    debian = tmp_path / "usr-sbin-runc"
    debian.write_bytes(b"")
    monkeypatch.setattr(runtime, "RUNC", str(tmp_path / "bin-runc"))
    monkeypatch.setattr(runtime, "RUNC_FALLBACKS", (str(tmp_path / "missing"), str(debian)))
    assert runtime.find_runc() == str(debian)
    (tmp_path / "bin-runc").write_bytes(b"")
    assert runtime.find_runc() == str(tmp_path / "bin-runc")
    assert runtime.runc_command("/c", 1, 2, str(debian))[9] == str(debian)


def test_runc_runtime_needs_its_tools_and_ids(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(runtime, "RUNC", str(tmp_path / "no-runc"))
    monkeypatch.setattr(runtime, "RUNC_FALLBACKS", ())
    with pytest.raises(runtime.ContainerRuntimeError, match=r"no-runc; use --runtime process"):
        runtime.run_container(tmp_path, runtime="runc", ipc_socket_path="/s", uid=1, gid=1)
    true = str(Path(sys.executable))
    monkeypatch.setattr(runtime, "RUNC", true)
    monkeypatch.setattr(runtime, "SYSTEMD_RUN", true)
    with pytest.raises(runtime.ContainerRuntimeError, match="needs the runtime user's uid"):
        runtime.run_container(tmp_path, runtime="runc", ipc_socket_path="/s", uid=None, gid=1)
    with pytest.raises(runtime.ContainerRuntimeError, match="unknown runtime 'docker'"):
        runtime.run_container(tmp_path, runtime="docker", ipc_socket_path="/s", uid=1, gid=1)


def _bundle(tmp_path: Path, process: dict[str, object], *extra) -> Path:
    config = {"ociVersion": "1.0.2", "process": process, "root": {"path": "rootfs"}}
    data = tar_bytes(
        reg("config.json", json.dumps(config).encode()),
        directory("rootfs"),
        directory("rootfs/work"),
        *extra,
    )
    return unpack_bundle(
        data, tmp_path / "c", uid=None, gid=None, ipc_socket_path=str(tmp_path / "ipc")
    )


PROBE = (
    "import json, os, sys; "
    "print(json.dumps({'cwd': os.getcwd(), 'env': dict(os.environ), 'argv': sys.argv[1:]}))"
)


def test_process_runtime_args_env_cwd(tmp_path: Path, capfd, monkeypatch) -> None:
    monkeypatch.setenv("HOST_ONLY_VARIABLE", "leak")
    container = _bundle(
        tmp_path,
        {
            "args": [sys.executable, "-c", PROBE, "a b"],
            "env": ["GREETING=hi", "X=1=2"],
            "cwd": "/work",
        },
    )
    status = runtime.run_container(
        container, runtime="process", ipc_socket_path="/ipc/sock", uid=None, gid=None
    )
    assert status == 0
    seen = json.loads(capfd.readouterr().out)
    assert seen["cwd"] == str(container / "rootfs" / "work")
    assert seen["argv"] == ["a b"]
    env = {k: v for k, v in seen["env"].items() if k not in ("LC_CTYPE",)}
    assert env == {"GREETING": "hi", "X": "1=2", "HATS_ORCHESTRATOR_IPC": "/ipc/sock"}


def test_process_runtime_exit_status_and_signals(tmp_path: Path) -> None:
    container = _bundle(tmp_path, {"args": [sys.executable, "-c", "import sys; sys.exit(7)"]})
    assert (
        runtime.run_container(
            container, runtime="process", ipc_socket_path="/s", uid=None, gid=None
        )
        == 7
    )
    (container / "config.json").write_text(
        json.dumps(
            {"process": {"args": [sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"]}}
        )
    )
    assert (
        runtime.run_container(
            container, runtime="process", ipc_socket_path="/s", uid=None, gid=None
        )
        == 128 + 9
    )


def test_process_runtime_program_lookup(tmp_path: Path, monkeypatch) -> None:
    script = b"#!/bin/sh\nexit 3\n"
    container = _bundle(
        tmp_path,
        {"args": ["/app/run"]},
        directory("rootfs/app"),
        reg("rootfs/app/run", script, 0o755),
    )
    spec = runtime.process_spec(container, "/s")
    assert spec.args == [str(container / "rootfs" / "app" / "run")]
    assert spec.cwd == container / "rootfs"
    assert (
        runtime.run_container(
            container, runtime="process", ipc_socket_path="/s", uid=None, gid=None
        )
        == 3
    )
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    (container / "config.json").write_text(json.dumps({"process": {"args": ["nosuchtool"]}}))
    with pytest.raises(runtime.ContainerRuntimeError, match="'nosuchtool' is not on the PATH"):
        runtime.process_spec(container, "/s")


@pytest.mark.parametrize(
    ("process", "message"),
    [
        ({"args": ["x"], "cwd": "/esc"}, "process.cwd: .*/rootfs/esc is a symbolic link"),
        ({"args": ["x"], "cwd": "/../.."}, "contains '..'"),
        ({"args": ["x"], "cwd": "/missing"}, "does not exist"),
        ({"args": []}, "'process.args' is empty"),
        ({"args": "x"}, "'process.args' is not a list of strings"),
        ({"args": ["x"], "env": ["NOEQUALS"]}, "'NOEQUALS' has no '='"),
    ],
)
def test_process_runtime_refuses_bad_process(tmp_path: Path, process, message: str) -> None:
    container = _bundle(tmp_path, process, link("rootfs/esc", "/"))
    with pytest.raises(runtime.ContainerRuntimeError, match=message):
        runtime.process_spec(container, "/s")


def test_sample_bundle_is_deterministic(tmp_path: Path) -> None:
    out = make_sample_bundle(tmp_path / "sample.tar")
    assert out.read_bytes() == sample_bundle_bytes()
    config = json.loads(
        unpack_bundle(out, tmp_path / "c", uid=None, gid=None, ipc_socket_path="/s")
        .joinpath("config.json")
        .read_text()
    )
    assert config["process"]["args"] == ["python3", "get_keys.py"]
    assert config["process"]["cwd"] == "/app"
    assert (tmp_path / "c" / "rootfs" / "app" / "get_keys.py").read_bytes() == (
        REPO / "src" / "hats" / "demo" / "workload" / "get_keys.py"
    ).read_bytes()


def _run_sample(tmp_path: Path, manager: StubSecretManager) -> int:
    sock = str(tmp_path / "oak_utils" / "orchestrator_ipc")
    server = services.serve_ipc(
        sock, make_state(manager), enable_instance_signing=False, runtime_uid=None, runtime_gid=None
    )
    try:
        bundle = make_sample_bundle(tmp_path / "sample.tar", python=sys.executable)
        container = unpack_bundle(
            bundle, tmp_path / "oak_container", uid=None, gid=None, ipc_socket_path=sock
        )
        return runtime.run_container(
            container, runtime="process", ipc_socket_path=sock, uid=None, gid=None
        )
    finally:
        server.stop(None).wait()


def test_sample_workload_end_to_end_prints_ids_and_fingerprints_only(tmp_path: Path, capfd) -> None:
    assert _run_sample(tmp_path, StubSecretManager()) == 0
    out, err = capfd.readouterr()
    assert out.splitlines()[0] == "2 key(s) from the orchestrator"
    for secret in SECRETS:
        fingerprint = hashlib.sha256(secret.private_key).hexdigest()[:16]
        assert f"key_id={secret.key_id} " in out
        assert f"private_key_sha256={fingerprint} ({len(secret.private_key)} bytes)" in out
        assert secret.private_key.hex() not in out
        assert hashlib.sha256(secret.private_key).hexdigest() not in out
    assert "TOPSECRET" not in out + err
    assert "public_key=pub-sixty-four" in out


def test_sample_workload_reports_rpc_errors(tmp_path: Path, capfd) -> None:
    manager = StubSecretManager(fail=lambda: StaleError("the secrets are too old"))
    assert _run_sample(tmp_path, manager) == 1
    out, err = capfd.readouterr()
    assert out == ""
    assert err.strip() == (
        "get_keys: GetKeys failed: UNAVAILABLE: secrets unavailable: the secrets are too old"
    )


def test_process_runtime_runs_as_the_runtime_user(capfd) -> None:
    if os.getuid() != 0:
        pytest.skip("switching user needs root")
    base = Path(tempfile.mkdtemp(prefix="hats-runtime-"))
    try:
        os.chmod(base, 0o755)
        container = _bundle(base, {"args": ["/bin/sh", "-c", "id -u; id -g; id -G"]})
        status = runtime.run_container(
            container, runtime="process", ipc_socket_path="/s", uid=4321, gid=8765
        )
        assert status == 0
        assert capfd.readouterr().out.split() == ["4321", "8765", "8765"]
    finally:
        shutil.rmtree(base)
