"""The host side of a HATs CVM (spec system-image §5, wire-protocol §3.1–3.2, §3.5).

``config`` reads the reference ``LauncherConfig`` and the system bundle;
``services`` holds the servicers (``oak.containers.Launcher``,
``pcit.client.LauncherService`` with its lock-step TVS proxy, OTLP
``LogsService`` and ``MetricsService``); ``telemetry`` the logs file and the
metrics store behind the OTLP ones; ``server`` hosts them on one gRPC server
(TCP, unix or vsock); ``cli`` is ``hats launcher serve`` and ``hats launcher
metrics``. QEMU is not started here.
"""

from hats.launcher.config import (
    LauncherConfigError,
    LauncherImages,
    load_launcher_config,
    open_system_bundle,
    resolve_images,
)
from hats.launcher.server import ListenError, serve, start_server
from hats.launcher.services import (
    CHUNK_SIZE,
    HatsLauncherService,
    LauncherFlagError,
    LogsService,
    MetricsService,
    OakLauncher,
    build_metadata,
    make_tvs_channels,
    tvs_channel_credentials,
)

__all__ = [
    "CHUNK_SIZE",
    "HatsLauncherService",
    "LauncherConfigError",
    "LauncherFlagError",
    "LauncherImages",
    "ListenError",
    "LogsService",
    "MetricsService",
    "OakLauncher",
    "build_metadata",
    "load_launcher_config",
    "make_tvs_channels",
    "open_system_bundle",
    "resolve_images",
    "serve",
    "start_server",
    "tvs_channel_credentials",
]
