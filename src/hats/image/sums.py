"""Image digests: ``SHA256SUMS`` files and appraisal policies.

Rules (reference ``client/scripts/update-hashes.sh`` / ``check-hashes.sh``):

- a ``SHA256SUMS`` line is ``<64 lowercase hex><one space><name>``, the name
  being the image file name without ``.tar.xz`` (e.g.
  ``hats_system_image_test_single``); a line is split at its *last* space;
  lines are kept sorted by name and a name appears once;
- the digest is the SHA-256 of the ``.tar.xz`` bytes, the very value stage1
  measures and a policy's ``system_image_sha256`` holds;
- a text-format ``pcit.tvs.AppraisalPolicies`` (parsed with the generated
  message) has one ``measurement.system_image_sha256`` per policy; an image
  matches the policy file when its digest equals one of them.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from hats.errors import HatsError
from hats.fsio import write_bytes_atomic

_HEX64 = re.compile(r"[0-9a-f]{64}")


class SumsError(HatsError):
    """A SHA256SUMS file, digest or policy file is malformed."""


def check_digest(value: str, where: str) -> str:
    """A lowercase 64-hex-digit SHA-256, or :class:`SumsError`."""
    digest = value.strip().lower()
    if not _HEX64.fullmatch(digest):
        raise SumsError(f"{where}: {value.strip()[:80]!r} is not a SHA-256 (64 hex digits)")
    return digest


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except FileNotFoundError:
        raise SumsError(f"{path}: no such file") from None
    except OSError as exc:
        raise SumsError(f"{path}: cannot read: {exc.strerror}") from None
    return digest.hexdigest()


def parse_sums(text: str, source: str) -> dict[str, str]:
    """``{name: digest}`` from a SHA256SUMS text (one space, split at the last)."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if " " not in line:
            raise SumsError(f"{source}:{number}: expected '<sha256> <name>'")
        digest, name = line.rsplit(" ", 1)
        digest = check_digest(digest, f"{source}:{number}")
        if not name:
            raise SumsError(f"{source}:{number}: missing name after the digest")
        if name in out:
            raise SumsError(f"{source}:{number}: {name} is listed twice")
        out[name] = digest
    return out


def format_sums(sums: dict[str, str]) -> str:
    return "".join(f"{sums[name]} {name}\n" for name in sorted(sums))


def update_sums(path: Path, name: str, digest: str) -> None:
    """Set ``name``'s line in ``path`` (created if missing), atomically."""
    sums: dict[str, str] = {}
    if path.exists():
        sums = parse_sums(path.read_text(), str(path))
    sums[name] = check_digest(digest, name)
    write_bytes_atomic(path, format_sums(sums).encode())


def policy_image_digests(text: str, source: str) -> list[str]:
    """Every ``system_image_sha256`` of a text-format ``pcit.tvs.AppraisalPolicies``."""
    from google.protobuf import text_format

    from hats.pb.pcit.tvs.appraisal_policies_pb2 import AppraisalPolicies

    policies = AppraisalPolicies()
    try:
        text_format.Parse(text, policies)
    except text_format.ParseError as exc:
        raise SumsError(f"{source}: not a text-format AppraisalPolicies: {exc}") from None
    digests = [
        check_digest(
            policy.measurement.system_image_sha256, f"{source}: policy {index} system_image_sha256"
        )
        for index, policy in enumerate(policies.policies, 1)
        if policy.HasField("measurement")
    ]
    if not digests:
        raise SumsError(f"{source}: no policy with a measurement in this file")
    return digests
