"""QEMU command line (pure), the kernel command line, and the relay over real sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hats.attestation.policy import cmdline_matches, cmdline_regex_for
from hats.vm.launch import relay_target
from hats.vm.qemu import (
    LAUNCHER_GUEST_ADDR,
    QemuError,
    VmConfig,
    choose_accel,
    escape,
    kernel_cmdline,
    qemu_argv,
)


def _config(**changes: object) -> VmConfig:
    values: dict[str, object] = {
        "kernel": Path("/k/vmlinuz"),
        "initrd": Path("/k/initrd.cpio.gz"),
        "launcher_target": "127.0.0.1:4000",
        "console_log": Path("/w/console.log"),
        "qmp_socket": Path("/w/qmp.sock"),
        "python": "/venv/bin/python",
    }
    values.update(changes)
    return VmConfig(**values)  # type: ignore[arg-type]


def test_kernel_cmdline_has_the_reference_form() -> None:
    text = kernel_cmdline(launcher_addr="vsock://2:1234", ramdrive_size_kb=10485760)
    assert text == (
        " console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size=10485760 brd.max_part=1"
        " ip=10.0.2.15:::255.255.255.0::enp0s1:off quiet -- --launcher-addr=vsock://2:1234"
    )
    debug = kernel_cmdline(launcher_addr="x", ramdrive_size_kb=1, debug=True)
    assert debug.startswith("debug  console=ttyS0")
    outbound = kernel_cmdline(
        launcher_addr="x", ramdrive_size_kb=1, network_mode="inbound_and_outbound"
    )
    assert "ip=10.0.2.15::10.0.2.2:255.255.255.0::enp0s1:off" in outbound
    with pytest.raises(QemuError, match="network mode"):
        kernel_cmdline(launcher_addr="x", ramdrive_size_kb=1, network_mode="virtual_bridge")


def test_reference_policy_regex_shape_matches() -> None:
    # Policies anchor on "^ console=ttyS0" and end with the launcher address.
    text = kernel_cmdline(launcher_addr=LAUNCHER_GUEST_ADDR, ramdrive_size_kb=1572864)
    assert cmdline_matches(
        r"^ console=ttyS0 .* -- --launcher-addr=http://10\.0\.2\.100:8080$", text
    )
    assert cmdline_matches(cmdline_regex_for(text), text)


def test_tcg_argv() -> None:
    argv = qemu_argv(_config())
    assert argv[:5] == ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max"]
    assert argv[argv.index("-machine") + 1] == "q35"
    assert {"-nodefaults", "-nographic", "-no-reboot"} <= set(argv)
    netdev = argv[argv.index("-netdev") + 1]
    assert netdev == (
        "user,id=netdev,guestfwd=tcp:10.0.2.100:8080-cmd:"
        "/venv/bin/python -m hats.vm.relay 127.0.0.1:4000"
    )
    assert argv[argv.index("-append") + 1].endswith("--launcher-addr=http://10.0.2.100:8080")
    assert "vhost-vsock-pci" not in " ".join(argv)
    assert argv[argv.index("-serial") + 1] == "file:/w/console.log"


def test_kvm_vsock_and_port_forward() -> None:
    argv = qemu_argv(_config(accel="kvm", vsock_cid=4242, host_proxy_port=8079))
    assert argv[1:4] == ["-enable-kvm", "-cpu", "host"]
    assert "vhost-vsock-pci,guest-cid=4242,rombar=0" in argv
    assert "hostfwd=tcp:127.0.0.1:8079-10.0.2.15:8080" in argv[argv.index("-netdev") + 1]


def test_commas_are_escaped() -> None:
    assert escape("a,b") == "a,,b"
    argv = qemu_argv(_config(console_log=Path("/w,x/console.log")))
    assert argv[argv.index("-serial") + 1] == "file:/w,,x/console.log"
    with pytest.raises(QemuError, match="accelerator"):
        qemu_argv(_config(accel="hvf"))


def test_relay_target() -> None:
    assert relay_target("127.0.0.1:5000") == "127.0.0.1:5000"
    assert relay_target("0.0.0.0:5000") == "127.0.0.1:5000"
    assert relay_target("unix:/tmp/l.sock") == "unix:/tmp/l.sock"
    with pytest.raises(QemuError, match="TCP or a unix socket"):
        relay_target("vsock://2:5000")


def test_choose_accel_tcg_needs_no_probe(tmp_path: Path) -> None:
    assert choose_accel("tcg", tmp_path / "none")[0] == "tcg"
    with pytest.raises(QemuError, match="expected one of"):
        choose_accel("xen", tmp_path / "none")


def test_auto_falls_back_to_tcg_when_kvm_fails(tmp_path: Path) -> None:
    fake = tmp_path / "qemu"
    fake.write_text("#!/bin/sh\necho 'failed to set MSR 0x10a' >&2\nexit 1\n")
    fake.chmod(0o755)
    accel, reason = choose_accel("auto", tmp_path / "vmlinuz", qemu=str(fake))
    assert accel == "tcg"
    assert "software emulation" in reason
    with pytest.raises(QemuError, match="--accel kvm"):
        choose_accel("kvm", tmp_path / "vmlinuz", qemu=str(fake))


def _echo_server(sock: socket.socket) -> None:
    conn, _ = sock.accept()
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data.upper())


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_relay_joins_stdio_to_the_socket(tmp_path: Path, kind: str) -> None:
    if kind == "tcp":
        server = socket.create_server(("127.0.0.1", 0))
        target = f"127.0.0.1:{server.getsockname()[1]}"
    else:
        path = tmp_path / "s.sock"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.listen()
        target = f"unix:{path}"
    threading.Thread(target=_echo_server, args=(server,), daemon=True).start()
    payload = os.urandom(300_000).hex().encode()
    result = subprocess.run(
        [sys.executable, "-m", "hats.vm.relay", target],
        input=payload,
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert result.stdout == payload.upper()
    server.close()


def test_relay_reports_an_unreachable_target() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-m", "hats.vm.relay", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "cannot connect" in result.stderr
