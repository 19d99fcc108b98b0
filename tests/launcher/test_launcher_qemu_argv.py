"""Issue 18 items 1 and 2: the reference QEMU argv (upstream-facts F7) and ``qemu-command``.

Every expected string below is written by hand from F7 (and system-image
§3.5/§5.3), never produced by the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hats.cli import main
from hats.launcher import qemu_argv as qa
from hats.launcher.config import parse_launcher_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "launcher"
BUNDLE = qa.BundlePaths(stage0="/b/stage0_bin", kernel="/b/kernel_bin", initrd="/b/initrd.cpio.xz")
PINNED = qa.Draw(cid=555555, tap=42, mac_byte=0x0B)
BIN = "/usr/bin/qemu-system-x86_64"

HEAD = f"{BIN} -enable-kvm -cpu host -m 8000000K -smp 4 -nodefaults -nographic -no-reboot"
MICROVM = "-machine microvm,acpi=on,pcie=on"
SEV_OBJECTS = (
    "-object memory-backend-memfd,id=ram1,size=8000000K,share=true,reserve=false"
    " -object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,id-auth=1"
)
SEV_Q35 = "-machine q35,acpi=on,memory-backend=ram1,confidential-guest-support=sev0 " + SEV_OBJECTS
SEV_MICROVM = (
    "-machine microvm,acpi=on,pcie=on,memory-backend=ram1,confidential-guest-support=sev0 "
    + SEV_OBJECTS
)
SLIRP = (
    "-netdev user,id=netdev,hostfwd=tcp:127.0.0.1:8079-10.0.2.15:8080"
    " -device virtio-net-pci,disable-legacy=on,iommu_platform=true,netdev=netdev,romfile="
)
BRIDGE = (
    "-netdev tap,id=tap42,ifname=tap42,script=/tmp/qemu-if-XXXXXX -device"
    " virtio-net-pci,disable-legacy=on,iommu_platform=true,netdev=netdev,romfile=,netdev=tap42,"
    "mac=d6:ef:77:16:a5:0b"
)
FILES = "-bios /b/stage0_bin -kernel /b/kernel_bin -initrd /b/initrd.cpio.xz"
IP = {
    "inbound_only": "ip=10.0.2.15:::255.255.255.0::enp0s1:off",
    "inbound_and_outbound": "ip=10.0.2.15::10.0.2.2:255.255.255.0::enp0s1:off",
    "virtual_bridge": "ip=192.168.1.7::192.168.1.1:255.255.255.0::enp0s1:off",
}
NETWORK_TEXT = {
    "inbound_only": "inbound_only { host_enclave_app_proxy_port: 8079 }",
    "inbound_and_outbound": "inbound_and_outbound { host_enclave_app_proxy_port: 8079 }",
    "virtual_bridge": 'virtual_bridge { virtual_bridge_device: "br0" cvm_ip_addr: "192.168.1.7"'
    ' cvm_gateway_addr: "192.168.1.1" }',
}


def config_text(mode: str, sev: bool, telnet: bool, cid: bool) -> str:
    return (
        "cvm_config {"
        + (" cvm_type: CVMTYPE_SEVSNP" if sev else "")
        + f' num_cpus: 4 ramdrive_size_kb: 10485760 ram_size_kb: 8000000 vmm_binary: "{BIN}"'
        + (" debug_telnet_port: 4444" if telnet else "")
        + f" network_config {{ {NETWORK_TEXT[mode]} }}"
        + (" virtio_guest_cid: 38291" if cid else "")
        + " }"
    )


def expected_command(mode: str, sev: bool, microvm: bool, telnet: bool, cid: bool) -> str:
    """GetCommand's form, by hand: binary, then argv (binary again), joined by spaces."""
    machine = (SEV_MICROVM if microvm else SEV_Q35) if sev else MICROVM
    network = BRIDGE if mode == "virtual_bridge" else SLIRP
    guest_cid = 38291 if cid else 555555
    cmdline = (
        ("debug " if telnet else "")
        + " console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size=10485760 brd.max_part=1 "
        + IP[mode]
        + " quiet -- --launcher-addr=vsock://2:7777"
    )
    serial = "telnet:localhost:4444,server" if telnet else "stdio"
    return (
        f"{BIN} {HEAD} {machine} {network} -device vhost-vsock-pci,guest-cid={guest_cid},rombar=0"
        f" {FILES} -append {cmdline} -serial {serial}"
    )


@pytest.mark.parametrize("cid", [True, False], ids=["cid_given", "cid_random"])
@pytest.mark.parametrize("telnet", [False, True], ids=["stdio", "telnet"])
@pytest.mark.parametrize(
    ("sev", "microvm"),
    [(False, False), (False, True), (True, False), (True, True)],
    ids=["default", "default_microvm_flag", "sevsnp_q35", "sevsnp_microvm"],
)
@pytest.mark.parametrize("mode", ["inbound_only", "inbound_and_outbound", "virtual_bridge"])
def test_f7_argv_every_mode_type_telnet_cid_microvm(
    mode: str, sev: bool, microvm: bool, telnet: bool, cid: bool
) -> None:
    config = parse_launcher_config(config_text(mode, sev, telnet, cid), "test")
    command = qa.qemu_argv(
        config, BUNDLE, launcher_vsock_port=7777, randomness=PINNED, use_microvm=microvm
    )
    assert command.command == expected_command(mode, sev, microvm, telnet, cid)
    assert command.argv[0] == BIN and command.argv[1] == "-enable-kvm"
    cmdline = command.argv[command.argv.index("-append") + 1]
    # The -append string is one word; it starts with a space, or with "debug  console".
    assert cmdline.startswith("debug  console=" if telnet else " console=")
    assert cmdline.endswith(" quiet -- --launcher-addr=vsock://2:7777")
    if mode == "virtual_bridge":
        assert command.script == (
            "#!/bin/sh\nip link set dev $1 promisc on\nip address replace 0.0.0.0 dev $1\n"
            "ip link set dev $1 master br0\nip link set dev $1 up\n"
        )
    else:
        assert command.script is None


def test_f7_argv_words_are_split_as_the_reference_spawns_them() -> None:
    config = parse_launcher_config(config_text("inbound_only", False, False, True), "test")
    command = qa.qemu_argv(config, BUNDLE, launcher_vsock_port=7777, randomness=PINNED)
    assert command.argv == (
        BIN, "-enable-kvm", "-cpu", "host", "-m", "8000000K", "-smp", "4", "-nodefaults",
        "-nographic", "-no-reboot", "-machine", "microvm,acpi=on,pcie=on",
        "-netdev", "user,id=netdev,hostfwd=tcp:127.0.0.1:8079-10.0.2.15:8080",
        "-device", "virtio-net-pci,disable-legacy=on,iommu_platform=true,netdev=netdev,romfile=",
        "-device", "vhost-vsock-pci,guest-cid=38291,rombar=0",
        "-bios", "/b/stage0_bin", "-kernel", "/b/kernel_bin", "-initrd", "/b/initrd.cpio.xz",
        "-append", " console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size=10485760 brd.max_part=1"
        " ip=10.0.2.15:::255.255.255.0::enp0s1:off quiet -- --launcher-addr=vsock://2:7777",
        "-serial", "stdio",
    )  # fmt: skip
    # The logged form names the binary twice and has two spaces after -append.
    assert command.command.startswith(f"{BIN} {BIN} -enable-kvm ")
    assert " -append  console=ttyS0 " in command.command


def test_f7_workload_service_port_adds_the_guestfwd() -> None:
    config = parse_launcher_config(config_text("inbound_and_outbound", False, False, True), "t")
    command = qa.qemu_argv(
        config, BUNDLE, launcher_vsock_port=1, randomness=PINNED, workload_service_port=9999
    )
    assert (
        "user,id=netdev,hostfwd=tcp:127.0.0.1:8079-10.0.2.15:8080,"
        "guestfwd=tcp:10.0.2.100:8080-cmd:nc 127.0.0.1 9999"
    ) in command.argv


@pytest.mark.parametrize(
    ("bridge", "message"),
    [
        ('cvm_ip_addr: "1.2.3.4" cvm_gateway_addr: "1.2.3.1"',
         "virtual_bridge must be provided for a VM with routable IP."),
        ('virtual_bridge_device: "br0" cvm_gateway_addr: "1.2.3.1"',
         "An IP address must be provided for a VM with routable IP."),
        ('virtual_bridge_device: "br0" cvm_ip_addr: "1.2.3.4"',
         "A gateway address must be provided for a VM with routable IP."),
    ],
    ids=["no_bridge", "no_ip", "no_gateway"],
)  # fmt: skip
def test_f7_virtual_bridge_refusals_use_the_reference_texts(bridge: str, message: str) -> None:
    text = f'cvm_config {{ vmm_binary: "q" network_config {{ virtual_bridge {{ {bridge} }} }} }}'
    with pytest.raises(qa.QemuArgvError) as caught:
        qa.qemu_argv(
            parse_launcher_config(text, "t"), BUNDLE, launcher_vsock_port=1, randomness=PINNED
        )
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('cvm_config { vmm_binary: "q" }', "network_config is not set"),
        ("cvm_config { network_config { inbound_only {} } }", "vmm_binary is empty"),
        ('cvm_config { cvm_type: 7 vmm_binary: "q" network_config { inbound_only {} } }',
         "cvm_type 7"),
    ],
    ids=["no_network", "no_binary", "unknown_type"],
)  # fmt: skip
def test_refusals_without_a_reference_text_are_one_line(text: str, needle: str) -> None:
    with pytest.raises(qa.QemuArgvError) as caught:
        qa.qemu_argv(
            parse_launcher_config(text, "t"), BUNDLE, launcher_vsock_port=1, randomness=PINNED
        )
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_draw_ranges_follow_f7() -> None:
    assert qa.draw(lambda n: 0) == qa.Draw(cid=1024, tap=0, mac_byte=0)
    assert qa.draw(lambda n: n - 1) == qa.Draw(cid=999999, tap=9999, mac_byte=255)


# --- item 2: hats launcher qemu-command ----------------------------------------------------

BUNDLE_FILES = (
    "-bios BUNDLE_DIR/stage0_bin -kernel BUNDLE_DIR/kernel_bin -initrd BUNDLE_DIR/initrd.cpio.xz"
)
EXAMPLE_COMMANDS = {
    "inbound_only.txtpb": (
        "/usr/bin/qemu-system-x86_64 /usr/bin/qemu-system-x86_64 -enable-kvm -cpu host"
        " -m 8000000K -smp 4 -nodefaults -nographic -no-reboot -machine microvm,acpi=on,pcie=on"
        " -netdev user,id=netdev,hostfwd=tcp:127.0.0.1:8079-10.0.2.15:8080 -device"
        " virtio-net-pci,disable-legacy=on,iommu_platform=true,netdev=netdev,romfile= -device"
        f" vhost-vsock-pci,guest-cid=38291,rombar=0 {BUNDLE_FILES} -append  console=ttyS0"
        " panic=-1 brd.rd_nr=1 brd.rd_size=10485760 brd.max_part=1"
        " ip=10.0.2.15:::255.255.255.0::enp0s1:off quiet -- --launcher-addr=vsock://2:41337"
        " -serial stdio"
    ),
    "inbound_and_outbound.txtpb": (
        "/usr/bin/qemu-system-x86_64 /usr/bin/qemu-system-x86_64 -enable-kvm -cpu host"
        " -m 4194304K -smp 2 -nodefaults -nographic -no-reboot -machine microvm,acpi=on,pcie=on"
        " -netdev user,id=netdev,hostfwd=tcp:127.0.0.1:8080-10.0.2.15:8080 -device"
        " virtio-net-pci,disable-legacy=on,iommu_platform=true,netdev=netdev,romfile= -device"
        f" vhost-vsock-pci,guest-cid=2024,rombar=0 {BUNDLE_FILES} -append debug  console=ttyS0"
        " panic=-1 brd.rd_nr=1 brd.rd_size=2097152 brd.max_part=1"
        " ip=10.0.2.15::10.0.2.2:255.255.255.0::enp0s1:off quiet --"
        " --launcher-addr=vsock://2:41337 -serial telnet:localhost:4321,server"
    ),
    "virtual_bridge.txtpb": (
        "/usr/bin/qemu-system-x86_64 /usr/bin/qemu-system-x86_64 -enable-kvm -cpu host"
        " -m 8000000K -smp 4 -nodefaults -nographic -no-reboot -machine microvm,acpi=on,pcie=on"
        " -netdev tap,id=tap42,ifname=tap42,script=/tmp/qemu-if-XXXXXX -device"
        " virtio-net-pci,disable-legacy=on,iommu_platform=true,netdev=netdev,romfile=,"
        "netdev=tap42,mac=d6:ef:77:16:a5:0b -device vhost-vsock-pci,guest-cid=1234,rombar=0"
        f" {BUNDLE_FILES} -append  console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size=10485760"
        " brd.max_part=1 ip=192.168.100.20::192.168.100.1:255.255.255.0::enp0s1:off quiet --"
        " --launcher-addr=vsock://2:41337 -serial stdio"
    ),
    "sev_snp.txtpb": (
        "/usr/local/bin/qemu-system-x86_64 /usr/local/bin/qemu-system-x86_64 -enable-kvm"
        " -cpu host -m 8000000K -smp 4 -nodefaults -nographic -no-reboot -machine"
        " q35,acpi=on,memory-backend=ram1,confidential-guest-support=sev0 -object"
        " memory-backend-memfd,id=ram1,size=8000000K,share=true,reserve=false -object"
        " sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,id-auth=1"
        " -netdev user,id=netdev,hostfwd=tcp:127.0.0.1:8079-10.0.2.15:8080 -device"
        " virtio-net-pci,disable-legacy=on,iommu_platform=true,netdev=netdev,romfile= -device"
        f" vhost-vsock-pci,guest-cid=38291,rombar=0 {BUNDLE_FILES} -append  console=ttyS0"
        " panic=-1 brd.rd_nr=1 brd.rd_size=10485760 brd.max_part=1"
        " ip=10.0.2.15:::255.255.255.0::enp0s1:off quiet -- --launcher-addr=vsock://2:41337"
        " -serial stdio"
    ),
}


@pytest.fixture
def pinned_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's random tap number and MAC byte (no CLI option pins them)."""
    monkeypatch.setattr(qa, "draw", lambda randbelow: PINNED)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["launcher", "qemu-command", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", sorted(EXAMPLE_COMMANDS))
def test_qemu_command_prints_the_reference_argv_for_each_example(
    name: str, capsys: pytest.CaptureFixture[str], pinned_draw: None
) -> None:
    args = ["--launcher_config_path", str(EXAMPLES / name), "--cid", "2024",
            "--launcher-vsock-port", "41337"]  # fmt: skip
    code, out, err = run(capsys, *args)
    assert code == 0 and err == ""
    words = out.split("\n")
    assert words[-1] == ""  # every word ends with a newline
    expected = EXAMPLE_COMMANDS[name]
    binary = expected.split(" ", 1)[0]
    assert " ".join([binary, *words[:-1]]) == expected
    code, out, err = run(capsys, *args, "--json")
    document = json.loads(out)  # the whole stdout is one document
    assert code == 0 and document["command"] == expected
    assert document["argv"] == words[:-1]
    assert (document["script"] is None) == (name != "virtual_bridge.txtpb")


def test_qemu_command_json_gives_the_bridge_script(
    capsys: pytest.CaptureFixture[str], pinned_draw: None
) -> None:
    path = str(EXAMPLES / "virtual_bridge.txtpb")
    code, out, _ = run(capsys, "--launcher_config_path", path, "--json")
    assert code == 0
    assert "ip link set dev $1 master br0\n" in json.loads(out)["script"]


def test_qemu_command_without_pins_draws_cid_and_port(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(EXAMPLES / "inbound_and_outbound.txtpb")  # no virtio_guest_cid
    code, out, _ = run(capsys, "--launcher_config_path", path, "--json")
    document = json.loads(out)
    assert code == 0
    cid_word = next(w for w in document["argv"] if w.startswith("vhost-vsock-pci,guest-cid="))
    cid = int(cid_word.split("=")[1].split(",")[0])
    assert 1024 <= cid < 1000000
    port = int(document["argv"][document["argv"].index("-append") + 1].rsplit(":", 1)[1])
    assert 1024 <= port < 65536


def test_qemu_command_refusal_is_one_line_with_the_reference_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.txtpb"
    config.write_text(
        'cvm_config { vmm_binary: "q" network_config { virtual_bridge {'
        ' virtual_bridge_device: "br0" cvm_ip_addr: "1.2.3.4" } } }'
    )
    code, out, err = run(capsys, "--launcher_config_path", str(config))
    assert code != 0 and out == ""
    assert "A gateway address must be provided for a VM with routable IP." in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
