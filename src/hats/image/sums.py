"""Image digests: ``SHA256SUMS`` files and appraisal policies.

Rules (reference ``client/scripts/update-hashes.sh`` / ``check-hashes.sh``):

- a ``SHA256SUMS`` line is ``<64 lowercase hex><one space><name>``, the name
  being the image file name without ``.tar.xz`` (e.g.
  ``hats_system_image_test_single``); a line is split at its *last* space;
  lines are kept sorted by name and a name appears once;
- the digest is the SHA-256 of the ``.tar.xz`` bytes, the very value stage1
  measures and a policy's ``system_image_sha256`` holds;
- a text-format ``pcit.tvs.AppraisalPolicies`` lists one
  ``system_image_sha256: "<hex>"`` per policy; an image matches the policy
  file when its digest equals one of them.
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


_COMMENT_OR_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|#[^\n]*')
_IMAGE_FIELD = re.compile(r'\bsystem_image_sha256\s*:\s*"([^"]*)"')


def policy_image_digests(text: str, source: str) -> list[str]:
    """Every ``system_image_sha256`` of a text-format ``AppraisalPolicies``."""
    # Drop comments (but not '#' inside strings) before looking for the field.
    cleaned = _COMMENT_OR_STRING.sub(lambda m: m.group(0) if m.group(0)[0] in "\"'" else "", text)
    digests = [
        check_digest(value, f"{source}: system_image_sha256")
        for value in _IMAGE_FIELD.findall(cleaned)
    ]
    if not digests:
        raise SumsError(f"{source}: no system_image_sha256 in this policy file")
    return digests
