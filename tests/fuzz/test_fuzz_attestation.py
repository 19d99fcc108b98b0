"""Fuzzing the attestation parsers: CBOR/COSE/CWT, the SNP report, evidence, policies, cmdline.

Entry points (what hostile bytes reach):

- :func:`hats.attestation.cose.cbor_decode`, :func:`~hats.attestation.cose.parse_certificate`,
  :meth:`~hats.attestation.cose.CoseKey.decode` (every layer certificate and key
  of an evidence);
- :func:`hats.attestation.amd.report.parse_report` (the root layer's report);
- :func:`hats.attestation.cli.parse_evidence` then
  :func:`hats.attestation.verify.verify_evidence` and
  :func:`~hats.attestation.verify.extract_measurements` (what ``hats evidence``
  and the TVS run on a client's evidence), seeded with the real evidence;
- :func:`hats.attestation.dice.load_dice_data` (``/oak/dice``);
- :func:`hats.attestation.policy.load_policies` (policy files) and the
  open-ended regex check (:func:`~hats.attestation.policy.cmdline_regex_risk`);
- :func:`hats.stage1.cmdline.parse_proc_cmdline` and
  :func:`~hats.stage1.cmdline.parse_stage1_args` (the host writes the command line).

Only :class:`hats.errors.HatsError` may escape, within the time and memory
bounds of :func:`fuzz_support.check_hostile`.
"""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime

import cbor2
from fuzz_support import check_hostile, fuzz, mutations
from hypothesis import given
from hypothesis import strategies as st

import shared_data
from hats.attestation import cose, dice, policy, simulate, verify
from hats.attestation.amd.certs import builtin_amd_roots
from hats.attestation.amd.report import REPORT_SIZE, parse_report
from hats.attestation.cli import parse_evidence
from hats.attestation.errors import AttestationError
from hats.pb.oak.attestation.v1 import evidence_pb2
from hats.stage1.cmdline import parse_proc_cmdline, parse_stage1_args, stage1_argv

E = shared_data.EVIDENCE
V1_BYTES = (E / "evidence_v1_genoa.binarypb").read_bytes()
V1_TEXT = (E / "evidence_v1_genoa.txtpb").read_bytes()
POLICY_TEXT = (E / "on-perm-reference.txtpb").read_text()
VCEK = (E / "vcek_genoa.crt").read_bytes()
ROOTS = builtin_amd_roots()
NOW = datetime(2026, 11, 26, tzinfo=UTC)

_V1 = evidence_pb2.Evidence()
_V1.ParseFromString(V1_BYTES)
CERTIFICATES = [layer.eca_certificate for layer in _V1.layers] + [
    _V1.application_keys.encryption_public_key_certificate,
    _V1.application_keys.signing_public_key_certificate,
]
ROOT_KEY = _V1.root_layer.eca_public_key
REPORT = _V1.root_layer.remote_attestation_report
DICE_DATA = dice.encode_dice_data(simulate.simulate_stage1(hashlib.sha256(b"image").digest()))


# --- CBOR, COSE_Sign1 certificates, COSE_Key -------------------------------------------------

_HEADS = st.sampled_from(
    [bytes([major << 5 | 27]) + (1 << 62).to_bytes(8, "big") for major in range(8)]
    + [b"\x9f" * 40, b"\xbf" * 40, b"\xd8\x18", b"\x5f\x41a\xff", b"\xf9\x7e\x00"]
)


@fuzz(150)
@given(
    st.one_of(
        st.binary(max_size=300),
        _HEADS.flatmap(lambda h: st.just(h) | st.binary(max_size=40).map(lambda t: h + t)),
    )
)
def test_cbor_decode(data: bytes) -> None:
    check_hostile(lambda: cose.cbor_decode(data, "fuzz"))


@fuzz(150)
@given(st.one_of(*(mutations(cert) for cert in CERTIFICATES)))
def test_certificate_mutations(data: bytes) -> None:
    check_hostile(lambda: cose.parse_certificate(data, "fuzz"))


@fuzz(60)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.binary(max_size=70) | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=5)
            | st.dictionaries(st.integers(-8, 8) | st.text(max_size=2), inner, max_size=6)
        ),
        max_leaves=20,
    )
)
def test_structured_cbor_as_certificate_and_key(value: object) -> None:
    data = cbor2.dumps(value)
    check_hostile(lambda: cose.parse_certificate(data, "fuzz"))
    check_hostile(lambda: cose.CoseKey.decode(data, "fuzz"))


@fuzz(100)
@given(mutations(ROOT_KEY))
def test_cose_key_mutations(data: bytes) -> None:
    def decode() -> object:
        key = cose.CoseKey.decode(data, "fuzz")
        return key.p256_public_key("fuzz")

    check_hostile(decode)


# --- the SEV-SNP report ------------------------------------------------------------------------


@fuzz(100)
@given(
    mutations(REPORT, max_edits=8).filter(lambda data: len(data) == REPORT_SIZE)
    | st.binary(min_size=REPORT_SIZE, max_size=REPORT_SIZE)
    | st.binary(max_size=64)
)
def test_report(data: bytes) -> None:
    check_hostile(lambda: parse_report(data))
    check_hostile(lambda: parse_report(data, "Genoa"))


# --- evidence (proto bytes → parse → verify) ---------------------------------------------------


def _verify(data: bytes) -> object:
    evidence, _ = parse_evidence(data, "fuzz")
    with contextlib.suppress(AttestationError):
        verify.extract_measurements(evidence)
    return verify.verify_evidence(
        evidence, tee_certificate=VCEK, amd_roots=ROOTS, now=NOW, allow_insecure=True
    )


@fuzz(120)
@given(mutations(V1_BYTES) | mutations(V1_TEXT) | mutations(DICE_DATA))
def test_evidence_mutations(data: bytes) -> None:
    check_hostile(lambda: _verify(data), max_seconds=2.0)


@fuzz(60)
@given(st.binary(max_size=400))
def test_evidence_random_bytes(data: bytes) -> None:
    check_hostile(lambda: _verify(data))
    check_hostile(lambda: dice.load_dice_data(data))


@fuzz(40)
@given(
    st.integers(0, 8),  # extra copies of the last layer
    st.integers(0, 8),  # extra copies of the last event
)
def test_evidence_with_other_layer_counts(layers: int, events: int) -> None:
    evidence = evidence_pb2.Evidence()
    evidence.CopyFrom(_V1)
    evidence.layers.extend([evidence.layers[-1]] * layers)
    evidence.event_log.encoded_events.extend([evidence.event_log.encoded_events[-1]] * events)
    data = evidence.SerializeToString()
    outcome = check_hostile(lambda: _verify(data))
    assert (outcome.error is None) == (layers == events == 0)


# --- policies --------------------------------------------------------------------------------


@fuzz(120)
@given(mutations(POLICY_TEXT.encode(), max_edits=6))
def test_policy_mutations(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")

    def load() -> object:
        policies = policy.load_policies(text, "fuzz", accept_insecure=True)
        return policy.open_cmdline_warnings(policies, "fuzz")

    check_hostile(load)


_REGEX_PIECES = st.sampled_from(
    ["^", "$", ".", "*", "+", "?", "(", ")", "(?:", "|", "[", "]", "[^", "\\", "a", " ", "-",
     "{2}", "{0,}", "{99999}", "(?=", "(?!", "(?<=a)", "\\1", "\\b", "\\s", "\\d", "(?P<n>",
     "(?P=n)", "(?i)", "(?m)", "0-9"]
)  # fmt: skip


@fuzz(200)
@given(st.lists(_REGEX_PIECES, max_size=24).map("".join) | st.text(max_size=30))
def test_policy_regex(regex: str) -> None:
    measurement = (
        f'  kernel_cmd_line_regex: "{regex.replace(chr(92), chr(92) * 2).replace(chr(34), "")}"'
    )
    text = POLICY_TEXT.replace(POLICY_TEXT.split("\n")[0], POLICY_TEXT.split("\n")[0], 1)
    lines = [
        measurement if line.strip().startswith("kernel_cmd_line_regex") else line
        for line in text.splitlines()
    ]

    def load() -> object:
        policies = policy.load_policies("\n".join(lines), "fuzz", accept_insecure=True)
        return policy.open_cmdline_warnings(policies, "fuzz")

    check_hostile(load)
    risk = policy.cmdline_regex_risk(regex)  # never raises, whatever the regex
    assert risk is None or "\n" not in risk


def test_deeply_nested_regex_is_a_policy_error() -> None:
    regex = "(" * 3000 + ")" * 3000
    text = "\n".join(
        f'  kernel_cmd_line_regex: "{regex}"' if "kernel_cmd_line_regex" in line else line
        for line in POLICY_TEXT.splitlines()
    )
    outcome = check_hostile(lambda: policy.load_policies(text, "f", accept_insecure=True))
    assert outcome.error is not None and "kernel_cmd_line_regex" in str(outcome.error)


# --- the kernel command line (the host writes it) ----------------------------------------------

_WORDS = st.sampled_from(
    ["--", "--init", "--init=/bin/sh", "--init=/sbin/init", "--launcher-addr", "vsock://2:1",
     "--launcher-addr=http://h:1", "--oak-dice=0x10", "--oak-dice", "0x", "--eth0-address=a,b",
     '"', '"x y"', "a=\"b c\"", "quiet", "=", "--oak-dice-length=99999999999999999999999", ""]
)  # fmt: skip


@fuzz(200)
@given(
    st.lists(_WORDS, max_size=12).map(" ".join)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=80)
    | mutations(simulate.DEFAULT_KERNEL_CMDLINE.encode()).map(
        lambda b: b.decode("utf-8", "replace")
    ),
    st.booleans(),
)
def test_kernel_cmdline(cmdline: str, allow_other_init: bool) -> None:
    def parse() -> object:
        argv = stage1_argv(parse_proc_cmdline(cmdline))
        return parse_stage1_args(argv, allow_other_init=allow_other_init)

    outcome = check_hostile(parse)
    if outcome.error is None and not allow_other_init:
        assert outcome.value.init == "/sbin/init"  # type: ignore[attr-defined]
