"""TVS appraisal policies: loading, signing and matching (spec wire-protocol §7.2).

A policy file is a text-format ``pcit.tvs.AppraisalPolicies``. The rules:

* **Loading** (:func:`load_policies`): the text must parse; every policy needs
  a ``measurement`` with a ``stage0_measurement``. ``amd_sev`` needs a 96-hex
  ``sha384`` and a ``min_tcb_version``; ``insecure`` is refused unless
  ``accept_insecure`` (the reference's ``Cannot accept insecure policies``);
  ``amd_sev_dynamic`` is not supported. Every digest is 64 hex digits,
  ``container_binary_sha256`` is not empty and the command-line regex compiles.
  Each failure is one :class:`PolicyError` naming the file and policy index.
* **Signature** (:func:`signed_bytes`, :func:`verify_policy_signature`):
  ECDSA P-256/SHA-256 (raw ``r || s`` as hex in ``signature[0].signature``) over
  the concatenation, without lengths or separators, of: for ``amd_sev`` only
  the decoded ``sha384`` and the big-endian 32-bit ``boot_loader``, ``tee``,
  ``snp``, ``microcode`` of ``min_tcb_version``; then the decoded kernel image,
  setup data, initrd, memory map and ACPI digests; the UTF-8 regex; the decoded
  system image digest; each decoded container digest in order. ``description``,
  ``fmc``, other signatures and ``signer`` are not covered (as in the
  reference). The default verifying key is the reference's hard-coded key,
  whose private key is public (:data:`TEST_POLICY_PRIVATE_KEY`).
* **Matching** (:func:`match_policy`), first difference wins, in this order:
  the root (AMD: evidence platform, launch measurement, each TCB component
  ``>=`` the minimum; ``insecure``: only when accepted, any platform), kernel
  image, setup data, initrd, memory map, ACPI digests, the kernel command line
  against the regex with Rust ``Regex::is_match`` semantics (a search: the
  regex must match somewhere, so policies anchor it with ``^…$``; ``$`` is the
  very end of the text, as in Rust, not also before a final newline), the system
  image digest, and the container bundle digest being one of
  ``container_binary_sha256``. The container config digest is not checked.
  Digests compare case-insensitively. :func:`explain_policy` applies the same
  rules to every value, without stopping at the first difference.
* **Open-ended command lines** (:func:`cmdline_regex_risk`, upstream-facts F10):
  a regex that still matches when stage1 flags are added to the command line
  lets a host boot the approved image with ``--init=/bin/sh``. A regex is judged
  by deriving the shortest string it matches (:func:`shortest_match`: the
  minimum count of every repetition, the shortest branch) and checking whether
  that string with ``" --init=/x"`` appended (or ``"rdinit=/x "`` prepended:
  a regex without ``^``) still matches; a repetition of
  ``.`` or of a class taking spaces, dashes, slashes and letters (``.*``) is
  reported too. Loading keeps accepting such policies (the reference's own end
  with ``vsock://2:.*$``) but :func:`open_cmdline_warnings` gives one warning
  line per policy; :func:`cmdline_regex_for` never writes one.
"""

from __future__ import annotations

import importlib
import re
import string
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import text_format

from hats.attestation.errors import PolicyError, PolicyMismatchError
from hats.attestation.verify import PLATFORM_AMD_SEV_SNP, Measurements, Tcb, VerifiedEvidence
from hats.errors import HatsError
from hats.pb.oak.attestation.v1 import tcb_version_pb2
from hats.pb.pcit.tvs import appraisal_policies_pb2 as policies_pb2
from hats.protocol import p256, signature

REFERENCE_POLICY_KEY = bytes.fromhex(
    "048fa2c25d3d3368b23f7877c9ac84866f440f9dd7a94e7ca5440ef1bc611f77db"
    "2940cca2233d06c9cfbf503ee73fdf5cf1f4c637f376bb7daaf637faf05656e4"
)
"""The reference TVS's hard-coded policy-signature verifying key (SEC1)."""

TEST_POLICY_PRIVATE_KEY = bytes.fromhex(
    "cf8d805ed629f4f95d20714a847773b3e53d3d8ab155e52c882646f702a98ce8"
)
"""The private key of :data:`REFERENCE_POLICY_KEY`, published in the reference's tests."""

DEFAULT_SIGNER = "hats"

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_SHA384_HEX = re.compile(r"[0-9a-fA-F]{96}")
_DIGEST_FIELDS = (
    ("kernel_image_sha256", "kernel_image_sha256"),
    ("kernel_setup_data_sha256", "kernel_setup_data_sha256"),
    ("init_ram_fs_sha256", "init_ram_fs_sha256"),
    ("memory_map_sha256", "memory_map_sha256"),
    ("acpi_table_sha256", "acpi_table_sha256"),
)
"""(policy field, Measurements attribute) of the kernel layer's digests, in match order."""

_RUST_REGEX_META = frozenset("\\.+*?()|[]{}^$#&-~")
"""The characters Rust's ``regex::escape`` escapes; Python's ``re`` accepts the same escapes."""


def _tcb_tuple(tcb: tcb_version_pb2.TcbVersion) -> tuple[int, int, int, int]:
    return (tcb.boot_loader, tcb.tee, tcb.snp, tcb.microcode)


def _check_hex(value: str, pattern: re.Pattern[str], where: str) -> None:
    if not pattern.fullmatch(value):
        digits = 96 if pattern is _SHA384_HEX else 64
        shown = "empty" if not value else f"{len(value)} characters"
        raise PolicyError(f"{where}: expected {digits} hex digits, got {shown}")


def check_policy(
    policy: policies_pb2.AppraisalPolicy, where: str, *, accept_insecure: bool
) -> None:
    """Check one policy by the loading rules; raise :class:`PolicyError` prefixed with ``where``."""
    if not policy.HasField("measurement"):
        raise PolicyError(f"{where}: no measurement")
    measurement = policy.measurement
    stage0 = measurement.stage0_measurement
    kind = stage0.WhichOneof("type")
    if kind is None:
        raise PolicyError(f"{where}: stage0_measurement: no amd_sev or insecure reference value")
    if kind == "amd_sev_dynamic":
        raise PolicyError(f"{where}: stage0_measurement: amd_sev_dynamic is not supported")
    if kind == "insecure" and not accept_insecure:
        raise PolicyError(f"{where}: insecure policy; cannot accept insecure policies")
    if kind == "amd_sev":
        _check_hex(stage0.amd_sev.sha384, _SHA384_HEX, f"{where}: amd_sev.sha384")
        if not stage0.amd_sev.HasField("min_tcb_version"):
            raise PolicyError(f"{where}: amd_sev: min_tcb_version is required")
    for field, _ in _DIGEST_FIELDS:
        _check_hex(getattr(measurement, field), _SHA256_HEX, f"{where}: {field}")
    try:
        with warnings.catch_warnings():  # re's FutureWarnings are not the user's concern
            warnings.simplefilter("ignore", FutureWarning)
            re.compile(measurement.kernel_cmd_line_regex)
    except re.error as exc:
        raise PolicyError(f"{where}: kernel_cmd_line_regex does not compile: {exc}") from None
    except (RecursionError, OverflowError, MemoryError):
        raise PolicyError(f"{where}: kernel_cmd_line_regex does not compile: too complex") from None
    _check_hex(measurement.system_image_sha256, _SHA256_HEX, f"{where}: system_image_sha256")
    if not measurement.container_binary_sha256:
        raise PolicyError(f"{where}: container_binary_sha256 is empty")
    for index, digest in enumerate(measurement.container_binary_sha256):
        _check_hex(digest, _SHA256_HEX, f"{where}: container_binary_sha256[{index}]")


def parse_policies(text: str, source: str) -> policies_pb2.AppraisalPolicies:
    """Parse text-format ``AppraisalPolicies``; only syntax is checked.

    Binary data (a control character other than tab and newlines, or an
    undecodable byte shown as U+FFFD) is refused by its position, and a
    syntax error names its line and column: neither echoes the file's text.
    """
    for number, line in enumerate(text.split("\n"), start=1):
        for column, char in enumerate(line, start=1):
            if char == "\ufffd" or (
                (ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0) and char not in "\t\r"
            ):
                raise PolicyError(
                    f"{source}: not a text-format AppraisalPolicies: binary data at line"
                    f" {number}, column {column}"
                )
    policies = policies_pb2.AppraisalPolicies()
    try:
        text_format.Parse(text, policies)
    except text_format.ParseError as exc:
        reason = re.sub(r"^\d+:\d+ : '.*?': ", "", str(exc), count=1, flags=re.S)
        reason = re.sub(r"^\d+:\d+ : ", "", reason, count=1)
        if len(reason) > 160:
            reason = reason[:157].rsplit(" ", 1)[0] + "…"
        where = f"line {exc.GetLine()}, column {exc.GetColumn()}: " if exc.GetLine() else ""
        message = f"{source}: not a text-format AppraisalPolicies: {where}{reason}"
        raise PolicyError(message) from None
    return policies


def load_policies(
    text: str, source: str, *, accept_insecure: bool
) -> policies_pb2.AppraisalPolicies:
    """Parse and check a policy file's ``text`` (``source`` names it in errors).

    Raises :class:`PolicyError` for a syntax error, no policies at all, or a
    policy breaking the loading rules. Signatures are checked separately
    (:func:`verify_policy_signatures`).
    """
    policies = parse_policies(text, source)
    if not policies.policies:
        raise PolicyError(f"{source}: no policies")
    for index, policy in enumerate(policies.policies):
        check_policy(policy, f"{source}: policy {index}", accept_insecure=accept_insecure)
    return policies


def _unhex(value: str, where: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise PolicyError(f"{where}: not hex") from None


def signed_bytes(policy: policies_pb2.AppraisalPolicy) -> bytes:
    """The exact byte string a policy's signature covers (module rules, §7.2)."""
    measurement = policy.measurement
    parts: list[bytes] = []
    stage0 = measurement.stage0_measurement
    if stage0.WhichOneof("type") == "amd_sev":
        parts.append(_unhex(stage0.amd_sev.sha384, "amd_sev.sha384"))
        parts.extend(v.to_bytes(4, "big") for v in _tcb_tuple(stage0.amd_sev.min_tcb_version))
    for field, _ in _DIGEST_FIELDS:
        parts.append(_unhex(getattr(measurement, field), field))
    parts.append(measurement.kernel_cmd_line_regex.encode("utf-8"))
    parts.append(_unhex(measurement.system_image_sha256, "system_image_sha256"))
    for index, digest in enumerate(measurement.container_binary_sha256):
        parts.append(_unhex(digest, f"container_binary_sha256[{index}]"))
    return b"".join(parts)


def sign_policy(
    policy: policies_pb2.AppraisalPolicy,
    private_key: p256.PrivateKey,
    *,
    signer: str = DEFAULT_SIGNER,
) -> None:
    """Replace ``policy``'s signatures with one over :func:`signed_bytes` by ``private_key``."""
    raw = signature.sign(private_key, signed_bytes(policy))
    del policy.signature[:]
    policy.signature.add(signature=raw.hex(), signer=signer)


def verify_policy_signature(
    policy: policies_pb2.AppraisalPolicy, public_key: p256.PublicKey = REFERENCE_POLICY_KEY
) -> None:
    """Check ``signature[0]`` of ``policy`` under ``public_key`` (others are ignored).

    Raises :class:`PolicyError` if it is missing, not hex or does not verify.
    """
    if not policy.signature:
        raise PolicyError("no signature")
    raw = _unhex(policy.signature[0].signature, "signature[0]")
    try:
        signature.verify(public_key, signed_bytes(policy), raw)
    except HatsError as exc:
        if isinstance(exc, PolicyError):
            raise
        raise PolicyError(f"signature[0]: {exc}") from None


def verify_policy_signatures(
    policies: policies_pb2.AppraisalPolicies,
    source: str,
    public_key: p256.PublicKey = REFERENCE_POLICY_KEY,
) -> None:
    """:func:`verify_policy_signature` for every policy; one bad one fails the whole file."""
    for index, policy in enumerate(policies.policies):
        try:
            verify_policy_signature(policy, public_key)
        except PolicyError as exc:
            raise PolicyError(f"{source}: policy {index}: {exc}") from None


def _same_digest(expected: str, actual: str | None) -> bool:
    return actual is not None and expected.lower() == actual.lower()


def _tcb_below(reported: Tcb, minimum: tcb_version_pb2.TcbVersion) -> str | None:
    for name in ("boot_loader", "tee", "snp", "microcode", "fmc"):
        have, need = getattr(reported, name), getattr(minimum, name)
        if have < need:
            return f"reported TCB {name} {have} is below the minimum {need}"
    return None


def _match_root(
    measurements: Measurements, stage0: policies_pb2.Stage0Measurement, accept_insecure: bool
) -> str | None:
    kind = stage0.WhichOneof("type")
    if kind == "insecure":
        return None if accept_insecure else "stage0_measurement: insecure policy not accepted"
    if kind != "amd_sev":
        return f"stage0_measurement: unsupported reference value {kind or 'none'}"
    if measurements.platform != PLATFORM_AMD_SEV_SNP or measurements.reported_tcb is None:
        return f"stage0_measurement: policy needs AMD_SEV_SNP, evidence is {measurements.platform}"
    if not _same_digest(stage0.amd_sev.sha384, measurements.amd_measurement):
        return "amd_sev.sha384: the report's launch measurement differs"
    below = _tcb_below(measurements.reported_tcb, stage0.amd_sev.min_tcb_version)
    return None if below is None else f"amd_sev.min_tcb_version: {below}"


def rust_end_anchors(regex: str) -> str:
    r"""``regex`` with each ``$`` outside a character class as ``\Z``.

    Rust's ``$`` (without the ``m`` flag) matches only at the end of the text;
    Python's also matches before a final newline, so ``^a$`` would accept
    ``"a\n"``. Escapes and ``[...]`` classes are copied unchanged.
    """
    out: list[str] = []
    index, in_class = 0, False
    while index < len(regex):
        char = regex[index]
        if char == "\\":
            out.append(regex[index : index + 2])
            index += 2
            continue
        if not in_class and char == "[":
            # "[", an optional "^", then a "]" here is a literal member.
            end = index + 1
            if regex.startswith("^", end):
                end += 1
            if regex.startswith("]", end):
                end += 1
            out.append(regex[index:end])
            index, in_class = end, True
            continue
        if in_class and char == "]":
            in_class = False
        out.append("\\Z" if char == "$" and not in_class else char)
        index += 1
    return "".join(out)


def cmdline_matches(regex: str, cmdline: str) -> bool:
    """Rust ``Regex::new(regex).is_match(cmdline)``: the regex matches somewhere in ``cmdline``.

    A search (``re.search``), with ``$`` meaning the very end as in Rust
    (:func:`rust_end_anchors`).
    """
    return re.search(rust_end_anchors(regex), cmdline) is not None


def match_policy(
    measurements: Measurements,
    policy: policies_pb2.AppraisalPolicy,
    *,
    accept_insecure: bool = False,
) -> str | None:
    """``None`` if ``measurements`` satisfy ``policy``, else the first difference (one line)."""
    measurement = policy.measurement
    reason = _match_root(measurements, measurement.stage0_measurement, accept_insecure)
    if reason is not None:
        return reason
    for field, attribute in _DIGEST_FIELDS:
        if not _same_digest(getattr(measurement, field), getattr(measurements, attribute)):
            return f"{field}: the evidence has {getattr(measurements, attribute)}"
    try:
        matched = cmdline_matches(measurement.kernel_cmd_line_regex, measurements.kernel_cmdline)
    except (re.error, RecursionError, OverflowError, MemoryError):
        return "kernel_cmd_line_regex: does not compile"
    if not matched:
        cmdline = measurements.kernel_cmdline
        return f"kernel_cmd_line_regex: does not match the kernel command line {cmdline!r}"
    if not _same_digest(measurement.system_image_sha256, measurements.system_image_sha256):
        return f"system_image_sha256: the evidence has {measurements.system_image_sha256}"
    bundle = measurements.container_bundle_sha256
    if not any(_same_digest(d, bundle) for d in measurement.container_binary_sha256):
        return f"container_binary_sha256: the evidence's bundle {bundle} is not listed"
    return None


def appraise(
    verified: VerifiedEvidence | Measurements,
    policies: policies_pb2.AppraisalPolicies | Sequence[policies_pb2.AppraisalPolicy],
    *,
    accept_insecure: bool = False,
) -> int:
    """The index of the first policy that ``verified`` matches.

    Raises :class:`PolicyMismatchError` listing each policy's reason otherwise.
    """
    measurements = verified.measurements if isinstance(verified, VerifiedEvidence) else verified
    items: Iterable[policies_pb2.AppraisalPolicy] = (
        policies.policies if isinstance(policies, policies_pb2.AppraisalPolicies) else policies
    )
    reasons: list[str] = []
    for index, policy in enumerate(items):
        reason = match_policy(measurements, policy, accept_insecure=accept_insecure)
        if reason is None:
            return index
        reasons.append(f"policy {index}: {reason}")
    if not reasons:
        raise PolicyMismatchError("no appraisal policy matches: there are no policies")
    raise PolicyMismatchError("no appraisal policy matches: " + "; ".join(reasons))


@dataclass(frozen=True)
class FieldComparison:
    """One policy value next to the evidence's (:func:`explain_policy`)."""

    field: str
    policy_value: str
    evidence_value: str
    ok: bool


def explain_policy(
    measurements: Measurements,
    policy: policies_pb2.AppraisalPolicy,
    *,
    accept_insecure: bool = False,
) -> list[FieldComparison]:
    """Every value of ``policy`` next to ``measurements``', in :func:`match_policy`'s order.

    Unlike :func:`match_policy` it does not stop at the first difference. The
    rules are the same: the root (an ``insecure`` policy only when accepted;
    ``amd_sev``: the platform, the launch measurement, each TCB component
    ``>=`` the minimum), digests equal (case-insensitive), the command line
    matched by the regex (Rust semantics), the bundle one of the listed ones.
    """
    measurement = policy.measurement
    rows: list[FieldComparison] = []
    stage0 = measurement.stage0_measurement
    kind = stage0.WhichOneof("type")
    if kind == "amd_sev":
        platform_ok = measurements.platform == PLATFORM_AMD_SEV_SNP
        rows.append(
            FieldComparison("platform", PLATFORM_AMD_SEV_SNP, measurements.platform, platform_ok)
        )
        amd = measurements.amd_measurement
        rows.append(
            FieldComparison(
                "amd_sev.sha384",
                stage0.amd_sev.sha384,
                str(amd),
                _same_digest(stage0.amd_sev.sha384, amd),
            )
        )
        for name in ("boot_loader", "tee", "snp", "microcode", "fmc"):
            need = getattr(stage0.amd_sev.min_tcb_version, name)
            have = (
                None
                if measurements.reported_tcb is None
                else getattr(measurements.reported_tcb, name)
            )
            rows.append(
                FieldComparison(
                    f"amd_sev.min_tcb_version.{name}",
                    f">= {need}",
                    str(have),
                    have is not None and have >= need,
                )
            )
    else:
        rows.append(
            FieldComparison(
                "stage0_measurement",
                kind or "none",
                measurements.platform,
                kind == "insecure" and accept_insecure,
            )
        )
    for field, attribute in _DIGEST_FIELDS:
        expected, actual = getattr(measurement, field), getattr(measurements, attribute)
        rows.append(FieldComparison(field, expected, str(actual), _same_digest(expected, actual)))
    regex = measurement.kernel_cmd_line_regex
    try:
        matched = cmdline_matches(regex, measurements.kernel_cmdline)
    except (re.error, RecursionError, OverflowError, MemoryError):
        matched = False
    rows.append(
        FieldComparison("kernel_cmd_line_regex", regex, repr(measurements.kernel_cmdline), matched)
    )
    rows.append(
        FieldComparison(
            "system_image_sha256",
            measurement.system_image_sha256,
            measurements.system_image_sha256,
            _same_digest(measurement.system_image_sha256, measurements.system_image_sha256),
        )
    )
    bundle = measurements.container_bundle_sha256
    rows.append(
        FieldComparison(
            "container_binary_sha256",
            "one of " + ", ".join(measurement.container_binary_sha256),
            bundle,
            any(_same_digest(d, bundle) for d in measurement.container_binary_sha256),
        )
    )
    return rows


def escape_regex(text: str) -> str:
    """``text`` as a literal regex valid for both Rust's ``regex`` and Python's ``re``."""
    return "".join("\\" + c if c in _RUST_REGEX_META else c for c in text)


LAUNCHER_ADDR_PREFIX = "--launcher-addr=vsock://"


PORT_REGEX = "[0-9]+"
"""What :func:`cmdline_regex_for` allows for the launcher's vsock port: digits only."""


def cmdline_regex_for(cmdline: str) -> str:
    """An anchored regex for ``cmdline``, allowing any launcher port (which changes every boot).

    When ``cmdline`` ends with ``--launcher-addr=vsock://CID:PORT`` (PORT all
    digits), everything up to the colon must be identical, the port is
    ``[0-9]+`` and nothing may follow it (``$``). Any other command line must
    match exactly. The result never contains ``.*`` (F10: anything after the
    port would let a host add ``--init=/bin/sh``).
    """
    start = cmdline.rfind(LAUNCHER_ADDR_PREFIX)
    if start >= 0:
        colon = cmdline.find(":", start + len(LAUNCHER_ADDR_PREFIX))
        port = cmdline[colon + 1 :] if colon >= 0 else ""
        if port.isascii() and port.isdigit():
            return "^" + escape_regex(cmdline[: colon + 1]) + PORT_REGEX + "$"
    return "^" + escape_regex(cmdline) + "$"


# -- open-ended command-line regexes (F10) ---------------------------------------------------

EXTRA_STAGE1_FLAG = " --init=/x"
"""What :func:`cmdline_regex_risk` appends to the shortest match (a stage1 flag)."""

EXTRA_KERNEL_FLAG = "rdinit=/x "
"""What :func:`cmdline_regex_risk` prepends to the shortest match (a kernel parameter)."""

SHORTEST_MATCH_LIMIT = 1 << 16
"""The longest shortest-match :func:`shortest_match` builds (characters); longer: unchecked."""

_sre: Any = importlib.import_module("re._parser")  # CPython's regex parser (no type stubs)
_CLASS_TRIES = "a0 -/:=._" + string.printable + "\u00e9\u4e00"
_CATEGORY_REGEX = {
    "CATEGORY_DIGIT": r"\d",
    "CATEGORY_NOT_DIGIT": r"\D",
    "CATEGORY_SPACE": r"\s",
    "CATEGORY_NOT_SPACE": r"\S",
    "CATEGORY_WORD": r"\w",
    "CATEGORY_NOT_WORD": r"\W",
}
_FLAG_TEXT = EXTRA_STAGE1_FLAG + "bin/sh"


class _NoCandidate(Exception):
    """No shortest match could be derived (an unsupported construct, or too long)."""


def _in_class(items: list[tuple[Any, Any]], char: str) -> bool:
    negate = False
    found = False
    for op, arg in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            found = found or ord(char) == arg
        elif name == "RANGE":
            found = found or arg[0] <= ord(char) <= arg[1]
        elif name == "CATEGORY":
            regex = _CATEGORY_REGEX.get(str(arg))
            if regex is None:
                raise _NoCandidate(f"character category {arg}")
            found = found or re.fullmatch(regex, char) is not None
        else:
            raise _NoCandidate(f"character class item {name}")
    return found != negate


def _matches_char(op: Any, arg: Any, char: str) -> bool | None:
    """Whether the one-character item ``(op, arg)`` matches ``char``; None if not one."""
    name = str(op)
    if name == "LITERAL":
        return bool(ord(char) == arg)
    if name == "NOT_LITERAL":
        return bool(ord(char) != arg)
    if name == "ANY":
        return char != "\n"
    if name == "IN":
        return _in_class(arg, char)
    return None


def _one_char(op: Any, arg: Any) -> str:
    for char in _CLASS_TRIES:
        if _matches_char(op, arg, char):
            return char
    raise _NoCandidate("a character class that matches none of the characters tried")


def _shortest_branch(alternatives: list[Any], groups: dict[int, str]) -> str:
    """The shortest of the alternatives' shortest matches; ``groups`` gets that one's groups."""
    options: list[tuple[str, dict[int, str]]] = []
    for alternative in alternatives:
        alternative_groups = dict(groups)
        try:
            options.append((_shortest(alternative, alternative_groups), alternative_groups))
        except _NoCandidate:
            continue
    if not options:
        raise _NoCandidate("no alternative of a branch")
    piece, chosen = min(options, key=lambda option: len(option[0]))
    groups.update(chosen)
    return piece


def _shortest(pattern: Any, groups: dict[int, str]) -> str:
    out: list[str] = []
    size = 0
    for op, arg in pattern:
        name = str(op)
        if name in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
            piece = chr(arg) if name == "LITERAL" else _one_char(op, arg)
        elif name == "AT" or name in ("ASSERT", "ASSERT_NOT"):
            piece = ""
        elif name == "BRANCH":
            piece = _shortest_branch(arg[1], groups)
        elif name == "SUBPATTERN":
            group, _, _, sub = arg
            piece = _shortest(sub, groups)
            if group is not None:
                groups[group] = piece
        elif name == "ATOMIC_GROUP":
            piece = _shortest(arg, groups)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, _, sub = arg
            one = _shortest(sub, groups) if low else ""
            if len(one) * low > SHORTEST_MATCH_LIMIT:
                raise _NoCandidate(f"longer than {SHORTEST_MATCH_LIMIT} characters")
            piece = one * low
        elif name == "GROUPREF":
            piece = groups.get(arg, "")
        elif name == "GROUPREF_EXISTS":
            group, yes, no = arg
            branch = yes if group in groups else no
            piece = "" if branch is None else _shortest(branch, groups)
        else:
            raise _NoCandidate(f"regex construct {name}")
        size += len(piece)
        if size > SHORTEST_MATCH_LIMIT:
            raise _NoCandidate(f"longer than {SHORTEST_MATCH_LIMIT} characters")
        out.append(piece)
    return "".join(out)


def _has_wildcard(pattern: Any) -> bool:
    """Whether ``pattern`` repeats (more than once) one character item matching flag text."""
    for op, arg in pattern:
        name = str(op)
        subs: list[Any] = []
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            _, high, sub = arg
            items = list(sub)
            if high > 1 and len(items) == 1:
                item_op, item_arg = items[0]
                try:
                    if all(_matches_char(item_op, item_arg, c) for c in _FLAG_TEXT):
                        return True
                except _NoCandidate:
                    return True
            subs = [sub]
        elif name == "BRANCH":
            subs = list(arg[1])
        elif name == "SUBPATTERN":
            subs = [arg[3]]
        elif name == "ATOMIC_GROUP":
            subs = [arg]
        elif name in ("ASSERT", "ASSERT_NOT"):
            subs = [arg[1]]
        elif name == "GROUPREF_EXISTS":
            subs = [branch for branch in arg[1:] if branch is not None]
        if any(_has_wildcard(sub) for sub in subs):
            return True
    return False


def shortest_match(regex: str) -> str | None:
    """A shortest string that ``regex`` (Rust semantics, :func:`cmdline_matches`) matches.

    Built from the parsed pattern: every repetition its minimum count, the
    shortest branch, a character of each class, nothing for anchors and
    look-arounds. None when that cannot be done (an unsupported construct,
    more than :data:`SHORTEST_MATCH_LIMIT` characters, or the result does not
    match after all, e.g. because of a look-around).
    """
    anchored = rust_end_anchors(regex)
    try:
        candidate = _shortest(_sre.parse(anchored), {})
    except (_NoCandidate, re.error, RecursionError, OverflowError, TypeError, ValueError):
        return None
    try:
        return candidate if re.search(anchored, candidate) is not None else None
    except (re.error, RecursionError):
        return None


def cmdline_regex_risk(regex: str) -> str | None:
    """Why ``regex`` could accept a command line with extra stage1 flags, or None (F10).

    The reason is one line: the regex still matches its shortest match with
    :data:`EXTRA_STAGE1_FLAG` appended (or :data:`EXTRA_KERNEL_FLAG`
    prepended), or it repeats a wildcard (``.*``), or it could not be checked.
    """
    try:
        parsed = _sre.parse(rust_end_anchors(regex))
        wildcard = _has_wildcard(parsed)
    except (re.error, RecursionError, OverflowError, TypeError, ValueError):
        return "could not check it: it does not parse"
    candidate = shortest_match(regex)
    if candidate is None:
        return "could not check whether it accepts extra stage1 flags (no shortest match found)"
    if cmdline_matches(regex, candidate + EXTRA_STAGE1_FLAG):
        return (
            f"it still matches with {EXTRA_STAGE1_FLAG!r} appended: a host can add stage1 flags"
            " such as --init=/bin/sh"
        )
    if cmdline_matches(regex, EXTRA_KERNEL_FLAG + candidate):
        return (
            f"it still matches with {EXTRA_KERNEL_FLAG!r} prepended (no '^'): a host can add"
            " kernel parameters such as rdinit=/bin/sh"
        )
    if wildcard:
        return "it repeats a wildcard ('.*' or alike) that can take extra stage1 flags"
    return None


def open_cmdline_warnings(
    policies: policies_pb2.AppraisalPolicies | Sequence[policies_pb2.AppraisalPolicy],
    source: str,
) -> list[str]:
    """One warning line per policy whose ``kernel_cmd_line_regex`` has a :func:`cmdline_regex_risk`.

    Such policies are still accepted (the reference's own are open-ended); the
    caller prints or logs each line once.
    """
    items: Iterable[policies_pb2.AppraisalPolicy] = (
        policies.policies if isinstance(policies, policies_pb2.AppraisalPolicies) else policies
    )
    warnings: list[str] = []
    for index, policy in enumerate(items):
        risk = cmdline_regex_risk(policy.measurement.kernel_cmd_line_regex)
        if risk is not None:
            warnings.append(
                f"{source}: policy {index}: kernel_cmd_line_regex is open-ended: {risk}"
                f" (anchor it: ...:{PORT_REGEX}$)"
            )
    return warnings


def make_policy(
    *,
    system_image_sha256: str,
    container_sha256: Sequence[str],
    kernel_image_sha256: str,
    kernel_setup_data_sha256: str,
    init_ram_fs_sha256: str,
    memory_map_sha256: str,
    acpi_table_sha256: str,
    kernel_cmd_line_regex: str,
    amd_sha384: str | None = None,
    min_tcb: Tcb | None = None,
    insecure: bool = False,
    description: str = "",
) -> policies_pb2.AppraisalPolicy:
    """A policy from explicit values (``amd_sha384`` + ``min_tcb``, or ``insecure``).

    Raises :class:`PolicyError` if the result breaks the loading rules.
    """
    policy = policies_pb2.AppraisalPolicy(description=description)
    measurement = policy.measurement
    if insecure:
        measurement.stage0_measurement.insecure.SetInParent()
    else:
        if amd_sha384 is None or min_tcb is None:
            raise PolicyError(
                "an AMD SEV-SNP policy needs the launch measurement (sha384) and a minimum TCB"
            )
        amd = measurement.stage0_measurement.amd_sev
        amd.sha384 = amd_sha384.lower()
        amd.min_tcb_version.boot_loader = min_tcb.boot_loader
        amd.min_tcb_version.tee = min_tcb.tee
        amd.min_tcb_version.snp = min_tcb.snp
        amd.min_tcb_version.microcode = min_tcb.microcode
        amd.min_tcb_version.fmc = min_tcb.fmc
    measurement.kernel_image_sha256 = kernel_image_sha256.lower()
    measurement.kernel_setup_data_sha256 = kernel_setup_data_sha256.lower()
    measurement.init_ram_fs_sha256 = init_ram_fs_sha256.lower()
    measurement.memory_map_sha256 = memory_map_sha256.lower()
    measurement.acpi_table_sha256 = acpi_table_sha256.lower()
    measurement.kernel_cmd_line_regex = kernel_cmd_line_regex
    measurement.system_image_sha256 = system_image_sha256.lower()
    measurement.container_binary_sha256.extend(d.lower() for d in container_sha256)
    check_policy(policy, "new policy", accept_insecure=True)
    return policy


def format_policies(policies: policies_pb2.AppraisalPolicies) -> str:
    """Text-format ``policies`` (what :func:`load_policies` reads)."""
    return text_format.MessageToString(policies)
