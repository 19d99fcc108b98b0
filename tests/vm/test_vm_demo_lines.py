"""How the VM demo recognises the workload's key line and the orchestrator's refusal."""

from __future__ import annotations

from hats.vm import demo

KEY = (
    "oak-orchestrator.service: key_id=64 public_key=demo public key "
    "private_key_sha256=ffe0aec7942178dd (32 bytes)"
)
REFUSED = (
    "oak-orchestrator.service: orchestrator_main: no-split needs all 1 TVS, 1 failed: TVS 0 "
    "(line 1): launcher VerifyReport failed: UNKNOWN: … No matching appraisal policy found"
)


def test_key_line() -> None:
    match = demo._KEY_LINE.search(KEY)
    assert match is not None
    assert match.groups() == ("64", "ffe0aec7942178dd")
    assert demo._FAILURE.search(KEY) is None


def test_refusal_line() -> None:
    assert demo._FAILURE.search(REFUSED) is not None
    assert demo._KEY_LINE.search(REFUSED) is None
    # Progress lines of the orchestrator are not failures.
    assert demo._FAILURE.search("oak-orchestrator.service: launcher metadata received") is None


def test_guest_cmdline_is_the_reference_form() -> None:
    text = demo.guest_cmdline()
    assert text.startswith(" console=ttyS0 panic=-1 brd.rd_nr=1 ")
    assert text.endswith(" -- --launcher-addr=http://10.0.2.100:8080")
