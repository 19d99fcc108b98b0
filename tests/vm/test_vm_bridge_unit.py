"""Virtual-bridge networking of the insecure guest, the pure parts (hats.vm.bridge).

Expected values are written by hand from upstream-facts F7: the ifup script's
four steps, the ``-netdev tap`` and device words, the ``ip=`` form and the
reference's refusal texts.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hats.pb.pcit.client import launcher_config_pb2
from hats.stage1.network import choose_device, parse_ip_option
from hats.vm.bridge import (
    BridgeError,
    TapDraw,
    check_host,
    draw_tap,
    guest_launcher_addr,
    ifup_script,
    ifup_steps,
    ip_option,
    tap_nic,
    virtual_bridge,
    write_ifup_script,
)
from hats.vm.launch import VmOptions, check_listen, options_from_config
from hats.vm.qemu import QemuError, VmConfig, kernel_cmdline, qemu_argv

HATS = [sys.executable, "-m", "hats"]
BRIDGE = virtual_bridge("br0", "192.168.100.20", "192.168.100.1")


def test_ifup_steps_are_the_reference_script_with_the_tap() -> None:
    assert ifup_steps("hbr7", "tap42") == [
        ["ip", "link", "set", "dev", "tap42", "promisc", "on"],
        ["ip", "address", "replace", "0.0.0.0", "dev", "tap42"],
        ["ip", "link", "set", "dev", "tap42", "master", "hbr7"],
        ["ip", "link", "set", "dev", "tap42", "up"],
    ]


def test_ifup_script_is_the_reference_text() -> None:
    expected = (
        "#!/bin/sh\n"
        "ip link set dev $1 promisc on\n"
        "ip address replace 0.0.0.0 dev $1\n"
        "ip link set dev $1 master br0\n"
        "ip link set dev $1 up\n"
    )
    assert ifup_script("br0") == expected


@pytest.mark.parametrize("name", ["", "a" * 16, "br 0", "br/0", "br:0", "..", "br\n0"])
def test_ifup_script_refuses_a_bridge_that_is_no_interface_name(name: str) -> None:
    with pytest.raises(BridgeError) as info:
        ifup_script(name)
    assert "\n" not in str(info.value)


def test_ip_option_is_the_reference_form() -> None:
    assert ip_option(BRIDGE) == "192.168.100.20::192.168.100.1:255.255.255.0::enp0s1:off"


@pytest.mark.parametrize(
    ("device", "ip", "gateway", "message"),
    [
        ("", "10.0.0.2", "10.0.0.1", "virtual_bridge must be provided for a VM with routable IP."),
        ("br0", "", "10.0.0.1", "An IP address must be provided for a VM with routable IP."),
        ("br0", "10.0.0.2", "", "A gateway address must be provided for a VM with routable IP."),
    ],
)
def test_missing_fields_are_refused_with_the_reference_texts(
    device: str, ip: str, gateway: str, message: str
) -> None:
    with pytest.raises(BridgeError) as info:
        virtual_bridge(device, ip, gateway)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("device", "ip", "gateway", "words"),
    [
        ("br0", "10.0.0.300", "10.0.0.1", "cvm_ip_addr '10.0.0.300': not an IPv4 address"),
        ("br0", "10.0.0.2", "gw", "cvm_gateway_addr 'gw': not an IPv4 address"),
        ("br0", "10.0.1.2", "10.0.0.1", "not in the gateway's network 10.0.0.0/24"),
        ("br0", "10.0.0.1", "10.0.0.1", "are both 10.0.0.1"),
        ("my bridge", "10.0.0.2", "10.0.0.1", "not an interface name"),
    ],
)
def test_unusable_fields_are_refused_in_one_line(
    device: str, ip: str, gateway: str, words: str
) -> None:
    with pytest.raises(BridgeError) as info:
        virtual_bridge(device, ip, gateway)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("192.168.100.1:8080", "http://192.168.100.1:8080"),
        ("http://192.168.100.1:9000", "http://192.168.100.1:9000"),
        ("0.0.0.0:7000", "http://192.168.100.1:7000"),
        ("[::]:7001", "http://192.168.100.1:7001"),
    ],
)
def test_the_guest_dials_the_launcher_on_the_gateway(listen: str, expected: str) -> None:
    assert guest_launcher_addr(listen, BRIDGE) == expected


@pytest.mark.parametrize(
    "listen", ["unix:/tmp/l.sock", "127.0.0.1:8080", "192.168.100.20:8080", "vsock://2:5000"]
)
def test_a_launcher_the_guest_cannot_reach_is_refused(listen: str) -> None:
    with pytest.raises(BridgeError) as info:
        guest_launcher_addr(listen, BRIDGE)
    message = str(info.value)
    assert "--listen 192.168.100.1:PORT" in message and "\n" not in message


def test_draw_tap_takes_the_injected_randomness() -> None:
    asked: list[int] = []

    def randbelow(n: int) -> int:
        asked.append(n)
        return n - 1

    assert draw_tap(randbelow) == TapDraw(tap=9999, mac_byte=255)
    assert asked == [10000, 256]


def _nic(tmp: Path) -> VmConfig:
    nic = tap_nic(BRIDGE, TapDraw(tap=42, mac_byte=10), tmp / "qemu-ifup", "192.168.100.1:8080")
    return VmConfig(
        kernel=tmp / "vmlinuz",
        initrd=tmp / "initrd",
        launcher_target="192.168.100.1:8080",
        console_log=tmp / "console.log",
        qmp_socket=tmp / "qmp.sock",
        network_mode="virtual_bridge",
        nic=nic,
    )


def test_qemu_argv_puts_the_nic_on_the_tap(tmp_path: Path) -> None:
    argv = qemu_argv(_nic(tmp_path))
    start = argv.index("-netdev")
    assert argv[start : start + 4] == [
        "-netdev",
        f"tap,id=tap42,ifname=tap42,script={tmp_path}/qemu-ifup",
        "-device",
        "virtio-net-pci,disable-legacy=on,iommu_platform=true,netdev=netdev,romfile=,"
        "netdev=tap42,mac=d6:ef:77:16:a5:0a",
    ]
    assert argv.count("-netdev") == 1
    assert not any("user,id=netdev" in word or "hats.vm.relay" in word for word in argv)
    assert argv[argv.index("-append") + 1] == (
        " console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size=1572864 brd.max_part=1"
        " ip=192.168.100.20::192.168.100.1:255.255.255.0::enp0s1:off"
        " quiet -- --launcher-addr=http://192.168.100.1:8080"
    )


def test_a_script_path_with_a_comma_is_escaped(tmp_path: Path) -> None:
    nic = tap_nic(BRIDGE, TapDraw(tap=1, mac_byte=0), Path("/w,x/qemu-ifup"), "0.0.0.0:1")
    assert nic.qemu_args()[1] == "tap,id=tap1,ifname=tap1,script=/w,,x/qemu-ifup"


def test_kernel_cmdline_for_the_bridge_needs_its_ip_value() -> None:
    with pytest.raises(QemuError):
        kernel_cmdline(
            launcher_addr="http://x:1", ramdrive_size_kb=1, network_mode="virtual_bridge"
        )


def test_the_guest_configures_eth0_from_the_bridge_ip_option() -> None:
    config = parse_ip_option(ip_option(BRIDGE))
    assert (config.cidr, config.gateway, config.device) == (
        "192.168.100.20/24",
        "192.168.100.1",
        "enp0s1",
    )
    # In the initramfs the kernel's name is eth0 (udev renames it to enp0s1 later).
    assert choose_device(config.device, ["eth0", "lo"]) == "eth0"
    assert choose_device(config.device, ["enp0s1", "eth1", "lo"]) == "enp0s1"


def _config(network: str) -> launcher_config_pb2.LauncherConfig:
    from google.protobuf import text_format

    text = f"cvm_config {{ network_config {{ virtual_bridge {{ {network} }} }} }}"
    return text_format.Parse(text, launcher_config_pb2.LauncherConfig())


def test_options_from_config_takes_the_bridge() -> None:
    config = _config(
        'virtual_bridge_device: "br0" cvm_ip_addr: "192.168.100.20"'
        ' cvm_gateway_addr: "192.168.100.1"'
    )
    options = options_from_config(config)
    assert options.network_mode == "virtual_bridge"
    assert options.bridge == BRIDGE


def test_options_from_config_refuses_a_bridge_without_ip() -> None:
    config = _config('virtual_bridge_device: "br0" cvm_gateway_addr: "192.168.100.1"')
    with pytest.raises(BridgeError) as info:
        options_from_config(config)
    assert str(info.value) == "An IP address must be provided for a VM with routable IP."


def test_check_listen_refuses_the_private_socket_in_bridge_mode() -> None:
    options = VmOptions(network_mode="virtual_bridge", bridge=BRIDGE)
    with pytest.raises(BridgeError):
        check_listen(options, None)
    check_listen(options, "192.168.100.1:8080")
    check_listen(VmOptions(), None)  # SLIRP: the private unix socket is fine


def _sys_net(tmp: Path, *, bridge: bool) -> Path:
    (tmp / "net" / "br0").mkdir(parents=True)
    if bridge:
        (tmp / "net" / "br0" / "bridge").mkdir()
    (tmp / "tun").touch()
    return tmp / "net"


def test_check_host_passes_with_bridge_tun_and_root(tmp_path: Path) -> None:
    check_host(BRIDGE, sys_net=_sys_net(tmp_path, bridge=True), tun=tmp_path / "tun", euid=0)


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("no-bridge", "virtual_bridge_device br9: no such interface here"),
        ("not-bridge", "virtual_bridge_device br0: not a bridge"),
        ("no-tun", "does not exist (load the tun module"),
        ("not-root", "needs root (CAP_NET_ADMIN)"),
    ],
)
def test_check_host_says_what_is_missing(tmp_path: Path, case: str, words: str) -> None:
    sys_net = _sys_net(tmp_path, bridge=case != "not-bridge")
    bridge = virtual_bridge("br9", "10.0.0.2", "10.0.0.1") if case == "no-bridge" else BRIDGE
    tun = tmp_path / ("missing" if case == "no-tun" else "tun")
    with pytest.raises(BridgeError) as info:
        check_host(bridge, sys_net=sys_net, tun=tun, euid=1000 if case == "not-root" else 0)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_write_ifup_script_is_private_and_executable(tmp_path: Path) -> None:
    path = write_ifup_script(tmp_path, "br0")
    assert path.read_text() == ifup_script("br0")
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_launcher_serve_refuses_the_bridge_without_a_tcp_listen_address(tmp_path: Path) -> None:
    config = tmp_path / "launcher_config.txtpb"
    config.write_text(
        'cvm_config { network_config { virtual_bridge { virtual_bridge_device: "br0"'
        ' cvm_ip_addr: "192.168.100.20" cvm_gateway_addr: "192.168.100.1" } } }\n'
    )
    image = tmp_path / "image.tar.xz"
    image.write_bytes(b"\xfd7zXZ\x00 not really")
    args = [*HATS, "launcher", "serve", "--vmm", "qemu", "--launcher_config_path", str(config)]
    result = subprocess.run(
        [*args, "--system-image", str(image), "--accel", "tcg"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "virtual_bridge" in line]
    assert len(errors) == 1 and "--listen 192.168.100.1:PORT" in errors[0]
    assert "listening on" not in result.stdout  # refused before the launcher serves
