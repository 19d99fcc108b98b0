"""Journal entries → OTLP log records (spec system-image §4.2), pure.

An entry is a mapping of journal field names to their values as bytes (a
field may repeat; :mod:`hats.syslogd.journal` reads them from journalctl).
:func:`entry_to_record`:

- drops entries whose ``PRIORITY`` is above 6 (debug), like the reference;
- severity from ``PRIORITY``: 0→ERROR4, 1→ERROR3, 2→ERROR2, 3→ERROR, 4→WARN,
  5→INFO2, 6→INFO, other numbers→TRACE (number and text). Without a
  ``PRIORITY`` (or with one that is not a number) the severity is left
  unspecified and the entry is kept;
- ``time_unix_nano``: ``_SOURCE_REALTIME_TIMESTAMP`` (when the message was
  made) or else ``__REALTIME_TIMESTAMP`` (when journald stored it), both
  microseconds, × 1000 — the reference reads the microseconds as seconds;
  ``observed_time_unix_nano``: ``__REALTIME_TIMESTAMP`` × 1000;
- body: ``MESSAGE`` as a string;
- attributes: every other field, sorted by name, as strings, except what
  the reference also leaves out: ``PRIORITY`` and
  ``_SOURCE_REALTIME_TIMESTAMP`` (carried by severity and time) and the
  journal's address fields ``__CURSOR``, ``__REALTIME_TIMESTAMP``,
  ``__MONOTONIC_TIMESTAMP``, ``__SEQNUM``… (libsystemd does not enumerate
  them as fields). A field that repeats becomes an array of strings (the
  reference keeps only the last value); a ``PRIORITY`` or
  ``_SOURCE_REALTIME_TIMESTAMP`` that cannot be used stays an attribute.

Values that are not UTF-8 become ``"non-string"``, as in the reference
(valid UTF-8 with control characters, e.g. a newline or colour codes, is
text and is kept). For a repeated ``MESSAGE``, ``PRIORITY`` or timestamp the
last value counts, as in the reference's field map.

Resource ``service.name=unknown_service`` and scope ``TEE Log``, as the
reference's SDK sends them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from hats.telemetry.batching import LossReport

SCOPE_NAME = "TEE Log"
SERVICE_NAME = "unknown_service"
NON_STRING = "non-string"
MAX_PRIORITY = 6
"""Entries with a higher ``PRIORITY`` (7 = debug) are dropped."""

PRIORITY = "PRIORITY"
MESSAGE = "MESSAGE"
SOURCE_REALTIME = "_SOURCE_REALTIME_TIMESTAMP"
REALTIME = "__REALTIME_TIMESTAMP"
SYSTEMD_UNIT = "_SYSTEMD_UNIT"

_S = logs_pb2.SeverityNumber
SEVERITIES: dict[int, tuple[logs_pb2.SeverityNumber.ValueType, str]] = {
    0: (_S.SEVERITY_NUMBER_ERROR4, "ERROR4"),
    1: (_S.SEVERITY_NUMBER_ERROR3, "ERROR3"),
    2: (_S.SEVERITY_NUMBER_ERROR2, "ERROR2"),
    3: (_S.SEVERITY_NUMBER_ERROR, "ERROR"),
    4: (_S.SEVERITY_NUMBER_WARN, "WARN"),
    5: (_S.SEVERITY_NUMBER_INFO2, "INFO2"),
    6: (_S.SEVERITY_NUMBER_INFO, "INFO"),
    7: (_S.SEVERITY_NUMBER_DEBUG, "DEBUG"),
}
TRACE: tuple[logs_pb2.SeverityNumber.ValueType, str] = (_S.SEVERITY_NUMBER_TRACE, "TRACE")

JournalEntry = Mapping[str, Sequence[bytes]]


def text(value: bytes) -> str:
    """A field value as text: UTF-8, else ``"non-string"``."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return NON_STRING


def _integer(value: bytes) -> int | None:
    """A decimal integer (optional ``-``), ASCII only; None otherwise."""
    body = value[1:] if value.startswith(b"-") else value
    if not body or not body.isdigit() or len(body) > 20:
        return None
    return int(value)


def severity(priority: int) -> tuple[logs_pb2.SeverityNumber.ValueType, str]:
    """The OTLP severity of a syslog priority (the reference's table)."""
    return SEVERITIES.get(priority, TRACE)


def _last(entry: JournalEntry, name: str) -> bytes | None:
    values = entry.get(name)
    return values[-1] if values else None


def _microseconds(value: bytes | None) -> int | None:
    if value is None:
        return None
    number = _integer(value)
    return number if number is not None and number >= 0 else None


def entry_to_record(entry: JournalEntry) -> logs_pb2.LogRecord | None:
    """The log record for one journal entry; None for a dropped (debug) entry."""
    record = logs_pb2.LogRecord()
    used: set[str] = {MESSAGE}

    raw_priority = _last(entry, PRIORITY)
    if raw_priority is not None:
        priority = _integer(raw_priority)
        if priority is not None:
            if priority > MAX_PRIORITY:
                return None
            record.severity_number, record.severity_text = severity(priority)
            used.add(PRIORITY)

    realtime = _microseconds(_last(entry, REALTIME))
    source = _microseconds(_last(entry, SOURCE_REALTIME))
    if source is not None:
        used.add(SOURCE_REALTIME)
    when = source if source is not None else realtime
    if when is not None:
        record.time_unix_nano = when * 1000
    if realtime is not None:
        record.observed_time_unix_nano = realtime * 1000

    message = _last(entry, MESSAGE)
    if message is not None:
        record.body.string_value = text(message)

    for name in sorted(entry):
        values = entry[name]
        if name in used or name.startswith("__") or not values:
            continue
        attribute = record.attributes.add(key=name)
        if len(values) == 1:
            attribute.value.string_value = text(values[0])
        else:
            attribute.value.array_value.values.extend(
                common_pb2.AnyValue(string_value=text(v)) for v in values
            )
    return record


def loss_record(
    report: LossReport, now_unix_nano: int, unit: str, identifier: str
) -> logs_pb2.LogRecord:
    """The record that tells the launcher how many records were lost, and why.

    It carries ``_SYSTEMD_UNIT`` (``unit``) so launchers that print only
    records with a unit (the reference's) print it too.
    """
    parts = []
    if report.dropped:
        parts.append(
            f"{report.dropped} journal records were dropped while the launcher was "
            f"unreachable or slow (the queue holds {report.bound} records)"
        )
    if report.rejected:
        parts.append(f"{report.rejected} journal records were refused by the launcher")
    record = logs_pb2.LogRecord(
        time_unix_nano=now_unix_nano,
        observed_time_unix_nano=now_unix_nano,
        severity_number=_S.SEVERITY_NUMBER_WARN,
        severity_text="WARN",
    )
    record.body.string_value = "; ".join(parts)
    for key, value in (
        ("HATS_DROPPED_RECORDS", str(report.dropped)),
        ("HATS_REJECTED_RECORDS", str(report.rejected)),
        ("SYSLOG_IDENTIFIER", identifier),
        (SYSTEMD_UNIT, unit),
    ):
        record.attributes.add(key=key).value.string_value = value
    return record


def resource() -> resource_pb2.Resource:
    """The reference SDK's default resource: ``service.name=unknown_service``."""
    value = resource_pb2.Resource()
    value.attributes.add(key="service.name").value.string_value = SERVICE_NAME
    return value


def logs_request(
    records: Sequence[logs_pb2.LogRecord],
) -> logs_service_pb2.ExportLogsServiceRequest:
    """One ``ExportLogsServiceRequest``: one resource, scope ``TEE Log``, the records."""
    request = logs_service_pb2.ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.CopyFrom(resource())
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = SCOPE_NAME
    scope_logs.log_records.extend(records)
    return request
