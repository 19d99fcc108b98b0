"""The default base root filesystem, described as data (no I/O here).

This is an Oak-equivalent Debian bookworm root filesystem (see
``system-image.md`` §2.2): bookworm ``minbase`` plus systemd, systemd-sysv,
dbus, udev and runc without recommends, Oak's configuration files (our own
text, written from the documented directives, all mode 0755 like Oak's
``COPY --chmod=0755``), the same ``systemctl`` enablement, the same
determinism clean-up, and no Oak binaries and no ``/oak``.

Everything that influences the bytes of the base is in this module, so the
cache key (:func:`recipe_description`) is derived from it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from hats.reproducible import EPOCH

#: Bump when the build procedure changes in a way not visible in the data below.
RECIPE_VERSION = 1

SUITE = "bookworm"
ARCHITECTURE = "amd64"
#: ``minbase`` = Essential plus Priority: required plus apt, the package set of
#: Debian's own container images, on which Oak's base was built.
VARIANT = "minbase"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
COMPONENTS = ("main",)

#: Oak's ``apt-get install --no-install-recommends`` list (mmdebstrap never
#: installs recommends).
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "udev", "runc")
#: Extra packages for ``--with-python`` (bookworm's python3 is 3.11).
PYTHON_PACKAGES = ("python3",)

#: 2000-01-01T00:00:00Z: Oak's ``tar --mtime='2000-01-01Z'`` and the
#: ``SOURCE_DATE_EPOCH`` given to mmdebstrap and the maintainer scripts.
SOURCE_DATE_EPOCH = EPOCH
#: Every shadow "last password change" day is set to this (days since 1970).
SHADOW_LAST_CHANGE_DAYS = SOURCE_DATE_EPOCH // 86400

CONFIG_MODE = 0o755


@dataclass(frozen=True)
class ConfigFile:
    """A file placed into the root filesystem after the packages are installed."""

    path: str  # absolute path inside the root filesystem
    content: bytes
    mode: int = CONFIG_MODE


_HOSTS = b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

_JOURNALD_OVERRIDE = b"[Journal]\nStorage=volatile\nForwardToConsole=yes\nMaxLevelConsole=err\n"

_NETWORK_ENP0S1 = b"[Match]\nName=enp0s1\n\n[Network]\nAddress=10.0.2.15/24\n"

_OAK_ORCHESTRATOR_UNIT = b"""[Unit]
Description=Oak Containers Orchestrator
After=network-online.target
Wants=network-online.target
FailureAction=poweroff-force
SuccessAction=poweroff-force

[Service]
Type=simple
ExecStart=/bin/oak_containers_orchestrator --container-dir ${RUNTIME_DIRECTORY}/oak_container \
--ipc-socket-path ${RUNTIME_DIRECTORY}/oak_utils/orchestrator_ipc
ExecStopPost=/usr/bin/journalctl --sync --flush
ProtectSystem=strict
RuntimeDirectory=oak_containers_orchestrator
ReadWritePaths=/oak
PassEnvironment=LAUNCHER_ADDR

[Install]
WantedBy=multi-user.target
"""

_OAK_SYSLOGD_UNIT = b"""[Unit]
Description=Oak Containers Log Forwarder
Before=oak-orchestrator.service
After=network-online.target
Wants=network-online.target systemd-journald.service

[Service]
Type=exec
Restart=always
ExecStart=/usr/bin/oak_containers_syslogd
ProtectSystem=strict
# If forwarding fails, the errors are still visible on the serial console.
StandardOutput=tty
StandardError=tty

[Install]
WantedBy=multi-user.target
"""

_OAK_AGENT_UNIT = b"""[Unit]
Description=Oak Containers Metrics Agent
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
Restart=always
ExecStart=/usr/bin/oak_containers_agent ${LAUNCHER_ADDR}
ProtectSystem=strict
PassEnvironment=LAUNCHER_ADDR

[Install]
WantedBy=multi-user.target
"""

# The spec only says this unit exists and is not enabled; its body here is
# our own guess at its purpose (generate the NVIDIA CDI spec when the tool is
# present), inert in an image without nvidia-ctk.
_NVIDIA_CTK_UNIT = b"""[Unit]
Description=Generate the NVIDIA container device interface specification
ConditionPathExists=/usr/bin/nvidia-ctk

[Service]
Type=oneshot
ExecStart=/usr/bin/nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml

[Install]
WantedBy=multi-user.target
"""

_ROOT_PASSWD_UNIT = b"""[Unit]
Description=Allow password-less root login on debug boots
ConditionKernelCommandLine=debug

[Service]
Type=oneshot
ExecStart=/usr/bin/passwd --delete --expire root

[Install]
WantedBy=getty.target
"""

_SERIAL_GETTY_OVERRIDE = b"[Unit]\nConditionKernelCommandLine=debug\n"

_SYSUSERS_OAK = b"u oakc -\ng oakc -\nm oakc oakc\n"

CONFIG_FILES: tuple[ConfigFile, ...] = (
    ConfigFile("/etc/hosts", _HOSTS),
    ConfigFile("/etc/systemd/journald.conf.d/override.conf", _JOURNALD_OVERRIDE),
    ConfigFile("/etc/systemd/network/10-enp0s1.network", _NETWORK_ENP0S1),
    ConfigFile("/etc/systemd/system/nvidia-ctk.service", _NVIDIA_CTK_UNIT),
    ConfigFile("/etc/systemd/system/oak-agent.service", _OAK_AGENT_UNIT),
    ConfigFile("/etc/systemd/system/oak-orchestrator.service", _OAK_ORCHESTRATOR_UNIT),
    ConfigFile("/etc/systemd/system/oak-syslogd.service", _OAK_SYSLOGD_UNIT),
    ConfigFile("/etc/systemd/system/root-passwd.service", _ROOT_PASSWD_UNIT),
    ConfigFile("/etc/systemd/system/serial-getty@.service.d/override.conf", _SERIAL_GETTY_OVERRIDE),
    ConfigFile("/etc/sysusers.d/oak.conf", _SYSUSERS_OAK),
)

#: ``systemctl`` invocations, in Oak's order, run inside the chroot.
SYSTEMCTL_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("enable", "systemd-networkd"),
    ("enable", "oak-orchestrator", "oak-syslogd", "oak-agent"),
    ("disable", "getty@"),
    ("enable", "root-passwd"),
    ("set-default", "multi-user"),
)

_SYSTEM = "/etc/systemd/system"
_LIB = "/lib/systemd/system"

#: Symlinks the ``systemctl`` calls above create (with systemd 252 in
#: bookworm); checked after every build.
ENABLEMENT_LINKS: dict[str, str] = {
    f"{_SYSTEM}/default.target": f"{_LIB}/multi-user.target",
    f"{_SYSTEM}/dbus-org.freedesktop.network1.service": f"{_LIB}/systemd-networkd.service",
    f"{_SYSTEM}/multi-user.target.wants/systemd-networkd.service": (
        f"{_LIB}/systemd-networkd.service"
    ),
    f"{_SYSTEM}/sockets.target.wants/systemd-networkd.socket": f"{_LIB}/systemd-networkd.socket",
    f"{_SYSTEM}/sysinit.target.wants/systemd-network-generator.service": (
        f"{_LIB}/systemd-network-generator.service"
    ),
    f"{_SYSTEM}/network-online.target.wants/systemd-networkd-wait-online.service": (
        f"{_LIB}/systemd-networkd-wait-online.service"
    ),
    f"{_SYSTEM}/multi-user.target.wants/oak-orchestrator.service": (
        f"{_SYSTEM}/oak-orchestrator.service"
    ),
    f"{_SYSTEM}/multi-user.target.wants/oak-syslogd.service": f"{_SYSTEM}/oak-syslogd.service",
    f"{_SYSTEM}/multi-user.target.wants/oak-agent.service": f"{_SYSTEM}/oak-agent.service",
    f"{_SYSTEM}/getty.target.wants/root-passwd.service": f"{_SYSTEM}/root-passwd.service",
}

#: Paths that must not be in the base (checked after every build).
FORBIDDEN_PATHS: tuple[str, ...] = (
    "/oak",
    "/.dockerenv",
    f"{_SYSTEM}/getty.target.wants/getty@tty1.service",
    f"{_SYSTEM}/multi-user.target.wants/nvidia-ctk.service",
    "/usr/share/doc",
    "/usr/share/man",
    "/usr/share/info",
    "/var/cache/ldconfig/aux-cache",
    "/etc/passwd-",
    "/etc/shadow-",
)

#: Directories whose contents are dropped when the tarball is normalised:
#: device nodes are provided by devtmpfs at boot, so only ``/dev`` itself is
#: kept (stage1 unpacks as root, but nodes in the image serve no purpose).
OUTPUT_EMPTY_DIRS: tuple[str, ...] = ("dev",)


def packages(*, with_python: bool) -> tuple[str, ...]:
    """The ``--include`` list for mmdebstrap."""
    return BASE_PACKAGES + (PYTHON_PACKAGES if with_python else ())


def apt_sources(mirror: str, security_mirror: str) -> tuple[str, ...]:
    """One-line apt sources: the release, its updates and its security archive."""
    components = " ".join(COMPONENTS)
    return (
        f"deb {mirror} {SUITE} {components}",
        f"deb {mirror} {SUITE}-updates {components}",
        f"deb {security_mirror} {SUITE}-security {components}",
    )


def files_script() -> str:
    """Shell commands writing :data:`CONFIG_FILES` below the root in ``$R``.

    Parent directories that do not exist yet are created with mode 0755;
    every file gets its exact bytes (``printf %s``) and mode.
    """
    lines: list[str] = []
    for item in CONFIG_FILES:
        target = shlex.quote(item.path)
        parent = shlex.quote(item.path.rsplit("/", 1)[0] or "/")
        text = item.content.decode("utf-8")
        lines.append(f'mkdir -p -m 0755 "$R"{parent}')
        lines.append(f'rm -f "$R"{target}')
        lines.append(f'printf %s {shlex.quote(text)} > "$R"{target}')
        lines.append(f'chmod {item.mode:04o} "$R"{target}')
    return "\n".join(lines) + "\n"


def systemctl_script() -> str:
    """Shell commands enabling/disabling units inside the chroot at ``$R``."""
    lines = [
        'chroot "$R" systemctl --quiet {}'.format(" ".join(shlex.quote(a) for a in args))
        for args in SYSTEMCTL_COMMANDS
    ]
    return "\n".join(lines) + "\n"


def cleanup_script() -> str:
    """Shell commands making the tree deterministic (Oak's clean-up, §2.2 step 3-4).

    Run after the apt archive cache has been synced out of the chroot.
    Besides Oak's steps: ``/etc/group-`` and ``/etc/gshadow-`` are removed too,
    and ``/etc/hostname`` and ``/etc/resolv.conf`` (copied from the build host
    by mmdebstrap) are emptied, as ``docker export`` leaves them.
    """
    days = SHADOW_LAST_CHANGE_DAYS
    return f"""chroot "$R" apt-get clean
rm -rf "$R"/var/lib/apt/lists/*
rm -rf "$R"/var/cache/apt/archives/partial
rm -f "$R"/var/cache/apt/archives/lock "$R"/var/cache/apt/*.bin
awk -F: -v OFS=: -v d={days} '$3 ~ /^[0-9]+$/ && $3 != "0" {{ $3 = d }} {{ print }}' \\
  "$R"/etc/shadow > "$R"/etc/shadow.hats-new
cat "$R"/etc/shadow.hats-new > "$R"/etc/shadow
rm -f "$R"/etc/shadow.hats-new
rm -f "$R"/etc/passwd- "$R"/etc/shadow- "$R"/etc/group- "$R"/etc/gshadow-
: > "$R"/etc/machine-id
rm -f "$R"/etc/hostname "$R"/etc/resolv.conf
: > "$R"/etc/hostname
: > "$R"/etc/resolv.conf
chmod 0644 "$R"/etc/hostname "$R"/etc/resolv.conf
mkdir -p -m 0755 "$R"/var/lib/dbus
rm -f "$R"/var/lib/dbus/machine-id
ln -s /etc/machine-id "$R"/var/lib/dbus/machine-id
find "$R"/var/log -type f -exec truncate -s 0 {{}} +
rm -rf "$R"/usr/share/doc "$R"/usr/share/info "$R"/usr/share/man
rm -f "$R"/var/cache/ldconfig/aux-cache
rm -f "$R"/etc/dpkg/dpkg.cfg.d/99mmdebstrap
rm -rf "$R"/oak "$R"/.dockerenv
"""


def customize_script() -> str:
    """The whole ``--customize-hook`` (run by ``sh`` with the root as ``$1``)."""
    return 'set -eu\numask 022\nR="$1"\n' + files_script() + systemctl_script() + cleanup_script()


def recipe_description(*, with_python: bool, mirror: str, security_mirror: str) -> dict[str, Any]:
    """Everything that determines the base, as JSON-able data (hashed for the cache key)."""
    return {
        "recipe_version": RECIPE_VERSION,
        "suite": SUITE,
        "architecture": ARCHITECTURE,
        "variant": VARIANT,
        "sources": list(apt_sources(mirror, security_mirror)),
        "packages": list(packages(with_python=with_python)),
        "source_date_epoch": SOURCE_DATE_EPOCH,
        "customize": customize_script(),
        "output_empty_dirs": list(OUTPUT_EMPTY_DIRS),
    }
