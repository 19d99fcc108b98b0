"""F3: a report not generated from VMPL 0 is refused, before the debug and TCB checks.

The reports are signed by a test-only AMD chain (our own ARK, ASK and VCEK,
made by ``test_amd_chain.FakeChain``): AMD never signs a VMPL-1 report for us.
"""

from __future__ import annotations

import hashlib
import struct

import pytest
from test_amd_chain import NOW, FakeChain

from hats.attestation import cose, dice, simulate, verify
from hats.attestation.errors import EvidenceVerificationError
from hats.pb.oak.attestation.v1 import dice_pb2, evidence_pb2
from hats.protocol import p256

VMPL_OFFSET = 0x030
POLICY_OFFSET = 0x008
DEBUG = 1 << 19
F3_TEXT = "attestation report was not generated from VMPL 0"


@pytest.fixture(scope="module")
def chain() -> FakeChain:
    return FakeChain()


def _evidence(chain: FakeChain, *, vmpl: int, debug: bool) -> evidence_pb2.Evidence:
    root_key = p256.generate_private_key()
    eca_public_key = cose.p256_cose_key(root_key.public_key()).encode()
    policy = 0x30000 | (DEBUG if debug else 0)
    report = chain.report(
        o_0x050=hashlib.sha256(eca_public_key).digest() + bytes(32),
        o_0x030=struct.pack("<I", vmpl),
        o_0x008=struct.pack("<Q", policy),
    )
    data = dice_pb2.DiceData()
    data.evidence.root_layer.platform = evidence_pb2.AMD_SEV_SNP
    data.evidence.root_layer.remote_attestation_report = report
    data.evidence.root_layer.eca_public_key = eca_public_key
    data.certificate_authority.eca_private_key = dice.private_key_bytes(root_key)
    attester = dice.DiceAttester(data)
    attester.extend(dice.stage0_event(simulate.Stage0Inputs().measurements()))
    attester.extend(dice.system_layer_event(hashlib.sha256(b"image").digest()))
    signing = p256.public_key_bytes(p256.generate_private_key())
    event = dice.container_event(b"bundle", b"\x01" * 32, signing, signing)
    attester.extend(event)
    attester.add_application_keys(
        encryption_public_key=b"\x01" * 32,
        signing_public_key=signing,
        group_encryption_public_key=b"\x02" * 32,
        event=event,
    )
    return attester.evidence()


def _verify(chain: FakeChain, evidence: evidence_pb2.Evidence) -> verify.VerifiedEvidence:
    return verify.verify_evidence(
        evidence, tee_certificate=chain.vcek, amd_roots=chain.roots, now=NOW, allow_insecure=False
    )


def test_f3_vmpl0_report_from_the_test_chain_verifies(chain: FakeChain) -> None:
    verified = _verify(chain, _evidence(chain, vmpl=0, debug=False))
    assert verified.report is not None and verified.report.report.vmpl == 0


@pytest.mark.parametrize("vmpl", [1, 2, 3])
def test_f3_vmpl_nonzero_is_refused(chain: FakeChain, vmpl: int) -> None:
    with pytest.raises(EvidenceVerificationError, match=F3_TEXT):
        _verify(chain, _evidence(chain, vmpl=vmpl, debug=False))


def test_f3_vmpl_is_checked_before_the_debug_bit(chain: FakeChain) -> None:
    with pytest.raises(EvidenceVerificationError, match=F3_TEXT):
        _verify(chain, _evidence(chain, vmpl=1, debug=True))
    with pytest.raises(EvidenceVerificationError, match="allows debugging"):
        _verify(chain, _evidence(chain, vmpl=0, debug=True))
