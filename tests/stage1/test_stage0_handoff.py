"""Stage1's side of the real Oak stage0 hand-off (upstream-facts F11), on real dumps.

The expected digests are the ones real stage0 printed on its console in the same
boot (``stage0-console.log``), never values computed by our code.
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path

import pytest

import shared_data
from hats.pb.oak.attestation.v1 import eventlog_pb2, evidence_pb2
from hats.stage1 import handoff
from hats.stage1.cmdline import parse_proc_cmdline, parse_stage1_args, stage1_argv
from hats.stage1.errors import Stage0HandoffError

DUMPS = shared_data.OAK_STAGE0
CONSOLE = (DUMPS / "stage0-console.log").read_text()


def console_digest(label: str) -> bytes:
    match = re.search(rf"stage0 DEBUG: {re.escape(label)}: sha2-256:([0-9a-f]{{64}})", CONSOLE)
    assert match, label
    return bytes.fromhex(match.group(1))


def console_value(label: str) -> str:
    match = re.search(rf"^stage0 DEBUG: {re.escape(label)}: (.*)$", CONSOLE, re.M)
    assert match, label
    return match.group(1)


def attester() -> bytes:
    return (DUMPS / "stage0-attester.bin").read_bytes()


def stage0_measurements(encoded_event: bytes) -> eventlog_pb2.Stage0Measurements:
    event = eventlog_pb2.Event.FromString(encoded_event)
    assert event.tag == "Stage0"
    assert event.event.type_url == "type.googleapis.com/oak.attestation.v1.Stage0Measurements"
    return eventlog_pb2.Stage0Measurements.FromString(event.event.value)


def test_f11_attester_page_decodes_with_stage0s_console_digests() -> None:
    data = handoff.decode_attester(attester())
    evidence = data.evidence
    assert evidence.root_layer.platform == evidence_pb2.TEE_PLATFORM_NONE
    assert len(evidence.root_layer.remote_attestation_report) == 1184
    assert len(evidence.layers) == 1 and len(evidence.event_log.encoded_events) == 1
    encoded = evidence.event_log.encoded_events[0]
    assert hashlib.sha256(encoded).digest() == console_digest("Event digest")
    m = stage0_measurements(encoded)
    assert m.kernel_measurement == console_digest("Kernel image digest")
    assert m.setup_data_digest == console_digest("Kernel setup data digest")
    assert m.ram_disk_digest == console_digest("Initial RAM disk digest")
    assert m.acpi_digest == console_digest("ACPI table generation digest")
    assert m.memory_map_digest == console_digest("E820 table digest")
    # Stage0 measures the command line *before* appending its own --oak-* arguments.
    assert m.kernel_cmdline == console_value("Kernel command-line")
    assert "--oak-dice" not in m.kernel_cmdline
    assert len(data.certificate_authority.eca_private_key) in (32, 64)


def test_f11_event_log_page_holds_the_same_stage0_event() -> None:
    log = handoff.decode_event_log((DUMPS / "stage0-event-log.bin").read_bytes())
    assert len(log.encoded_events) == 1
    assert hashlib.sha256(log.encoded_events[0]).digest() == console_digest("Event digest")
    data = handoff.decode_attester(attester())
    assert log.encoded_events[0] == data.evidence.event_log.encoded_events[0]


def test_f11_legacy_struct_matches_the_attester_proto() -> None:
    legacy = handoff.decode_legacy((DUMPS / "stage0-dice-data.bin").read_bytes())
    assert legacy.tee_platform == 3  # TEE_PLATFORM_NONE
    evidence = handoff.decode_attester(attester()).evidence
    key = evidence.root_layer.eca_public_key
    assert legacy.eca_public_key_field[: len(key)] == key
    certificate = evidence.layers[0].eca_certificate
    assert legacy.certificate_field[: len(certificate)] == certificate
    assert "eca" not in repr(legacy).lower()


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda raw: b"OakPrutz" + raw[8:], "wrong magic"),
        (lambda raw: raw[:12], "truncated header"),
        (lambda raw: raw[:100], "does not fit"),
        (lambda raw: raw[:8] + struct.pack("<Q", 0) + raw[16:], "length 0 does not fit"),
        (lambda raw: raw[:8] + struct.pack("<Q", 5000) + raw[16:], "does not fit"),
        (lambda raw: raw[:16] + b"\xff" * 64, "does not fit"),
    ],
)
def test_bad_attester_region_is_refused_with_one_line(mutate: object, reason: str) -> None:
    with pytest.raises(Stage0HandoffError, match=reason) as info:
        handoff.decode_attester(mutate(attester()))  # type: ignore[operator]
    assert "\n" not in str(info.value)


def test_attester_with_garbage_proto_is_refused() -> None:
    raw = b"OakProto" + struct.pack("<Q", 4) + b"\xff\xff\xff\xff"
    with pytest.raises(Stage0HandoffError, match="does not parse"):
        handoff.decode_attester(raw)


def test_legacy_wrong_magic_and_truncated_event_log_are_refused() -> None:
    with pytest.raises(Stage0HandoffError, match="wrong magic"):
        handoff.decode_legacy(b"oak.dicX" + bytes(4088))
    raw = (DUMPS / "stage0-event-log.bin").read_bytes()
    with pytest.raises(Stage0HandoffError, match="does not fit"):
        handoff.decode_event_log(raw[:50])


def test_f11_the_real_command_line_gives_the_handoff() -> None:
    text = CONSOLE.split("CMDLINE: ", 1)[1].splitlines()[0]
    args = parse_stage1_args(stage1_argv(parse_proc_cmdline(text)))
    found = handoff.handoff_from_args(args)
    assert found == handoff.Stage0Handoff(0x12000, 12288, 0x13000)
    assert found.attester_address == 0x14000


def test_handoff_arguments_come_together_and_inside_the_range() -> None:
    assert handoff.handoff_from_args(parse_stage1_args(["--launcher-addr=vsock://2:1"])) is None
    with pytest.raises(Stage0HandoffError, match="come together"):
        handoff.handoff_from_args(parse_stage1_args(["--oak-dice=0x12000"]))
    args = parse_stage1_args(
        ["--oak-dice=0x12000", "--oak-dice-length=8192", "--oak-event-log=0x13000"]
    )
    with pytest.raises(Stage0HandoffError, match="attester page at 0x14000 is outside"):
        handoff.handoff_from_args(args)


IOMEM = """\
00000000-00000fff : Reserved
00001000-00011fff : System RAM
00012000-00014fff : Reserved
00015000-0009ffff : System RAM
  00015000-00015fff : Kernel code
000f0000-000fffff : Reserved
"""


def test_iomem_reserved_check() -> None:
    ranges = handoff.parse_iomem(IOMEM)
    assert handoff.is_reserved(ranges, 0x12000, 12288)
    assert not handoff.is_reserved(ranges, 0x12000, 12289)
    assert not handoff.is_reserved(ranges, 0x15000, 4096)


def fake_memory(tmp_path: Path) -> Path:
    mem = tmp_path / "mem"
    with mem.open("wb") as out:
        out.truncate(0x20000)
        out.seek(0x12000)
        out.write((DUMPS / "stage0-dice-data.bin").read_bytes())
        out.write((DUMPS / "stage0-event-log.bin").read_bytes())
        out.write(attester())
    return mem


def test_take_reads_decodes_and_zeroes_the_whole_range(tmp_path: Path) -> None:
    mem = fake_memory(tmp_path)
    taken = handoff.take_stage0_dice(
        handoff.Stage0Handoff(0x12000, 12288, 0x13000),
        mem=mem,
        memory_map=handoff.parse_iomem(IOMEM),
    )
    assert taken.zeroed and taken.event_count == 1
    assert taken.dice_data == handoff.decode_attester(attester())
    after = mem.read_bytes()
    assert after[0x12000:0x15000] == bytes(12288)
    assert len(after) == 0x20000


def test_take_refuses_a_range_that_is_not_reserved(tmp_path: Path) -> None:
    mem = fake_memory(tmp_path)
    ranges = handoff.parse_iomem(
        IOMEM.replace("00012000-00014fff : Reserved", "00012000-00014fff : System RAM")
    )
    with pytest.raises(Stage0HandoffError, match="not E820-reserved"):
        handoff.take_stage0_dice(
            handoff.Stage0Handoff(0x12000, 12288, 0x13000), mem=mem, memory_map=ranges
        )
    assert mem.read_bytes()[0x12000:0x12008] == b"oak.dice"  # untouched
