"""``hats measure``: reference values from artifacts, checked against real stage0 and hardware.

Expected values come from outside our code: the MEASUREMENT of the real Genoa
report (tests/data/hats-evidence), the digests the real stage0 printed on its
console (tests/data/oak-stage0/stage0-console.log), and the header edits of
upstream-facts F12 written out here field by field.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import shared_data
from hats.attestation import measure
from hats.attestation.amd import report as amd_report
from hats.attestation.cli import load_evidence
from hats.attestation.measure_cli import measure_group
from hats.attestation.policy import cmdline_matches, cmdline_regex_risk

STAGE0_BIN = str(shared_data.STAGE0 / "stage0_bin")
CONSOLE_LOG = shared_data.STAGE0 / "stage0-console.log"
V1 = str(shared_data.EVIDENCE / "evidence_v1_genoa.binarypb")
V1_TEXT = str(shared_data.EVIDENCE / "evidence_v1_genoa.txtpb")
# The Genoa report's MEASUREMENT (the "done when" value; also read from the report below).
GENOA_MEASUREMENT = (
    "c57729018b0a6fb90dc17bb138b0aa35e4401004283ff4a2c24d3739ff3750f5"
    "2384370e77b7032862a08c440a9bc4dc"
)
# The kernel the real stage0 booted (oak-stage0/README.md): Debian's package and version.
DEBIAN_KERNEL_PACKAGE = "linux-image-6.1.0-57-cloud-amd64"
DEBIAN_KERNEL_VERSION = "6.1.192-3"


def invoke(*args: str) -> str:
    result = CliRunner().invoke(measure_group, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def run(*args: str) -> object:
    return measure_group.main(list(args), standalone_mode=False)


def report_bytes(path: str) -> bytes:
    return bytes(load_evidence(path).root_layer.remote_attestation_report)


# --- stage0: the SEV-SNP launch measurement ------------------------------------------------------


def test_f12_stage0_measurement_reproduces_the_genoa_report() -> None:
    measured = amd_report.parse_report(report_bytes(V1)).measurement.hex()
    assert measured == GENOA_MEASUREMENT
    out = invoke("stage0", STAGE0_BIN, "--cpu-from", V1, "--vcpus", "4")
    assert out == GENOA_MEASUREMENT + "\n"


def test_f12_cpu_from_reads_the_report_cpuid_fields() -> None:
    raw = report_bytes(V1)
    # AMD's report v3 layout: CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP at 0x188-0x18A.
    assert struct.unpack_from("<I", raw, 0)[0] >= 3
    assert (raw[0x188], raw[0x189], raw[0x18A]) == (0x19, 0x11, 0x01)
    cpu = measure.cpu_from_evidence(load_evidence(V1), V1)
    assert (cpu.family, cpu.model, cpu.stepping) == (0x19, 0x11, 1)
    # The text form of the same evidence gives the same signature.
    assert measure.cpu_from_evidence(load_evidence(V1_TEXT), V1_TEXT) == cpu


@pytest.mark.parametrize(
    "args",
    [
        ["--cpu-from", V1, "--vcpus", "2"],
        ["--cpu-from", V1, "--vcpus", "8"],
        ["--cpu", "19:11:0", "--vcpus", "4"],  # sev-snp-measure's / QEMU's "EPYC-Genoa"
        ["--cpu", "19:01:1", "--vcpus", "4"],
        ["--cpu", "genoa", "--vcpus", "4", "--vmm", "gce"],
        ["--cpu", "genoa", "--vcpus", "4", "--guest-features", "0x0"],
    ],
)
def test_f12_another_vcpu_count_cpu_or_vmm_gives_another_measurement(args: list[str]) -> None:
    out = invoke("stage0", STAGE0_BIN, *args).strip()
    assert re.fullmatch("[0-9a-f]{96}", out)
    assert out != GENOA_MEASUREMENT


def test_genoa_preset_and_explicit_signature_equal_the_report_signature() -> None:
    for cpu in ("genoa", "19:11:1", "0x19:0x11:0x1", "19h:11h:1", "GENOA"):
        assert invoke("stage0", STAGE0_BIN, "--cpu", cpu, "--vcpus", "4").strip() == (
            GENOA_MEASUREMENT
        )


def test_cpu_presets_are_the_production_cpuid_signatures() -> None:
    # CPUID Fn0000_0001 EAX of production parts: Milan 00A00F11, Genoa 00A10F11 (the real
    # report here), Turin (EPYC 9005) 00B00F21.
    assert {name: f"{cpu.eax:08X}" for name, cpu in measure.CPU_PRESETS.items()} == {
        "milan": "00A00F11",
        "genoa": "00A10F11",
        "turin": "00B00F21",
    }


def test_stage0_json_names_every_input() -> None:
    doc = json.loads(invoke("stage0", STAGE0_BIN, "--cpu-from", V1, "--vcpus", "4", "--json"))
    assert doc["amd_sev_sha384"] == GENOA_MEASUREMENT
    assert doc["hats_version"]
    assert doc["firmware_sha256"] == hashlib.sha256(Path(STAGE0_BIN).read_bytes()).hexdigest()
    assert doc["vcpus"] == 4
    assert doc["vmm"] == "qemu"
    assert doc["guest_features"] == "0x1"
    assert doc["cpu"] == {
        "family": "0x19",
        "model": "0x11",
        "stepping": "0x1",
        "cpuid_eax": "0x00a10f11",
        "from": f"evidence {V1}",
    }


def test_stage0_needs_a_cpu_for_qemu_and_only_one_source() -> None:
    result = CliRunner().invoke(measure_group, ["stage0", STAGE0_BIN, "--vcpus", "4"])
    assert result.exit_code == 2
    assert "--cpu" in result.output
    result = CliRunner().invoke(
        measure_group,
        ["stage0", STAGE0_BIN, "--vcpus", "4", "--cpu", "genoa", "--cpu-from", V1],
    )
    assert result.exit_code == 2
    # EC2 and GCE VMSAs carry no CPU signature.
    assert re.fullmatch(
        "[0-9a-f]{96}\n", invoke("stage0", STAGE0_BIN, "--vcpus", "1", "--vmm", "ec2")
    )


@pytest.mark.parametrize(
    "cpu", ["19:11", "zen4", "19:11:1:0", "19:11:x", "19:100:1", "19:11:10", "200:0:0", ""]
)
def test_bad_cpu_signatures_are_one_line_errors(cpu: str) -> None:
    with pytest.raises(measure.MeasureError, match="CPU"):
        run("stage0", STAGE0_BIN, "--vcpus", "4", "--cpu", cpu)


def test_a_file_without_sev_metadata_is_refused(tmp_path: Path) -> None:
    for data in (b"", b"\0" * 20, b"\xff" * 4096, Path(CONSOLE_LOG).read_bytes()):
        path = tmp_path / "fw.bin"
        path.write_bytes(data)
        with pytest.raises(measure.MeasureError, match=r"fw\.bin: "):
            run("stage0", str(path), "--vcpus", "4", "--cpu", "genoa")
    with pytest.raises(measure.MeasureError, match="cannot read firmware"):
        run("stage0", str(tmp_path / "missing"), "--vcpus", "4", "--cpu", "genoa")


def test_a_version_2_report_carries_no_cpu_signature(tmp_path: Path) -> None:
    raw = bytearray(report_bytes(V1))
    struct.pack_into("<I", raw, 0, 2)
    raw[0x188:0x18B] = b"\0\0\0"  # reserved in version 2
    raw[0x1F8:0x2A0] = bytes(0x2A0 - 0x1F8)  # the version 5 mitigation vectors, reserved too
    with pytest.raises(measure.MeasureError, match="version 2, which carries no CPU signature"):
        measure.cpu_from_report(bytes(raw), "r")


def test_cpu_from_an_evidence_without_an_snp_report(tmp_path: Path) -> None:
    from hats.attestation import simulate

    sim = simulate.simulate_stage1(hashlib.sha256(b"image").digest())
    path = tmp_path / "sim.binarypb"
    path.write_bytes(sim.evidence.SerializeToString())
    with pytest.raises(measure.MeasureError, match="not AMD SEV-SNP"):
        run("stage0", STAGE0_BIN, "--vcpus", "4", "--cpu-from", str(path))


# --- the kernel: F12's rules on a synthetic bzImage -----------------------------------------------


def synthetic_bzimage(setup_sects: int, payload: bytes, *, protocol: int = 0x020F) -> bytearray:
    sects = setup_sects or 4
    image = bytearray(b"\xa5" * (512 * (sects + 1)))
    image[0x1F1] = setup_sects
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", image, 0x206, protocol)
    image[0x210] = 0x00  # type_of_loader, as built
    image[0x211] = 0x01  # loadflags: LOADED_HIGH
    struct.pack_into("<I", image, 0x218, 0x1234_5678)  # ramdisk_image
    struct.pack_into("<I", image, 0x21C, 0x0BAD_F00D)  # ramdisk_size
    struct.pack_into("<H", image, 0x224, 0x1111)  # heap_end_ptr
    struct.pack_into("<I", image, 0x228, 0x2222_2222)  # cmd_line_ptr
    return image + payload


def f12_setup_digest(image: bytes | bytearray, setup_bytes: int) -> str:
    """upstream-facts F12, field by field: QEMU's header edits, initrd fields zeroed."""
    setup = bytearray(image[:setup_bytes])
    setup[0x210] = 0xB0
    setup[0x211] |= 0x80
    setup[0x228:0x22C] = (0x20000).to_bytes(4, "little")
    setup[0x224:0x226] = (0x20000 - 0x10000 - 0x200).to_bytes(2, "little")
    setup[0x218:0x220] = bytes(8)
    return hashlib.sha256(setup).hexdigest()


@pytest.mark.parametrize(("setup_sects", "setup_bytes"), [(2, 1536), (39, 20480), (0, 2560)])
def test_f12_kernel_digests_of_a_synthetic_bzimage(
    tmp_path: Path, setup_sects: int, setup_bytes: int
) -> None:
    payload = bytes(range(256)) * 40
    image = synthetic_bzimage(setup_sects, payload)
    path = tmp_path / "bzImage"
    path.write_bytes(image)
    doc = json.loads(invoke("kernel", str(path), "--json"))
    assert doc["kernel_image_sha256"] == hashlib.sha256(payload).hexdigest()
    assert doc["kernel_setup_data_sha256"] == f12_setup_digest(image, setup_bytes)
    assert doc["setup_bytes"] == setup_bytes
    assert doc["boot_protocol"] == "2.15"
    assert invoke("kernel", str(path)) == (
        f"kernel_image_sha256: {doc['kernel_image_sha256']}\n"
        f"kernel_setup_data_sha256: {doc['kernel_setup_data_sha256']}\n"
    )


def test_f12_setup_digest_ignores_the_fields_qemu_sets_and_covers_the_others() -> None:
    base = synthetic_bzimage(2, b"kernel")
    digest = measure.kernel_digests(bytes(base)).kernel_setup_data_sha256
    for offset in (0x210, 0x218, 0x21B, 0x21C, 0x224, 0x225, 0x228, 0x22B):
        changed = bytearray(base)
        changed[offset] ^= 0x5A
        assert measure.kernel_digests(bytes(changed)).kernel_setup_data_sha256 == digest, offset
    # loadflags: only bit 7 is forced; the other bits are measured.
    changed = bytearray(base)
    changed[0x211] |= 0x80
    assert measure.kernel_digests(bytes(changed)).kernel_setup_data_sha256 == digest
    changed[0x211] ^= 0x20
    assert measure.kernel_digests(bytes(changed)).kernel_setup_data_sha256 != digest
    for offset in (0x000, 0x1F0, 0x212, 0x214, 0x220, 0x226, 0x22C, 0x5FF):
        changed = bytearray(base)
        changed[offset] ^= 0x5A
        assert measure.kernel_digests(bytes(changed)).kernel_setup_data_sha256 != digest, offset


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (b"MZ" + b"\0" * 100, "too short"),
        (bytes(synthetic_bzimage(2, b""))[:1536], "no kernel after the 1536 bytes of setup"),
        (bytes(synthetic_bzimage(2, b"k")).replace(b"HdrS", b"HdrX"), "not a bzImage"),
        (bytes(synthetic_bzimage(2, b"k", protocol=0x0201)), "boot protocol 2.01"),
    ],
)
def test_what_is_not_a_bzimage_is_a_one_line_error(
    tmp_path: Path, image: bytes, message: str
) -> None:
    path = tmp_path / "vmlinuz"
    path.write_bytes(image)
    with pytest.raises(measure.MeasureError, match=f"^{re.escape(str(path))}: .*{message}"):
        run("kernel", str(path))


def _console_digest(name: str) -> str:
    for line in CONSOLE_LOG.read_text().splitlines():
        found = re.fullmatch(rf"stage0 DEBUG: {name} digest: sha2-256:([0-9a-f]{{64}})", line)
        if found:
            return found[1]
    raise AssertionError(f"no {name} digest in the console log")


@pytest.fixture(scope="module")
def debian_kernel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vmlinuz of the Debian package the real stage0 booted, fetched as `hats vm` fetches it."""
    from hats.base.cache import default_cache_dir
    from hats.vm.debian import AptConfig, DebianPackageError, PackageFetcher, extract_deb

    fetcher = PackageFetcher(AptConfig(default_cache_dir() / "vm" / "apt"))
    try:
        deb = fetcher.download(DEBIAN_KERNEL_PACKAGE)
    except DebianPackageError as exc:
        pytest.skip(f"{DEBIAN_KERNEL_PACKAGE} cannot be fetched from the mirror: {exc}")
    if f"_{DEBIAN_KERNEL_VERSION}_" not in deb.name:
        pytest.skip(f"the mirror has {deb.name}, not version {DEBIAN_KERNEL_VERSION}")
    root = tmp_path_factory.mktemp("kernel") / "root"
    extract_deb(deb, root)
    return root / "boot" / "vmlinuz-6.1.0-57-cloud-amd64"


@pytest.mark.network
def test_f12_debian_kernel_digests_equal_what_the_real_stage0_printed(debian_kernel: Path) -> None:
    doc = json.loads(invoke("kernel", str(debian_kernel), "--json"))
    assert doc["kernel_image_sha256"] == _console_digest("Kernel image")
    assert doc["kernel_setup_data_sha256"] == _console_digest("Kernel setup data")
    size = re.search(r"Kernel image size (\d+)", CONSOLE_LOG.read_text())
    assert size is not None
    assert debian_kernel.stat().st_size - doc["setup_bytes"] == int(size[1])


# --- initrd and command line ----------------------------------------------------------------------


def test_initrd_digest_is_the_sha256_of_the_file(tmp_path: Path) -> None:
    # The console log's initrd (a 1 MB busybox initramfs) is not shipped: the rule is tested.
    path = tmp_path / "initrd.cpio.gz"
    path.write_bytes(b"070701" + bytes(range(256)) * 5000)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert invoke("initrd", str(path)) == digest + "\n"
    doc = json.loads(invoke("initrd", str(path), "--json"))
    assert doc["init_ram_fs_sha256"] == digest
    with pytest.raises(measure.MeasureError, match="cannot read initrd"):
        run("initrd", str(tmp_path / "missing"))


def test_cmdline_regex_is_anchored_and_closed() -> None:
    cmdline = load_evidence(V1)
    from hats.attestation import verify

    text = verify.extract_root_and_kernel(cmdline).kernel_cmdline
    regex = invoke("cmdline", text).rstrip("\n")
    assert regex.startswith("^ console=ttyS0 ") and regex.endswith(":[0-9]+$")
    assert cmdline_matches(regex, text)
    assert not cmdline_matches(regex, text + " --init=/bin/sh")
    assert not cmdline_matches(regex, "rdinit=/bin/sh " + text)
    assert cmdline_regex_risk(regex) is None
    doc = json.loads(invoke("cmdline", "console=ttyS0 quiet", "--json"))
    assert doc["kernel_cmd_line_regex"] == "^console=ttyS0 quiet$"


def test_measure_group_help_names_its_commands() -> None:
    out = invoke("--help")
    for name in ("stage0", "kernel", "initrd", "cmdline"):
        assert name in out
    assert isinstance(measure_group, click.Group)


def test_sev_snp_measure_is_imported_only_to_compute_a_launch_digest() -> None:
    code = (
        "import contextlib, io, sys\nfrom hats.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['measure', 'stage0', '--help']); main(['policy', 'make', '--help'])\n"
        "print('sevsnpmeasure' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.splitlines()[-1] == "False"
