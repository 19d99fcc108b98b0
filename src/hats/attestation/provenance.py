"""Where each reference value of a policy made by ``hats policy make`` came from — pure.

Rules:

* A value has one :class:`Provenance`: **computed** from a file (a stage0
  binary, a kernel, an initrd, a system image, a bundle, or the literal
  ``--cmdline``), **copied** from the ``--like`` evidence (not verified), or
  **given** as an option (``--amd-sha384``, ``--min-tcb``, …).
* :meth:`ReferenceValues.put` replaces a value; the ``--like`` evidence is put
  first, so a computed or given value wins over it. When the value it replaces
  came from the evidence and differs, the evidence's is kept beside it
  (``evidence_value``) and :meth:`ReferenceValues.warnings` says so: the policy
  will not accept that evidence.
* Fields are named as in the policy (``amd_sev.sha384``,
  ``amd_sev.min_tcb_version``, ``kernel_image_sha256``, …,
  ``container_binary_sha256[0]``) and listed in the policy's order.
* :meth:`ReferenceValues.comments` renders them as ``#`` lines for the top of
  the policy file (text format ignores them; the signature does not cover
  them); every line is one printable line whatever the file names hold.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, Literal

from hats.textsafe import printable

Kind = Literal["computed", "evidence", "option"]

FIELD_ORDER = (
    "amd_sev.sha384",
    "amd_sev.min_tcb_version",
    "kernel_image_sha256",
    "kernel_setup_data_sha256",
    "init_ram_fs_sha256",
    "memory_map_sha256",
    "acpi_table_sha256",
    "kernel_cmd_line_regex",
    "system_image_sha256",
    "container_binary_sha256",
)
"""The policy's fields in its own order (containers are ``container_binary_sha256[i]``)."""


def quoted(name: str) -> str:
    """A file name or option value as one JSON string (quotes, control characters escaped)."""
    return json.dumps(name, ensure_ascii=False)


@dataclass(frozen=True)
class Provenance:
    """Where one value came from: ``kind``, the file or option ``source``, and ``how``."""

    kind: Kind
    source: str
    how: str = ""

    def describe(self) -> str:
        """One line: ``computed from "vmlinuz": SHA-256 after …``."""
        if self.kind == "computed":
            text = f"computed from {quoted(self.source)}"
        elif self.kind == "evidence":
            text = f"copied from the evidence {quoted(self.source)} (not verified)"
        else:
            text = f"given by {self.source}"
        return printable(f"{text}: {self.how}" if self.how else text)

    def as_dict(self) -> dict[str, str]:
        return {"source": self.kind, "from": self.source, "how": self.how}


@dataclass(frozen=True)
class Sourced:
    """A value, its display text, where it came from and the ``--like`` evidence's if it differs."""

    value: Any
    text: str
    provenance: Provenance
    evidence_value: str | None = None


def _order(name: str) -> tuple[int, int]:
    base, _, index = name.partition("[")
    return FIELD_ORDER.index(base), int(index.rstrip("]") or 0)


@dataclass
class ReferenceValues:
    """The values of one policy being made, each with its provenance (module rules)."""

    values: dict[str, Sourced] = field(default_factory=dict)

    def put(self, name: str, value: Any, provenance: Provenance, text: str | None = None) -> None:
        """Set ``name`` (replacing what was there; see the module rules)."""
        _order(name)  # a known field
        shown = str(value) if text is None else text
        previous = self.values.get(name)
        evidence_value = None
        if (
            previous is not None
            and previous.provenance.kind == "evidence"
            and previous.text.lower() != shown.lower()
        ):
            evidence_value = previous.text
        self.values[name] = Sourced(value, shown, provenance, evidence_value)

    def get(self, name: str) -> Any:
        """The value of ``name``, or ``None``."""
        item = self.values.get(name)
        return None if item is None else item.value

    def has(self, name: str) -> bool:
        return name in self.values

    def items(self) -> list[tuple[str, Sourced]]:
        """``(name, value)`` in the policy's order."""
        return sorted(self.values.items(), key=lambda item: _order(item[0]))

    def warnings(self) -> list[str]:
        """One line per value that replaced a different value of the ``--like`` evidence."""
        lines: list[str] = []
        for name, item in self.items():
            if item.evidence_value is not None:
                lines.append(
                    printable(
                        f"{name}: {item.provenance.describe()} gives {item.text}; the --like"
                        f" evidence has {item.evidence_value}: the policy will not accept it"
                    )
                )
        return lines

    def lines(self) -> list[str]:
        """``name: value (provenance)`` per value, in the policy's order."""
        return [
            printable(f"{name}: {item.text} ({item.provenance.describe()})")
            for name, item in self.items()
        ]

    def comments(self, header: str) -> str:
        """``# header`` then ``# name: provenance`` per value (module rules), newline-ended."""
        rows = [f"# {printable(header)}"]
        rows.extend(f"# {name}: {item.provenance.describe()}" for name, item in self.items())
        return "\n".join(rows) + "\n"

    def as_json(self) -> list[dict[str, Any]]:
        """One object per value: field, value, source, from, how (and evidence_value)."""
        out: list[dict[str, Any]] = []
        for name, item in self.items():
            value = item.value
            if is_dataclass(value) and not isinstance(value, type):
                value = asdict(value)
            entry: dict[str, Any] = {"field": name, "value": value}
            entry.update(item.provenance.as_dict())
            if item.evidence_value is not None:
                entry["evidence_value"] = item.evidence_value
            out.append(entry)
        return out
