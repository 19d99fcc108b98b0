"""AMD SEV-SNP: the attestation report, AMD's certificates and the VCEK chain.

``report`` parses the report (pure), ``certs`` loads the ARK/ASK roots (built in
or from a directory) and reads the VCEK, ``verify`` checks ARK → ASK → VCEK →
report.
"""

from hats.attestation.amd.certs import (
    AmdCertificateError,
    AmdRoots,
    builtin_amd_roots,
    load_amd_roots,
    load_vcek,
    vcek_chip_id,
    vcek_product,
    vcek_tcb,
)
from hats.attestation.amd.report import (
    PRODUCTS,
    ReportFormatError,
    SnpReport,
    TcbVersion,
    parse_report,
)
from hats.attestation.amd.verify import (
    AmdProductMismatchError,
    AmdRootsMissingError,
    CertificateAlgorithmError,
    CertificateSignatureError,
    CertificateValidityError,
    ChipIdMismatchError,
    ReportSignatureError,
    TcbMismatchError,
    VerifiedReport,
    verify_report,
    verify_roots,
)

__all__ = [
    "PRODUCTS",
    "AmdCertificateError",
    "AmdProductMismatchError",
    "AmdRoots",
    "AmdRootsMissingError",
    "CertificateAlgorithmError",
    "CertificateSignatureError",
    "CertificateValidityError",
    "ChipIdMismatchError",
    "ReportFormatError",
    "ReportSignatureError",
    "SnpReport",
    "TcbMismatchError",
    "TcbVersion",
    "VerifiedReport",
    "builtin_amd_roots",
    "load_amd_roots",
    "load_vcek",
    "parse_report",
    "vcek_chip_id",
    "vcek_product",
    "vcek_tcb",
    "verify_report",
    "verify_roots",
]
