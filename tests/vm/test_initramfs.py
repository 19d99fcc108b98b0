"""Initramfs composition: module order, the tree writer, the Python runtime cut out of the base."""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
from pathlib import Path

import pytest
from test_cpio import parse_newc

from hats.vm.bridge import BridgeError
from hats.vm.initramfs import (
    InitramfsError,
    load_order,
    module_depends,
    module_name,
)
from hats.vm.launch import options_from_config
from hats.vm.tree import Device, Tree, TreeError


def test_module_depends_reads_modinfo() -> None:
    data = b"\x7fELF...\0license=GPL\0depends=virtio_ring,virtio,net_failover\0name=virtio_net\0"
    assert module_depends(data) == ["virtio_ring", "virtio", "net_failover"]
    assert module_depends(b"\0depends=\0") == []
    assert module_depends(b"no modinfo") == []
    assert module_name(Path("virtio-rng.ko")) == "virtio_rng"


def test_load_order_puts_dependencies_first() -> None:
    depends = {
        "virtio_net": ["virtio_ring", "virtio", "net_failover"],
        "virtio_pci": ["virtio_ring", "virtio_pci_modern_dev", "virtio"],
        "virtio": ["virtio_ring"],
        "virtio_ring": [],
        "virtio_pci_modern_dev": [],
        "net_failover": ["failover"],
        "failover": [],
    }
    order = load_order(["virtio_net", "virtio_pci"], depends.get)
    for module, needs in depends.items():
        for need in needs:
            assert order.index(need) < order.index(module)
    assert len(order) == len(set(order)) == len(depends)


def test_load_order_errors() -> None:
    with pytest.raises(InitramfsError, match="not in the kernel package"):
        load_order(["missing"], dict[str, list[str]]().get)
    with pytest.raises(InitramfsError, match="depend on each other"):
        load_order(["a"], {"a": ["b"], "b": ["a"]}.get)


def test_tree_parents_conflicts_and_outputs() -> None:
    tree = Tree()
    tree.file("usr/bin/tool", b"x", 0o755)
    tree.symlink("bin", "usr/bin")
    tree.file("usr/bin/tool", b"x", 0o755)  # same again: fine
    with pytest.raises(TreeError, match="different contents"):
        tree.file("usr/bin/tool", b"y", 0o755)
    with pytest.raises(TreeError, match="not a directory"):
        tree.file("usr/bin/tool/sub", b"")
    with pytest.raises(TreeError, match="not a relative path"):
        tree.file("../etc/passwd", b"")
    assert [name for name, _ in tree.items()] == ["bin", "usr", "usr/bin", "usr/bin/tool"]
    out = io.BytesIO()
    tree.write_cpio(out, devices=[Device("usr/console", stat.S_IFCHR | 0o600, 5, 1)])
    names = [entry["name"] for entry in parse_newc(out.getvalue())]
    assert names == ["bin", "usr", "usr/console", "usr/bin", "usr/bin/tool"]
    tar_out = io.BytesIO()
    tree.write_tar(tar_out, prefix="rootfs")
    tar_out.seek(0)
    with tarfile.open(fileobj=tar_out) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["rootfs/bin"].issym() and members["rootfs/bin"].linkname == "usr/bin"
    assert members["rootfs/usr/bin/tool"].mode == 0o755
    assert {m.uid for m in members.values()} == {0}


def test_options_from_launcher_config() -> None:
    from google.protobuf import text_format

    from hats.pb.pcit.client import launcher_config_pb2

    config = text_format.Parse(
        """cvm_config {
             num_cpus: 4 ram_size_kb: 8000000 ramdrive_size_kb: 10485760
             network_config { inbound_and_outbound { host_enclave_app_proxy_port: 8079 } }
           }""",
        launcher_config_pb2.LauncherConfig(),
    )
    options = options_from_config(config, num_cpus=2, accel="tcg", kernel=None)
    assert options.num_cpus == 2  # the command line wins
    assert options.ram_size_kb == 8000000 and options.ramdrive_size_kb == 10485760
    assert options.network_mode == "inbound_and_outbound" and options.host_proxy_port == 8079
    assert options.accel == "tcg"
    assert options_from_config(None).num_cpus == 2
    # SEV-SNP is the launcher's reference mode (hats.launcher.reference), not refused here.
    config.cvm_config.cvm_type = launcher_config_pb2.CVMTYPE_SEVSNP
    assert options_from_config(config).network_mode == "inbound_and_outbound"
    config.cvm_config.network_config.virtual_bridge.virtual_bridge_device = "br0"
    # A bridge without the CVM's address: the reference's refusal (upstream-facts F7).
    with pytest.raises(BridgeError, match=r"^An IP address must be provided for a VM"):
        options_from_config(config)


@pytest.mark.slow
def test_python_runtime_from_the_base(default_base_tar: Path, tmp_path: Path) -> None:
    """The runtime cut out of the real base runs, in a chroot, with only its own files."""
    import subprocess

    from hats.vm.pyruntime import python_runtime

    runtime = python_runtime(default_base_tar)
    assert runtime.version.startswith("3.")
    names = {name for name, _ in runtime.tree.items()}
    assert runtime.interpreter.lstrip("/") in names
    assert not any(name.startswith(f"usr/lib/python{runtime.version}/test/") for name in names)
    buffer = io.BytesIO()
    runtime.tree.write_tar(buffer)
    buffer.seek(0)
    root = tmp_path / "root"
    with tarfile.open(fileobj=buffer) as tar:
        tar.extractall(root, filter="fully_trusted")
    code = "import hashlib, json, lzma, ssl, zlib; print(lzma.compress(b'x')[:6].hex())"
    result = subprocess.run(
        ["chroot", str(root), runtime.interpreter, "-I", "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "fd377a585a00"


@pytest.mark.slow
def test_initramfs_build_is_deterministic_and_complete(
    default_base_tar: Path, tmp_path: Path
) -> None:
    from hats.packaging.agents_layer import build_agents_tree
    from hats.vm.assets import ensure_guest_assets
    from hats.vm.initramfs import GUEST_MODULES, KernelTree, build_tree, write_initramfs

    assets = ensure_guest_assets(base=default_base_tar)
    kernel = KernelTree(assets.kernel.parents[1])
    busybox = next(assets.kernel.parents[2].glob("busybox-static_*/bin/busybox"))
    agents = build_agents_tree(tmp_path / "agents")
    outputs = []
    for index in range(2):
        tree = build_tree(
            base=default_base_tar, kernel=kernel, busybox=busybox, agents_site=agents.site_dir
        )
        out = tmp_path / f"initrd{index}.cpio.gz"
        write_initramfs(tree, out)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    entries = {e["name"]: e for e in parse_newc(gzip.decompress(outputs[0]))}
    assert entries["init"]["mode"] & 0o111
    assert entries["dev/console"]["rdev"] == (5, 1)
    order = bytes(entries["etc/hats/modules.load"]["data"]).decode().split()
    assert set(GUEST_MODULES) <= set(order)
    assert order.index("virtio") < order.index("virtio_net")
    assert "usr/lib/hats/python/hats/stage1/guest.py" in entries
    assert "usr/lib/hats/python/grpc/__init__.py" in entries
