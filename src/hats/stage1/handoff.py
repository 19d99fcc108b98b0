"""Real Oak stage0's DICE hand-off, as Oak's stage1 takes it (``upstream-facts.md`` F11).

Stage0 appends ``--oak-dice=ADDR --oak-event-log=ADDR --oak-dice-length=N`` to
the kernel command line (stage1 receives them after ``--``). Rules:

* the three arguments come together or not at all (none: no stage0, stage1
  simulates the root); the range ``[--oak-dice, --oak-dice + --oak-dice-length)``
  must hold the event log page and the attester page (event log + 4 KiB) and lie
  wholly inside one E820 *reserved* entry (``/sys/firmware/memmap``, else
  ``/proc/iomem``);
* the attester page is ``b"OakProto"``, a u64 little-endian length, then that
  many bytes of a ``DiceData`` proto (:func:`decode_attester`); the length must
  fit in the range;
* the event log page is a u64 little-endian length, then an ``EventLog``
  (:func:`decode_event_log`); the page at ``--oak-dice`` is the legacy
  ``Stage0DiceData`` struct, magic ``b"oak.dice"`` (:func:`decode_legacy`);
* after reading, the **whole range is zeroed** through ``/dev/mem`` and read back:
  it must read as zeros (:func:`take_stage0_dice`).

Decoders are pure; every failure is a one-line :class:`Stage0HandoffError`.
The DICE data holds the layer-1 private key: it never appears in a message.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from google.protobuf.message import DecodeError

from hats.pb.oak.attestation.v1 import dice_pb2, eventlog_pb2
from hats.stage1.cmdline import Stage1Args
from hats.stage1.errors import Stage0HandoffError

OAK_PROTO_MAGIC: Final = b"OakProto"
LEGACY_MAGIC: Final = b"oak.dice"
ATTESTER_OFFSET: Final = 0x1000
"""The attester page is this far after ``--oak-event-log``."""
PAGE: Final = 0x1000
_HEADER: Final = 16
MEMMAP: Final = Path("/sys/firmware/memmap")
IOMEM: Final = Path("/proc/iomem")
DEV_MEM: Final = Path("/dev/mem")

#: Offsets of the legacy ``Stage0DiceData`` struct (F11, ``repr(C)``, little-endian).
LEGACY_TEE_PLATFORM: Final = 16
LEGACY_REPORT: Final = 32
LEGACY_ECA_PUBLIC_KEY: Final = LEGACY_REPORT + 2048
LEGACY_CERTIFICATE: Final = LEGACY_ECA_PUBLIC_KEY + 256
LEGACY_SIZE: Final = LEGACY_CERTIFICATE + 1024 + 64 + 32


@dataclass(frozen=True)
class Stage0Handoff:
    """Where stage0 left its DICE data (physical addresses)."""

    dice_address: int
    dice_length: int
    event_log_address: int

    @property
    def attester_address(self) -> int:
        return self.event_log_address + ATTESTER_OFFSET

    def describe(self) -> str:
        return f"{self.dice_address:#x}+{self.dice_length}"

    def check(self) -> None:
        """The event log and attester pages lie inside the DICE range."""
        end = self.dice_address + self.dice_length
        for name, start in (
            ("event log", self.event_log_address),
            ("attester", self.attester_address),
        ):
            if start < self.dice_address or start + PAGE > end:
                raise Stage0HandoffError(
                    f"stage0 hand-off: the {name} page at {start:#x} is outside the DICE range"
                    f" {self.describe()}"
                )


def handoff_from_args(args: Stage1Args) -> Stage0Handoff | None:
    """The hand-off stage1's arguments describe; ``None`` without any of them."""
    values = (args.oak_dice, args.oak_dice_length, args.oak_event_log)
    if all(value is None for value in values):
        return None
    if any(value is None for value in values):
        raise Stage0HandoffError(
            "stage0 hand-off: --oak-dice, --oak-dice-length and --oak-event-log come together"
        )
    assert args.oak_dice is not None and args.oak_dice_length is not None
    assert args.oak_event_log is not None
    handoff = Stage0Handoff(args.oak_dice, args.oak_dice_length, args.oak_event_log)
    handoff.check()
    return handoff


# --- decoders (pure) ------------------------------------------------------------------------


def _length_prefixed(raw: bytes, offset: int, what: str) -> bytes:
    if len(raw) < offset + 8:
        raise Stage0HandoffError(f"{what}: truncated header ({len(raw)} bytes)")
    (length,) = struct.unpack_from("<Q", raw, offset)
    body = offset + 8
    if length == 0 or body + length > len(raw):
        raise Stage0HandoffError(
            f"{what}: length {length} does not fit in the {len(raw) - body} bytes after it"
        )
    return raw[body : body + length]


def decode_attester(raw: bytes, what: str = "stage0 attester") -> dice_pb2.DiceData:
    """``b"OakProto"``, u64 LE length, ``DiceData`` (module rules)."""
    if raw[:8] != OAK_PROTO_MAGIC:
        raise Stage0HandoffError(f"{what}: wrong magic {raw[:8]!r} (expected {OAK_PROTO_MAGIC!r})")
    body = _length_prefixed(raw, 8, what)
    message = dice_pb2.DiceData()
    try:
        message.ParseFromString(body)
    except DecodeError:
        raise Stage0HandoffError(f"{what}: the DiceData proto does not parse") from None
    if not message.HasField("evidence") or not message.certificate_authority.eca_private_key:
        raise Stage0HandoffError(f"{what}: DiceData without evidence or ECA private key")
    return message


def decode_event_log(raw: bytes, what: str = "stage0 event log") -> eventlog_pb2.EventLog:
    """u64 LE length, then an ``EventLog`` proto (module rules)."""
    body = _length_prefixed(raw, 0, what)
    message = eventlog_pb2.EventLog()
    try:
        message.ParseFromString(body)
    except DecodeError:
        raise Stage0HandoffError(f"{what}: the EventLog proto does not parse") from None
    return message


@dataclass(frozen=True)
class LegacyDice:
    """The fields of the legacy ``Stage0DiceData`` struct that are checked (no private key)."""

    tee_platform: int
    eca_public_key_field: bytes
    certificate_field: bytes

    def __repr__(self) -> str:
        return f"LegacyDice(tee_platform={self.tee_platform})"


def decode_legacy(raw: bytes, what: str = "stage0 DICE data") -> LegacyDice:
    """Magic ``b"oak.dice"`` and the root layer's platform, key and certificate fields."""
    if raw[:8] != LEGACY_MAGIC:
        raise Stage0HandoffError(f"{what}: wrong magic {raw[:8]!r} (expected {LEGACY_MAGIC!r})")
    if len(raw) < LEGACY_SIZE:
        raise Stage0HandoffError(f"{what}: {len(raw)} bytes, the struct needs {LEGACY_SIZE}")
    (platform,) = struct.unpack_from("<Q", raw, LEGACY_TEE_PLATFORM)
    return LegacyDice(
        tee_platform=platform,
        eca_public_key_field=bytes(raw[LEGACY_ECA_PUBLIC_KEY:LEGACY_CERTIFICATE]),
        certificate_field=bytes(raw[LEGACY_CERTIFICATE : LEGACY_CERTIFICATE + 1024]),
    )


# --- the E820 map ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryRange:
    start: int
    end: int  # inclusive, as the kernel prints it
    kind: str


def parse_iomem(text: str) -> list[MemoryRange]:
    """The top-level ranges of ``/proc/iomem`` (``start-end : name``)."""
    ranges = []
    for line in text.splitlines():
        if not line or line[0].isspace() or " : " not in line:
            continue
        span, name = line.split(" : ", 1)
        start, _, end = span.partition("-")
        try:
            ranges.append(MemoryRange(int(start, 16), int(end, 16), name.strip()))
        except ValueError:
            continue
    return ranges


def is_reserved(ranges: Sequence[MemoryRange], start: int, length: int) -> bool:
    """``[start, start+length)`` lies inside one range named ``Reserved`` (any case)."""
    last = start + length - 1
    return any(r.kind.lower() == "reserved" and r.start <= start and last <= r.end for r in ranges)


def read_memory_map(memmap: Path = MEMMAP, iomem: Path = IOMEM) -> list[MemoryRange]:
    """The firmware's E820 map from ``memmap``, else the top level of ``iomem``."""
    if memmap.is_dir():
        ranges = []
        for entry in memmap.iterdir():
            try:
                ranges.append(
                    MemoryRange(
                        int((entry / "start").read_text().strip(), 16),
                        int((entry / "end").read_text().strip(), 16),
                        (entry / "type").read_text().strip(),
                    )
                )
            except (OSError, ValueError):
                continue
        if ranges:
            return ranges
    try:
        return parse_iomem(iomem.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise Stage0HandoffError(f"stage0 hand-off: {iomem}: {exc.strerror}") from None


# --- taking it ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TakenDice:
    dice_data: dice_pb2.DiceData
    event_count: int
    zeroed: bool

    def __repr__(self) -> str:
        return f"TakenDice(event_count={self.event_count}, zeroed={self.zeroed})"


def take_stage0_dice(
    handoff: Stage0Handoff,
    *,
    mem: Path = DEV_MEM,
    memory_map: Sequence[MemoryRange] | None = None,
) -> TakenDice:
    """Check, read and decode stage0's hand-off, then zero the whole range (module rules)."""
    ranges = read_memory_map() if memory_map is None else memory_map
    if not is_reserved(ranges, handoff.dice_address, handoff.dice_length):
        raise Stage0HandoffError(
            f"stage0 hand-off: the DICE range {handoff.describe()} is not E820-reserved"
        )
    try:
        fd = os.open(mem, os.O_RDWR | os.O_SYNC)
    except OSError as exc:
        raise Stage0HandoffError(f"stage0 hand-off: {mem}: {exc.strerror}") from None
    try:
        raw = os.pread(fd, handoff.dice_length, handoff.dice_address)
        if len(raw) != handoff.dice_length:
            raise Stage0HandoffError(
                f"stage0 hand-off: read {len(raw)} of {handoff.dice_length} bytes from {mem}"
            )
        offset = handoff.attester_address - handoff.dice_address
        dice_data = decode_attester(raw[offset:])
        log = decode_event_log(raw[handoff.event_log_address - handoff.dice_address :])
        os.pwrite(fd, bytes(handoff.dice_length), handoff.dice_address)
        zeroed = os.pread(fd, handoff.dice_length, handoff.dice_address) == bytes(
            handoff.dice_length
        )
    except OSError as exc:
        raise Stage0HandoffError(
            f"stage0 hand-off: {mem} at {handoff.describe()}: {exc.strerror}"
        ) from None
    finally:
        os.close(fd)
    if not zeroed:
        raise Stage0HandoffError(f"stage0 hand-off: the range {handoff.describe()} is not zero")
    return TakenDice(dice_data=dice_data, event_count=len(log.encoded_events), zeroed=zeroed)
