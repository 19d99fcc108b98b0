"""The AMD SEV-SNP attestation report (``ATTESTATION_REPORT``), parsed — pure.

Rules (AMD SEV-SNP firmware ABI specification, report versions 2, 3 and 5):

- A report is exactly 1184 (0x4A0) bytes, little-endian. The signature covers
  bytes 0x000–0x29F (``signed_bytes``); bytes 0x2A0–0x49F hold it: R at 0x2A0 and
  S at 0x2E8, each a 72-byte little-endian integer, then 368 reserved bytes.
- Accepted versions: 2, 3 and 5. Versions 3 and later carry the CPUID family,
  model and stepping (0x188–0x18A); version 5 adds the launch and current
  mitigation vectors (0x1F8, 0x200).
- Reserved bytes must be zero: 0x04C–0x04F, the flags word's bits 5–31 (0x048),
  0x188–0x19F (v2) or 0x18B–0x19F (v3+), 0x1EB, 0x1EF, 0x1F8–0x29F (v2, v3) or
  0x208–0x29F (v5), and the signature block after S (0x330–0x49F).
- Flags (0x048): bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 2–4 SIGNING_KEY
  (0 = VCEK, 1 = VLEK, 7 = none).
- A TCB_VERSION is 8 bytes. Milan and Genoa (CPU family 19h): boot loader, TEE,
  4 reserved bytes, SNP, microcode. Turin (family 1Ah): FMC, boot loader, TEE,
  SNP, 3 reserved bytes, microcode. Reserved bytes must be zero.
- The product (hence the TCB layout) comes from the report's CPUID fields when
  present (family 19h model 00h–0Fh Milan, 10h–1Fh and A0h–AFh Genoa; family 1Ah
  Turin), otherwise from the caller; a version 2 report without a product uses
  the Milan/Genoa layout (Turin firmware writes version 3 or later).

Every problem raises :class:`ReportFormatError`, never another exception.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from hats.attestation.errors import EvidenceFormatError

REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
SUPPORTED_VERSIONS = (2, 3, 5)
PRODUCTS = ("Milan", "Genoa", "Turin")

#: GUEST_POLICY bit 19: the hypervisor may debug the guest.
POLICY_DEBUG_BIT = 19
#: SIGNATURE_ALGO value for ECDSA P-384 with SHA-384.
SIGNATURE_ALGO_ECDSA_P384_SHA384 = 1
#: SIGNING_KEY values (flags bits 2–4).
SIGNING_KEY_VCEK = 0
SIGNING_KEY_VLEK = 1
SIGNING_KEY_NONE = 7

_FAMILY_MILAN_GENOA = 0x19
_FAMILY_TURIN = 0x1A


class ReportFormatError(EvidenceFormatError):
    """The SEV-SNP report bytes are malformed (size, version, reserved field, TCB)."""


def normalize_product(product: str) -> str:
    """``"genoa"``/``"Genoa"``/``"GENOA"`` → ``"Genoa"``; unknown names raise."""
    for known in PRODUCTS:
        if product.lower() == known.lower():
            return known
    raise ReportFormatError(
        f"unknown AMD product {product!r} (expected one of {', '.join(PRODUCTS)})"
    )


@dataclass(frozen=True)
class TcbVersion:
    """A TCB_VERSION: security versions of the firmware components.

    ``fmc`` is set for Turin only (``None`` for Milan and Genoa).
    """

    boot_loader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    @classmethod
    def parse(cls, raw: bytes, product: str | None = None) -> TcbVersion:
        """Parse the 8-byte TCB_VERSION in ``product``'s layout (Milan/Genoa if None)."""
        if len(raw) != 8:
            raise ReportFormatError(f"TCB_VERSION is {len(raw)} bytes, expected 8")
        name = normalize_product(product) if product is not None else None
        if name == "Turin":
            if any(raw[4:7]):
                raise ReportFormatError(
                    f"TCB_VERSION {raw.hex()} has non-zero reserved bytes 4-6 (Turin layout)"
                )
            return cls(boot_loader=raw[1], tee=raw[2], snp=raw[3], microcode=raw[7], fmc=raw[0])
        if any(raw[2:6]):
            raise ReportFormatError(
                f"TCB_VERSION {raw.hex()} has non-zero reserved bytes 2-5 (Milan/Genoa layout)"
            )
        return cls(boot_loader=raw[0], tee=raw[1], snp=raw[6], microcode=raw[7])

    def __str__(self) -> str:
        """``boot_loader/tee/snp/microcode``, with ``fmc N`` first for Turin."""
        text = f"{self.boot_loader}/{self.tee}/{self.snp}/{self.microcode}"
        return text if self.fmc is None else f"fmc {self.fmc} {text}"


def product_from_cpuid(family: int, model: int) -> str | None:
    """The product a CPUID family/model belongs to, or ``None`` if unknown."""
    if family == _FAMILY_MILAN_GENOA:
        if model <= 0x0F:
            return "Milan"
        if 0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF:
            return "Genoa"
        return None
    if family == _FAMILY_TURIN:
        return "Turin"
    return None


@dataclass(frozen=True)
class SnpReport:
    """The fields of an SEV-SNP attestation report that a verifier needs.

    ``product`` is the product whose TCB layout was used (from CPUID or the
    caller), ``None`` for a version 2 report parsed without one. The CPUID
    fields are ``None`` before version 3.
    """

    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: TcbVersion
    platform_info: int
    flags: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: TcbVersion
    cpuid_fam_id: int | None
    cpuid_mod_id: int | None
    cpuid_step: int | None
    chip_id: bytes
    committed_tcb: TcbVersion
    launch_tcb: TcbVersion
    signature_r: int
    signature_s: int
    product: str | None
    raw: bytes

    @property
    def signed_bytes(self) -> bytes:
        """Bytes 0x000–0x29F, the part the signature covers."""
        return self.raw[:SIGNED_SIZE]

    @property
    def debug_allowed(self) -> bool:
        """GUEST_POLICY bit 19 (DEBUG): the hypervisor may debug the guest."""
        return bool(self.policy >> POLICY_DEBUG_BIT & 1)

    @property
    def author_key_en(self) -> bool:
        """Flags bit 0: ``author_key_digest`` is present."""
        return bool(self.flags & 1)

    @property
    def mask_chip_key(self) -> bool:
        """Flags bit 1 (MASK_CHIP_KEY): the firmware did not sign (signature is zero)."""
        return bool(self.flags >> 1 & 1)

    @property
    def signing_key(self) -> int:
        """Flags bits 2–4: 0 = VCEK, 1 = VLEK, 7 = none."""
        return self.flags >> 2 & 0b111

    @property
    def chip_id_masked(self) -> bool:
        """CHIP_ID is all zero: the platform runs with MASK_CHIP_ID set."""
        return not any(self.chip_id)


def _reserved_zero(data: bytes, start: int, end: int) -> None:
    if any(data[start:end]):
        first = next(i for i in range(start, end) if data[i])
        raise ReportFormatError(
            f"SEV-SNP report reserved bytes 0x{start:03X}-0x{end - 1:03X} are not zero "
            f"(first at 0x{first:03X})"
        )


def parse_report(data: bytes, product: str | None = None) -> SnpReport:
    """Parse an SEV-SNP attestation report (the rules are in the module docstring).

    ``product`` ("Milan", "Genoa" or "Turin", any case) selects the TCB layout
    when the report has no CPUID fields; when it has them they must agree.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ReportFormatError(f"SEV-SNP report must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) != REPORT_SIZE:
        raise ReportFormatError(
            f"SEV-SNP report is {len(data)} bytes, expected {REPORT_SIZE} (0x{REPORT_SIZE:X})"
        )
    (version,) = struct.unpack_from("<I", data, 0x000)
    if version not in SUPPORTED_VERSIONS:
        raise ReportFormatError(
            f"SEV-SNP report version {version} is not supported "
            f"(expected {', '.join(map(str, SUPPORTED_VERSIONS))})"
        )
    given = normalize_product(product) if product is not None else None

    (flags,) = struct.unpack_from("<I", data, 0x048)
    if flags >> 5:
        raise ReportFormatError(f"SEV-SNP report flags 0x{flags:08X} set reserved bits 5-31")
    _reserved_zero(data, 0x04C, 0x050)

    cpuid_fam: int | None = None
    cpuid_mod: int | None = None
    cpuid_step: int | None = None
    name = given
    if version >= 3:
        cpuid_fam, cpuid_mod, cpuid_step = data[0x188], data[0x189], data[0x18A]
        _reserved_zero(data, 0x18B, 0x1A0)
        from_cpuid = product_from_cpuid(cpuid_fam, cpuid_mod)
        if from_cpuid is None and cpuid_fam not in (_FAMILY_MILAN_GENOA, _FAMILY_TURIN):
            raise ReportFormatError(
                f"SEV-SNP report CPUID family 0x{cpuid_fam:02X} model 0x{cpuid_mod:02X} "
                "is not an SEV-SNP product"
            )
        if given is not None and from_cpuid is not None and given != from_cpuid:
            raise ReportFormatError(
                f"SEV-SNP report CPUID (family 0x{cpuid_fam:02X} model 0x{cpuid_mod:02X}) "
                f"is {from_cpuid}, not {given}"
            )
        if from_cpuid is not None:
            name = from_cpuid
        elif given is None and cpuid_fam == _FAMILY_TURIN:
            name = "Turin"
    else:
        _reserved_zero(data, 0x188, 0x1A0)
    _reserved_zero(data, 0x1EB, 0x1EC)
    _reserved_zero(data, 0x1EF, 0x1F0)
    _reserved_zero(data, 0x208 if version >= 5 else 0x1F8, SIGNED_SIZE)
    _reserved_zero(data, 0x2A0 + 144, REPORT_SIZE)

    def tcb(offset: int, label: str) -> TcbVersion:
        try:
            return TcbVersion.parse(data[offset : offset + 8], name)
        except ReportFormatError as exc:
            raise ReportFormatError(f"{label} (0x{offset:03X}): {exc}") from None

    return SnpReport(
        version=version,
        guest_svn=struct.unpack_from("<I", data, 0x004)[0],
        policy=struct.unpack_from("<Q", data, 0x008)[0],
        family_id=data[0x010:0x020],
        image_id=data[0x020:0x030],
        vmpl=struct.unpack_from("<I", data, 0x030)[0],
        signature_algo=struct.unpack_from("<I", data, 0x034)[0],
        current_tcb=tcb(0x038, "CURRENT_TCB"),
        platform_info=struct.unpack_from("<Q", data, 0x040)[0],
        flags=flags,
        report_data=data[0x050:0x090],
        measurement=data[0x090:0x0C0],
        host_data=data[0x0C0:0x0E0],
        id_key_digest=data[0x0E0:0x110],
        author_key_digest=data[0x110:0x140],
        report_id=data[0x140:0x160],
        report_id_ma=data[0x160:0x180],
        reported_tcb=tcb(0x180, "REPORTED_TCB"),
        cpuid_fam_id=cpuid_fam,
        cpuid_mod_id=cpuid_mod,
        cpuid_step=cpuid_step,
        chip_id=data[0x1A0:0x1E0],
        committed_tcb=tcb(0x1E0, "COMMITTED_TCB"),
        launch_tcb=tcb(0x1F0, "LAUNCH_TCB"),
        signature_r=int.from_bytes(data[0x2A0:0x2E8], "little"),
        signature_s=int.from_bytes(data[0x2E8:0x330], "little"),
        product=name,
        raw=data,
    )


# --- the insecure (fake) report of TEE_PLATFORM_NONE (upstream-facts F1, F2) ----------------

REPORT_DATA_OFFSET = 0x050
REPORT_DATA_SIZE = 64
_POLICY_FLAG_BITS = 0x1F
"""The guest-policy flags (bits 16–31) Oak's report crate knows: SMT, RESERVED, MIGRATE_MA,
DEBUG, SINGLE_SOCKET (bits 16–20)."""
_SIGNING_KEYS = (SIGNING_KEY_VCEK, SIGNING_KEY_VLEK, SIGNING_KEY_NONE)
_SIGNATURE_ALGOS = (0, SIGNATURE_ALGO_ECDSA_P384_SHA384)


def mock_report(report_data: bytes) -> bytes:
    """The report stage0 makes without SEV-SNP (F1): 1184 zero bytes but ``report_data``.

    ``report_data`` is at most 64 bytes, zero-padded (stage0 puts SHA-256 of the
    ECA COSE_Key in the first 32).
    """
    if len(report_data) > REPORT_DATA_SIZE:
        raise ValueError(f"report_data: at most {REPORT_DATA_SIZE} bytes")
    data = bytearray(REPORT_SIZE)
    data[REPORT_DATA_OFFSET : REPORT_DATA_OFFSET + len(report_data)] = report_data
    return bytes(data)


def validate_fake_report(data: bytes) -> bytes:
    """Check an insecure root's report as the real verifier does (F2); return its ``report_data``.

    Rules: exactly 1184 bytes; the guest policy valid (bits 32–63 zero, flags in
    bits 16–31 only SMT, RESERVED, MIGRATE_MA, DEBUG, SINGLE_SOCKET); the u32 at
    0x04C zero (Oak's ``_reserved_4``); SIGNING_KEY (flags bits 2–4) 0, 1 or 7;
    SIGNATURE_ALGO 0 or 1; the signature block's reserved bytes (0x330–0x49F)
    zero. Nothing else is read: the version, TCBs and the signature itself are
    whatever stage0 wrote (zeros). Each failure is a :class:`ReportFormatError`
    with the upstream reason.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ReportFormatError(f"report must be bytes, not {type(data).__name__}")
    raw = bytes(data)
    if len(raw) != REPORT_SIZE:
        raise ReportFormatError(f"{len(raw)} bytes, expected {REPORT_SIZE} (0x{REPORT_SIZE:X})")
    (policy,) = struct.unpack_from("<Q", raw, 0x008)
    if policy >> 32:
        raise ReportFormatError("guest policy: nonzero value in _reserved")
    if (policy >> 16) & 0xFFFF & ~_POLICY_FLAG_BITS:
        raise ReportFormatError("guest policy: invalid flags")
    (signature_algo,) = struct.unpack_from("<I", raw, 0x034)
    (key,) = struct.unpack_from("<I", raw, 0x048)
    (reserved_4,) = struct.unpack_from("<I", raw, 0x04C)
    if reserved_4:
        raise ReportFormatError("nonzero value in _reserved_4")
    if (key >> 2) & 0b111 not in _SIGNING_KEYS:
        raise ReportFormatError("invalid signing key setting")
    if signature_algo not in _SIGNATURE_ALGOS:
        raise ReportFormatError("invalid signature algorithm")
    if any(raw[0x2A0 + 144 :]):
        raise ReportFormatError("signature: nonzero value in _reserved")
    return raw[REPORT_DATA_OFFSET : REPORT_DATA_OFFSET + REPORT_DATA_SIZE]
