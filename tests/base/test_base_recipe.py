"""The pure description of the default base (no network, no mmdebstrap)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from hats.base import recipe
from hats.base.cache import entry_name, recipe_key
from hats.base.mmdebstrap import BuildSpec

EXPECTED_FILES: dict[str, bytes] = {
    "/etc/hosts": b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    "/etc/systemd/journald.conf.d/override.conf": (
        b"[Journal]\nStorage=volatile\nForwardToConsole=yes\nMaxLevelConsole=err\n"
    ),
    "/etc/systemd/network/10-enp0s1.network": (
        b"[Match]\nName=enp0s1\n\n[Network]\nAddress=10.0.2.15/24\n"
    ),
    "/etc/systemd/system/oak-orchestrator.service": (
        b"[Unit]\n"
        b"Description=Oak Containers Orchestrator\n"
        b"After=network-online.target\n"
        b"Wants=network-online.target\n"
        b"FailureAction=poweroff-force\n"
        b"SuccessAction=poweroff-force\n"
        b"\n"
        b"[Service]\n"
        b"Type=simple\n"
        b"ExecStart=/bin/oak_containers_orchestrator"
        b" --container-dir ${RUNTIME_DIRECTORY}/oak_container"
        b" --ipc-socket-path ${RUNTIME_DIRECTORY}/oak_utils/orchestrator_ipc\n"
        b"ExecStopPost=/usr/bin/journalctl --sync --flush\n"
        b"ProtectSystem=strict\n"
        b"RuntimeDirectory=oak_containers_orchestrator\n"
        b"ReadWritePaths=/oak\n"
        b"PassEnvironment=LAUNCHER_ADDR\n"
        b"\n"
        b"[Install]\n"
        b"WantedBy=multi-user.target\n"
    ),
    "/etc/systemd/system/oak-syslogd.service": (
        b"[Unit]\n"
        b"Description=Oak Containers Log Forwarder\n"
        b"Before=oak-orchestrator.service\n"
        b"After=network-online.target\n"
        b"Wants=network-online.target systemd-journald.service\n"
        b"\n"
        b"[Service]\n"
        b"Type=exec\n"
        b"Restart=always\n"
        b"ExecStart=/usr/bin/oak_containers_syslogd\n"
        b"ProtectSystem=strict\n"
        b"# If forwarding fails, the errors are still visible on the serial console.\n"
        b"StandardOutput=tty\n"
        b"StandardError=tty\n"
        b"\n"
        b"[Install]\n"
        b"WantedBy=multi-user.target\n"
    ),
    "/etc/systemd/system/oak-agent.service": (
        b"[Unit]\n"
        b"Description=Oak Containers Metrics Agent\n"
        b"After=network-online.target\n"
        b"Wants=network-online.target\n"
        b"\n"
        b"[Service]\n"
        b"Type=exec\n"
        b"Restart=always\n"
        b"ExecStart=/usr/bin/oak_containers_agent ${LAUNCHER_ADDR}\n"
        b"ProtectSystem=strict\n"
        b"PassEnvironment=LAUNCHER_ADDR\n"
        b"\n"
        b"[Install]\n"
        b"WantedBy=multi-user.target\n"
    ),
    "/etc/systemd/system/nvidia-ctk.service": (
        b"[Unit]\n"
        b"Description=Generate the NVIDIA container device interface specification\n"
        b"ConditionPathExists=/usr/bin/nvidia-ctk\n"
        b"\n"
        b"[Service]\n"
        b"Type=oneshot\n"
        b"ExecStart=/usr/bin/nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml\n"
        b"\n"
        b"[Install]\n"
        b"WantedBy=multi-user.target\n"
    ),
    "/etc/systemd/system/root-passwd.service": (
        b"[Unit]\n"
        b"Description=Allow password-less root login on debug boots\n"
        b"ConditionKernelCommandLine=debug\n"
        b"\n"
        b"[Service]\n"
        b"Type=oneshot\n"
        b"ExecStart=/usr/bin/passwd --delete --expire root\n"
        b"\n"
        b"[Install]\n"
        b"WantedBy=getty.target\n"
    ),
    "/etc/systemd/system/serial-getty@.service.d/override.conf": (
        b"[Unit]\nConditionKernelCommandLine=debug\n"
    ),
    "/etc/sysusers.d/oak.conf": b"u oakc -\ng oakc -\nm oakc oakc\n",
}


def test_config_files_exact_content_and_mode() -> None:
    got = {f.path: f.content for f in recipe.CONFIG_FILES}
    assert got == EXPECTED_FILES
    assert all(f.mode == 0o755 for f in recipe.CONFIG_FILES)
    assert all(
        f.content.endswith(b"\n") and not f.content.endswith(b"\n\n") for f in recipe.CONFIG_FILES
    )


def test_package_lists() -> None:
    assert recipe.SUITE == "bookworm"
    assert recipe.VARIANT == "minbase"
    assert recipe.packages(with_python=False) == ("systemd", "systemd-sysv", "dbus", "udev", "runc")
    assert recipe.packages(with_python=True)[-1] == "python3"


def test_apt_sources() -> None:
    assert recipe.apt_sources("http://m/debian", "http://m/debian-security") == (
        "deb http://m/debian bookworm main",
        "deb http://m/debian bookworm-updates main",
        "deb http://m/debian-security bookworm-security main",
    )


def test_enablement_in_oak_order() -> None:
    assert recipe.SYSTEMCTL_COMMANDS == (
        ("enable", "systemd-networkd"),
        ("enable", "oak-orchestrator", "oak-syslogd", "oak-agent"),
        ("disable", "getty@"),
        ("enable", "root-passwd"),
        ("set-default", "multi-user"),
    )
    script = recipe.systemctl_script()
    assert script.splitlines()[0] == 'chroot "$R" systemctl --quiet enable systemd-networkd'
    assert 'chroot "$R" systemctl --quiet disable getty@' in script
    assert 'chroot "$R" systemctl --quiet set-default multi-user' in script


def test_expected_enablement_links() -> None:
    links = recipe.ENABLEMENT_LINKS
    wants = "/etc/systemd/system/multi-user.target.wants/"
    for unit in ("oak-orchestrator", "oak-syslogd", "oak-agent"):
        assert links[f"{wants}{unit}.service"] == f"/etc/systemd/system/{unit}.service"
    assert (
        links[f"{wants}systemd-networkd.service"] == "/lib/systemd/system/systemd-networkd.service"
    )
    assert links["/etc/systemd/system/getty.target.wants/root-passwd.service"] == (
        "/etc/systemd/system/root-passwd.service"
    )
    assert links["/etc/systemd/system/default.target"] == "/lib/systemd/system/multi-user.target"
    assert "/etc/systemd/system/getty.target.wants/getty@tty1.service" in recipe.FORBIDDEN_PATHS
    assert "/oak" in recipe.FORBIDDEN_PATHS
    assert "/.dockerenv" in recipe.FORBIDDEN_PATHS


def test_cleanup_script_covers_oak_steps() -> None:
    script = recipe.cleanup_script()
    for needle in (
        'chroot "$R" apt-get clean',
        'rm -rf "$R"/var/lib/apt/lists/*',
        'rm -f "$R"/etc/passwd- "$R"/etc/shadow-',
        ': > "$R"/etc/machine-id',
        'ln -s /etc/machine-id "$R"/var/lib/dbus/machine-id',
        'find "$R"/var/log -type f -exec truncate -s 0 {} +',
        'rm -rf "$R"/usr/share/doc "$R"/usr/share/info "$R"/usr/share/man',
        'rm -f "$R"/var/cache/ldconfig/aux-cache',
        "-v d=10957",
    ):
        assert needle in script
    assert recipe.SHADOW_LAST_CHANGE_DAYS == 10957  # 2000-01-01


def test_customize_script_is_strict() -> None:
    script = recipe.customize_script()
    assert script.startswith('set -eu\numask 022\nR="$1"\n')
    # Files first, then systemctl (which needs the unit files), then the clean-up.
    assert script.index("oak.conf") < script.index("systemctl") < script.index("apt-get clean")


def _run_sh(script: str, root: Path) -> None:
    subprocess.run(
        ["sh", "-c", 'set -eu\numask 022\nR="$1"\n' + script, "sh", str(root)], check=True
    )


def test_files_script_writes_exact_files(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hosts").write_text("old\n")
    os.chmod(tmp_path / "etc" / "hosts", 0o600)
    _run_sh(recipe.files_script(), tmp_path)
    for path, content in EXPECTED_FILES.items():
        target = tmp_path / path.lstrip("/")
        assert target.read_bytes() == content, path
        assert stat.S_IMODE(target.stat().st_mode) == 0o755, path
    assert stat.S_IMODE((tmp_path / "etc/sysusers.d").stat().st_mode) == 0o755


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for chown-free shadow handling")
def test_cleanup_shell_parts_on_a_fake_root(tmp_path: Path) -> None:
    """The non-chroot clean-up steps, run against a fake tree."""
    root = tmp_path
    for d in ("etc", "var/log/apt", "var/lib/dbus", "var/cache/ldconfig", "usr/share/doc/x"):
        (root / d).mkdir(parents=True)
    (root / "etc/shadow").write_text(
        "root:*:19000:0:99999:7:::\nmessagebus:!:19500::::::\nnobody:*::0:99999:7:::\nz:*:0::::::\n"
    )
    (root / "etc/machine-id").write_text("abc\n")
    (root / "etc/passwd-").write_text("x")
    (root / "var/log/dpkg.log").write_text("log")
    (root / "var/log/apt/term.log").write_text("log")
    (root / "var/lib/dbus/machine-id").write_text("abc\n")
    (root / "var/cache/ldconfig/aux-cache").write_text("x")
    script = "\n".join(
        line for line in recipe.cleanup_script().splitlines() if not line.startswith("chroot ")
    )
    _run_sh(script, root)
    assert (root / "etc/shadow").read_text() == (
        "root:*:10957:0:99999:7:::\nmessagebus:!:10957::::::\nnobody:*::0:99999:7:::\nz:*:0::::::\n"
    )
    assert (root / "etc/machine-id").read_bytes() == b""
    assert os.readlink(root / "var/lib/dbus/machine-id") == "/etc/machine-id"
    assert not (root / "etc/passwd-").exists()
    assert (root / "var/log/dpkg.log").stat().st_size == 0
    assert (root / "var/log/apt/term.log").stat().st_size == 0
    assert not (root / "usr/share/doc").exists()
    assert not (root / "var/cache/ldconfig/aux-cache").exists()
    assert (root / "etc/hostname").read_bytes() == b""
    assert stat.S_IMODE((root / "etc/hostname").stat().st_mode) == 0o644


def test_recipe_key_depends_on_options() -> None:
    plain = BuildSpec(with_python=False)
    py = BuildSpec(with_python=True)
    other_mirror = BuildSpec(with_python=False, mirror="http://example.org/debian")
    assert recipe_key(plain) == recipe_key(BuildSpec(with_python=False))
    assert len({recipe_key(plain), recipe_key(py), recipe_key(other_mirror)}) == 3
    assert entry_name(py).startswith("bookworm-amd64-minbase-python-")
    assert entry_name(plain).startswith("bookworm-amd64-minbase-")
    assert "python" not in entry_name(plain)
