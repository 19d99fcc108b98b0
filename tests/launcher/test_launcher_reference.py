"""Issue 18 item 3: the decisions of ``hats launcher serve --vmm qemu``, as pure functions.

Reference vs insecure mode, SEV-SNP refusals, vsock vs the guest network, TCG vs
KVM, and the reference argv as it runs on this host. Expected argvs are written
by hand from upstream-facts F7 (the reference words) and the module's rules (the
host plumbing), never produced by the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hats.launcher import qemu_argv as qa
from hats.launcher import reference as rm
from hats.launcher.config import parse_launcher_config
from hats.launcher.run import ReferenceArgv, bundle_guest_fields
from hats.pb.pcit.client import launcher_config_pb2
from hats.vm.launch import HostSide, VmOptions, accel_line

PINNED = qa.Draw(cid=555555, tap=42, mac_byte=0x0B)
BIN = "/usr/bin/qemu-system-x86_64"
SLIRP_CONFIG = f"""cvm_config {{
  vmm_binary: "{BIN}" num_cpus: 2 ram_size_kb: 2097152 ramdrive_size_kb: 1572864
  network_config {{ inbound_only {{ host_enclave_app_proxy_port: 8079 }} }}
  virtio_guest_cid: 38291
}}"""
#: F7 for SLIRP_CONFIG, stage0/kernel/initrd at /b, launcher vsock port 41337.
REFERENCE = (
    BIN, "-enable-kvm", "-cpu", "host", "-m", "2097152K", "-smp", "2", "-nodefaults",
    "-nographic", "-no-reboot", "-machine", "microvm,acpi=on,pcie=on",
    "-netdev", "user,id=netdev,hostfwd=tcp:127.0.0.1:8079-10.0.2.15:8080",
    "-device", "virtio-net-pci,disable-legacy=on,iommu_platform=true,netdev=netdev,romfile=",
    "-device", "vhost-vsock-pci,guest-cid=38291,rombar=0",
    "-bios", "/b/stage0_bin", "-kernel", "/b/kernel_bin", "-initrd", "/b/initrd.cpio.xz",
    "-append", " console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size=1572864 brd.max_part=1"
    " ip=10.0.2.15:::255.255.255.0::enp0s1:off quiet -- --launcher-addr=vsock://2:41337",
    "-serial", "stdio",
)  # fmt: skip
QMP = ["-qmp", "unix:/w/qmp.sock,server=on,wait=off"]


def _config(text: str = SLIRP_CONFIG) -> launcher_config_pb2.LauncherConfig:
    return parse_launcher_config(text, "test")


# ----------------------------------------------------------------------------- mode


def test_a_stage0_means_reference_mode_and_it_says_where_from() -> None:
    mode = rm.choose_mode(stage0_source="stage0_bin of b.tar", sevsnp=False)
    assert mode.reference
    assert "reference mode" in mode.line and "stage0_bin of b.tar" in mode.line
    assert "\n" not in mode.line


def test_sevsnp_with_a_stage0_is_reference_mode() -> None:
    mode = rm.choose_mode(stage0_source="--stage0 s", sevsnp=True)
    assert mode.reference and "SEV-SNP" in mode.line


def test_no_stage0_keeps_the_insecure_boot_and_says_so() -> None:
    mode = rm.choose_mode(stage0_source=None, sevsnp=False)
    assert not mode.reference
    assert mode.line.startswith("vm: insecure mode") and "no stage0" in mode.line


def test_sevsnp_without_a_stage0_is_refused() -> None:
    with pytest.raises(rm.ReferenceModeError, match="needs a stage0 firmware"):
        rm.choose_mode(stage0_source=None, sevsnp=True)


# ----------------------------------------------------------------------------- SEV-SNP


def test_sevsnp_on_this_kind_of_host_names_every_missing_piece_in_one_line() -> None:
    with pytest.raises(rm.ReferenceModeError) as caught:
        rm.check_sevsnp(sev=False, kvm=False, accel="auto")
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith("cvm_type CVMTYPE_SEVSNP: this host cannot launch a SEV-SNP guest")
    assert "/dev/sev" in text and "/dev/kvm" in text
    assert "no fallback" in text


@pytest.mark.parametrize(
    ("sev", "kvm", "accel", "missing"),
    [
        (False, True, "auto", ["/dev/sev"]),
        (True, False, "kvm", ["/dev/kvm"]),
        (True, True, "tcg", ["KVM"]),
        (True, True, "auto", []),
        (True, True, "kvm", []),
    ],
)
def test_sevsnp_needs_sev_and_kvm(sev: bool, kvm: bool, accel: str, missing: list[str]) -> None:
    found = rm.sevsnp_missing(sev=sev, kvm=kvm, accel=accel)
    assert [item.split(" ")[0] for item in found] == missing
    if not missing:
        rm.check_sevsnp(sev=sev, kvm=kvm, accel=accel)  # no error


# ----------------------------------------------------------------------------- transport


def test_with_vhost_vsock_the_launcher_listens_on_host_cid_2_and_the_argv_port() -> None:
    transport = rm.choose_transport(vhost_vsock=True, network_mode="inbound_only", vsock_port=41337)
    assert transport.vsock and transport.vsock_port == 41337
    assert "vsock://2:41337" in transport.line


def test_without_vhost_vsock_the_launcher_goes_over_the_guest_network_and_says_so() -> None:
    transport = rm.choose_transport(vhost_vsock=False, network_mode="inbound_only", vsock_port=1)
    assert not transport.vsock
    assert "no /dev/vhost-vsock" in transport.line and "10.0.2.100:8080" in transport.line


def test_a_bridge_without_vhost_vsock_carries_the_launcher_over_the_bridge() -> None:
    transport = rm.choose_transport(vhost_vsock=False, network_mode="virtual_bridge", vsock_port=1)
    assert not transport.vsock and "over the bridge" in transport.line


# ----------------------------------------------------------------------------- the argv


def _reference() -> tuple[str, ...]:
    bundle = qa.BundlePaths("/b/stage0_bin", "/b/kernel_bin", "/b/initrd.cpio.xz")
    command = qa.qemu_argv(_config(), bundle, launcher_vsock_port=41337, randomness=PINNED)
    assert command.argv == REFERENCE  # the premise: F7, word for word
    return command.argv


def test_with_kvm_and_vsock_only_the_console_and_qmp_change() -> None:
    host = rm.HostPlumbing(
        accel="kvm", vsock=True, console_log="/w/c.log", qmp_socket="/w/qmp.sock"
    )
    expected = [*REFERENCE[:-1], "file:/w/c.log", *QMP]
    assert rm.adapt_argv(_reference(), host) == expected


def test_without_kvm_the_same_argv_runs_under_tcg() -> None:
    host = rm.HostPlumbing(accel="tcg", vsock=True)
    argv = rm.adapt_argv(_reference(), host)
    assert argv[:5] == [BIN, "-accel", "tcg", "-cpu", "max"]
    assert argv[5:] == list(REFERENCE[4:])
    assert "-enable-kvm" not in argv


def test_without_vsock_the_guest_reaches_the_launcher_through_a_slirp_forward() -> None:
    relay = "/py -m hats.vm.relay unix:/l,s.sock"
    host = rm.HostPlumbing(accel="tcg", vsock=False, relay_command=relay, console_log="/w/c.log",
                           qmp_socket="/w/qmp.sock")  # fmt: skip
    expected = [
        BIN, "-accel", "tcg", "-cpu", "max", "-m", "2097152K", "-smp", "2", "-nodefaults",
        "-nographic", "-no-reboot", "-machine", "microvm,acpi=on,pcie=on",
        "-netdev", "user,id=netdev,hostfwd=tcp:127.0.0.1:8079-10.0.2.15:8080,"
        "guestfwd=tcp:10.0.2.100:8080-cmd:/py -m hats.vm.relay unix:/l,,s.sock",
        "-device", "virtio-net-pci,disable-legacy=on,iommu_platform=true,netdev=netdev,romfile=",
        "-bios", "/b/stage0_bin", "-kernel", "/b/kernel_bin", "-initrd", "/b/initrd.cpio.xz",
        "-append", " console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size=1572864 brd.max_part=1"
        " ip=10.0.2.15:::255.255.255.0::enp0s1:off quiet -- --launcher-addr=http://10.0.2.100:8080",
        "-serial", "file:/w/c.log", *QMP,
    ]  # fmt: skip
    assert rm.adapt_argv(_reference(), host) == expected


def test_a_telnet_console_is_kept() -> None:
    argv = (*REFERENCE[:-1], "telnet:localhost:4321,server")
    host = rm.HostPlumbing(accel="kvm", vsock=True, console_log="/w/c.log")
    assert rm.adapt_argv(argv, host)[-1] == "telnet:localhost:4321,server"


def test_an_unknown_accelerator_is_refused() -> None:
    with pytest.raises(rm.ReferenceModeError, match="expected kvm or tcg"):
        rm.adapt_argv(REFERENCE, rm.HostPlumbing(accel="auto", vsock=True))


def test_the_tcg_line_says_what_it_replaced() -> None:
    line = accel_line("tcg", "/dev/kvm is not accessible", reference=True)
    assert line == (
        "vm: accelerator tcg (/dev/kvm is not accessible): the reference argv runs with"
        " -accel tcg -cpu max in place of -enable-kvm -cpu host"
    )
    assert accel_line("kvm", "the KVM probe guest booted", reference=True) == (
        "vm: accelerator kvm (the KVM probe guest booted)"
    )
    assert accel_line("tcg", "x", reference=False) == "vm: accelerator tcg (x)"


# ----------------------------------------------------------------------------- config, bundle


def test_the_reference_config_takes_the_launchers_final_values() -> None:
    config = rm.reference_config(
        _config(), qemu="/q", ram_size_kb=4096000, num_cpus=3, ramdrive_size_kb=7,
        network_mode="inbound_and_outbound", host_proxy_port=None,
    )  # fmt: skip
    cvm = config.cvm_config
    assert (cvm.vmm_binary, cvm.ram_size_kb, cvm.num_cpus, cvm.ramdrive_size_kb) == (
        "/q", 4096000, 3, 7,
    )  # fmt: skip
    assert cvm.network_config.WhichOneof("network_mode") == "inbound_and_outbound"
    assert cvm.virtio_guest_cid == 38291  # kept from the config
    empty = rm.reference_config(
        None, qemu="/q", ram_size_kb=1, num_cpus=1, ramdrive_size_kb=1,
        network_mode="inbound_only", host_proxy_port=8079,
    )  # fmt: skip
    assert empty.cvm_config.network_config.inbound_only.host_enclave_app_proxy_port == 8079


def test_the_bundles_qemu_files_are_used_unless_a_flag_gives_them() -> None:
    members = {"stage0_bin": "./stage0_bin", "kernel_bin": "./kernel_bin", "system.tar.xz": "x"}
    assert bundle_guest_fields(members, VmOptions()) == {
        "stage0_bin": "stage0",
        "kernel_bin": "kernel",
    }
    assert bundle_guest_fields(members, VmOptions(kernel=Path("k"))) == {"stage0_bin": "stage0"}
    assert bundle_guest_fields({"system.tar.xz": "x"}, VmOptions()) == {}


def _host(tmp_path: Path, accel: str = "tcg") -> HostSide:
    return HostSide(
        accel=accel, kernel=Path("/b/kernel_bin"), initrd=Path("/b/initrd.cpio.xz"),
        launcher_address="unix:/l.sock", console_log=tmp_path / "c.log",
        qmp_socket=tmp_path / "qmp.sock", work=tmp_path,
    )  # fmt: skip


def test_the_boot_time_argv_of_a_plan(tmp_path: Path) -> None:
    transport = rm.choose_transport(vhost_vsock=False, network_mode="inbound_only", vsock_port=9)
    plan = rm.ReferencePlan(_config(), "/b/stage0_bin", transport, PINNED)
    argv = ReferenceArgv(plan, python="/py")(_host(tmp_path))
    netdev = argv[argv.index("-netdev") + 1]
    assert netdev.endswith(",guestfwd=tcp:10.0.2.100:8080-cmd:/py -m hats.vm.relay unix:/l.sock")
    assert argv[argv.index("-append") + 1].endswith("--launcher-addr=http://10.0.2.100:8080")
    assert not any(word.startswith("vhost-vsock-pci") for word in argv)


def test_a_bridge_plan_with_vsock_writes_the_reference_ifup_script(tmp_path: Path) -> None:
    text = SLIRP_CONFIG.replace(
        "inbound_only { host_enclave_app_proxy_port: 8079 }",
        'virtual_bridge { virtual_bridge_device: "br0" cvm_ip_addr: "192.168.1.7"'
        ' cvm_gateway_addr: "192.168.1.1" }',
    )
    transport = rm.choose_transport(vhost_vsock=True, network_mode="virtual_bridge", vsock_port=9)
    plan = rm.ReferencePlan(_config(text), "/b/stage0_bin", transport, PINNED)
    argv = ReferenceArgv(plan, python=sys.executable)(_host(tmp_path, "kvm"))
    script = tmp_path / "qemu-if"
    assert f"tap,id=tap42,ifname=tap42,script={script}" in argv
    assert script.read_text().splitlines() == [
        "#!/bin/sh",
        "ip link set dev $1 promisc on",
        "ip address replace 0.0.0.0 dev $1",
        "ip link set dev $1 master br0",
        "ip link set dev $1 up",
    ]
    assert script.stat().st_mode & 0o777 == 0o700
    assert argv[argv.index("-append") + 1].endswith("--launcher-addr=vsock://2:9")


def test_a_bridge_plan_without_vsock_dials_the_gateway(tmp_path: Path) -> None:
    from hats.vm.bridge import virtual_bridge

    text = SLIRP_CONFIG.replace(
        "inbound_only { host_enclave_app_proxy_port: 8079 }",
        'virtual_bridge { virtual_bridge_device: "br0" cvm_ip_addr: "192.168.1.7"'
        ' cvm_gateway_addr: "192.168.1.1" }',
    )
    transport = rm.choose_transport(vhost_vsock=False, network_mode="virtual_bridge", vsock_port=9)
    plan = rm.ReferencePlan(_config(text), "/b/stage0_bin", transport, PINNED)
    bridge = virtual_bridge("br0", "192.168.1.7", "192.168.1.1")
    host = HostSide(
        accel="tcg", kernel=Path("/k"), initrd=Path("/i"), launcher_address="192.168.1.1:8080",
        console_log=tmp_path / "c.log", qmp_socket=tmp_path / "q", work=tmp_path,
    )  # fmt: skip
    argv = ReferenceArgv(plan, bridge=bridge)(host)
    assert argv[argv.index("-netdev") + 1] == f"tap,id=tap42,ifname=tap42,script={tmp_path}/qemu-if"
    assert argv[argv.index("-append") + 1] == (
        " console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size=1572864 brd.max_part=1"
        " ip=192.168.1.7::192.168.1.1:255.255.255.0::enp0s1:off quiet --"
        " --launcher-addr=http://192.168.1.1:8080"
    )
    assert not any(word.startswith("vhost-vsock-pci") for word in argv)


def test_with_vsock_the_listen_address_is_host_cid_2() -> None:
    assert rm.vsock_listen(None, 41337) == "vsock://2:41337"
    assert rm.vsock_listen("vsock://2:5000", 41337) == "vsock://2:5000"
    assert rm.vsock_listen("vsock://5000", 41337) == "vsock://2:5000"
    for other in ("127.0.0.1:8080", "unix:/l.sock", "vsock://3:5000"):
        with pytest.raises(rm.ReferenceModeError, match="listens on vsock://2:PORT"):
            rm.vsock_listen(other, 41337)
