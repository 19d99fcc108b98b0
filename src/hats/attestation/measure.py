"""Reference values computed from build artifacts (spec upstream-facts F11, F12).

What Oak's stage0 measures, and what the AMD SP measures of stage0 itself,
can be computed from the files a policy author builds, before any boot:

* **Kernel image** (:func:`kernel_digests`): SHA-256 of the bzImage after its
  setup sectors, the first ``512 * (setup_sects + 1)`` bytes, ``setup_sects``
  being the byte at 0x1F1 (0 means 4).
* **Kernel setup data**: SHA-256 of those setup sectors *after QEMU's header
  edits* (:func:`qemu_patched_setup`): 0x210 ``type_of_loader`` = 0xB0; 0x211
  ``loadflags`` |= 0x80 (CAN_USE_HEAP); u16 LE at 0x224 ``heap_end_ptr`` =
  0xFE00 (0x20000 − 0x10000 − 0x200); u32 LE at 0x228 ``cmd_line_ptr`` =
  0x20000; u32 at 0x218 ``ramdisk_image`` and at 0x21C ``ramdisk_size`` = 0
  (they depend on where the initrd lands, so they are zeroed before measuring).
  The file must be a bzImage of boot protocol 2.02 or later (``HdrS`` at
  0x202, version at 0x206): QEMU edits older headers differently. A command
  line with ``vga=`` also makes QEMU set ``vid_mode`` (0x1FA): not modelled.
* **Initial RAM disk** (:func:`file_sha256`): SHA-256 of the file.
* **Kernel command line**: the anchored regex of
  :func:`hats.attestation.policy.cmdline_regex_for` (``^…$``, only the
  launcher's vsock port free, as ``[0-9]+``; never open-ended, F10).
* **Stage0's SEV-SNP launch measurement** (:func:`snp_launch_measurement`):
  the AMD SNP launch digest (SHA-384 chain of ``PAGE_INFO`` structures) of
  the firmware's pages and SEV metadata sections plus one VMSA per vCPU,
  computed by the ``sev-snp-measure`` library (imported only here). It
  depends on the vCPU count, the VMM type (initial register state), the
  guest features (``SEV_FEATURES`` in the VMSA, 0x1 = SNP active) and, for
  QEMU, the CPU signature (family/model/stepping in ``RDX`` of each VMSA),
  which must be the host CPU's exactly: read it from a report of that host
  (:func:`cpu_from_report`; report version 3 or later carries it at
  0x188–0x18A) rather than from a product name.

Every failure is a :class:`MeasureError` naming the file.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hats import hashing
from hats.attestation.amd import report as amd_report
from hats.errors import HatsError

if TYPE_CHECKING:
    from hats.pb.oak.attestation.v1 import evidence_pb2

SECTOR = 512
SETUP_SECTS_OFFSET = 0x1F1
DEFAULT_SETUP_SECTS = 4
"""``setup_sects`` 0 means 4 (the boot protocol's rule for old kernels)."""

HEADER_MAGIC = b"HdrS"
HEADER_MAGIC_OFFSET = 0x202
PROTOCOL_OFFSET = 0x206
MIN_PROTOCOL = 0x202
TYPE_OF_LOADER_OFFSET = 0x210
LOADFLAGS_OFFSET = 0x211
RAMDISK_IMAGE_OFFSET = 0x218
RAMDISK_SIZE_OFFSET = 0x21C
HEAP_END_PTR_OFFSET = 0x224
CMD_LINE_PTR_OFFSET = 0x228

QEMU_TYPE_OF_LOADER = 0xB0
CAN_USE_HEAP = 0x80
QEMU_CMDLINE_ADDR = 0x20000
QEMU_REAL_ADDR = 0x10000
QEMU_HEAP_END_PTR = QEMU_CMDLINE_ADDR - QEMU_REAL_ADDR - 0x200
"""0xFE00: where QEMU puts the end of the real-mode heap (relative to the setup code)."""

VMM_TYPES = ("qemu", "gce", "ec2")
DEFAULT_GUEST_FEATURES = 0x1
MEASUREMENT_BYTES = 48


class MeasureError(HatsError):
    """An artifact cannot be measured (not the expected format, unreadable, bad option)."""


# --- files ------------------------------------------------------------------------------------


def read_file(path: str | Path, what: str) -> bytes:
    """The bytes of ``path``; :class:`MeasureError` naming it and ``what`` it should be."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise MeasureError(
            f"{path}: cannot read {what}: {exc.strerror or type(exc).__name__}"
        ) from None


def file_sha256(path: str | Path, what: str = "file") -> str:
    """SHA-256 (hex) of the file at ``path``, read in chunks."""
    try:
        return hashing.file_sha256(path)
    except OSError as exc:
        raise MeasureError(f"{path}: cannot read {what}: {hashing.read_failure(exc)}") from None


# --- the kernel -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelDigests:
    """Stage0's two kernel measurements of a bzImage (hex), and the split they use."""

    kernel_image_sha256: str
    kernel_setup_data_sha256: str
    setup_sects: int
    setup_size: int
    protocol: int


def setup_size(data: bytes, source: str = "kernel") -> tuple[int, int]:
    """``(setup_sects, setup bytes)`` of a bzImage by the F12 rule (0 means 4)."""
    if len(data) <= SETUP_SECTS_OFFSET:
        raise MeasureError(f"{source}: {len(data)} bytes: too short for a bzImage header")
    sects = data[SETUP_SECTS_OFFSET] or DEFAULT_SETUP_SECTS
    return sects, SECTOR * (sects + 1)


def qemu_patched_setup(setup: bytes) -> bytes:
    """The setup sectors as QEMU leaves them for the firmware (module rules), initrd fields 0."""
    patched = bytearray(setup)
    patched[TYPE_OF_LOADER_OFFSET] = QEMU_TYPE_OF_LOADER
    patched[LOADFLAGS_OFFSET] |= CAN_USE_HEAP
    struct.pack_into("<H", patched, HEAP_END_PTR_OFFSET, QEMU_HEAP_END_PTR)
    struct.pack_into("<I", patched, CMD_LINE_PTR_OFFSET, QEMU_CMDLINE_ADDR)
    struct.pack_into("<I", patched, RAMDISK_IMAGE_OFFSET, 0)
    struct.pack_into("<I", patched, RAMDISK_SIZE_OFFSET, 0)
    return bytes(patched)


def kernel_digests(data: bytes, source: str = "kernel") -> KernelDigests:
    """Stage0's kernel image and setup data digests of the bzImage ``data`` (module rules).

    Raises :class:`MeasureError` naming ``source`` if ``data`` is not a bzImage
    of boot protocol 2.02 or later with a payload after its setup sectors.
    """
    sects, size = setup_size(data, source)
    if data[HEADER_MAGIC_OFFSET : HEADER_MAGIC_OFFSET + 4] != HEADER_MAGIC:
        raise MeasureError(f"{source}: not a bzImage (no 'HdrS' setup header at 0x202)")
    (protocol,) = struct.unpack_from("<H", data, PROTOCOL_OFFSET)
    if protocol < MIN_PROTOCOL:
        raise MeasureError(
            f"{source}: boot protocol {protocol >> 8}.{protocol & 0xFF:02d} is older than 2.02"
            " (QEMU loads it another way; not supported)"
        )
    if len(data) <= size:
        raise MeasureError(
            f"{source}: {len(data)} bytes, no kernel after the {size} bytes of setup"
            f" (setup_sects {sects})"
        )
    return KernelDigests(
        kernel_image_sha256=hashlib.sha256(data[size:]).hexdigest(),
        kernel_setup_data_sha256=hashlib.sha256(qemu_patched_setup(data[:size])).hexdigest(),
        setup_sects=sects,
        setup_size=size,
        protocol=protocol,
    )


# --- the CPU signature --------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSignature:
    """A CPUID family/model/stepping (the values, e.g. family 0x19, not the split fields)."""

    family: int
    model: int
    stepping: int

    def __post_init__(self) -> None:
        if not 0 <= self.family <= 0xF + 0xFF:
            raise MeasureError(f"CPU family 0x{self.family:X} is out of range (0-0x10E)")
        if not 0 <= self.model <= 0xFF:
            raise MeasureError(f"CPU model 0x{self.model:X} is out of range (0-0xFF)")
        if not 0 <= self.stepping <= 0xF:
            raise MeasureError(f"CPU stepping 0x{self.stepping:X} is out of range (0-0xF)")

    @property
    def eax(self) -> int:
        """CPUID Fn0000_0001 EAX as AMD encodes it (base/extended family and model, stepping)."""
        if self.family > 0xF:
            base_family, extended_family = 0xF, self.family - 0xF
        else:
            base_family, extended_family = self.family, 0
        return (
            (extended_family << 20)
            | ((self.model >> 4) << 16)
            | (base_family << 8)
            | ((self.model & 0xF) << 4)
            | self.stepping
        )

    def __str__(self) -> str:
        return f"{self.family:x}:{self.model:x}:{self.stepping:x}"

    def describe(self) -> str:
        """``family 19h model 11h stepping 1 (CPUID 0x00A10F11)``."""
        return (
            f"family {self.family:02X}h model {self.model:02X}h stepping {self.stepping:X}"
            f" (CPUID 0x{self.eax:08X})"
        )


CPU_PRESETS: dict[str, CpuSignature] = {
    "milan": CpuSignature(0x19, 0x01, 1),
    "genoa": CpuSignature(0x19, 0x11, 1),
    "turin": CpuSignature(0x1A, 0x02, 1),
}
"""Production EPYC parts as their SNP reports carry them (not QEMU's CPU models).

Genoa 19h/11h/1 is what the real Genoa report in the tests carries (the
``EPYC-Genoa`` model of QEMU and sev-snp-measure says stepping 0, which does
not reproduce it). Milan 19h/01h/1 (CPUID 0x00A00F11) and Turin 1Ah/02h/1
(0x00B00F21, EPYC 9005) are the published signatures of production parts.
Other models exist (Genoa-X/Bergamo/Siena 19h/A0h–AFh, Turin Dense): a
report from the host itself (:func:`cpu_from_report`) is the reliable source.
"""

_HEX_NUMBER = re.compile(r"(?:0x)?([0-9a-f]+)h?")


def parse_cpu(value: str) -> CpuSignature:
    """A preset name (:data:`CPU_PRESETS`) or ``FAMILY:MODEL:STEPPING`` in hex (``19:11:1``).

    The numbers are hex as AMD writes them (family 19h), with or without
    ``0x`` or a trailing ``h``.
    """
    text = value.strip().lower()
    if text in CPU_PRESETS:
        return CPU_PRESETS[text]
    parts = text.split(":")
    matches = [_HEX_NUMBER.fullmatch(part) for part in parts]
    if len(parts) != 3 or not all(matches):
        raise MeasureError(
            f"CPU {value!r}: expected {', '.join(CPU_PRESETS)} or FAMILY:MODEL:STEPPING in hex"
            " (e.g. 19:11:1)"
        )
    family, model, stepping = (int(m[1], 16) for m in matches if m is not None)
    return CpuSignature(family, model, stepping)


def cpu_from_report(report: bytes, source: str) -> CpuSignature:
    """The CPU signature an SEV-SNP report carries (version 3 or later, 0x188–0x18A)."""
    try:
        parsed = amd_report.parse_report(report)
    except HatsError as exc:
        raise MeasureError(f"{source}: {exc}") from None
    if parsed.cpuid_fam_id is None or parsed.cpuid_mod_id is None or parsed.cpuid_step is None:
        raise MeasureError(
            f"{source}: the SEV-SNP report is version {parsed.version}, which carries no CPU"
            " signature (version 3 or later does); give --cpu FAMILY:MODEL:STEPPING"
        )
    return CpuSignature(parsed.cpuid_fam_id, parsed.cpuid_mod_id, parsed.cpuid_step)


def cpu_from_evidence(evidence: evidence_pb2.Evidence, source: str) -> CpuSignature:
    """The CPU signature in the SEV-SNP report of ``evidence``'s root layer (not verified)."""
    from hats.pb.oak.attestation.v1 import evidence_pb2

    if evidence.root_layer.platform != evidence_pb2.TeePlatform.AMD_SEV_SNP:
        raise MeasureError(f"{source}: the evidence is not AMD SEV-SNP: it has no SNP report")
    return cpu_from_report(evidence.root_layer.remote_attestation_report, f"{source}: root layer")


# --- stage0's launch measurement ------------------------------------------------------------------


@dataclass(frozen=True)
class Stage0Measurement:
    """The SEV-SNP launch measurement of a firmware image and the inputs it was computed from."""

    sha384: str
    firmware: str
    firmware_sha256: str
    vcpus: int
    cpu: CpuSignature | None
    vmm: str
    guest_features: int

    def inputs(self) -> str:
        """One line: ``4 vCPUs, CPU family 19h …, VMM qemu, guest features 0x1``."""
        cpu = "CPU signature unused" if self.cpu is None else f"CPU {self.cpu.describe()}"
        return (
            f"{self.vcpus} vCPUs, {cpu}, VMM {self.vmm}, guest features 0x{self.guest_features:X}"
        )


def snp_launch_measurement(
    firmware: str | Path,
    *,
    vcpus: int,
    cpu: CpuSignature | None,
    vmm: str = "qemu",
    guest_features: int = DEFAULT_GUEST_FEATURES,
) -> Stage0Measurement:
    """The SNP launch digest of ``firmware`` (stage0) booted without a kernel hash table.

    ``cpu`` is required for the QEMU VMM (its VMSAs carry the signature); GCE
    and EC2 VMSAs do not, and it may be ``None`` there. Raises
    :class:`MeasureError` for an unreadable file, one without the SEV metadata
    (OVMF footer table and SEV metadata section) that a stage0 has, or bad options.
    """
    if vmm not in VMM_TYPES:
        raise MeasureError(f"VMM {vmm!r}: expected one of {', '.join(VMM_TYPES)}")
    if vcpus < 1:
        raise MeasureError(f"--vcpus {vcpus}: at least 1")
    if vmm == "qemu" and cpu is None:
        raise MeasureError("the QEMU VMM needs the CPU signature (--cpu or --cpu-from)")
    if not 0 <= guest_features < 1 << 64:
        raise MeasureError(f"guest features 0x{guest_features:X}: not a 64-bit value")
    digest = file_sha256(firmware, "firmware")
    # The library is imported here only: `hats --help` and the other commands never pay for it.
    from sevsnpmeasure import guest, ovmf, vmm_types

    vmm_type = {
        "qemu": vmm_types.VMMType.QEMU,
        "gce": vmm_types.VMMType.gce,
        "ec2": vmm_types.VMMType.ec2,
    }[vmm]
    try:
        image = ovmf.OVMF(str(firmware))
        if not image.metadata_items():
            raise MeasureError(
                f"{firmware}: no SEV metadata (OVMF footer table with the SEV metadata GUID):"
                " not an SEV-SNP firmware image"
            )
        if vcpus > 1 and not image.sev_es_reset_eip():
            raise MeasureError(f"{firmware}: no SEV-ES reset vector for the other vCPUs")
        launch_digest = guest.snp_calc_launch_digest(
            vcpus,
            0 if cpu is None else cpu.eax,
            str(firmware),
            None,
            None,
            None,
            guest_features,
            "",
            vmm_type,
        )
    except MeasureError:
        raise
    except (ValueError, RuntimeError, AssertionError, IndexError, KeyError, struct.error) as exc:
        raise MeasureError(f"{firmware}: cannot compute the SEV-SNP launch digest: {exc}") from None
    except OSError as exc:
        raise MeasureError(
            f"{firmware}: cannot read firmware: {exc.strerror or type(exc).__name__}"
        ) from None
    if len(launch_digest) != MEASUREMENT_BYTES:
        raise MeasureError(f"{firmware}: the launch digest is {len(launch_digest)} bytes, not 48")
    return Stage0Measurement(
        sha384=bytes(launch_digest).hex(),
        firmware=str(firmware),
        firmware_sha256=digest,
        vcpus=vcpus,
        cpu=cpu if vmm == "qemu" else None,
        vmm=vmm,
        guest_features=guest_features,
    )
