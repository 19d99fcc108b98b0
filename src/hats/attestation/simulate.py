"""An INSECURE stage0/stage1 simulation for machines without SEV-SNP — pure.

It produces the ``DiceData`` stage1 would leave in ``/oak/dice``, so our
orchestrator can run (and a test TVS can check its evidence) anywhere. Nothing
is measured by hardware and the root key is an ordinary software key: such
evidence proves nothing and a production TVS must reject it (its root layer
says ``platform = TEE_PLATFORM_NONE``).

Rules (the shape real Oak stage0 gives without SEV-SNP, upstream-facts F1 and
F11, field for field):

* root layer: ``platform = TEE_PLATFORM_NONE`` (3), ``eca_public_key`` = the
  DICE COSE_Key of a fresh (or injected) root P-256 key, and
  ``remote_attestation_report`` = the 1184-byte fake SEV-SNP report, all zero
  but ``report_data[0:32]`` = SHA-256 of those ``eca_public_key`` bytes
  (:func:`hats.attestation.amd.report.mock_report`);
* kernel layer (stage0): an event tagged ``"Stage0"`` carrying
  ``Stage0Measurements`` (kernel, setup data, initrd, memory map and ACPI
  SHA-256 digests and the kernel command line), certified by the root key
  (:func:`simulate_stage0` stops here: what stage0 hands to stage1);
* system layer (stage1): an event tagged ``"stage1"`` carrying
  ``SystemLayerData`` = SHA-256 of the system image ``.tar.xz`` bytes,
  certified by the kernel layer's key;
* the result's ``certificate_authority.eca_private_key`` is the system
  layer's key, from which :class:`hats.attestation.dice.DiceAttester`
  continues (the orchestrator's container layer).

Digests not given default to SHA-256 of ``b"hats simulated <name>"`` so the
output depends only on the inputs and the keys; keys come from
``generate_key`` (called for the root, kernel and system layers, in that
order).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

from hats.attestation import cose, dice
from hats.attestation.amd import report as amd_report
from hats.pb.oak.attestation.v1 import dice_pb2, eventlog_pb2, evidence_pb2
from hats.protocol import p256

DEFAULT_KERNEL_CMDLINE: Final = (
    " console=ttyS0 panic=-1 brd.rd_nr=1 brd.rd_size=10485760 brd.max_part=1"
    " ip=10.0.2.15:::255.255.255.0::enp0s1:off quiet -- --launcher-addr=vsock://2:8080"
)
"""The simulated kernel command line: the reference's shape, with a fixed launcher port."""


def default_digest(name: str) -> bytes:
    """SHA-256 of ``b"hats simulated <name>"``: the default digest of an unmeasured input."""
    return hashlib.sha256(f"hats simulated {name}".encode()).digest()


@dataclass(frozen=True)
class Stage0Inputs:
    """What simulated stage0 measures: SHA-256 digests (32 bytes each) and the command line."""

    kernel_sha256: bytes = field(default_factory=lambda: default_digest("kernel"))
    setup_data_sha256: bytes = field(default_factory=lambda: default_digest("setup data"))
    initrd_sha256: bytes = field(default_factory=lambda: default_digest("initrd"))
    memory_map_sha256: bytes = field(default_factory=lambda: default_digest("memory map"))
    acpi_sha256: bytes = field(default_factory=lambda: default_digest("acpi"))
    kernel_cmdline: str = DEFAULT_KERNEL_CMDLINE

    def __post_init__(self) -> None:
        for name in (
            "kernel_sha256",
            "setup_data_sha256",
            "initrd_sha256",
            "memory_map_sha256",
            "acpi_sha256",
        ):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != dice.SHA256_LENGTH:
                raise ValueError(f"{name}: expected {dice.SHA256_LENGTH} bytes")

    def measurements(self) -> eventlog_pb2.Stage0Measurements:
        """The ``Stage0Measurements`` message."""
        return eventlog_pb2.Stage0Measurements(
            setup_data_digest=self.setup_data_sha256,
            kernel_measurement=self.kernel_sha256,
            ram_disk_digest=self.initrd_sha256,
            memory_map_digest=self.memory_map_sha256,
            acpi_digest=self.acpi_sha256,
            kernel_cmdline=self.kernel_cmdline,
        )


def simulate_stage1(
    system_image_sha256: bytes,
    stage0: Stage0Inputs | None = None,
    *,
    generate_key: dice.KeyGenerator = p256.generate_private_key,
) -> dice_pb2.DiceData:
    """The ``DiceData`` stage1 would hand to the orchestrator (module rules).

    ``system_image_sha256`` is SHA-256 of the ``.tar.xz`` (32 bytes,
    :class:`ValueError` otherwise).
    """
    if len(system_image_sha256) != dice.SHA256_LENGTH:
        raise ValueError(f"system image SHA-256: expected {dice.SHA256_LENGTH} bytes")
    attester = dice.DiceAttester(
        simulate_stage0(stage0, generate_key=generate_key), generate_key=generate_key
    )
    attester.extend(dice.system_layer_event(system_image_sha256))
    return attester.dice_data()


def insecure_root_layer(root_public_key: p256.PublicKey) -> evidence_pb2.RootLayerEvidence:
    """The ``TEE_PLATFORM_NONE`` root layer of ``root_public_key``, with stage0's fake report."""
    eca_public_key = cose.p256_cose_key(root_public_key).encode()
    return evidence_pb2.RootLayerEvidence(
        platform=evidence_pb2.TEE_PLATFORM_NONE,
        remote_attestation_report=amd_report.mock_report(hashlib.sha256(eca_public_key).digest()),
        eca_public_key=eca_public_key,
    )


def simulate_stage0(
    stage0: Stage0Inputs | None = None,
    *,
    generate_key: dice.KeyGenerator = p256.generate_private_key,
) -> dice_pb2.DiceData:
    """The ``DiceData`` stage0 hands to stage1: root layer, kernel layer, the Stage0 event.

    ``certificate_authority.eca_private_key`` is the kernel layer's key.
    """
    inputs = stage0 if stage0 is not None else Stage0Inputs()
    root_key = generate_key()
    start = dice_pb2.DiceData(
        evidence=evidence_pb2.Evidence(root_layer=insecure_root_layer(root_key.public_key()))
    )
    start.certificate_authority.eca_private_key = dice.private_key_bytes(root_key)
    attester = dice.DiceAttester(start, generate_key=generate_key)
    attester.extend(dice.stage0_event(inputs.measurements()))
    return attester.dice_data()
