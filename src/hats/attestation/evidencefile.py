"""Evidence files: read an ``Evidence`` in any of the forms the tools accept — no output.

A file is read, by content, as a length-delimited ``DiceData`` (the
``/oak/dice`` form; its ``evidence`` is used), a text-format ``Evidence``
(when it is UTF-8 text without NUL) or a binary ``Evidence``; an Evidence
without a ``root_layer`` is refused. Errors are one line naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hats.attestation.errors import AttestationError, EvidenceFormatError
from hats.errors import HatsError

if TYPE_CHECKING:  # protobuf loads when a file is parsed
    from hats.pb.oak.attestation.v1 import evidence_pb2


def read_file(path: str | Path, what: str = "file") -> bytes:
    """The bytes of ``path``; a one-line error naming it and ``what`` it is when unreadable."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise HatsError(f"{path}: cannot read {what}: {reason}") from None


def parse_evidence(data: bytes, source: str) -> tuple[evidence_pb2.Evidence, str]:
    """``(evidence, form)`` from a file's bytes; form is ``DiceData``, ``text`` or ``binary``.

    Raises :class:`EvidenceFormatError` naming ``source`` if no form fits.
    """
    from google.protobuf import text_format
    from google.protobuf.message import DecodeError

    from hats.attestation import dice
    from hats.pb.oak.attestation.v1 import evidence_pb2

    try:
        dice_data = dice.load_dice_data(data)
    except AttestationError:
        pass
    else:
        if dice_data.HasField("evidence"):
            return dice_data.evidence, "DiceData"
    evidence = evidence_pb2.Evidence()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        try:
            text_format.Parse(text, evidence)
        except text_format.ParseError as exc:
            raise EvidenceFormatError(f"{source}: not a text-format Evidence: {exc}") from None
        form = "text"
    else:
        try:
            evidence.ParseFromString(data)
        except DecodeError:
            raise EvidenceFormatError(
                f"{source}: not an Evidence proto (binary or text) nor a DiceData"
            ) from None
        form = "binary"
    if not evidence.HasField("root_layer"):
        raise EvidenceFormatError(f"{source}: the Evidence has no root_layer")
    return evidence, form


def load_evidence(path: str | Path) -> evidence_pb2.Evidence:
    """The ``Evidence`` in the file at ``path`` (any of the module's forms)."""
    return parse_evidence(read_file(path, "evidence"), str(path))[0]


__all__ = ["load_evidence", "parse_evidence", "read_file"]
