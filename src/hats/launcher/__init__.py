"""The host side of a HATs CVM (spec system-image §5, wire-protocol §3.1–3.2, §3.5).

``config`` reads the reference ``LauncherConfig`` and the system bundle;
``services`` holds the servicers (``oak.containers.Launcher``,
``pcit.client.LauncherService`` with its lock-step TVS proxy, OTLP
``LogsService`` and ``MetricsService``); ``telemetry`` the logs file and the
metrics store behind the OTLP ones; ``server`` hosts them on one gRPC server
(TCP, unix or vsock); ``cli`` is ``hats launcher serve`` and ``hats launcher
metrics``. QEMU is not started here.

The package imports nothing itself; import from the module that owns a name.
"""
