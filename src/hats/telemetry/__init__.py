"""What the two telemetry agents (``hats.syslogd``, ``hats.agent``) share.

- :mod:`.batching` — the pure export pipeline: a bounded queue, batches by
  count, bytes and delay, drop/reject counting, the retry schedule
  (:class:`~.batching.BatchQueue`, :class:`~.batching.Backoff`);
- :mod:`.worker` — the thread that runs a :class:`~.batching.BatchQueue`
  against a real exporter, with a flush deadline at shutdown;
- :mod:`.otlp_grpc` — the gRPC channel to the launcher and a typed OTLP
  ``Export`` call (success, retry or reject from the status code);
- :mod:`.otlp_logs` — journal entries → OTLP ``LogRecord`` (pure);
- :mod:`.procfs` — ``/proc/stat``, ``/proc/meminfo``, ``/proc/net/dev`` parsing;
- :mod:`.otlp_metrics` — /proc snapshots → OTLP metrics (pure);
- :mod:`.runtime` — the agents' shared shell: settings from flags, the
  worker and its channel, stop signals.

Runs inside the image on Debian's ``python3``: the standard library and the
locked wheels (grpcio, protobuf, opentelemetry-proto) only.
"""
