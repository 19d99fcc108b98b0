"""[launcher-qemu] item 3 end to end: ``hats launcher serve --vmm qemu`` in reference mode.

A system bundle made by ``hats vm bundle`` (our kernel and initramfs, the built
image, the real Oak stage0) and a launcher config naming it: the launcher boots
the reference argv (upstream-facts F7) under TCG when KVM does not work, with the
launcher's gRPC carried over the guest network (no /dev/vhost-vsock here), and
the workload in the guest gets its key from our TVS. The QEMU argv is read from
/proc while the guest runs and checked word by word against F7 with the rules of
``hats.launcher.reference``.

Skipped when QEMU is older than 8 (stage0 needs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import shared_data
from hats.demo import DemoSetup
from hats.demo.harness import hats_command, processes, start
from hats.demo.setup import KEY_ID, start_tvs
from hats.vm.demo import RAMDRIVE_SIZE_KB, VmDemoOptions, prepare_vm, stage0_config
from hats.vm.qemu import QEMU, VHOST_VSOCK, QemuError, check_stage0_qemu

pytestmark = [pytest.mark.slow, pytest.mark.vm]
STAGE0 = shared_data.STAGE0 / "stage0_bin"
BOOT_TIMEOUT = 420.0


@pytest.fixture(scope="module")
def reference_setup(
    tmp_path_factory: pytest.TempPathFactory, default_base_tar: Path
) -> tuple[DemoSetup, Path]:
    """The demo's image, bundle, keys and stage0 policy, and a launcher config whose
    hats_system_bundle is made by ``hats vm bundle``."""
    qemu = shutil.which(QEMU)
    if qemu is None:
        pytest.skip(f"{QEMU} is not installed")
    try:
        check_stage0_qemu()
    except QemuError as exc:
        pytest.skip(str(exc))
    work = tmp_path_factory.mktemp("vm-reference")
    lines: list[str] = []
    options = VmDemoOptions(workdir=work, xz_block_size="8MiB", stage0=STAGE0)
    setup = prepare_vm(options, lines.append)
    print("\n".join(lines))
    guest = stage0_config(options)  # the kernel and initramfs the policy was made for
    bundle = work / "system_bundle.tar"
    made = subprocess.run(
        [sys.executable, "-m", "hats", "vm", "bundle", "-o", str(bundle), "--image",
         str(setup.image), "--kernel", str(guest.kernel), "--initrd", str(guest.initrd),
         "--stage0", str(STAGE0)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    config = work / "launcher_config.txtpb"
    config.write_text(
        "cvm_config {\n  cvm_type: CVMTYPE_DEFAULT\n"
        f'  hats_system_bundle: "{bundle}"\n  runc_runtime_bundle: "{setup.bundle}"\n'
        f"  num_cpus: 2\n  ram_size_kb: 2097152\n  ramdrive_size_kb: {RAMDRIVE_SIZE_KB}\n"
        f'  vmm_binary: "{qemu}"\n  network_config {{ inbound_only {{ }} }}\n}}\n'
    )
    return setup, config


def _qemu_argv(console: Path) -> list[str]:
    """The argv of the QEMU process writing ``console`` (from /proc), or []."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")[:-1]
        except OSError:
            continue
        argv = [word.decode(errors="replace") for word in words]
        if f"file:{console}" in argv:
            return argv
    return []


def test_the_reference_argv_boots_through_stage0_to_keys(
    reference_setup: tuple[DemoSetup, Path],
) -> None:
    setup, config = reference_setup
    console = setup.work / "reference.log"
    argv: list[str] = []
    key_line = None
    with processes() as running:
        start_tvs(setup, 0, running)
        args = hats_command(
            "launcher", "serve", "--listen", setup.launcher_address,
            "--tvs_addresses", setup.tvs_address(0), "--launcher_config_path", config,
            "--vmm", "qemu", "--accel", "auto", "--console-log", console,
        )  # fmt: skip
        env = {**setup.env, "HATS_TVS_AUTHENTICATION_KEY": setup.client_private.hex()}
        launcher = start("launcher", args, env, running)
        started = time.monotonic()
        while time.monotonic() < started + BOOT_TIMEOUT and launcher.running():
            if not argv and console.exists():
                argv = _qemu_argv(console)
            key_line = next((line for line in launcher.lines if f"key_id={KEY_ID}" in line), None)
            if key_line is not None:
                break
            time.sleep(0.5)
        boot_to_keys = time.monotonic() - started
        launcher.stop(timeout=150.0)
    output = launcher.output
    text = console.read_text(errors="replace") if console.exists() else ""
    assert key_line is not None, f"no key; launcher:\n{output[-4000:]}\nconsole:\n{text[-3000:]}"
    assert setup.expected_fingerprint in key_line
    print(f"reference argv, stage0, TCG: boot to keys {boot_to_keys:.0f} s")

    # The start lines: reference mode from the bundle's stage0, the transport, the accelerator.
    assert re.search(
        r"^vm: reference mode: insecure \(CVMTYPE_DEFAULT\) guest through Oak"
        r" stage0 \(stage0_bin of .*system_bundle\.tar\)",
        output,
        re.M,
    ), output
    if not VHOST_VSOCK.exists():
        assert "vm: no /dev/vhost-vsock: the launcher's gRPC goes over the guest network" in output
    tcg = "-accel tcg -cpu max in place of -enable-kvm -cpu host" in output
    # Stage0 ran and handed over to our stage1; the guest powered off with the button.
    assert "stage0 INFO: jumping to kernel" in text and "no stage0 hand-off" not in text
    assert "vm: powered off" in output, output[-2000:]

    # The argv QEMU ran: F7's words in F7's order, with this host's substitutions.
    assert argv, "the QEMU process was not seen"
    accel = ["-accel", "tcg", "-cpu", "max"] if tcg else ["-enable-kvm", "-cpu", "host"]
    expected_head = [
        argv[0], *accel, "-m", "2097152K", "-smp", "2", "-nodefaults", "-nographic",
        "-no-reboot", "-machine", "microvm,acpi=on,pcie=on", "-netdev",
    ]  # fmt: skip
    assert argv[: len(expected_head)] == expected_head, argv
    netdev = argv[len(expected_head)]
    assert netdev.startswith("user,id=netdev,hostfwd=tcp:127.0.0.1:0-10.0.2.15:8080")
    tail = argv[len(expected_head) + 1 :]
    assert tail[:2] == [
        "-device", "virtio-net-pci,disable-legacy=on,iommu_platform=true,netdev=netdev,romfile=",
    ]  # fmt: skip
    assert [tail[i] for i in (2, 4, 6, 8)] == ["-bios", "-kernel", "-initrd", "-append"]
    assert tail[3].endswith("/stage0_bin") and tail[5].endswith("/kernel_bin")
    assert tail[9] == (
        f" console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size={RAMDRIVE_SIZE_KB} brd.max_part=1"
        " ip=10.0.2.15:::255.255.255.0::enp0s1:off quiet -- --launcher-addr=http://10.0.2.100:8080"
    )
    assert tail[10:12] == ["-serial", f"file:{console}"] and tail[12] == "-qmp"
