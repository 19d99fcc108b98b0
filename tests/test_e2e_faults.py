"""Process-level fault tests: the demo's real processes, one fault each.

Each test builds the demo's files (:func:`hats.demo.prepare`), starts real
``hats tvs serve`` / ``hats launcher serve`` processes on unix sockets, breaks
one thing and runs ``hats orchestrator --runtime process``. Every test also
checks that no key material (the secret, its shares, any private key) shows
in any captured output.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from hats import demo
from hats.demo import DemoOptions, DemoSetup, processes

ORCHESTRATOR_TIMEOUT = 60


@pytest.fixture(scope="module")
def images() -> Iterator[tuple[Path, Path]]:
    """Two different minimal system images (built once)."""
    root = Path(tempfile.mkdtemp(prefix="hf-img-"))
    try:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        (root / "a").mkdir()
        first = demo.minimal_image(root / "a", env)
        other = root / "b" / "base-root" / "etc"
        other.mkdir(parents=True)
        (other / "hostname").write_text("another image\n")
        second = demo.minimal_image(root / "b", env)
        yield first, second
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _prepare(
    work: Path, image: Path, tvs: int, share: str, *, bundle: Path | None = None
) -> DemoSetup:
    options = DemoOptions(tvs=tvs, share=share, image=image)
    return demo.prepare(options, work / "w", lambda _line: None, bundle=bundle)


def _orchestrate(
    setup: DemoSetup, heartbeat: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        demo.orchestrator_args(setup, heartbeat),
        capture_output=True,
        text=True,
        env=setup.env,
        timeout=ORCHESTRATOR_TIMEOUT,
    )


def _secret_texts(setup: DemoSetup) -> list[str]:
    """Every piece of key material of the run, as it could appear in text."""
    texts = [setup.secret.hex(), setup.client_private.hex()]
    texts += [private.hex() for private, _ in setup.tvs_keys]
    content = setup.secrets_file.read_text()
    for share in re.findall(r"'(\{[^']*\})'", content):
        texts.append(share)
        values = json.loads(share).get("value")
        if isinstance(values, list) and values and all(isinstance(v, int) for v in values):
            texts.append(json.dumps(values))
            texts.append(",".join(map(str, values)))
            texts.append(bytes(v & 0xFF for v in values).hex())
    return texts


def _assert_no_secrets(setup: DemoSetup, *outputs: str) -> None:
    text = "\n".join(outputs)
    for secret in _secret_texts(setup):
        assert secret not in text, "key material in the output"


def _process_output(running: list[demo.Process]) -> str:
    return "\n".join(line for process in running for line in process.lines)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


# 1. TVS down at start-up


def test_single_tvs_down_at_startup(work: Path, images: tuple[Path, Path]) -> None:
    setup = _prepare(work, images[0], 1, "no-split")
    with processes() as running:
        demo.start_launcher(setup, running)  # TVS 0 never started
        result = _orchestrate(setup)
        logs = _process_output(running)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = _last_line(result.stderr)
    assert "TVS 0 (line 1)" in last, last
    assert "key_id=" not in result.stdout
    _assert_no_secrets(setup, result.stdout, result.stderr, logs)


def test_shamir_one_tvs_down_still_succeeds(work: Path, images: tuple[Path, Path]) -> None:
    setup = _prepare(work, images[0], 3, "shamir")
    with processes() as running:
        demo.start_tvs(setup, 0, running)
        demo.start_tvs(setup, 1, running)  # TVS 2 never started
        demo.start_launcher(setup, running)
        result = _orchestrate(setup)
        logs = _process_output(running)
    assert result.returncode == 0, result.stderr
    assert (
        f"key_id=64 public_key=demo public key private_key_sha256={setup.expected_fingerprint}"
        in (result.stdout)
    )
    assert "TVS 2" in result.stderr  # the warning names the missing one
    _assert_no_secrets(setup, result.stdout, result.stderr, logs)


def test_xor_one_tvs_down_fails_naming_it(work: Path, images: tuple[Path, Path]) -> None:
    setup = _prepare(work, images[0], 2, "xor")
    with processes() as running:
        demo.start_tvs(setup, 0, running)  # TVS 1 never started
        demo.start_launcher(setup, running)
        result = _orchestrate(setup)
        logs = _process_output(running)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = _last_line(result.stderr)
    assert "TVS 1 (line 2)" in last and "TVS 0 (" not in last, last
    assert "key_id=" not in result.stdout
    _assert_no_secrets(setup, result.stdout, result.stderr, logs)


# 2. TVS rejecting the evidence


def test_policy_for_another_image_is_rejected(work: Path, images: tuple[Path, Path]) -> None:
    setup = _prepare(work, images[0], 1, "no-split")
    other_dice = setup.work / "other-dice.bin"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "hats",
            "stage1",
            "simulate",
            "--system-image",
            str(images[1]),
            "-o",
            str(other_dice),
        ],
        check=True,
        capture_output=True,
        env=setup.env,
    )
    other_policy = demo.make_policy(
        images[1], setup.bundle, other_dice, setup.work / "other-policy.txtpb", setup.env
    )
    with processes() as running:
        demo.start_tvs(setup, 0, running, policy=other_policy)
        demo.start_launcher(setup, running)
        result = _orchestrate(setup)
        logs = _process_output(running)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "No matching appraisal policy" in result.stderr or "INVALID_ARGUMENT" in (
        result.stderr
    ), result.stderr
    assert "TVS 0" in _last_line(result.stderr)
    assert "key_id=" not in result.stdout
    _assert_no_secrets(setup, result.stdout, result.stderr, logs)


# 3. malformed share


def test_malformed_share_fails_before_the_workload(work: Path, images: tuple[Path, Path]) -> None:
    setup = _prepare(work, images[0], 2, "xor")
    good = re.findall(r"'(\{[^']*\})'", setup.secrets_file.read_text())
    assert len(good) == 2
    bad_file = setup.work / "bad-secrets.toml"
    content = setup.secrets_file.read_text().replace(good[1], '{"value":"not a share"}')
    bad_file.write_text(content)
    bad_file.chmod(0o600)
    with processes() as running:
        demo.start_tvs(setup, 0, running)
        demo.start_tvs(setup, 1, running, secrets_file=bad_file)
        demo.start_launcher(setup, running)
        result = _orchestrate(setup)
        logs = _process_output(running)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "key_id=" not in result.stdout
    last = _last_line(result.stderr)
    assert "the share from TVS 1 (line 2) is malformed" in last, result.stderr
    _assert_no_secrets(setup, result.stdout, result.stderr, logs)


# 4. heartbeat 0


def test_heartbeat_zero_is_a_usage_error(work: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hats",
            "orchestrator",
            "--tvs-heartbeat-frequency",
            "0",
            "--runtime",
            "process",
            "--log-to-stderr",
        ],
        capture_output=True,
        text=True,
        timeout=ORCHESTRATOR_TIMEOUT,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    last = _last_line(result.stderr)
    assert "--tvs-heartbeat-frequency" in last and "0 is not allowed" in last, result.stderr
    assert last.startswith("orchestrator_main: error:") or "error:" in last


# 5. hostile bundle


def _hostile_bundle(path: Path) -> Path:
    buffer = io.BytesIO()
    config = json.dumps(demo_sample_config()).encode()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, data in (
            ("config.json", tarfile.REGTYPE, config),
            ("rootfs", tarfile.DIRTYPE, b""),
            ("../evil", tarfile.REGTYPE, b"escaped\n"),
        ):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def demo_sample_config() -> dict[str, object]:
    from hats.demo.sample_bundle import sample_config

    return sample_config(sys.executable)


def test_hostile_bundle_is_refused(work: Path, images: tuple[Path, Path]) -> None:
    bundle = _hostile_bundle(work / "hostile" / "bundle.tar")
    setup = _prepare(work, images[0], 1, "no-split", bundle=bundle)
    with processes() as running:
        demo.start_tvs(setup, 0, running)
        demo.start_launcher(setup, running)
        result = _orchestrate(setup)
        logs = _process_output(running)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "../evil" in _last_line(result.stderr), result.stderr
    assert "key_id=" not in result.stdout
    for root in (work, setup.work, setup.work / "container"):
        assert not (root / "evil").exists()
        assert not (root.parent / "evil").exists()
    _assert_no_secrets(setup, result.stdout, result.stderr, logs)


# 6. launcher restarted during a heartbeat

LONG_WORKLOAD = """\
import pathlib, time
stop = pathlib.Path({stop!r})
deadline = time.monotonic() + 40
while not stop.exists() and time.monotonic() < deadline:
    time.sleep(0.1)
print("long workload done")
"""


class _Lines:
    """A stream's lines, collected by a thread; wait for a pattern."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: io.TextIOBase) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, text: str, after: int = 0, timeout: float = 20.0) -> int:
        """The index of the first line from ``after`` on that contains ``text``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(after, len(self.lines)):
                    if text in self.lines[index]:
                        return index
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {text!r} in:\n" + "\n".join(self.lines[-20:]))
                self._changed.wait(left)

    def join(self) -> None:
        self._thread.join(10)


def test_launcher_restart_during_heartbeat_recovers(work: Path, images: tuple[Path, Path]) -> None:
    from hats.demo.sample_bundle import make_sample_bundle

    stop = work / "stop-workload"
    script = work / "long.py"
    script.write_text(LONG_WORKLOAD.format(stop=str(stop)))
    (work / "long").mkdir()
    bundle = make_sample_bundle(work / "long" / "bundle.tar", python=sys.executable, script=script)
    setup = _prepare(work, images[0], 1, "no-split", bundle=bundle)
    with processes() as running:
        demo.start_tvs(setup, 0, running)
        demo.start_launcher(setup, running)
        orchestrator = subprocess.Popen(
            demo.orchestrator_args(setup, 1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=setup.env,
        )
        assert orchestrator.stdout is not None and orchestrator.stderr is not None
        stdout = _Lines(orchestrator.stdout)
        stderr = _Lines(orchestrator.stderr)
        try:
            first = stderr.wait_for("heartbeat: secrets refreshed")
            running[-1].stop()  # the launcher goes away mid-run …
            failed = stderr.wait_for("heartbeat: refresh failed", after=first + 1)
            demo.start_launcher(setup, running)  # … and comes back on the same socket
            stderr.wait_for("heartbeat: secrets refreshed", after=failed + 1, timeout=30)
            stop.write_text("")
            status = orchestrator.wait(ORCHESTRATOR_TIMEOUT)
        finally:
            if orchestrator.poll() is None:
                orchestrator.kill()
                orchestrator.wait()
        stdout.join()
        stderr.join()
        logs = _process_output(running)
    out, err = "\n".join(stdout.lines), "\n".join(stderr.lines)
    assert status == 0, err
    assert "long workload done" in out
    assert "Traceback" not in err
    _assert_no_secrets(setup, out, err, logs)


def test_key_provisioning_server_only_when_asked(work: Path, images: tuple[Path, Path]) -> None:
    """Oak's KeyProvisioning is off by default and listens where it is told to."""
    setup = _prepare(work, images[0], 1, "no-split")
    with processes() as running:
        demo.start_tvs(setup, 0, running)
        demo.start_launcher(setup, running)
        default = _orchestrate(setup)
    assert default.returncode == 0, default.stderr
    assert "KeyProvisioning" not in default.stderr
    setup = _prepare(work / "second", images[0], 1, "no-split")
    with processes() as running:
        demo.start_tvs(setup, 0, running)
        demo.start_launcher(setup, running)
        result = subprocess.run(
            [*demo.orchestrator_args(setup, None), "--key-provisioning-addr", "127.0.0.1:0"],
            capture_output=True,
            text=True,
            env=setup.env,
            timeout=ORCHESTRATOR_TIMEOUT,
        )
    assert result.returncode == 0, result.stderr
    assert re.search(r"KeyProvisioning server on 127\.0\.0\.1:", result.stderr), result.stderr
