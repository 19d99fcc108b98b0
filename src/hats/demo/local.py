"""``hats demo``: the whole HATs flow on one machine, no VM, no root needed.

Steps (each printed as it happens):

1. a system image — the one given with ``--image``, or a small one built
   here with the reference layout (a minimal base, the HATs layers);
2. stage1 simulated on it (insecure root, the image's SHA-256 in the system
   layer event) — the DICE data the orchestrator reads;
3. the sample workload bundle (``hats/workload/get_keys.py``);
4. an appraisal policy made from the build: image digest, bundle digest,
   kernel values of the simulated stage0 (insecure);
5. key pairs: one per TVS, one for the orchestrator's TVS authentication; a
   random 32-byte secret (key id 64), split for ``xor``/``shamir``;
6. N TVS processes (``hats tvs serve``), each serving its share;
7. the launcher (``hats launcher serve``) proxying to them;
8. the orchestrator (``hats orchestrator --runtime process``), which attests
   to every TVS, recombines the secret and runs the workload; the workload
   prints each key id and a SHA-256 fingerprint, never the key.

Every process talks over unix sockets in a private work directory. The
demo checks the fingerprint the workload printed against the secret it
made, prints the result, and stops every process on exit or Ctrl-C.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hats.errors import HatsError
from hats.sharetype import DEFAULT_SHARE_TYPE, ShareType

KEY_ID = "64"
READY_TIMEOUT = 60.0


class DemoError(HatsError):
    """A demo step failed (the message names the step and the process)."""


@dataclass
class DemoOptions:
    tvs: int = 1
    share: str = DEFAULT_SHARE_TYPE.value
    image: Path | None = None
    heartbeat: int | None = None
    workdir: Path | None = None


@dataclass
class DemoResult:
    ok: bool
    expected_fingerprint: str
    workload_output: str
    image_sha256: str


class _Process:
    """A child process whose output is collected by a thread."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("listening on"):
                self._ready.set()
        self._ready.set()

    def wait_ready(self) -> None:
        if not self._ready.wait(READY_TIMEOUT) or self.proc.poll() is not None:
            tail = self.lines[-1] if self.lines else "no output"
            raise DemoError(f"{self.name} did not start: {tail}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(5)


def _hats(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "hats", *map(str, args)]


def _run(step: str, args: list[str], env: dict[str, str], *, show_progress: bool = False) -> str:
    """Run one step; its stdout is returned, its last error line becomes the DemoError.

    With ``show_progress`` the step's stderr (its progress and log lines) goes
    straight to ours, so a long step is not silent; on failure its own lines
    are already on the screen.
    """
    stderr = None if show_progress else subprocess.PIPE
    result = subprocess.run(
        args, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, timeout=600
    )
    if result.returncode != 0:
        lines = (result.stderr or result.stdout or "").strip().splitlines()
        raise DemoError(f"{step}: {lines[-1] if lines else 'failed (see above)'}")
    return result.stdout


def _minimal_image(work: Path, env: dict[str, str]) -> Path:
    """A small image in the reference layout (toy base, placeholder binaries)."""
    root = work / "base-root"
    for sub in ("usr/bin", "etc/systemd/system", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "bin").symlink_to("usr/bin")
    for name in ("sh", "journalctl"):
        (root / "usr/bin" / name).write_bytes(b"#!/bin/sh\nexit 0\n")
        (root / "usr/bin" / name).chmod(0o755)
    binary = work / "placeholder-agent"
    binary.write_bytes(b"#!/bin/sh\necho placeholder\n")
    keys = work / "image-keys.txt"
    from hats.keys.keyfile import format_key_file
    from hats.keys.keygen import public_key_from_private

    keys.write_bytes(format_key_file([public_key_from_private((1).to_bytes(32, "big"))]))
    image = work / "hats_system_image_demo.tar.xz"
    _run(
        "system image",
        _hats(
            "image",
            "build",
            "-q",
            "--base",
            root,
            "--tvs-keys",
            keys,
            "--allow-test-keys",  # 1·G: this image is never attested
            "--secret-share-type",
            ShareType.NO_SPLIT.value,
            "--orchestrator",
            binary,
            "--agent",
            binary,
            "--syslogd",
            binary,
            "-o",
            image,
        ),
        env,
    )
    return image


@contextmanager
def processes() -> Iterator[list[_Process]]:
    running: list[_Process] = []
    try:
        yield running
    finally:
        for process in reversed(running):
            process.stop()


@dataclass
class DemoSetup:
    """What :func:`prepare` made: the files, keys and secret of one run.

    The secret and the private keys are key material: never print them.
    """

    work: Path
    env: dict[str, str]
    share: str
    image: Path
    image_sha256: str
    dice: Path
    bundle: Path
    policy: Path
    tvs_keys: list[tuple[bytes, bytes]]
    client_private: bytes
    key_file: Path
    secret: bytes
    expected_fingerprint: str
    secrets_file: Path

    def __repr__(self) -> str:
        return f"DemoSetup(work={self.work!r}, share={self.share!r})"

    def tvs_address(self, index: int) -> str:
        """The unix socket address of TVS ``index`` (0-based)."""
        return f"unix:{self.work}/tvs{index}.sock"

    @property
    def launcher_address(self) -> str:
        return f"unix:{self.work}/launcher.sock"


def prepare(
    options: DemoOptions,
    work: Path,
    echo: Callable[[str], None],
    *,
    bundle: Path | None = None,
) -> DemoSetup:
    """Steps 1 to 5 in ``work``: image, DICE data, bundle, policy, keys, secrets file.

    ``bundle``: use this bundle tar instead of the sample one (the policy is
    made for it).
    """
    from hats.keys.keyfile import format_key_file
    from hats.keys.keygen import generate_key_pair
    from hats.orchestrator.sample_bundle import make_sample_bundle
    from hats.tvs.split import split_secret

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    work.mkdir(parents=True, exist_ok=True)
    if options.image is not None:
        image = options.image
        echo(f"[1/8] system image: {image}")
    else:
        image = _minimal_image(work, env)
        echo(f"[1/8] system image: built {image.name} (a minimal one; --image for yours)")
    image_sha256 = hashlib.sha256(image.read_bytes()).hexdigest()
    echo(f"      sha256 {image_sha256}")
    dice = work / "dice.bin"
    _run("stage1", _hats("stage1", "simulate", "--system-image", image, "-o", dice), env)
    echo("[2/8] stage1 simulated (insecure root): DICE data with the image digest")
    if bundle is None:
        bundle = make_sample_bundle(work / "bundle.tar", python=sys.executable)
    echo(
        f"[3/8] workload bundle: {bundle.name} "
        f"(sha256 {hashlib.sha256(bundle.read_bytes()).hexdigest()[:16]}…)"
    )
    policy = work / "policy.txtpb"
    make_policy(image, bundle, dice, policy, env)
    echo("[4/8] appraisal policy bound to the image and bundle digests")
    tvs_keys = [generate_key_pair() for _ in range(options.tvs)]
    client_private, client_public = generate_key_pair()
    key_file = work / "tvs_public_keys.txt"
    key_file.write_bytes(format_key_file([public for _, public in tvs_keys]))
    secret = secrets.token_bytes(32)
    expected = hashlib.sha256(secret).hexdigest()[:16]
    secrets_file = work / "secrets.toml"
    if options.share == ShareType.NO_SPLIT:
        lines = [f'private_key = "{secret.hex()}"']
    else:
        shares = [s.decode() for s in split_secret(options.share, options.tvs, None, secret)]
        lines = ["shares = [" + ", ".join(f"'{s}'" for s in shares) + "]"]
    write_secrets_file(secrets_file, client_public, lines)
    echo(
        f"[5/8] keys: {options.tvs} TVS key pair(s), the orchestrator's; secret key id "
        f"{KEY_ID} ({options.share}), fingerprint {expected}"
    )
    return DemoSetup(
        work=work,
        env=env,
        share=options.share,
        image=image,
        image_sha256=image_sha256,
        dice=dice,
        bundle=bundle,
        policy=policy,
        tvs_keys=tvs_keys,
        client_private=client_private,
        key_file=key_file,
        secret=secret,
        expected_fingerprint=expected,
        secrets_file=secrets_file,
    )


def make_policy(
    image: Path | None,
    bundle: Path,
    dice: Path,
    out: Path,
    env: dict[str, str],
    *,
    image_sha256: str | None = None,
) -> Path:
    """``hats policy make`` for the image (or its SHA-256) and bundle, insecure like ``dice``."""
    if image_sha256 is not None:
        image_args: list[str | Path] = ["--system-image-sha256", image_sha256]
    elif image is not None:
        image_args = ["--system-image", image]
    else:
        raise ValueError("make_policy needs the image or its SHA-256")
    _run(
        "policy",
        _hats(
            "policy",
            "make",
            *image_args,
            "--bundle",
            bundle,
            "--like",
            dice,
            "--insecure",
            "-o",
            out,
        ),
        env,
    )
    return out


def write_secrets_file(path: Path, client_public: bytes, lines: list[str]) -> Path:
    """A TVS secrets file: one user (``client_public``), key id 64 with ``lines``.

    Mode 0600 from its first byte (:func:`hats.fsio.write_bytes_atomic`).
    """
    from hats.fsio import PRIVATE_MODE, write_bytes_atomic

    text = (
        "[[users]]\n"
        f'authentication_public_key = "{client_public.hex()}"\n'
        "[[users.secrets]]\n"
        f'key_id = "{KEY_ID}"\n'
        'public_key = "demo public key"\n' + "\n".join(lines) + "\n"
    )
    write_bytes_atomic(path, text.encode(), PRIVATE_MODE)
    return path


def start_tvs(
    setup: DemoSetup,
    index: int,
    running: list[_Process],
    *,
    policy: Path | None = None,
    secrets_file: Path | None = None,
) -> str:
    """Start TVS ``index`` (0-based), wait until it listens; its address."""
    private, _ = setup.tvs_keys[index]
    address = setup.tvs_address(index)
    args = _hats(
        "tvs",
        "serve",
        "--listen",
        address,
        "--appraisal_policy_file",
        policy or setup.policy,
        "--accept_insecure_policies",
        "--secrets-file",
        secrets_file or setup.secrets_file,
    )
    if setup.share != ShareType.NO_SPLIT:
        args += ["--share-index", str(index + 1)]
    # Private keys go through the environment, not the command line (`ps` shows it).
    env = {**setup.env, "HATS_TVS_PRIMARY_PRIVATE_KEY": private.hex()}
    process = _Process(f"TVS {index}", args, env)
    running.append(process)
    process.wait_ready()
    return address


def start_launcher(
    setup: DemoSetup, running: list[_Process], extra: Sequence[str | Path] = ()
) -> _Process:
    """Start the launcher on ``setup.launcher_address``, proxying to every TVS; wait until ready.

    ``extra``: more ``hats launcher serve`` options (the VM demo adds ``--vmm qemu …``).
    """
    address = setup.launcher_address
    launcher = _Process(
        "launcher",
        _hats(
            "launcher",
            "serve",
            "--listen",
            address,
            "--tvs_addresses",
            ",".join(setup.tvs_address(i) for i in range(len(setup.tvs_keys))),
            "--system-image",
            setup.image,
            "--bundle",
            setup.bundle,
            *map(str, extra),
        ),
        {**setup.env, "HATS_TVS_AUTHENTICATION_KEY": setup.client_private.hex()},
    )
    running.append(launcher)
    launcher.wait_ready()
    return launcher


def orchestrator_args(setup: DemoSetup, heartbeat: int | str | None = None) -> list[str]:
    """The ``hats orchestrator --runtime process`` command line of the demo."""
    user = pwd.getpwuid(os.getuid()).pw_name
    args = _hats(
        "orchestrator",
        "--launcher-addr",
        setup.launcher_address,
        "--tvs-public-keys-file",
        setup.key_file,
        f"--secret-share-type={setup.share}",
        "--dice-file",
        setup.dice,
        "--runtime",
        "process",
        "--container-dir",
        setup.work / "container",
        "--ipc-socket-path",
        setup.work / "ipc" / "orchestrator_ipc",
        "--runtime-user",
        user,
        "--log-to-stderr",
    )
    if heartbeat is not None:
        args.append(f"--tvs-heartbeat-frequency={heartbeat}")
    return args


WORKDIR_MARK = ".hats-demo"
"""The file that marks a directory as a demo's work directory (``--workdir``)."""


def claim_workdir(path: Path, echo: Callable[[str], None]) -> None:
    """Make ``path`` the demo's work directory: new or empty, or a previous demo's (reused).

    A previous demo's directory (it holds :data:`WORKDIR_MARK`) is emptied
    and reused, with one line saying so; any other non-empty directory is
    refused (its files are not the demo's to replace).
    """
    if path.exists() and not path.is_dir():
        raise DemoError(f"--workdir {path}: not a directory")
    if path.is_dir() and any(path.iterdir()):
        if not (path / WORKDIR_MARK).is_file():
            raise DemoError(
                f"--workdir {path}: not empty and not a previous demo's directory; give a new"
                " or empty one"
            )
        echo(f"      reusing {path} (a previous demo's work directory: its files are replaced)")
        for entry in path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    path.mkdir(parents=True, exist_ok=True)
    (path / WORKDIR_MARK).write_text("hats demo work directory: reused by `hats demo --workdir`\n")


def run_demo(options: DemoOptions, echo: Callable[[str], None]) -> DemoResult:
    """Run the demo; see the module docstring."""
    if options.share == ShareType.NO_SPLIT and options.tvs != ShareType.NO_SPLIT.min_tvs:
        raise DemoError("--share no-split needs exactly one TVS (--tvs 1)")
    if options.share == ShareType.XOR and options.tvs < ShareType.XOR.min_tvs:
        raise DemoError("--share xor needs at least two TVSes")
    if options.share == ShareType.SHAMIR and options.tvs < ShareType.SHAMIR.min_tvs:
        raise DemoError("--share shamir needs three TVSes (2 of 3)")
    if options.workdir is not None:
        claim_workdir(options.workdir, echo)
    with tempfile.TemporaryDirectory(prefix="hats-demo-") as tmp:
        work = options.workdir or Path(tmp)
        setup = prepare(options, work, echo)
        with processes() as running:
            for index in range(options.tvs):
                start_tvs(setup, index, running)
            echo(f"[6/8] {options.tvs} TVS(es) listening")
            start_launcher(setup, running)
            echo("[7/8] launcher listening")
            args = orchestrator_args(setup, options.heartbeat)
            echo("[8/8] orchestrator: attesting to every TVS, then running the workload")
            result = subprocess.run(
                args, capture_output=True, text=True, env=setup.env, timeout=300
            )
            output = result.stdout
            for line in output.splitlines():
                echo(f"      workload: {line}")
            if result.returncode != 0:
                last = result.stderr.strip().splitlines()
                raise DemoError(
                    f"orchestrator exited {result.returncode}: {last[-1] if last else 'no output'}"
                )
        expected = setup.expected_fingerprint
        ok = f"key_id={KEY_ID}" in output and f"private_key_sha256={expected}" in output
        if options.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return DemoResult(
        ok=ok,
        expected_fingerprint=expected,
        workload_output=output,
        image_sha256=setup.image_sha256,
    )
