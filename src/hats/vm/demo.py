"""``hats demo --vm``: the whole HATs flow with the system image booted in QEMU.

Like :mod:`hats.demo.local` (through the same public harness,
:mod:`hats.demo.harness` and :mod:`hats.demo.setup`), but nothing runs on
the host except the peers a real deployment has there (TVS, launcher, QEMU):

1. keys: a TVS key pair, the orchestrator's TVS-authentication key pair, a
   random 32-byte secret (key id 64);
2. the system image: ``hats image build`` on the default base with Python and
   our agents, with the TVS public key (or an image given with ``--image``
   together with its TVS private key);
3. the workload bundle: ``get_keys.py`` in a runc bundle with its own Python
   (:mod:`hats.vm.workload`);
4. the appraisal policy: the image's and the bundle's digests, the kernel
   command line QEMU passes (:func:`guest_cmdline`, with the options'
   ``--guest-kernel-arg`` arguments: the launcher is given the same ones), and
   the simulated stage0 values stage1 records (insecure root: no SEV-SNP here);
5. the TVS (``hats tvs serve``) and the launcher with ``--vmm qemu``, which
   boots the guest; stage1 fetches and measures the image, systemd starts our
   orchestrator, syslogd and agent; the orchestrator attests to the TVS
   through the launcher, gets the secret and runs the workload with runc,
   whose output reaches the launcher through syslogd;
6. the demo waits for the workload's ``key_id=64 … private_key_sha256=…``
   line in the launcher's forwarded logs (or a refusal), then stops the
   launcher, which powers the guest off.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hats.console import Steps
from hats.demo.harness import DemoError, hats_command, processes, run_step
from hats.demo.setup import (
    KEY_ID,
    DemoKeys,
    DemoSetup,
    assemble,
    demo_env,
    make_keys,
    make_policy,
    make_secret,
    simulate_stage1,
    start_launcher,
    start_tvs,
)
from hats.hashing import file_sha256
from hats.vm.qemu import LAUNCHER_GUEST_ADDR, VmConfig, kernel_cmdline
from hats.vm.stage0 import Stage0Values, measure_with_stage0, mismatches

Echo = Callable[[str], None]
STEPS = 6
BOOT_TIMEOUT = 900.0
POWEROFF_TIMEOUT = 120.0
RAMDRIVE_SIZE_KB = 1536 * 1024
#: The line the workload prints for our key, as forwarded by the launcher.
_KEY_LINE = re.compile(r"key_id=(\S+) public_key=.* private_key_sha256=([0-9a-f]{16})")
#: The orchestrator's one-line fatal error (a TVS refused, or start-up failed).
_FAILURE = re.compile(r"oak-orchestrator\.service: orchestrator_main: ")


@dataclass
class VmDemoOptions:
    workdir: Path
    image: Path | None = None
    tvs_private_key: bytes | None = None
    accel: str = "auto"
    xz_block_size: str | None = None
    boot_timeout: float = BOOT_TIMEOUT
    cache_dir: Path | None = None
    stage0: Path | None = None
    """Real Oak stage0 (``-bios``): the policy takes what it measures (:func:`stage0_values`)."""
    guest_kernel_args: tuple[str, ...] = ()
    """``--guest-kernel-arg``: given to the launcher, and the policy made for that line."""


@dataclass
class VmDemoResult:
    ok: bool
    refused: bool
    expected_fingerprint: str
    key_lines: list[str]
    launcher_output: list[str]
    boot_to_keys: float | None
    clean_poweroff: bool
    console_log: Path
    timings: dict[str, float] = field(default_factory=dict)


def vm_steps(steps: Steps | Echo) -> Steps:
    """The run's :class:`~hats.console.Steps` (a line callback gets plain lines)."""
    return steps if isinstance(steps, Steps) else Steps(emit=steps, total=STEPS)


def guest_cmdline(kernel_args: Sequence[str] = ()) -> str:
    """The kernel command line the launcher gives QEMU (and stage1 records), with
    ``--guest-kernel-arg kernel_args`` (:func:`kernel_arg_options`)."""
    return kernel_cmdline(
        launcher_addr=LAUNCHER_GUEST_ADDR,
        ramdrive_size_kb=RAMDRIVE_SIZE_KB,
        kernel_args=kernel_args,
    )


def kernel_arg_options(options: VmDemoOptions) -> list[str]:
    """The launcher's ``--guest-kernel-arg`` options for ``options.guest_kernel_args``."""
    return [word for arg in options.guest_kernel_args for word in ("--guest-kernel-arg", arg)]


def build_image(options: VmDemoOptions, keys: DemoKeys, env: dict[str, str], steps: Steps) -> Path:
    """``hats image build`` on the default base (with Python and our agents); its stderr on ours."""
    from hats.keys.keygen import insecure_key_label

    image = options.workdir / "hats_system_image_vm.tar.xz"
    steps.log("building (progress on stderr)")
    args = hats_command(
        "image",
        "build",
        "--tvs-keys",
        keys.key_file,
        "--secret-share-type",
        "no-split",
        "-o",
        image,
    )
    if options.xz_block_size:
        args += ["--xz-block-size", options.xz_block_size]
    if insecure_key_label(keys.tvs[0][1]) is not None:
        args.append("--allow-test-keys")  # a --tvs-private-key such as 1·G
    with steps.suspended():
        run_step("system image", args, env, show_progress=True)
    steps.log(f"built {image.name}")
    return image


def prepare_vm(options: VmDemoOptions, steps: Steps | Echo) -> DemoSetup:
    """Steps 1–4 in ``options.workdir``: keys, image, bundle, DICE data and policy, secret."""
    from hats.base.build import ensure_default_base
    from hats.packaging.agents_layer import build_agents_tree
    from hats.vm.workload import make_workload_bundle

    steps = vm_steps(steps)
    work = options.workdir
    work.mkdir(parents=True, exist_ok=True)
    env = demo_env(options.cache_dir)
    keys = make_keys(work, 1, tvs_private=options.tvs_private_key)
    with steps.step("system image"):
        if options.image is not None:
            image = options.image
            steps.log(f"given: {image}")
        else:
            image = build_image(options, keys, env, steps)
        image_sha256 = file_sha256(image)
        steps.log(f"sha256 {image_sha256}")
    with steps.step("workload bundle (runc, own Python)"):
        base = ensure_default_base(with_python=True, cache_dir=options.cache_dir, progress=steps)
        bundle = work / "workload_bundle.tar"
        agents = build_agents_tree(work / "agents", cache_dir=options.cache_dir)
        make_workload_bundle(bundle, base=base, agents_site=agents.site_dir)
        steps.log(f"sha256 {file_sha256(bundle)[:16]}…")
    root = "stage0's measurements" if options.stage0 is not None else "simulated root"
    with steps.step(f"appraisal policy: image, bundle, guest command line (insecure, {root})"):
        dice, policy = guest_policy(
            options, image=image, image_sha256=image_sha256, bundle=bundle, env=env, steps=steps
        )
    with steps.step("secret"):
        secret = make_secret("no-split", 1)
        steps.log(f"key id {KEY_ID}, fingerprint {secret.fingerprint}")
    return assemble(
        work=work,
        env=env,
        share="no-split",
        image=image,
        image_sha256=image_sha256,
        dice=dice,
        bundle=bundle,
        policy=policy,
        keys=keys,
        secret=secret,
    )


def guest_policy(
    options: VmDemoOptions,
    *,
    image: Path,
    image_sha256: str,
    bundle: Path,
    env: dict[str, str],
    steps: Steps | Echo,
    name: str = "",
) -> tuple[Path, Path]:
    """Stage1's reference values and the policy for the guest's command line
    (:func:`guest_cmdline` of ``options.guest_kernel_args``), in ``options.workdir``:
    ``reference_dice[-name].bin`` and ``policy[-name].txtpb``. With a stage0 its
    measurements of this guest are taken (:func:`stage0_values`)."""
    steps = vm_steps(steps)
    suffix = f"-{name}" if name else ""
    measured: list[str | Path] = []
    if options.stage0 is not None:
        values = stage0_values(options, steps)
        measured = [
            "--kernel-sha256",
            values.kernel_image_sha256,
            "--setup-data-sha256",
            values.kernel_setup_data_sha256,
            "--initrd-sha256",
            values.init_ram_fs_sha256,
            "--acpi-sha256",
            values.acpi_table_sha256,
            "--memory-map-sha256",
            values.memory_map_sha256,
        ]
    dice = simulate_stage1(
        image,
        options.workdir / f"reference_dice{suffix}.bin",
        env,
        step="stage1 reference values",
        extra=["--kernel-cmdline", guest_cmdline(options.guest_kernel_args), *measured],
    )
    policy = make_vm_policy(
        options.workdir / f"policy{suffix}.txtpb",
        image_sha256=image_sha256,
        bundle=bundle,
        dice=dice,
        env=env,
    )
    return dice, policy


def stage0_config(options: VmDemoOptions) -> VmConfig:
    """The guest's QEMU configuration as the launcher builds it (same kernel, initrd, machine)."""
    from hats.vm.assets import ensure_guest_assets

    assets = ensure_guest_assets(cache_dir=options.cache_dir)
    return VmConfig(
        kernel=assets.kernel,
        initrd=assets.initrd,
        launcher_target="127.0.0.1:9",  # the guest never runs: stage0 stops before the kernel
        console_log=Path("console.log"),
        qmp_socket=Path("qmp.sock"),
        ramdrive_size_kb=RAMDRIVE_SIZE_KB,
        bios=options.stage0,
        kernel_args=options.guest_kernel_args,
    )


def stage0_values(options: VmDemoOptions, steps: Steps | Echo) -> Stage0Values:
    """Stage0's measurements of this guest, checked against the artifacts (``DemoError``)."""
    steps = vm_steps(steps)
    with steps.step("real stage0: a stage0-only run of this guest's configuration"):
        config = stage0_config(options)
        values = measure_with_stage0(config)
        wrong = mismatches(
            values, kernel=config.kernel, initrd=config.initrd, cmdline=config.cmdline
        )
        if wrong:
            raise DemoError(
                f"stage0 measured other values than the artifacts give: {'; '.join(wrong)}"
            )
        steps.log(
            "kernel, setup data, initrd and command line match the artifacts; ACPI"
            f" {values.acpi_table_sha256[:16]}…, E820 {values.memory_map_sha256[:16]}… (this VMM)"
        )
    return values


def make_vm_policy(
    out: Path, *, image_sha256: str, bundle: Path, dice: Path, env: dict[str, str]
) -> Path:
    """An insecure policy: ``image_sha256``, the bundle, the kernel values of ``dice``."""
    return make_policy(None, bundle, dice, out, env, image_sha256=image_sha256)


def boot_and_wait(
    setup: DemoSetup,
    options: VmDemoOptions,
    steps: Steps | Echo,
    *,
    policy: Path | None = None,
    console_log: Path | None = None,
) -> VmDemoResult:
    """Steps 5–6: TVS, launcher with QEMU, wait for the workload's keys or a refusal."""
    steps = vm_steps(steps)
    console = console_log or setup.work / "console.log"
    expected = setup.expected_fingerprint
    key_lines: list[str] = []
    refused = False
    boot_to_keys: float | None = None
    with processes() as running, steps.step("TVS, launcher and the guest"):
        start_tvs(setup, 0, running, policy=policy)
        launcher = start_launcher(
            setup,
            running,
            [
                "--vmm",
                "qemu",
                "--accel",
                options.accel,
                "--console-log",
                console,
                "--logs-file",
                setup.work / f"{console.stem}.logs.jsonl",
                "--metrics-file",
                setup.work / f"{console.stem}.metrics.json",
                "--evidence-out",
                setup.work / f"{console.stem}.evidence.binarypb",
                *(["--stage0", str(options.stage0)] if options.stage0 is not None else []),
                *kernel_arg_options(options),
            ],
        )
        started = time.monotonic()
        steps.log(f"TVS and launcher up; the guest is booting (console: {console})")
        seen = 0
        deadline = started + options.boot_timeout
        while time.monotonic() < deadline and launcher.running():
            lines = launcher.lines[seen:]
            seen += len(lines)
            for line in lines:
                if line.startswith("vm:") or "oak-orchestrator" in line:
                    steps.log(line)
                if _KEY_LINE.search(line):
                    key_lines.append(line)
                    boot_to_keys = time.monotonic() - started
                elif _FAILURE.search(line):
                    refused = True
            if key_lines or refused:
                break
            time.sleep(0.5)
        # Stopping the launcher presses the guest's power button and waits for it.
        launcher.stop(timeout=POWEROFF_TIMEOUT + 30.0)
        for line in launcher.lines[seen:]:
            if line.startswith("vm:"):
                steps.log(line)
    clean = any(line.startswith(("vm: powered off", "vm: stopped")) for line in launcher.lines)
    ok = any(f"key_id={KEY_ID}" in line and expected in line for line in key_lines)
    with steps.step("result"):
        steps.log(
            f"the workload got key {KEY_ID} with the expected fingerprint"
            if ok
            else ("the orchestrator got no keys (refused)" if refused else "no keys")
        )
    return VmDemoResult(
        ok=ok,
        refused=refused,
        expected_fingerprint=expected,
        key_lines=key_lines,
        launcher_output=list(launcher.lines),
        boot_to_keys=boot_to_keys,
        clean_poweroff=clean,
        console_log=console,
    )


def run_vm_demo(options: VmDemoOptions, steps: Steps | Echo) -> VmDemoResult:
    """Run the VM demo; see the module docstring."""
    steps = vm_steps(steps)
    setup = prepare_vm(options, steps)
    result = boot_and_wait(setup, options, steps)
    if not result.ok:
        raise DemoError(
            f"the workload did not print the expected key; see the console log {result.console_log}"
        )
    return result
