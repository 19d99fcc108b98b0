"""The VCEK the launcher hands out with ``FetchOrchestratorMetadata`` (upstream-facts F5).

The reference launcher, for ``cvm_type == CVMTYPE_SEVSNP``, reads or downloads
from AMD's key distribution service (KDS) the VCEK of the host's chip at its
reported TCB and returns it as ``tee_certificate``; for other CVM types the
field is empty. We never download: the VCEK comes from ``--tee-certificate
FILE`` or from a cache directory filled offline.

**Cache layout** — the KDS URL path, with the query string as the file name::

    DIR/vcek/v1/<Product>/<hwid hex>/blSPL=B&teeSPL=T&snpSPL=S&ucodeSPL=U

(Turin: ``fmcSPL=F&blSPL=…``, and the hwid is the first 8 bytes of the chip
id), i.e. what ``https://kdsintf.amd.com/vcek/v1/<Product>/<hwid>?<query>``
returns (DER), so ``curl -o`` can fill it on a machine with network access, or
``hats launcher vcek-cache add`` from a certificate file (the path is read from
the certificate itself). The launcher picks the entry for ``--chip-id`` and
``--tcb`` (what the host's SEV firmware reports), or the only VCEK in the
cache when they are not given.

Every problem is a :class:`VcekError` with one line naming the file or what is
missing. The certificate bytes are handed out unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hats.attestation.amd.certs import load_vcek, vcek_chip_id, vcek_product, vcek_tcb
from hats.attestation.amd.report import TcbVersion, normalize_product
from hats.attestation.errors import AttestationError
from hats.errors import HatsError
from hats.fsio import write_bytes_atomic

MAX_VCEK_BYTES = 16 * 1024
"""A VCEK is about 1.4 KB (DER); anything much larger is not one."""


class VcekError(HatsError):
    """No usable VCEK: a file that is not one, a cache without the entry, a missing flag."""


@dataclass(frozen=True)
class VcekKey:
    """What identifies a VCEK: the product, the chip (hwid) and the TCB it was derived for."""

    product: str
    hwid: bytes
    tcb: TcbVersion

    def query(self) -> str:
        """The KDS query string (the cache file's name)."""
        parts = [] if self.tcb.fmc is None else [f"fmcSPL={self.tcb.fmc}"]
        parts += [
            f"blSPL={self.tcb.boot_loader}",
            f"teeSPL={self.tcb.tee}",
            f"snpSPL={self.tcb.snp}",
            f"ucodeSPL={self.tcb.microcode}",
        ]
        return "&".join(parts)

    def relative_path(self) -> Path:
        """``vcek/v1/<Product>/<hwid>/<query>`` inside a cache directory."""
        return Path("vcek", "v1", self.product, self.hwid.hex(), self.query())


def vcek_key(data: bytes, source: str) -> VcekKey:
    """The product, hwid and TCB of the VCEK in ``data`` (DER or PEM)."""
    try:
        cert = load_vcek(data)
        product = vcek_product(cert)
        return VcekKey(product, vcek_chip_id(cert), vcek_tcb(cert))
    except AttestationError as exc:
        raise VcekError(f"{source}: not a VCEK certificate: {exc}") from None


def read_vcek_file(path: Path) -> bytes:
    """The bytes of a VCEK file, checked to be one (DER or PEM); returned unchanged."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_VCEK_BYTES + 1)
    except OSError as exc:
        raise VcekError(f"{path}: cannot read the VCEK: {exc.strerror}") from None
    if len(data) > MAX_VCEK_BYTES:
        raise VcekError(f"{path}: larger than {MAX_VCEK_BYTES} bytes: not a VCEK certificate")
    vcek_key(data, str(path))
    return data


def parse_tcb(text: str, product: str) -> TcbVersion:
    """``bl/tee/snp/ucode`` (Milan, Genoa) or ``fmc/bl/tee/snp/ucode`` (Turin), decimal."""
    parts = text.split("/")
    try:
        numbers = [int(part, 10) for part in parts]
    except ValueError:
        numbers = []
    if not all(0 <= n <= 255 for n in numbers):
        numbers = []
    if product == "Turin" and len(numbers) == 5:
        fmc, bl, tee, snp, ucode = numbers
        return TcbVersion(boot_loader=bl, tee=tee, snp=snp, microcode=ucode, fmc=fmc)
    if product != "Turin" and len(numbers) == 4:
        bl, tee, snp, ucode = numbers
        return TcbVersion(boot_loader=bl, tee=tee, snp=snp, microcode=ucode)
    shape = "fmc/bl/tee/snp/ucode" if product == "Turin" else "bl/tee/snp/ucode"
    raise VcekError(f"--tcb {text!r}: expected {shape} (decimal numbers 0-255) for {product}")


def _hwid(chip_id_hex: str, product: str) -> bytes:
    try:
        chip_id = bytes.fromhex(chip_id_hex)
    except ValueError:
        chip_id = b""
    size = 8 if product == "Turin" else 64
    if len(chip_id) not in (size, 64):
        raise VcekError(f"--chip-id: expected {size} bytes of hex for {product}")
    return chip_id[:size]


def _entries(cache: Path) -> list[Path]:
    base = cache / "vcek" / "v1"
    if not base.is_dir():
        return []
    return sorted(path for path in base.glob("*/*/*") if path.is_file())


def find_in_cache(
    cache: Path, *, product: str | None, chip_id: str | None, tcb: str | None
) -> bytes:
    """The VCEK for the host from ``cache`` (module docstring); one-line errors."""
    if (chip_id is None) != (tcb is None):
        missing = "--tcb" if tcb is None else "--chip-id"
        raise VcekError(f"--vcek-cache: {missing} is missing (give both --chip-id and --tcb)")
    if chip_id is None:
        entries = _entries(cache)
        if len(entries) != 1:
            found = f"{len(entries)} VCEKs" if entries else "no VCEK"
            raise VcekError(
                f"--vcek-cache {cache}: {found} in the cache; give --chip-id and --tcb"
                " (the host's chip id and reported TCB) to choose"
            )
        return read_vcek_file(entries[0])
    names = [normalize_product(product)] if product is not None else ["Milan", "Genoa", "Turin"]
    for name in names:
        try:
            key = VcekKey(name, _hwid(chip_id, name), parse_tcb(tcb or "", name))
        except VcekError:
            if len(names) == 1:
                raise
            continue
        path = cache / key.relative_path()
        if path.is_file():
            return read_vcek_file(path)
    raise VcekError(
        f"--vcek-cache {cache}: no VCEK for this chip at TCB {tcb}"
        " (fill the cache from AMD's KDS or with 'hats launcher vcek-cache add')"
    )


def add_to_cache(cache: Path, vcek_file: Path) -> Path:
    """Store ``vcek_file`` in ``cache`` where :func:`find_in_cache` looks; the path written."""
    data = read_vcek_file(vcek_file)
    key = vcek_key(data, str(vcek_file))
    target = cache / key.relative_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(target, data)
    return target
