"""``hats launcher serve --vmm qemu`` as a user runs it, with a fake QEMU that records its
argv: insecure vs reference mode, a bundle made by ``hats vm bundle``, the SEV-SNP refusal,
a hostile bundle. (The real boot is ``test_launcher_reference_boot.py``, slow.)"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from hats.vm.qemu import KVM, VHOST_VSOCK
from hats.vm.sysbundle import BundleInputs, write_system_bundle

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "launcher"
FAKE_QEMU = """#!/bin/sh
if [ "$1" = --version ]; then echo 'QEMU emulator version 10.0.2 (fake)'; exit 0; fi
printf '%s\\n' "$@" > {out}/argv
prev=
for arg in "$@"; do
  case "$prev" in -bios|-kernel|-initrd) cat "$arg" > "{out}/got$prev";; esac
  prev="$arg"
done
exit 0
"""
XZ = b"\xfd7zXZ\x00"


def _fake_qemu(tmp_path: Path) -> Path:
    qemu = tmp_path / "qemu"
    qemu.write_text(FAKE_QEMU.format(out=tmp_path))
    qemu.chmod(0o755)
    return qemu


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hats", "launcher", "serve", "--vmm", "qemu", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )


def _config(tmp_path: Path, qemu: Path, bundle: str = "") -> Path:
    config = tmp_path / "launcher_config.txtpb"
    config.write_text(
        f'cvm_config {{ vmm_binary: "{qemu}" num_cpus: 2 ram_size_kb: 2097152'
        f' ramdrive_size_kb: 1572864 hats_system_bundle: "{bundle}"'
        " network_config { inbound_only { host_enclave_app_proxy_port: 8079 } } }\n"
    )
    return config


def test_without_stage0_the_insecure_boot_runs_and_says_so(tmp_path: Path) -> None:
    qemu = _fake_qemu(tmp_path)
    (tmp_path / "k").write_bytes(b"kernel")
    (tmp_path / "i").write_bytes(b"initrd")
    (tmp_path / "image.tar.xz").write_bytes(XZ)
    result = _serve(
        tmp_path, "--launcher_config_path", str(_config(tmp_path, qemu)),
        "--system-image", "image.tar.xz", "--kernel", "k", "--initrd", "i", "--accel", "tcg",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("listening on ")
    assert lines[1].startswith("vm: insecure mode (no stage0")
    assert not any("reference" in line for line in lines)
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[argv.index("-machine") + 1] == "q35" and "-bios" not in argv


def test_a_bundle_from_hats_vm_bundle_boots_the_reference_argv(tmp_path: Path) -> None:
    qemu = _fake_qemu(tmp_path)
    for name, data in (("vmlinuz", b"kernel"), ("initrd", b"initrd"), ("stage0", b"firmware")):
        (tmp_path / name).write_bytes(data)
    (tmp_path / "image.tar.xz").write_bytes(XZ + b"image")
    inputs = BundleInputs(
        kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd",
        image=tmp_path / "image.tar.xz", stage0=tmp_path / "stage0",
    )  # fmt: skip
    write_system_bundle(tmp_path / "bundle.tar", inputs)
    config = _config(tmp_path, qemu, bundle="./bundle.tar")
    result = _serve(tmp_path, "--launcher_config_path", str(config), "--accel", "tcg")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("vm: reference mode: insecure (CVMTYPE_DEFAULT) guest through Oak")
    assert "stage0_bin of bundle.tar" in lines[1]
    if not VHOST_VSOCK.exists():
        assert lines[2].startswith("vm: no /dev/vhost-vsock: the launcher's gRPC goes over")
    assert any("-accel tcg -cpu max in place of -enable-kvm -cpu host" in line for line in lines)
    # The bundle's files were booted (extracted copies, removed at exit).
    assert (tmp_path / "got-bios").read_bytes() == b"firmware"
    assert (tmp_path / "got-kernel").read_bytes() == b"kernel"
    assert (tmp_path / "got-initrd").read_bytes() == b"initrd"
    argv = (tmp_path / "argv").read_text().splitlines()
    assert not Path(argv[argv.index("-bios") + 1]).exists()
    # F7's words in F7's order; TCG and the network fallback in place (reference.py rules).
    head = ["-accel", "tcg", "-cpu", "max", "-m", "2097152K", "-smp", "2", "-nodefaults"]
    head += ["-nographic", "-no-reboot", "-machine", "microvm,acpi=on,pcie=on", "-netdev"]
    assert argv[: len(head)] == head
    assert argv[len(head)].startswith(
        "user,id=netdev,hostfwd=tcp:127.0.0.1:8079-10.0.2.15:8080,guestfwd=tcp:10.0.2.100:8080-cmd:"
    )
    assert argv[argv.index("-append") + 1] == (
        " console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size=1572864 brd.max_part=1"
        " ip=10.0.2.15:::255.255.255.0::enp0s1:off quiet -- --launcher-addr=http://10.0.2.100:8080"
    )
    words = [w for w in argv if w.startswith("-")]
    assert words == [
        "-accel", "-cpu", "-m", "-smp", "-nodefaults", "-nographic", "-no-reboot", "-machine",
        "-netdev", "-device", "-bios", "-kernel", "-initrd", "-append", "-serial", "-qmp",
    ]  # fmt: skip


@pytest.mark.skipif(Path("/dev/sev").exists(), reason="this host has /dev/sev")
def test_sevsnp_without_the_hardware_fails_with_one_line(tmp_path: Path) -> None:
    qemu = _fake_qemu(tmp_path)
    config = tmp_path / "sev.txtpb"
    text = (EXAMPLES / "sev_snp.txtpb").read_text()
    config.write_text(text.replace("/usr/local/bin/qemu-system-x86_64", str(qemu)))
    result = _serve(tmp_path, "--launcher_config_path", str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1, result.stderr
    assert "CVMTYPE_SEVSNP: this host cannot launch a SEV-SNP guest" in errors[0]
    assert "/dev/sev" in errors[0]
    assert ("/dev/kvm" in errors[0]) == (not KVM.exists())
    assert "listening on" not in result.stdout and not (tmp_path / "argv").exists()


def test_a_bundle_whose_stage0_is_a_link_is_refused_in_one_line(tmp_path: Path) -> None:
    qemu = _fake_qemu(tmp_path)
    with tarfile.open(tmp_path / "bundle.tar", "w") as tar:
        image = tmp_path / "image.tar.xz"
        image.write_bytes(XZ)
        tar.add(image, "./system.tar.xz")
        link = tarfile.TarInfo("./stage0_bin")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/shadow"
        tar.addfile(link)
    config = _config(tmp_path, qemu, bundle="./bundle.tar")
    result = _serve(tmp_path, "--launcher_config_path", str(config), "--accel", "tcg")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "hats: error: bundle.tar: member './stage0_bin' is not a regular file"
    ], result.stderr
    assert not (tmp_path / "argv").exists()
