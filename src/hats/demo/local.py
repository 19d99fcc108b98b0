"""``hats demo``: the whole HATs flow on one machine, no VM, no root needed.

Steps (numbered and timed by :class:`hats.console.Steps`):

1. a system image — the one given with ``--image``, or a small one built
   here with the reference layout (a minimal base, the HATs layers);
2. stage1 simulated on it (insecure root, the image's SHA-256 in the system
   layer event) — the DICE data the orchestrator reads;
3. the sample workload bundle (``hats/demo/workload/get_keys.py``);
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

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hats.console import Steps
from hats.demo.harness import DemoError, hats_command, processes, run_step
from hats.demo.setup import (
    KEY_ID,
    DemoSetup,
    assemble,
    demo_env,
    make_keys,
    make_policy,
    make_secret,
    orchestrator_args,
    simulate_stage1,
    start_launcher,
    start_tvs,
)
from hats.hashing import file_sha256
from hats.sharetype import DEFAULT_SHARE_TYPE, ShareType

STEPS = 8
ORCHESTRATOR_TIMEOUT = 300.0


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


def toy_base_root(root: Path) -> Path:
    """A toy base directory at ``root``: the few paths the lint rules look for.

    ``usr/bin`` (with ``/bin`` linked to it, as in Debian), ``sh`` and
    ``journalctl`` stubs, ``etc/systemd/system`` and ``tmp``. Returns ``root``.
    """
    for sub in ("usr/bin", "etc/systemd/system", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "bin").symlink_to("usr/bin")
    for name in ("sh", "journalctl"):
        (root / "usr/bin" / name).write_bytes(b"#!/bin/sh\nexit 0\n")
        (root / "usr/bin" / name).chmod(0o755)
    return root


def minimal_image(work: Path, env: dict[str, str]) -> Path:
    """A small image in the reference layout (toy base, placeholder binaries)."""
    from hats.keys.keyfile import format_key_file
    from hats.keys.keygen import public_key_from_private

    root = toy_base_root(work / "base-root")
    binary = work / "placeholder-agent"
    binary.write_bytes(b"#!/bin/sh\necho placeholder\n")
    keys = work / "image-keys.txt"
    keys.write_bytes(format_key_file([public_key_from_private((1).to_bytes(32, "big"))]))
    image = work / "hats_system_image_demo.tar.xz"
    run_step(
        "system image",
        hats_command(
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


def prepare(
    options: DemoOptions,
    work: Path,
    steps: Steps | Callable[[str], None],
    *,
    bundle: Path | None = None,
) -> DemoSetup:
    """Steps 1 to 5 in ``work``: image, DICE data, bundle, policy, keys, secrets file.

    ``steps``: the run's :class:`~hats.console.Steps` (or a line callback: plain
    lines to it). ``bundle``: use this bundle tar instead of the sample one
    (the policy is made for it).
    """
    from hats.demo.sample_bundle import make_sample_bundle

    if not isinstance(steps, Steps):
        steps = Steps(emit=steps, total=STEPS)
    env = demo_env()
    work.mkdir(parents=True, exist_ok=True)
    with steps.step("system image"):
        if options.image is not None:
            image = options.image
            steps.log(f"given: {image}")
        else:
            image = minimal_image(work, env)
            steps.log(f"built {image.name} (a minimal one; --image for yours)")
        image_sha256 = file_sha256(image)
        steps.log(f"sha256 {image_sha256}")
    with steps.step("stage1 simulated (insecure root)"):
        dice = simulate_stage1(image, work / "dice.bin", env)
        steps.log("DICE data with the image digest")
    with steps.step("workload bundle"):
        if bundle is None:
            bundle = make_sample_bundle(work / "bundle.tar", python=sys.executable)
        steps.log(f"{bundle.name} (sha256 {file_sha256(bundle)[:16]}…)")
    with steps.step("appraisal policy"):
        policy = make_policy(image, bundle, dice, work / "policy.txtpb", env)
        steps.log("bound to the image and bundle digests")
    with steps.step("keys and secret"):
        keys = make_keys(work, options.tvs)
        secret = make_secret(options.share, options.tvs)
        steps.log(
            f"{options.tvs} TVS key pair(s), the orchestrator's; secret key id {KEY_ID}"
            f" ({options.share}), fingerprint {secret.fingerprint}"
        )
    return assemble(
        work=work,
        env=env,
        share=options.share,
        image=image,
        image_sha256=image_sha256,
        dice=dice,
        bundle=bundle,
        policy=policy,
        keys=keys,
        secret=secret,
    )


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
        echo(f"reusing {path} (a previous demo's work directory: its files are replaced)")
        for entry in path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    path.mkdir(parents=True, exist_ok=True)
    (path / WORKDIR_MARK).write_text("hats demo work directory: reused by `hats demo --workdir`\n")


def check_options(options: DemoOptions) -> None:
    """The TVS count the share type needs (:class:`hats.sharetype.ShareType`)."""
    if options.share == ShareType.NO_SPLIT and options.tvs != ShareType.NO_SPLIT.min_tvs:
        raise DemoError("--share no-split needs exactly one TVS (--tvs 1)")
    if options.share == ShareType.XOR and options.tvs < ShareType.XOR.min_tvs:
        raise DemoError("--share xor needs at least two TVSes")
    if options.share == ShareType.SHAMIR and options.tvs < ShareType.SHAMIR.min_tvs:
        raise DemoError("--share shamir needs three TVSes (2 of 3)")


def run_demo(options: DemoOptions, echo: Callable[[str], None]) -> DemoResult:
    """Run the demo; see the module docstring. ``echo`` gets its plain lines."""
    check_options(options)
    steps = Steps(emit=echo, total=STEPS)
    if options.workdir is not None:
        claim_workdir(options.workdir, steps.log)
    with tempfile.TemporaryDirectory(prefix="hats-demo-") as tmp:
        work = options.workdir or Path(tmp)
        setup = prepare(options, work, steps)
        with processes() as running:
            with steps.step("TVS(es)"):
                for index in range(options.tvs):
                    start_tvs(setup, index, running)
                steps.log(f"{options.tvs} listening")
            with steps.step("launcher"):
                start_launcher(setup, running)
                steps.log("listening")
            with steps.step("orchestrator: attesting to every TVS, then running the workload"):
                output = run_orchestrator(setup, options.heartbeat, steps)
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


def run_orchestrator(setup: DemoSetup, heartbeat: int | None, steps: Steps) -> str:
    """The orchestrator to completion (it exits when the workload does); the workload's output.

    Not :func:`hats.toolrun.run`: its stdout is the workload's and is shown
    even when it fails, its last stderr line is the error.
    """
    result = subprocess.run(
        orchestrator_args(setup, heartbeat),
        capture_output=True,
        text=True,
        env=setup.env,
        timeout=ORCHESTRATOR_TIMEOUT,
    )
    for line in result.stdout.splitlines():
        steps.log(f"workload: {line}")
    if result.returncode != 0:
        last = result.stderr.strip().splitlines()
        raise DemoError(
            f"orchestrator exited {result.returncode}: {last[-1] if last else 'no output'}"
        )
    return result.stdout
