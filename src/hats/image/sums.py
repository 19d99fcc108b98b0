"""Image digests: ``SHA256SUMS`` files and appraisal policies.

Rules (reference ``client/scripts/update-hashes.sh`` / ``check-hashes.sh``):

- a reference ``SHA256SUMS`` line is ``<64 lowercase hex><one space><name>``,
  the name being the image file name without ``.tar.xz`` (e.g.
  ``hats_system_image_test_single``); a line is split at its *last* space;
  lines are kept sorted by name and a name appears once;
- a GNU line (``sha256sum``, read by ``sha256sum -c``) is
  ``<64 hex><space><space or *><file name>``, the file name as written
  relative to the sums file's directory; a name holding ``\\`` or a newline
  is escaped (``\\\\``, ``\\n``) and its line starts with ``\\``. Both forms
  are read; a file is written in one form (its existing one, unless told);
- a digest is taken as 64 hex digits, optionally prefixed ``sha256:``;
- the digest is the SHA-256 of the ``.tar.xz`` bytes, the very value stage1
  measures and a policy's ``system_image_sha256`` holds;
- a text-format ``pcit.tvs.AppraisalPolicies`` (parsed with the generated
  message) has one ``measurement.system_image_sha256`` per policy; an image
  matches the policy file when its digest equals one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hats import hashing
from hats.errors import HatsError
from hats.fsio import write_bytes_atomic

_HEX64 = re.compile(r"[0-9a-f]{64}")


class SumsError(HatsError):
    """A SHA256SUMS file, digest or policy file is malformed."""


SUMS_FORMATS = ("reference", "gnu")
_GNU = re.compile(r"(\\?)([0-9a-fA-F]{64}) ([ *])(.+)")


def check_digest(value: str, where: str) -> str:
    """A lowercase 64-hex-digit SHA-256 (``sha256:`` prefix allowed), or :class:`SumsError`."""
    digest = value.strip().lower()
    if digest.startswith("sha256:"):
        digest = digest[len("sha256:") :]
    if not _HEX64.fullmatch(digest):
        raise SumsError(f"{where}: {value.strip()[:80]!r} is not a SHA-256 (64 hex digits)")
    return digest


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of ``path`` (:func:`hats.hashing.file_sha256`); failures are SumsError."""
    try:
        return hashing.file_sha256(path)
    except FileNotFoundError:
        raise SumsError(f"{path}: no such file") from None
    except OSError as exc:
        raise SumsError(f"{path}: cannot read: {exc.strerror}") from None


@dataclass(frozen=True)
class SumsLine:
    """One line of a SHA256SUMS file: its name, digest and form (``SUMS_FORMATS``)."""

    name: str
    digest: str
    form: str


def _gnu_unescape(name: str) -> str:
    out: list[str] = []
    chars = iter(name)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            out.append({"n": "\n", "r": "\r", "\\": "\\"}.get(nxt, "\\" + nxt))
        else:
            out.append(char)
    return "".join(out)


def _gnu_escape(name: str) -> tuple[str, str]:
    """``(prefix, name)`` as ``sha256sum`` writes a name with ``\\`` or a newline."""
    if not any(c in name for c in "\\\n\r"):
        return "", name
    escaped = name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return "\\", escaped


def parse_sums_lines(text: str, source: str) -> list[SumsLine]:
    """Every line of a SHA256SUMS text, in either form (see the module docstring)."""
    out: list[SumsLine] = []
    seen: set[tuple[str, str]] = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        gnu = _GNU.fullmatch(line)
        if gnu is not None:
            escaped, digest, _, name = gnu.groups()
            entry = SumsLine(_gnu_unescape(name) if escaped else name, digest.lower(), "gnu")
        else:
            if " " not in line:
                raise SumsError(
                    f"{where}: expected '<sha256> <name>' (reference) or "
                    "'<sha256>  <file>' (sha256sum)"
                )
            digest, name = line.rsplit(" ", 1)
            digest = check_digest(digest, where)
            if not name:
                raise SumsError(f"{where}: missing name after the digest")
            entry = SumsLine(name, digest, "reference")
        if (entry.form, entry.name) in seen:
            raise SumsError(f"{where}: {entry.name} is listed twice")
        seen.add((entry.form, entry.name))
        out.append(entry)
    return out


def parse_sums(text: str, source: str) -> dict[str, str]:
    """``{name: digest}`` from a SHA256SUMS text in either form."""
    return {line.name: line.digest for line in parse_sums_lines(text, source)}


def sums_form(lines: list[SumsLine], source: str) -> str | None:
    """The one form of a file's lines (None when empty); mixed forms are an error."""
    forms = {line.form for line in lines}
    if len(forms) > 1:
        raise SumsError(f"{source}: mixes reference and sha256sum lines; use one form")
    return forms.pop() if forms else None


def format_sums(sums: dict[str, str], form: str = "reference") -> str:
    if form == "gnu":
        lines = []
        for name in sorted(sums):
            prefix, escaped = _gnu_escape(name)
            lines.append(f"{prefix}{sums[name]}  {escaped}\n")
        return "".join(lines)
    return "".join(f"{sums[name]} {name}\n" for name in sorted(sums))


def update_sums(path: Path, name: str, digest: str, form: str = "reference") -> None:
    """Set ``name``'s line in ``path`` (created if missing), in ``form``, atomically.

    An existing file in the other form is an error: one file, one form.
    """
    sums: dict[str, str] = {}
    if path.exists():
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise SumsError(f"{path}: cannot read: {exc}") from None
        lines = parse_sums_lines(text, str(path))
        existing = sums_form(lines, str(path))
        if existing is not None and existing != form:
            raise SumsError(
                f"{path}: holds {existing} lines; not adding a {form} line "
                f"(--sums-format {existing})"
            )
        sums = {line.name: line.digest for line in lines}
    sums[name] = check_digest(digest, name)
    write_bytes_atomic(path, format_sums(sums, form).encode())


def existing_sums_form(path: Path) -> str | None:
    """The form of an existing SHA256SUMS file, or None (missing, empty or unreadable)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    return sums_form(parse_sums_lines(text, str(path)), str(path))


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
