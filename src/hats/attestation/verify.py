"""Evidence verification and measurement extraction (spec wire-protocol §2.1, §7.2).

A pure core: :func:`verify_evidence` takes a parsed ``oak.attestation.v1.Evidence``
(and the VCEK certificate bytes) and either returns :class:`VerifiedEvidence`
or raises one :class:`EvidenceFormatError` / :class:`EvidenceVerificationError`
whose one-line message names the layer, certificate or field at fault.

The rules, in the order they are checked:

1. **Root layer.** ``AMD_SEV_SNP``: the report must verify under the VCEK
   (``tee_certificate``) and the AMD roots (:func:`hats.attestation.amd.verify.verify_report`,
   which also checks the VCEK's validity at ``now``); ``report_data[0:32]`` must
   equal SHA-256 of the root ``eca_public_key`` bytes (a serialized COSE_Key);
   the report's VMPL must be 0 ("attestation report was not generated from
   VMPL 0", upstream-facts F3), checked before its debug bit, which must be off.
   ``TEE_PLATFORM_NONE`` (F1, F2): ``remote_attestation_report`` must be the
   1184-byte fake report real stage0 makes, valid by
   :func:`hats.attestation.amd.report.validate_fake_report` ("invalid fake
   attestation report: …" otherwise, missing report included), its
   ``report_data[0:32]`` SHA-256 of the root ``eca_public_key``; then it is
   accepted only with ``allow_insecure`` (no hardware root at all). Any other
   platform is rejected.
2. **DICE chain.** The root ``eca_public_key`` verifies layer 0's certificate;
   each layer certificate's subject key verifies the next one. Layer 0's issuer
   is the hex key id of the root key, and each later issuer is the previous
   subject. Each certificate's subject is the hex key id of its own key. The
   unprotected COSE header (not covered by the signature) must be empty or
   exactly the reference's ``{4: b"AsymmetricECDSA256"}``, so that no byte of
   the evidence can change without failing (stricter than the reference).
3. **Event log.** There are exactly as many encoded events as layers, and
   layer *i*'s EVENT claim is SHA-256 of ``event_log.encoded_events[i]``.
   There are exactly three layers, the kernel (stage0), system (stage1) and
   container (orchestrator) layers, as Oak's extraction takes them for Oak
   Containers (upstream-facts F9: it takes exactly those certificates and
   nothing after them); any other count is refused with "incorrect number of
   DICE layers for Oak Containers", so that no extra, unmeasured layer can
   carry the application keys.
4. **Application keys.** The encryption and signing certificates are signed by
   the last layer's key, name the last layer's subject as issuer and carry the
   last event's digest; a non-empty group-encryption certificate is signed by
   the last layer's key with the same issuer; the group-signing certificate is
   empty (the orchestrator has no group signing key).
5. **Measurements** (:func:`extract_measurements`): event 0 is ``Stage0``
   (``Stage0Measurements``: the kernel layer), event 1 ``stage1``
   (``SystemLayerData``), event 2 ``ORCHESTRATOR`` (``ContainerLayerData``);
   each must have its tag, its type and SHA-256 digests of 32 bytes.

Matching the measurements against reference values is
:mod:`hats.attestation.policy`'s job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message

from hats.attestation import cose
from hats.attestation.amd import certs as amd_certs
from hats.attestation.amd import report as amd_report
from hats.attestation.amd import verify as amd_verify
from hats.attestation.errors import (
    AttestationError,
    EvidenceFormatError,
    EvidenceVerificationError,
)
from hats.errors import HatsError
from hats.pb.oak import digest_pb2
from hats.pb.oak.attestation.v1 import eventlog_pb2, evidence_pb2
from hats.protocol import p256

APPLICATION_KEY_CLAIM = -4670574
"""The legacy CWT claim holding an application public key as raw SEC1 bytes."""

PLATFORM_AMD_SEV_SNP = "AMD_SEV_SNP"
PLATFORM_NONE = "TEE_PLATFORM_NONE"

EXPECTED_EVENTS: tuple[tuple[str, type[Message]], ...] = (
    ("Stage0", eventlog_pb2.Stage0Measurements),
    ("stage1", eventlog_pb2.SystemLayerData),
    ("ORCHESTRATOR", eventlog_pb2.ContainerLayerData),
)
"""The events of a HATs evidence, by index: (tag, message type)."""

INVALID_FAKE_REPORT = "invalid fake attestation report"
"""Oak's words for a ``TEE_PLATFORM_NONE`` root whose report does not parse or validate (F2)."""

NOT_VMPL0 = "attestation report was not generated from VMPL 0"
"""Oak's words for an SEV-SNP report from a VMPL other than 0 (F3)."""

_SHA256_LENGTH = 32
_UNPROTECTED_HEADER = {4: cose.UNPROTECTED_KID}
_M = TypeVar("_M", bound=Message)


@dataclass(frozen=True)
class Tcb:
    """An AMD TCB version: the security patch level of each firmware component."""

    boot_loader: int
    tee: int
    snp: int
    microcode: int
    fmc: int = 0

    def __str__(self) -> str:
        return (
            f"boot_loader={self.boot_loader} tee={self.tee} snp={self.snp} "
            f"microcode={self.microcode} fmc={self.fmc}"
        )


@dataclass(frozen=True)
class Measurements:
    """What a policy is matched against (digests as lowercase hex).

    ``amd_measurement`` and ``reported_tcb`` are set only for ``AMD_SEV_SNP``.
    """

    platform: str
    amd_measurement: str | None
    reported_tcb: Tcb | None
    kernel_image_sha256: str
    kernel_setup_data_sha256: str
    init_ram_fs_sha256: str
    memory_map_sha256: str
    acpi_table_sha256: str
    kernel_cmdline: str
    system_image_sha256: str
    container_bundle_sha256: str
    container_config_sha256: str
    application_signing_public_key: bytes

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the key as hex)."""
        return {
            "platform": self.platform,
            "amd_measurement_sha384": self.amd_measurement,
            "reported_tcb": None
            if self.reported_tcb is None
            else {
                "boot_loader": self.reported_tcb.boot_loader,
                "tee": self.reported_tcb.tee,
                "snp": self.reported_tcb.snp,
                "microcode": self.reported_tcb.microcode,
                "fmc": self.reported_tcb.fmc,
            },
            "kernel_image_sha256": self.kernel_image_sha256,
            "kernel_setup_data_sha256": self.kernel_setup_data_sha256,
            "init_ram_fs_sha256": self.init_ram_fs_sha256,
            "memory_map_sha256": self.memory_map_sha256,
            "acpi_table_sha256": self.acpi_table_sha256,
            "kernel_cmdline": self.kernel_cmdline,
            "system_image_sha256": self.system_image_sha256,
            "container_bundle_sha256": self.container_bundle_sha256,
            "container_config_sha256": self.container_config_sha256,
            "application_signing_public_key": self.application_signing_public_key.hex(),
        }


@dataclass(frozen=True)
class VerifiedEvidence:
    """Evidence whose root, DICE chain, event log and application keys verified."""

    evidence: evidence_pb2.Evidence
    measurements: Measurements
    layer_certificates: tuple[cose.Certificate, ...]
    report: amd_verify.VerifiedReport | None


def platform_name(evidence: evidence_pb2.Evidence) -> str:
    """The root layer's ``TeePlatform`` name (or its number if unknown)."""
    value = evidence.root_layer.platform
    try:
        return evidence_pb2.TeePlatform.Name(value)
    except ValueError:
        return str(value)


def _relabel(exc: AttestationError, where: str) -> AttestationError:
    """``exc`` as a format or verification error prefixed with ``where``."""
    kind = (
        EvidenceFormatError if isinstance(exc, EvidenceFormatError) else EvidenceVerificationError
    )
    return kind(f"{where}: {exc}")


def _parse_certificate(data: bytes, where: str) -> cose.Certificate:
    if not data:
        raise EvidenceFormatError(f"{where}: empty certificate")
    cert = cose.parse_certificate(data, where)
    if cert.unprotected not in ({}, _UNPROTECTED_HEADER):
        raise EvidenceVerificationError(
            f"{where}: unexpected unprotected header (only {{4: kid}} is allowed, unsigned)"
        )
    return cert


def _verify_signed_by(cert: cose.Certificate, key: cose.CoseKey, signer: str, where: str) -> None:
    cose.verify_certificate(cert, key, f"{where} (signed by the {signer})")


def _subject_id(key: cose.CoseKey) -> str:
    return cose.key_id_hex(key.raw_public_key())


def _verify_root(
    evidence: evidence_pb2.Evidence,
    *,
    tee_certificate: bytes | None,
    amd_roots: dict[str, amd_certs.AmdRoots] | None,
    now: datetime | None,
    allow_insecure: bool,
) -> amd_verify.VerifiedReport | None:
    root = evidence.root_layer
    platform = root.platform
    if platform == evidence_pb2.TeePlatform.TEE_PLATFORM_NONE:
        try:
            report_data = amd_report.validate_fake_report(root.remote_attestation_report)
        except AttestationError as exc:
            raise EvidenceFormatError(
                f"root layer: extracting evidence: {INVALID_FAKE_REPORT}: {exc}"
            ) from None
        if report_data[:32] != hashlib.sha256(root.eca_public_key).digest():
            raise EvidenceVerificationError(
                "root layer: report_data[0:32] is not SHA-256 of the root eca_public_key"
            )
        if not allow_insecure:
            raise EvidenceVerificationError(
                "root layer: platform TEE_PLATFORM_NONE is insecure (no hardware root); "
                "rejected unless insecure evidence is accepted"
            )
        return None
    if platform != evidence_pb2.TeePlatform.AMD_SEV_SNP:
        raise EvidenceVerificationError(
            f"root layer: unsupported platform {platform_name(evidence)}"
        )
    if not tee_certificate:
        raise EvidenceVerificationError(
            "root layer: AMD SEV-SNP evidence needs the VCEK certificate (tee_certificate)"
        )
    try:
        verified = amd_verify.verify_report(
            root.remote_attestation_report, tee_certificate, roots=amd_roots, now=now
        )
    except AttestationError as exc:
        raise _relabel(exc, "root layer: AMD SEV-SNP report") from None
    expected = hashlib.sha256(root.eca_public_key).digest()
    if bytes(verified.report.report_data[:32]) != expected:
        raise EvidenceVerificationError(
            "root layer: report_data[0:32] is not SHA-256 of the root eca_public_key"
        )
    if verified.report.vmpl != 0:
        raise EvidenceVerificationError(f"root layer: {NOT_VMPL0} (VMPL {verified.report.vmpl})")
    if verified.report.debug_allowed:
        raise EvidenceVerificationError("root layer: the AMD SEV-SNP guest policy allows debugging")
    return verified


def _verify_chain(evidence: evidence_pb2.Evidence) -> tuple[cose.Certificate, ...]:
    events = list(evidence.event_log.encoded_events)
    layers = list(evidence.layers)
    if not layers:
        raise EvidenceVerificationError("DICE chain: the evidence has no layers")
    if len(events) != len(layers):
        raise EvidenceVerificationError(
            f"event log: {len(events)} events for {len(layers)} layers (must be equal)"
        )
    if len(layers) != len(EXPECTED_EVENTS):
        raise EvidenceVerificationError(
            f"DICE chain: {len(layers)} layers: incorrect number of DICE layers for Oak"
            f" Containers (expected {len(EXPECTED_EVENTS)}: kernel, system, container)"
        )
    issuer_key = cose.CoseKey.decode(
        evidence.root_layer.eca_public_key, "root layer eca_public_key"
    )
    issuer_id = _subject_id(issuer_key)
    signer = "root eca_public_key"
    certs: list[cose.Certificate] = []
    for index, (layer, event) in enumerate(zip(layers, events, strict=True)):
        where = f"layer {index} certificate"
        cert = _parse_certificate(layer.eca_certificate, where)
        _verify_signed_by(cert, issuer_key, signer, where)
        if cert.issuer != issuer_id:
            raise EvidenceVerificationError(
                f"{where}: issuer {cert.issuer!r} is not the subject of the {signer}"
                f" ({issuer_id!r})"
            )
        own_id = _subject_id(cert.subject_public_key)
        if cert.subject != own_id:
            raise EvidenceVerificationError(
                f"{where}: subject {cert.subject!r} is not the key id of its public key"
            )
        if cert.event_sha256 is None:
            raise EvidenceVerificationError(f"{where}: no EVENT digest claim")
        if cert.event_sha256 != hashlib.sha256(event).digest():
            raise EvidenceVerificationError(
                f"{where}: EVENT digest is not SHA-256 of event_log.encoded_events[{index}]"
            )
        certs.append(cert)
        issuer_key = cert.subject_public_key
        issuer_id = cert.subject
        signer = f"layer {index} key"
    return tuple(certs)


def _verify_application_keys(
    evidence: evidence_pb2.Evidence, last: cose.Certificate, last_index: int
) -> None:
    keys = evidence.application_keys
    signer = f"layer {last_index} key"
    event_digest = last.event_sha256
    for field, needs_event in (
        ("encryption_public_key_certificate", True),
        ("signing_public_key_certificate", True),
        ("group_encryption_public_key_certificate", False),
    ):
        data: bytes = getattr(keys, field)
        where = f"application_keys.{field}"
        if not data and not needs_event:
            continue
        cert = _parse_certificate(data, where)
        _verify_signed_by(cert, last.subject_public_key, signer, where)
        if cert.issuer != last.subject:
            raise EvidenceVerificationError(
                f"{where}: issuer {cert.issuer!r} is not the subject of layer {last_index}"
            )
        if needs_event and cert.event_sha256 != event_digest:
            raise EvidenceVerificationError(
                f"{where}: EVENT digest is not the digest of layer {last_index}'s event"
            )
    if keys.group_signing_public_key_certificate:
        raise EvidenceVerificationError(
            "application_keys.group_signing_public_key_certificate: must be empty"
        )


def verify_evidence(
    evidence: evidence_pb2.Evidence,
    *,
    tee_certificate: bytes | None,
    amd_roots: dict[str, amd_certs.AmdRoots] | None = None,
    now: datetime | None = None,
    allow_insecure: bool,
) -> VerifiedEvidence:
    """Verify ``evidence`` by the module's rules 1–5 and extract its measurements.

    ``tee_certificate`` is the VCEK (needed for AMD SEV-SNP); ``amd_roots``
    overrides the built-in AMD roots (see :func:`hats.attestation.amd.certs.load_amd_roots`);
    ``now`` is the time at which certificates must be valid (default: the
    current time). Raises :class:`EvidenceFormatError` or
    :class:`EvidenceVerificationError` with a one-line reason.
    """
    report = _verify_root(
        evidence,
        tee_certificate=tee_certificate,
        amd_roots=amd_roots,
        now=now,
        allow_insecure=allow_insecure,
    )
    certs = _verify_chain(evidence)
    _verify_application_keys(evidence, certs[-1], len(certs) - 1)
    measurements = extract_measurements(evidence, report=None if report is None else report.report)
    return VerifiedEvidence(
        evidence=evidence, measurements=measurements, layer_certificates=certs, report=report
    )


def decode_event(encoded: bytes, index: int) -> eventlog_pb2.Event:
    """Parse ``event_log.encoded_events[index]`` (an ``Event``)."""
    event = eventlog_pb2.Event()
    try:
        event.ParseFromString(encoded)
    except DecodeError:
        raise EvidenceFormatError(f"event {index}: not an Event proto") from None
    return event


def _unpack_event(events: Sequence[bytes], index: int, tag: str, message: type[_M]) -> _M:
    if index >= len(events):
        raise EvidenceFormatError(f"event log: no event {index} ({tag!r})")
    event = decode_event(events[index], index)
    if event.tag != tag:
        raise EvidenceFormatError(f"event {index}: tag {event.tag!r}, expected {tag!r}")
    name = message.DESCRIPTOR.full_name
    if event.event.type_url.rpartition("/")[2] != name:
        raise EvidenceFormatError(
            f"event {index} ({tag}): type {event.event.type_url!r}, expected {name}"
        )
    value = message()
    try:
        value.ParseFromString(event.event.value)
    except DecodeError:
        raise EvidenceFormatError(f"event {index} ({tag}): not a {name} proto") from None
    return value


def _sha256_hex(value: bytes, where: str) -> str:
    if len(value) != _SHA256_LENGTH:
        raise EvidenceFormatError(
            f"{where}: SHA-256 digest is {len(value)} bytes, expected {_SHA256_LENGTH}"
        )
    return bytes(value).hex()


def _raw_sha256_hex(digest: digest_pb2.RawDigest, where: str) -> str:
    return _sha256_hex(digest.sha2_256, f"{where}.sha2_256")


def application_signing_key(evidence: evidence_pb2.Evidence) -> bytes:
    """The 65-byte SEC1 application signing key from ``signing_public_key_certificate``.

    From the certificate's subject COSE_Key; if that is not a P-256 key, from
    the legacy claim -4670574 (raw SEC1 bytes). The certificate is not verified.
    """
    where = "application_keys.signing_public_key_certificate"
    cert = _parse_certificate(evidence.application_keys.signing_public_key_certificate, where)
    try:
        key = cert.subject_public_key.p256_public_key(f"{where} subject public key")
    except AttestationError:
        legacy = cert.claims.get(APPLICATION_KEY_CLAIM)
        if isinstance(legacy, bytes) and len(legacy) == p256.PUBLIC_KEY_LENGTH:
            try:
                key = p256.load_public_key(legacy, f"{where} claim {APPLICATION_KEY_CLAIM}")
            except HatsError:
                raise EvidenceFormatError(
                    f"{where}: claim {APPLICATION_KEY_CLAIM} is not a P-256 point"
                ) from None
        else:
            raise
    return p256.public_key_bytes(key)


@dataclass(frozen=True)
class RootAndKernel:
    """What stage0 and the kernel layer measure: the part of the measurements a
    DiceData from stage1 (no container layer yet) already has."""

    platform: str
    amd_measurement: str | None
    reported_tcb: Tcb | None
    kernel_image_sha256: str
    kernel_setup_data_sha256: str
    init_ram_fs_sha256: str
    memory_map_sha256: str
    acpi_table_sha256: str
    kernel_cmdline: str


def extract_root_and_kernel(
    evidence: evidence_pb2.Evidence, *, report: amd_report.SnpReport | None = None
) -> RootAndKernel:
    """The root and kernel values of ``evidence`` (event 0), **without verifying anything**.

    For AMD SEV-SNP the report is parsed (``report``, if given, is used
    instead) for the launch measurement and the reported TCB.
    """
    amd_measurement: str | None = None
    tcb: Tcb | None = None
    if evidence.root_layer.platform == evidence_pb2.TeePlatform.AMD_SEV_SNP:
        if report is None:
            try:
                report = amd_report.parse_report(evidence.root_layer.remote_attestation_report)
            except AttestationError as exc:
                raise _relabel(exc, "root layer: AMD SEV-SNP report") from None
        amd_measurement = bytes(report.measurement).hex()
        reported = report.reported_tcb
        tcb = Tcb(
            boot_loader=reported.boot_loader,
            tee=reported.tee,
            snp=reported.snp,
            microcode=reported.microcode,
            fmc=reported.fmc or 0,
        )
    events = list(evidence.event_log.encoded_events)
    kernel = _unpack_event(events, 0, "Stage0", eventlog_pb2.Stage0Measurements)
    return RootAndKernel(
        platform=platform_name(evidence),
        amd_measurement=amd_measurement,
        reported_tcb=tcb,
        kernel_image_sha256=_sha256_hex(kernel.kernel_measurement, "Stage0 kernel_measurement"),
        kernel_setup_data_sha256=_sha256_hex(kernel.setup_data_digest, "Stage0 setup_data_digest"),
        init_ram_fs_sha256=_sha256_hex(kernel.ram_disk_digest, "Stage0 ram_disk_digest"),
        memory_map_sha256=_sha256_hex(kernel.memory_map_digest, "Stage0 memory_map_digest"),
        acpi_table_sha256=_sha256_hex(kernel.acpi_digest, "Stage0 acpi_digest"),
        kernel_cmdline=kernel.kernel_cmdline,
    )


def extract_measurements(
    evidence: evidence_pb2.Evidence, *, report: amd_report.SnpReport | None = None
) -> Measurements:
    """The measurements of ``evidence`` (rule 5), **without verifying anything**."""
    root = extract_root_and_kernel(evidence, report=report)
    events = list(evidence.event_log.encoded_events)
    system = _unpack_event(events, 1, "stage1", eventlog_pb2.SystemLayerData)
    container = _unpack_event(events, 2, "ORCHESTRATOR", eventlog_pb2.ContainerLayerData)
    return Measurements(
        platform=root.platform,
        amd_measurement=root.amd_measurement,
        reported_tcb=root.reported_tcb,
        kernel_image_sha256=root.kernel_image_sha256,
        kernel_setup_data_sha256=root.kernel_setup_data_sha256,
        init_ram_fs_sha256=root.init_ram_fs_sha256,
        memory_map_sha256=root.memory_map_sha256,
        acpi_table_sha256=root.acpi_table_sha256,
        kernel_cmdline=root.kernel_cmdline,
        system_image_sha256=_raw_sha256_hex(system.system_image, "stage1 system_image"),
        container_bundle_sha256=_raw_sha256_hex(container.bundle, "ORCHESTRATOR bundle"),
        container_config_sha256=_raw_sha256_hex(container.config, "ORCHESTRATOR config"),
        application_signing_public_key=application_signing_key(evidence),
    )
