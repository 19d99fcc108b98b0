"""The agents tree: determinism, launchers, imports, cache verification."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import marshal
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_packaging_wheels import make_wheel

from hats.errors import HatsError
from hats.launcher.server import start_server
from hats.launcher.services import LogsService, MetricsService
from hats.packaging.agents_layer import (
    AGENTS,
    TREE_MTIME,
    AgentsTree,
    agents_tree_digest,
    build_agents_tree,
    bytecode_interpreter,
    manifest_digest,
    pyc_path,
    scan_tree,
    tree_digest,
)
from hats.packaging.fetch import wheel_cache_dir
from hats.packaging.lockfile import LOCK_PATH, TARGET_PYTHON_VERSION, read_lock
from hats.packaging.wheels import record_hash
from telemetry_support import needs_journal_tools, short_dir, simple_entries, write_journal

HOST_PYTHON = Path("/usr/bin/python3")
#: The image's interpreter is CPython 3.11 (Debian bookworm); pycs are only
#: built by a CPython 3.11.
COMPILES = bytecode_interpreter() is not None
needs_compiler = pytest.mark.skipif(
    not COMPILES, reason="bytecode is only compiled by CPython 3.11, the image's version"
)
PROC_FIXTURE = Path(__file__).parent.parent / "agent" / "proc"
EMPTY_ENV = {"PATH": "/usr/bin:/bin", "COLUMNS": "200"}
ORCHESTRATOR_HELP = [
    "--launcher-addr",
    "(default: http://10.0.2.100:8080)",
    "ORCHESTRATOR_ADDR",
    "(default: 0.0.0.0:4000)",
    "--container-dir",
    "(default: /oak_container)",
    "--ipc-socket-path",
    "(default: /oak_utils/orchestrator_ipc)",
    "--runtime-user",
    "(default: oakc)",
    "--tvs-public-keys-file",
    "(default: /hats/tvs_public_keys.txt)",
    "--secret-share-type {no-split,shamir,xor}",
    "(default: no-split)",
    "--tvs-heartbeat-frequency SECONDS",
    "(default: 3600)",
]
AGENT_HELP = ["launcher_addr", "(default: $LAUNCHER_ADDR, else http://10.0.2.100:8080)"]
EXPECTED_HELP = {
    "orchestrator_main": ORCHESTRATOR_HELP,
    "oak_containers_agent": AGENT_HELP,
    "oak_containers_syslogd": AGENT_HELP,
}


def _interpreters() -> list[str]:
    found = [sys.executable]
    if HOST_PYTHON.exists():
        found.insert(0, str(HOST_PYTHON))
    return found


def _minor_version(python: str) -> str:
    result = subprocess.run(
        [python, "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def _tree_state(root: Path) -> tuple[object, ...]:
    files, directories = scan_tree(root)
    mtimes = sorted({int(p.lstat().st_mtime) for p in root.rglob("*")})
    return files, directories, mtimes


# --- offline -----------------------------------------------------------------


def _fake_lock_and_cache(tmp_path: Path, wheel_bytes: bytes, filename: str) -> tuple[Path, Path]:
    """A lock pinning one synthetic wheel, and a cache that holds it."""
    digest = hashlib.sha256(wheel_bytes).hexdigest()
    name, version = filename.split("-")[:2]
    lock = tmp_path / "lock.txt"
    lock.write_text(f"{name}=={version} --hash=sha256:{digest}\n", encoding="utf-8")
    cache = tmp_path / "cache"
    slot = wheel_cache_dir(cache) / digest
    slot.mkdir(parents=True)
    (slot / filename).write_bytes(wheel_bytes)
    return lock, cache


def test_tree_from_a_synthetic_wheel(tmp_path: Path, hats_snapshot: Path) -> None:
    wheel = make_wheel({"demo/__init__.py": b"VALUE = 42\n"})
    lock, cache = _fake_lock_and_cache(tmp_path, wheel, "demo-1.0-py3-none-any.whl")
    messages: list[str] = []
    tree = build_agents_tree(
        tmp_path / "out",
        cache_dir=cache,
        lock_file=lock,
        hats_source=hats_snapshot,
        progress=messages.append,
    )
    assert (tree.site_dir / "demo" / "__init__.py").read_bytes() == b"VALUE = 42\n"
    assert any("installing demo==1.0" in m for m in messages)
    assert tree.input_digest == agents_tree_digest(lock_file=lock, hats_source=hats_snapshot)
    assert tree.digest == tree_digest(tree.root)


def test_wheel_not_matching_its_record_is_never_installed(
    tmp_path: Path, hats_snapshot: Path
) -> None:
    # The lock pins this exact (bad) wheel, so only the RECORD check can catch it.
    wheel = make_wheel(
        {"demo/__init__.py": b"VALUE = 666\n"},
        record_overrides={"demo/__init__.py": (record_hash(b"VALUE = 42\n"), "11")},
    )
    lock, cache = _fake_lock_and_cache(tmp_path, wheel, "demo-1.0-py3-none-any.whl")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(HatsError, match=r"demo/__init__\.py: content does not match"):
        build_agents_tree(out, cache_dir=cache, lock_file=lock, hats_source=hats_snapshot)
    assert list(out.iterdir()) == []


def test_wheel_for_another_distribution_is_rejected(tmp_path: Path, hats_snapshot: Path) -> None:
    wheel = make_wheel({"other/__init__.py": b""}, name="other")
    lock, cache = _fake_lock_and_cache(tmp_path, wheel, "demo-1.0-py3-none-any.whl")
    with pytest.raises(HatsError, match=r"the lock pins demo==1\.0"):
        build_agents_tree(
            tmp_path / "out", cache_dir=cache, lock_file=lock, hats_source=hats_snapshot
        )


def test_non_empty_root_is_refused(tmp_path: Path, hats_snapshot: Path) -> None:
    wheel = make_wheel({"demo/__init__.py": b""})
    lock, cache = _fake_lock_and_cache(tmp_path, wheel, "demo-1.0-py3-none-any.whl")
    out = tmp_path / "out"
    out.mkdir()
    (out / "stray").write_text("x")
    with pytest.raises(HatsError, match="empty directory"):
        build_agents_tree(out, cache_dir=cache, lock_file=lock, hats_source=hats_snapshot)


def test_download_failure_is_one_line_naming_the_wheel(
    tmp_path: Path, hats_snapshot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text(f"typing-extensions==4.16.0 --hash=sha256:{'0' * 64}\n", encoding="utf-8")
    # No config files, an index nobody listens on, no retries: a network error.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "5")
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_DEFAULT_TIMEOUT", raising=False)
    with pytest.raises(HatsError) as exc:
        build_agents_tree(
            tmp_path / "out",
            cache_dir=tmp_path / "cache",
            lock_file=lock,
            hats_source=hats_snapshot,
        )
    message = str(exc.value)
    assert "typing-extensions==4.16.0" in message
    assert "\n" not in message
    assert not (tmp_path / "out").exists()


def test_input_digest_follows_the_inputs(tmp_path: Path, hats_snapshot: Path) -> None:
    source = tmp_path / "hats"
    shutil.copytree(hats_snapshot, source)
    base = agents_tree_digest(hats_source=source)
    assert base == agents_tree_digest(hats_source=source)
    (source / "orchestrator" / "__init__.py").write_text("# changed\n", encoding="utf-8")
    assert agents_tree_digest(hats_source=source) != base
    lock = tmp_path / "lock.txt"
    lock.write_bytes(LOCK_PATH.read_bytes() + b"\n")
    assert agents_tree_digest(lock_file=lock, hats_source=source) != agents_tree_digest(
        hats_source=source
    )


def test_hats_copy_leaves_out_caches_tests_and_junk(tmp_path: Path, hats_snapshot: Path) -> None:
    source = tmp_path / "hats"
    shutil.copytree(hats_snapshot, source)
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    (source / "tests").mkdir()
    (source / "tests" / "test_x.py").write_text("")
    (source / ".hidden.py").write_text("")
    (source / "notes.orig").write_text("")
    (source / "packaging" / "extra.toml").write_text("")
    wheel = make_wheel({"demo/__init__.py": b""})
    lock, cache = _fake_lock_and_cache(tmp_path, wheel, "demo-1.0-py3-none-any.whl")
    tree = build_agents_tree(tmp_path / "out", cache_dir=cache, lock_file=lock, hats_source=source)
    paths = {f.path for f in tree.files}
    hats_paths = {p for p in paths if p.startswith("usr/lib/hats/python/hats/")}
    assert "usr/lib/hats/python/hats/packaging/extra.toml" in hats_paths
    assert "usr/lib/hats/python/hats/py.typed" in hats_paths
    assert "usr/lib/hats/python/hats/orchestrator/__main__.py" in hats_paths
    assert "usr/lib/hats/python/hats/packaging/agents-requirements.txt" in hats_paths
    assert not any("/tests/" in p or "/." in p or p.endswith(".orig") for p in hats_paths)
    # The only bytecode is the tree's own, one pyc per module; the stray pyc is not copied.
    assert "usr/lib/hats/python/hats/__pycache__/x.cpython-311.pyc" not in hats_paths
    modules = {p for p in hats_paths if p.endswith(".py")}
    pycs = {p for p in hats_paths if "__pycache__" in p}
    assert pycs == ({pyc_path(p) for p in modules} if COMPILES else set())


# --- bytecode ----------------------------------------------------------------

#: A module whose code holds a frozenset constant and a nested function.
SEEDED_MODULE = b"""\
def member(x):
    return x in {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"}


def outer():
    def inner():
        return 1 / 0
    return inner
"""
IN_IMAGE_DEMO = "/usr/lib/hats/python/demo/__init__.py"


def _pyc_header(pyc: bytes) -> tuple[bytes, int, bytes]:
    """PEP 552: magic number, flags word, source hash."""
    return pyc[:4], int.from_bytes(pyc[4:8], "little"), pyc[8:16]


@needs_compiler
def test_bytecode_is_identical_whatever_the_parents_hash_seed(
    tmp_path: Path, hats_snapshot: Path
) -> None:
    wheel = make_wheel({"demo/__init__.py": SEEDED_MODULE})
    lock, cache = _fake_lock_and_cache(tmp_path, wheel, "demo-1.0-py3-none-any.whl")
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from hats.packaging.agents_layer import build_agents_tree
        tree = build_agents_tree(
            Path(sys.argv[1]), cache_dir=Path(sys.argv[2]), lock_file=Path(sys.argv[3]),
            hats_source=Path(sys.argv[4]),
        )
        print(tree.digest)
        """
    )
    digests = []
    for seed in ("1", "4242"):
        root = tmp_path / f"tree-{seed}"
        result = subprocess.run(
            [sys.executable, "-c", code, str(root), str(cache), str(lock), str(hats_snapshot)],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONHASHSEED=seed),
            check=False,
        )
        assert result.returncode == 0, result.stderr
        digests.append(result.stdout.strip())
        assert tree_digest(root) == digests[-1]
    assert digests[0] == digests[1]
    first = (tmp_path / "tree-1" / pyc_path(IN_IMAGE_DEMO.lstrip("/"))).read_bytes()
    second = (tmp_path / "tree-4242" / pyc_path(IN_IMAGE_DEMO.lstrip("/"))).read_bytes()
    assert first == second


@needs_compiler
def test_pyc_is_unchecked_hash_and_names_the_in_image_path(
    tmp_path: Path, hats_snapshot: Path
) -> None:
    wheel = make_wheel({"demo/__init__.py": SEEDED_MODULE})
    lock, cache = _fake_lock_and_cache(tmp_path, wheel, "demo-1.0-py3-none-any.whl")
    tree = build_agents_tree(
        tmp_path / "out", cache_dir=cache, lock_file=lock, hats_source=hats_snapshot
    )
    pyc_file = tree.site_dir / "demo" / "__pycache__" / "__init__.cpython-311.pyc"
    pyc = pyc_file.read_bytes()
    magic, flags, source_hash = _pyc_header(pyc)
    assert magic == importlib.util.MAGIC_NUMBER
    assert flags == 0b01  # PEP 552: hash-based, check_source off
    assert source_hash == importlib.util.source_hash(SEEDED_MODULE)
    # The stored name (what a traceback shows in the image, where the import
    # system's fix-up of co_filename to the module's real path is a no-op).
    code = marshal.loads(pyc[16:])
    assert code.co_filename == IN_IMAGE_DEMO
    outer = next(c for c in code.co_consts if getattr(c, "co_name", "") == "outer")
    inner = next(c for c in outer.co_consts if getattr(c, "co_name", "") == "inner")
    assert inner.co_filename == IN_IMAGE_DEMO
    # Nothing of the build machine's paths in any pyc.
    for item in tree.files:
        if item.path.endswith(".pyc"):
            data = (tree.root / item.path).read_bytes()
            assert str(tree.root).encode() not in data, item.path
            assert str(hats_snapshot).encode() not in data, item.path
    # Same fixed mtime and mode as the rest of the tree.
    assert int(pyc_file.stat().st_mtime) == TREE_MTIME
    assert pyc_file.stat().st_mode & 0o7777 == 0o644
    assert pyc_file.parent.stat().st_mode & 0o7777 == 0o755


def test_another_python_version_ships_no_bytecode(
    tmp_path: Path, hats_snapshot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = make_wheel({"demo/__init__.py": b"VALUE = 42\n"})
    lock, cache = _fake_lock_and_cache(tmp_path, wheel, "demo-1.0-py3-none-any.whl")
    monkeypatch.setattr(sys, "version_info", (3, 12, 1, "final", 0))
    assert bytecode_interpreter() is None
    messages: list[str] = []
    tree = build_agents_tree(
        tmp_path / "out",
        cache_dir=cache,
        lock_file=lock,
        hats_source=hats_snapshot,
        progress=messages.append,
    )
    assert not [f for f in tree.files if f.path.endswith(".pyc") or "__pycache__" in f.path]
    assert any(m.startswith("no bytecode: ") and "\n" not in m for m in messages)
    monkeypatch.undo()
    if COMPILES:  # the input digest tells the two trees apart
        assert agents_tree_digest(lock_file=lock, hats_source=hats_snapshot) != tree.input_digest


# --- with the real locked wheels -------------------------------------------------


@pytest.mark.network
def test_tree_layout_modes_and_manifest(agents_tree: AgentsTree) -> None:
    root = agents_tree.root
    files, directories = scan_tree(root)
    # What build_agents_tree reports is exactly what is on disk.
    assert files == agents_tree.files
    assert directories == agents_tree.directories
    assert agents_tree.digest == tree_digest(root) == manifest_digest(files, directories)
    assert [f.path for f in files] == sorted(f.path for f in files)
    binaries = {f"usr/bin/{name}" for name in AGENTS}
    for item in files:
        assert item.mode == (0o755 if item.path in binaries else 0o644), item
    for directory in directories:
        assert (root / directory).stat().st_mode & 0o7777 == 0o755
    assert {int(p.lstat().st_mtime) for p in root.rglob("*")} == {TREE_MTIME}
    site_files = {f.path for f in files if f.path.startswith("usr/lib/hats/python/")}
    modules = {p for p in site_files if p.endswith(".py")}
    pycs = {f.path for f in files if "__pycache__" in f.path or f.path.endswith(".pyc")}
    assert pycs == ({pyc_path(p) for p in modules} if COMPILES else set())
    assert not [p for p in root.rglob("*") if p.name in ("INSTALLER", "direct_url.json")]
    assert agents_tree.site_dir == root / "usr/lib/hats/python"
    assert agents_tree.binaries == {name: root / "usr/bin" / name for name in AGENTS}
    for path in agents_tree.binaries.values():
        assert path.read_bytes().startswith(b"#!/usr/bin/python3 -I")
    installed = {f.path.split("/")[4] for f in files if f.path.endswith(".dist-info/METADATA")}
    assert len(installed) == len(read_lock())


@pytest.mark.network
def test_installed_records_match_the_installed_files(agents_tree: AgentsTree) -> None:
    site = agents_tree.site_dir
    listed: set[str] = set()
    for record in sorted(site.glob("*.dist-info/RECORD")):
        with record.open(newline="") as handle:
            for path, hash_value, size in csv.reader(handle):
                listed.add(path)
                if not hash_value:
                    assert path.endswith("/RECORD")
                    continue
                data = (site / path).read_bytes()
                assert record_hash(data) == hash_value, path
                assert str(len(data)) == size
    third_party = {
        f.path.removeprefix("usr/lib/hats/python/")
        for f in agents_tree.files
        if f.path.startswith("usr/lib/hats/python/")
        and not f.path.startswith("usr/lib/hats/python/hats/")
        and "/__pycache__/" not in f.path  # ours, not the wheel's: RECORD lists the wheel
    }
    assert listed == third_party


@pytest.mark.network
def test_build_is_deterministic_across_umask(
    tmp_path: Path, agents_tree: AgentsTree, hats_snapshot: Path, wheel_cache: Path
) -> None:
    old = os.umask(0o077)
    try:
        again = build_agents_tree(
            tmp_path / "tree", cache_dir=wheel_cache, hats_source=hats_snapshot
        )
    finally:
        os.umask(old)
    assert again.files == agents_tree.files
    assert again.directories == agents_tree.directories
    assert again.digest == agents_tree.digest
    assert again.input_digest == agents_tree.input_digest
    assert _tree_state(again.root) == _tree_state(agents_tree.root)


@pytest.mark.network
def test_build_is_deterministic_in_another_process(
    tmp_path: Path, agents_tree: AgentsTree, hats_snapshot: Path, wheel_cache: Path
) -> None:
    """Different umask, locale, time zone and hash seed; result as JSON."""
    root = tmp_path / "tree"
    code = textwrap.dedent(
        """
        import json, os, sys
        from pathlib import Path
        os.umask(0o027)
        from hats.packaging.agents_layer import build_agents_tree
        tree = build_agents_tree(
            Path(sys.argv[1]), cache_dir=Path(sys.argv[2]), hats_source=Path(sys.argv[3])
        )
        print(json.dumps({"digest": tree.digest, "input": tree.input_digest,
                          "files": [[f.path, f.mode, f.sha256] for f in tree.files]}))
        """
    )
    env = dict(
        os.environ,
        LC_ALL="C",
        LANG="C",
        TZ="Pacific/Kiritimati",
        PYTHONHASHSEED="12345",
        HATS_CACHE_DIR=str(wheel_cache),
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(root), str(wheel_cache), str(hats_snapshot)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["digest"] == agents_tree.digest
    assert report["input"] == agents_tree.input_digest
    assert report["files"] == [[f.path, f.mode, f.sha256] for f in agents_tree.files]
    assert _tree_state(root) == _tree_state(agents_tree.root)


@pytest.mark.network
@pytest.mark.parametrize("python", _interpreters())
@pytest.mark.parametrize("name", sorted(AGENTS))
def test_launcher_help_runs_from_the_tree(agents_tree: AgentsTree, python: str, name: str) -> None:
    script = agents_tree.binaries[name]
    result = subprocess.run(
        [python, "-I", "-v", str(script), "--help"],
        capture_output=True,
        text=True,
        env=EMPTY_ENV,
        cwd="/",
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {name} ")
    for expected in EXPECTED_HELP[name]:
        assert expected in result.stdout, expected
    # -v: the agent's code was loaded from the tree, not from wherever else
    # (sys.executable's venv has hats installed too): from the tree's pyc when
    # the interpreter is the image's version, else compiled from the tree's source.
    package = agents_tree.site_dir / AGENTS[name].replace(".", "/")
    same_version = _minor_version(python) == TARGET_PYTHON_VERSION
    for module in ("__init__.py", "__main__.py"):
        if COMPILES and same_version:
            pyc = agents_tree.root / pyc_path(str((package / module).relative_to(agents_tree.root)))
            assert f"# code object from {str(pyc)!r}\n" in result.stderr
        else:
            assert f"# code object from {package / module}\n" in result.stderr


@pytest.mark.network
@pytest.mark.skipif(not HOST_PYTHON.exists(), reason="needs /usr/bin/python3 for the shebang")
@pytest.mark.parametrize("name", sorted(AGENTS))
def test_launcher_runs_directly_and_through_a_symlink(
    agents_tree: AgentsTree, tmp_path: Path, name: str
) -> None:
    link = tmp_path / "bin" / name
    link.parent.mkdir()
    link.symlink_to(agents_tree.binaries[name])
    for command in ([str(agents_tree.binaries[name])], [str(link)]):
        # syslogd and the agent would run for ever: a bad address stops them at once
        arguments = [] if name == "orchestrator_main" else ["not-an-address"]
        result = subprocess.run(
            [*command, *arguments],
            capture_output=True,
            text=True,
            env=EMPTY_ENV,
            cwd="/",
            timeout=60,
            check=False,
        )
        if name == "orchestrator_main":
            # the real orchestrator: stops at its first check, the runtime user
            assert result.returncode == 1, result.stderr
            assert "user `oakc` not found" in result.stderr
        else:
            assert result.returncode == 1, result.stderr
            assert "'not-an-address': expected vsock://CID:PORT" in result.stderr
        assert result.stderr.count("\n") == 1
        help_result = subprocess.run(
            [*command, "--help"], capture_output=True, text=True, env=EMPTY_ENV, check=False
        )
        assert help_result.returncode == 0, help_result.stderr
    # Running the launchers wrote nothing into the tree (no new pyc, nothing changed).
    assert tree_digest(agents_tree.root) == agents_tree.digest


@pytest.mark.network
@needs_journal_tools
def test_tree_agents_send_to_a_launcher(agents_tree: AgentsTree, tmp_path: Path) -> None:
    """The packaged syslogd and agent run on the tree's wheels and reach a real server."""
    python = str(HOST_PYTHON) if HOST_PYTHON.exists() else sys.executable
    journal = write_journal(tmp_path / "boot.journal", simple_entries(3))
    lines: list[str] = []
    metrics = MetricsService()
    with short_dir() as work:
        server, _ = start_server(
            f"unix:{work / 'l.sock'}", logs=LogsService(lines.append), metrics=metrics
        )
        try:
            for name, args in (
                ("oak_containers_syslogd", ["--journal-file", str(journal)]),
                ("oak_containers_agent", ["--once", "--proc-root", str(PROC_FIXTURE)]),
            ):
                result = subprocess.run(
                    [
                        python,
                        "-I",
                        str(agents_tree.binaries[name]),
                        f"unix:{work / 'l.sock'}",
                        *args,
                    ],
                    capture_output=True,
                    text=True,
                    env=EMPTY_ENV,
                    cwd="/",
                    timeout=60,
                    check=False,
                )
                assert result.returncode == 0, result.stderr
                assert "0 undelivered" in result.stderr
        finally:
            server.stop(None)
    assert lines == ["app.service: m0", "app.service: m1", "app.service: m2"]
    assert any(p.name == "mem_total" and p.value == 8000000 * 1024 for p in metrics.store.points())


@pytest.mark.network
@pytest.mark.parametrize("python", _interpreters())
def test_dependencies_import_from_the_tree_only(agents_tree: AgentsTree, python: str) -> None:
    site = str(agents_tree.site_dir)
    code = textwrap.dedent(
        f"""
        import sys, warnings
        warnings.simplefilter("error")
        sys.dont_write_bytecode = True
        sys.path[:] = [{site!r}] + [
            p for p in sys.path if p and "site-packages" not in p and "dist-packages" not in p
        ]
        import grpc, google.protobuf, cryptography, cbor2, hats.orchestrator
        import hats.syslogd.run, hats.agent.run
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        key = ec.generate_private_key(ec.SECP256R1())
        key.public_key().verify(
            key.sign(b"m", ec.ECDSA(hashes.SHA256())), b"m", ec.ECDSA(hashes.SHA256())
        )
        assert cbor2.loads(cbor2.dumps({{1: [b"x", -7]}})) == {{1: [b"x", -7]}}
        request = logs_service_pb2.ExportLogsServiceRequest()
        assert request.SerializeToString() == b""
        assert grpc.__version__ == "1.81.2", grpc.__version__
        for module in (
            grpc, google.protobuf, cryptography, cbor2, hats.orchestrator, hats.syslogd.run,
            hats.agent.run,
        ):
            assert module.__file__.startswith({site!r}), module.__file__
        import importlib.metadata as md
        print(sorted(d.metadata["Name"].lower() for d in md.distributions()))
        """
    )
    result = subprocess.run(
        [python, "-I", "-S", "-c", code], capture_output=True, text=True, env=EMPTY_ENV, check=False
    )
    assert result.returncode == 0, result.stderr
    names = {r.key for r in read_lock()}
    assert {n.replace("_", "-") for n in json.loads(result.stdout.replace("'", '"'))} == names


@pytest.mark.network
def test_tampered_cached_wheel_is_detected_and_not_used(
    tmp_path: Path, wheel_cache: Path, hats_snapshot: Path, agents_tree: AgentsTree
) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(wheel_cache_dir(wheel_cache), wheel_cache_dir(cache))
    requirement = next(r for r in read_lock() if r.key == "cbor2")
    (victim,) = (wheel_cache_dir(cache) / requirement.sha256[0]).glob("*.whl")
    original = victim.read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0x01
    victim.write_bytes(bytes(tampered))

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(HatsError) as exc:
        build_agents_tree(out, cache_dir=cache, hats_source=hats_snapshot)
    message = str(exc.value)
    assert str(victim) in message
    assert "does not match" in message
    assert "\n" not in message
    assert list(out.iterdir()) == []  # nothing was written
    assert victim.read_bytes() == bytes(tampered)  # kept for inspection, not replaced

    # Restored, the same cache builds the same tree again.
    victim.write_bytes(original)
    tree = build_agents_tree(out, cache_dir=cache, hats_source=hats_snapshot)
    assert tree.digest == agents_tree.digest


@pytest.mark.network
@needs_compiler
def test_agents_import_from_their_pycs_without_reading_a_source(
    tmp_path: Path, agents_tree: AgentsTree
) -> None:
    """Every source of a copy replaced by one that fails: the imports still work."""
    site = tmp_path / "site"
    shutil.copytree(agents_tree.site_dir, site)
    sources = sorted(site.rglob("*.py"))
    assert sources
    for source in sources:
        assert source.parent.joinpath("__pycache__", source.stem + ".cpython-311.pyc").is_file(), (
            source
        )
        source.write_bytes(b"raise ImportError('compiled from source')\n")
    before = scan_tree(site)
    python = str(HOST_PYTHON) if _minor_version(str(HOST_PYTHON)) == "3.11" else sys.executable
    code = textwrap.dedent(
        f"""
        import sys
        sys.dont_write_bytecode = True
        sys.path.insert(0, {str(site)!r})
        import hats.orchestrator.startup, hats.orchestrator.services, grpc, cryptography
        import google.protobuf
        from hats.orchestrator import main
        print(hats.orchestrator.startup.__cached__)
        """
    )
    result = subprocess.run(
        [python, "-I", "-S", "-c", code], capture_output=True, text=True, env=EMPTY_ENV, check=False
    )
    assert result.returncode == 0, result.stderr
    (cached,) = result.stdout.splitlines()
    assert cached == str(site / "hats/orchestrator/__pycache__/startup.cpython-311.pyc")
    assert scan_tree(site) == before  # nothing written
