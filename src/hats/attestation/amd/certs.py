"""AMD's certificates: the ARK/ASK roots per product and the VCEK.

Rules:

- The roots of the VCEK chain are AMD's ARK (root, self-signed) and ASK
  (intermediate) for each product. This package carries them for Milan, Genoa
  and Turin (``data/ark_<product>.pem``, ``data/ask_<product>.pem``);
  :func:`load_amd_roots` reads the same file names from a directory
  (``--amd-certs-dir``). A product with only one of its two files is an error,
  as is a directory with none.
- The ARK's subject CN is ``ARK-<Product>``; the ASK's subject CN, and so the
  VCEK's issuer CN, is ``SEV-<Product>``. The VCEK's product is read from its
  issuer, never guessed.
- The VCEK carries its TCB in extensions ``1.3.6.1.4.1.3704.1.3.x`` (DER
  INTEGERs: .1 boot loader, .2 TEE, .3 SNP, .8 microcode, .9 FMC on Turin) and
  the chip id in ``1.3.6.1.4.1.3704.1.4`` (raw bytes: 64 on Milan/Genoa, 8 on Turin).
- AMD issues VCEKs with serial number 0, which RFC 5280 forbids; ``cryptography``
  (up to 48 at least) loads them with a deprecation warning, which we silence.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

from hats.attestation.amd.report import PRODUCTS, TcbVersion
from hats.attestation.errors import EvidenceFormatError

OID_PRODUCT_NAME = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.2")
OID_BL_SPL = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.1")
OID_TEE_SPL = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.2")
OID_SNP_SPL = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.3")
OID_UCODE_SPL = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.8")
OID_FMC_SPL = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.9")
OID_HWID = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.4")


class AmdCertificateError(EvidenceFormatError):
    """An AMD certificate (ARK, ASK or VCEK) is missing, does not parse or lacks a field."""


@dataclass(frozen=True)
class AmdRoots:
    """The ARK and ASK of one product (``"Milan"``, ``"Genoa"`` or ``"Turin"``)."""

    product: str
    ark: x509.Certificate
    ask: x509.Certificate


def _load_cert(data: bytes, what: str) -> x509.Certificate:
    """Load a DER or PEM certificate; ``what`` names it in errors."""
    with warnings.catch_warnings():
        # Serial number 0 (every VCEK) and malformed names only warn; the chain's
        # signatures decide whether the certificate is acceptable.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        pem = data.lstrip().startswith(b"-----BEGIN")
        try:
            if pem:
                cert = x509.load_pem_x509_certificate(data)
            else:
                cert = x509.load_der_x509_certificate(data)
        except Exception:  # the parser's own (Rust) error text is no help to a user
            form = "PEM data" if pem else f"{len(data)} bytes"
            raise AmdCertificateError(
                f"{what} is not a valid certificate: expected an X.509 certificate (DER or PEM,"
                f" as AMD KDS serves a VCEK); the {form} do not parse as one"
            ) from None
        try:
            # cryptography parses fields lazily, raising assorted exception types
            # (ValueError, KeyError, TypeError) on first access: touch every field
            # a verifier reads, here, so that a bad certificate fails now.
            _ = (cert.serial_number, cert.issuer, cert.subject, cert.extensions)
            _ = (cert.not_valid_before_utc, cert.not_valid_after_utc, cert.public_key())
            _ = (cert.signature_algorithm_oid, cert.signature, cert.tbs_certificate_bytes)
            _ = [_common_name(cert.issuer), _common_name(cert.subject)]
        except Exception as exc:  # any parse failure is a format error
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise AmdCertificateError(f"{what} is not a valid certificate: {reason}") from None
    return cert


def _common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(attrs) != 1 or not isinstance(attrs[0].value, str):
        return ""
    return attrs[0].value


def _check_roots(product: str, ark: x509.Certificate, ask: x509.Certificate, where: str) -> None:
    if _common_name(ark.subject) != f"ARK-{product}":
        raise AmdCertificateError(
            f"{where}: ARK subject CN is {_common_name(ark.subject)!r}, expected 'ARK-{product}'"
        )
    if _common_name(ask.subject) != f"SEV-{product}":
        raise AmdCertificateError(
            f"{where}: ASK subject CN is {_common_name(ask.subject)!r}, expected 'SEV-{product}'"
        )


def builtin_amd_roots() -> dict[str, AmdRoots]:
    """AMD's ARK and ASK for Milan, Genoa and Turin, as shipped in this package."""
    return dict(_builtin_roots())


@functools.cache
def _builtin_roots() -> dict[str, AmdRoots]:
    data = resources.files("hats.attestation.amd").joinpath("data")
    roots: dict[str, AmdRoots] = {}
    for product in PRODUCTS:
        lower = product.lower()
        ark = _load_cert(data.joinpath(f"ark_{lower}.pem").read_bytes(), f"ark_{lower}.pem")
        ask = _load_cert(data.joinpath(f"ask_{lower}.pem").read_bytes(), f"ask_{lower}.pem")
        _check_roots(product, ark, ask, "built-in AMD roots")
        roots[product] = AmdRoots(product=product, ark=ark, ask=ask)
    return roots


def load_amd_roots(directory: Path) -> dict[str, AmdRoots]:
    """Read ``ark_<product>.pem``/``ask_<product>.pem`` (milan, genoa, turin) from a directory.

    Products with neither file are skipped; one file without the other, an
    unreadable file or a directory holding no pair at all is an error.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise AmdCertificateError(f"{directory}: AMD certificate directory does not exist")
    roots: dict[str, AmdRoots] = {}
    for product in PRODUCTS:
        lower = product.lower()
        ark_path = directory / f"ark_{lower}.pem"
        ask_path = directory / f"ask_{lower}.pem"
        if not ark_path.exists() and not ask_path.exists():
            continue
        for path in (ark_path, ask_path):
            if not path.is_file():
                raise AmdCertificateError(
                    f"{path}: missing (the {product} ARK and ASK go together)"
                )
        try:
            ark_data = ark_path.read_bytes()
            ask_data = ask_path.read_bytes()
        except OSError as exc:
            raise AmdCertificateError(f"{exc.filename}: {exc.strerror}") from None
        ark = _load_cert(ark_data, str(ark_path))
        ask = _load_cert(ask_data, str(ask_path))
        _check_roots(product, ark, ask, str(directory))
        roots[product] = AmdRoots(product=product, ark=ark, ask=ask)
    if not roots:
        raise AmdCertificateError(
            f"{directory}: no AMD roots (expected ark_<product>.pem and ask_<product>.pem "
            "for milan, genoa or turin)"
        )
    return roots


def load_vcek(data: bytes) -> x509.Certificate:
    """Load a VCEK certificate from DER or PEM bytes (serial number 0 accepted)."""
    return _load_cert(bytes(data), "VCEK")


def vcek_product(vcek: x509.Certificate) -> str:
    """The VCEK's product, from its issuer CN ``SEV-<Product>``."""
    issuer = _common_name(vcek.issuer)
    for product in PRODUCTS:
        if issuer == f"SEV-{product}":
            return product
    raise AmdCertificateError(
        f"VCEK issuer CN {issuer!r} names no known product (expected SEV-Milan/Genoa/Turin)"
    )


def _extension(vcek: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        ext = vcek.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:  # duplicate or malformed extensions
        raise AmdCertificateError(f"VCEK extensions do not parse: {exc}") from None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise AmdCertificateError(f"VCEK extension {oid.dotted_string} has an unexpected type")
    return value.value


def _der_small_int(raw: bytes, oid: x509.ObjectIdentifier) -> int:
    """A DER INTEGER 0–255 (``02 01 xx`` or ``02 02 00 xx``)."""
    if len(raw) == 3 and raw[:2] == b"\x02\x01" and raw[2] < 0x80:
        return raw[2]
    if len(raw) == 4 and raw[:2] == b"\x02\x02" and raw[2] == 0 and raw[3] >= 0x80:
        return raw[3]
    raise AmdCertificateError(
        f"VCEK extension {oid.dotted_string} is not a DER INTEGER 0-255: {raw.hex()}"
    )


def vcek_tcb(vcek: x509.Certificate) -> TcbVersion:
    """The TCB the VCEK was issued for (FMC read, and required, for Turin)."""
    values: dict[str, int] = {}
    for name, oid in (
        ("boot_loader", OID_BL_SPL),
        ("tee", OID_TEE_SPL),
        ("snp", OID_SNP_SPL),
        ("microcode", OID_UCODE_SPL),
    ):
        raw = _extension(vcek, oid)
        if raw is None:
            raise AmdCertificateError(f"VCEK has no {name} TCB extension {oid.dotted_string}")
        values[name] = _der_small_int(raw, oid)
    fmc: int | None = None
    if vcek_product(vcek) == "Turin":
        raw = _extension(vcek, OID_FMC_SPL)
        if raw is None:
            raise AmdCertificateError(
                f"Turin VCEK has no FMC TCB extension {OID_FMC_SPL.dotted_string}"
            )
        fmc = _der_small_int(raw, OID_FMC_SPL)
    return TcbVersion(fmc=fmc, **values)


def vcek_chip_id(vcek: x509.Certificate) -> bytes:
    """The chip id (hwID extension): 64 bytes on Milan/Genoa, 8 on Turin."""
    raw = _extension(vcek, OID_HWID)
    if raw is None:
        raise AmdCertificateError(f"VCEK has no hwID extension {OID_HWID.dotted_string}")
    if len(raw) not in (8, 64):
        raise AmdCertificateError(f"VCEK hwID is {len(raw)} bytes, expected 64 (or 8 on Turin)")
    return raw
