"""Journal entry → OTLP log record mapping (pure)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2

from hats.telemetry.batching import LossReport
from hats.telemetry.otlp_logs import (
    entry_to_record,
    logs_request,
    loss_record,
    severity,
)

S = logs_pb2.SeverityNumber


def _attributes(record: logs_pb2.LogRecord) -> dict[str, object]:
    out: dict[str, object] = {}
    for kv in record.attributes:
        if kv.value.WhichOneof("value") == "array_value":
            out[kv.key] = [v.string_value for v in kv.value.array_value.values]
        else:
            out[kv.key] = kv.value.string_value
    return out


@pytest.mark.parametrize(
    ("priority", "number", "text"),
    [
        (0, S.SEVERITY_NUMBER_ERROR4, "ERROR4"),
        (1, S.SEVERITY_NUMBER_ERROR3, "ERROR3"),
        (2, S.SEVERITY_NUMBER_ERROR2, "ERROR2"),
        (3, S.SEVERITY_NUMBER_ERROR, "ERROR"),
        (4, S.SEVERITY_NUMBER_WARN, "WARN"),
        (5, S.SEVERITY_NUMBER_INFO2, "INFO2"),
        (6, S.SEVERITY_NUMBER_INFO, "INFO"),
        (7, S.SEVERITY_NUMBER_DEBUG, "DEBUG"),
        (-1, S.SEVERITY_NUMBER_TRACE, "TRACE"),
    ],
)
def test_severity_table(priority: int, number: int, text: str) -> None:
    assert severity(priority) == (number, text)
    # and the OTLP enum values of the spec table
    assert {0: 20, 1: 19, 2: 18, 3: 17, 4: 13, 5: 10, 6: 9, 7: 5}.get(priority, 1) == number


def test_full_entry_mapping() -> None:
    record = entry_to_record(
        {
            "MESSAGE": (b"started",),
            "PRIORITY": (b"3",),
            "_SOURCE_REALTIME_TIMESTAMP": (b"1700000000000001",),
            "__REALTIME_TIMESTAMP": (b"1700000000500000",),
            "__MONOTONIC_TIMESTAMP": (b"42",),
            "__CURSOR": (b"s=1;i=2",),
            "_SYSTEMD_UNIT": (b"oak-orchestrator.service",),
            "_PID": (b"42",),
            "BIN": (b"\xff\xfe",),
            "REP": (b"a", b"\xff", b"c"),
        }
    )
    assert record is not None
    assert record.time_unix_nano == 1_700_000_000_000_001_000  # µs → ns, not seconds
    assert record.observed_time_unix_nano == 1_700_000_000_500_000_000
    assert (record.severity_number, record.severity_text) == (S.SEVERITY_NUMBER_ERROR, "ERROR")
    assert record.body.string_value == "started"
    assert _attributes(record) == {
        "BIN": "non-string",
        "REP": ["a", "non-string", "c"],
        "_PID": "42",
        "_SYSTEMD_UNIT": "oak-orchestrator.service",
    }
    assert [kv.key for kv in record.attributes] == sorted(_attributes(record))


def test_debug_and_above_is_dropped() -> None:
    assert entry_to_record({"MESSAGE": (b"x",), "PRIORITY": (b"7",)}) is None
    assert entry_to_record({"MESSAGE": (b"x",), "PRIORITY": (b"12",)}) is None
    assert entry_to_record({"MESSAGE": (b"x",), "PRIORITY": (b"6",)}) is not None


def test_missing_or_unusable_fields() -> None:
    record = entry_to_record({"__REALTIME_TIMESTAMP": (b"1000",), "FOO": (b"bar",)})
    assert record is not None
    assert record.severity_number == S.SEVERITY_NUMBER_UNSPECIFIED and not record.severity_text
    assert record.time_unix_nano == record.observed_time_unix_nano == 1_000_000
    assert record.body.WhichOneof("value") is None
    assert _attributes(record) == {"FOO": "bar"}
    # a PRIORITY or source timestamp that is not a number is kept as an attribute
    record = entry_to_record(
        {
            "PRIORITY": (b"high",),
            "_SOURCE_REALTIME_TIMESTAMP": (b"soon",),
            "MESSAGE": (b"\xc3",),
        }
    )
    assert record is not None
    assert record.severity_number == 0 and record.time_unix_nano == 0
    assert record.body.string_value == "non-string"
    assert _attributes(record) == {"PRIORITY": "high", "_SOURCE_REALTIME_TIMESTAMP": "soon"}


def test_repeated_special_fields_use_the_last_value() -> None:
    record = entry_to_record({"MESSAGE": (b"one", b"two"), "PRIORITY": (b"6", b"4")})
    assert record is not None
    assert record.body.string_value == "two" and record.severity_text == "WARN"


def test_loss_record_and_request_envelope() -> None:
    report = loss_record(LossReport(dropped=30, rejected=2, bound=20), 123, "u.service", "ident")
    assert report.severity_text == "WARN" and report.time_unix_nano == 123
    assert "30 journal records were dropped" in report.body.string_value
    assert "holds 20 records" in report.body.string_value
    assert "2 journal records were refused" in report.body.string_value
    assert _attributes(report) == {
        "HATS_DROPPED_RECORDS": "30",
        "HATS_REJECTED_RECORDS": "2",
        "SYSLOG_IDENTIFIER": "ident",
        "_SYSTEMD_UNIT": "u.service",
    }
    request = logs_request([report, report])
    (resource_logs,) = request.resource_logs
    assert [(a.key, a.value.string_value) for a in resource_logs.resource.attributes] == [
        ("service.name", "unknown_service")
    ]
    (scope_logs,) = resource_logs.scope_logs
    assert scope_logs.scope.name == "TEE Log"
    assert len(scope_logs.log_records) == 2


_NUMBER = re.compile(rb"-?[0-9]{1,20}")
_field = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=10)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(_field, st.lists(st.binary(max_size=20), min_size=1, max_size=3), max_size=8)
)
def test_mapping_keeps_every_field_but_the_consumed_ones(fields: dict[str, list[bytes]]) -> None:
    entry = {name: tuple(values) for name, values in fields.items()}
    record = entry_to_record(entry)
    priority = fields.get("PRIORITY", [b""])[-1]
    if _NUMBER.fullmatch(priority) and int(priority) > 6:
        assert record is None
        return
    assert record is not None
    keys = [kv.key for kv in record.attributes]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    for name, values in fields.items():
        if name.startswith("__") or name == "MESSAGE":
            assert name not in keys
        elif name not in keys:
            # only a usable PRIORITY or source timestamp may be consumed
            assert name in ("PRIORITY", "_SOURCE_REALTIME_TIMESTAMP")
            assert _NUMBER.fullmatch(values[-1])
            if name == "_SOURCE_REALTIME_TIMESTAMP":
                assert record.time_unix_nano == int(values[-1]) * 1000
        else:
            value = next(kv.value for kv in record.attributes if kv.key == name)
            shown = (
                [v.string_value for v in value.array_value.values]
                if len(values) > 1
                else [value.string_value]
            )
            assert shown == [v.decode() if _is_utf8(v) else "non-string" for v in values]


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_any_value_kinds_are_plain_strings() -> None:
    record = entry_to_record({"A": (b"x",)})
    assert record is not None
    assert record.attributes[0].value == common_pb2.AnyValue(string_value="x")
