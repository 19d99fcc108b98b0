"""mmdebstrap command-line construction and error reporting (nothing is built)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hats.base import recipe
from hats.base.mmdebstrap import (
    BuildSpec,
    MmdebstrapError,
    cache_in_hook,
    cache_out_hook,
    command,
    environment,
    find_mmdebstrap,
    run,
)
from hats.errors import HatsError


def test_command_without_caches(tmp_path: Path) -> None:
    argv = command(BuildSpec(with_python=False), tmp_path / "raw.tar", executable="/x/mmdebstrap")
    assert argv[0] == "/x/mmdebstrap"
    assert "--variant=minbase" in argv
    assert "--architectures=amd64" in argv
    assert "--format=tar" in argv
    assert "--mode=auto" in argv
    assert "--include=systemd,systemd-sysv,dbus,udev,runc" in argv
    assert "--skip=cleanup/reproducible" in argv
    assert "--skip=cleanup/apt" in argv
    assert "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr" in argv
    assert "--dpkgopt=force-unsafe-io" in argv
    assert not any("apt/archives" in a for a in argv if a.startswith("--setup-hook"))
    assert "--skip=essential/unlink" not in argv
    assert argv[-5:] == [
        "bookworm",
        str(tmp_path / "raw.tar"),
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]
    assert argv[-6] == "--customize-hook=" + recipe.customize_script()


def test_command_with_python_and_caches(tmp_path: Path) -> None:
    archives = tmp_path / "archives"
    lists = tmp_path / "lists"
    argv = command(
        BuildSpec(with_python=True, mirror="http://m/debian", security_mirror="http://m/sec"),
        tmp_path / "raw.tar",
        apt_archives=archives,
        apt_lists=lists,
    )
    assert "--include=systemd,systemd-sysv,dbus,udev,runc,python3" in argv
    assert "--skip=essential/unlink" in argv
    assert "--setup-hook=" + cache_in_hook(archives, lists) in argv
    cache_out = argv.index("--customize-hook=" + cache_out_hook(archives, lists))
    script = argv.index("--customize-hook=" + recipe.customize_script())
    # The .debs must be copied out before the customize script runs apt-get clean.
    assert cache_out < script
    assert argv[-3:] == [
        "deb http://m/debian bookworm main",
        "deb http://m/debian bookworm-updates main",
        "deb http://m/sec bookworm-security main",
    ]


def _sh(script: str, chroot: Path) -> None:
    subprocess.run(["sh", "-c", script, "sh", str(chroot)], check=True)


def test_apt_cache_hooks(tmp_path: Path) -> None:
    cache = tmp_path / "with space" / "apt"
    archives = cache / "archives"
    lists = cache / "lists"
    archives.mkdir(parents=True)
    lists.mkdir()
    (archives / "a_1_amd64.deb").write_bytes(b"a1")
    (archives / "partial").mkdir()
    (lists / "x_InRelease").write_bytes(b"old")
    (lists / "stale_Packages").write_bytes(b"stale")
    (lists / "lock").write_bytes(b"")
    chroot = tmp_path / "chroot"
    chroot.mkdir()

    _sh(cache_in_hook(archives, lists), chroot)
    inside = chroot / "var/cache/apt/archives"
    assert sorted(p.name for p in inside.iterdir()) == ["a_1_amd64.deb"]
    assert (inside / "a_1_amd64.deb").stat().st_ino == (archives / "a_1_amd64.deb").stat().st_ino
    assert sorted(p.name for p in (chroot / "var/lib/apt/lists").iterdir()) == [
        "stale_Packages",
        "x_InRelease",
    ]

    # apt downloads a new package and refreshes the lists.
    (inside / "b_2_all.deb").write_bytes(b"b2")
    (chroot / "var/lib/apt/lists/stale_Packages").unlink()
    (chroot / "var/lib/apt/lists/x_InRelease").write_bytes(b"new")
    _sh(cache_out_hook(archives, lists), chroot)
    assert (archives / "b_2_all.deb").read_bytes() == b"b2"
    assert (archives / "a_1_amd64.deb").read_bytes() == b"a1"
    assert sorted(p.name for p in lists.iterdir()) == ["x_InRelease"]
    assert (lists / "x_InRelease").read_bytes() == b"new"


def test_environment_sets_epoch_and_locale() -> None:
    env = environment({"PATH": "/bin", "SOURCE_DATE_EPOCH": "1"})
    assert env == {"PATH": "/bin", "SOURCE_DATE_EPOCH": "946684800", "LC_ALL": "C.UTF-8"}


def test_missing_mmdebstrap_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(HatsError) as info:
        find_mmdebstrap()
    message = str(info.value)
    assert "\n" not in message
    assert "apt-get install mmdebstrap" in message


def test_run_failure_is_one_line(tmp_path: Path) -> None:
    script = tmp_path / "fake"
    script.write_text(
        "#!/bin/sh\necho 'I: starting' >&2\necho 'E: no such suite' >&2\n"
        "echo 'E: mmdebstrap failed to run' >&2\nexit 3\n"
    )
    script.chmod(0o755)
    seen: list[str] = []
    log = tmp_path / "log"
    with pytest.raises(MmdebstrapError) as info:
        run([str(script)], log_path=log, progress=seen.append)
    assert str(info.value) == f"mmdebstrap failed (exit 3): no such suite (log: {log})"
    assert seen == ["I: starting", "E: no such suite", "E: mmdebstrap failed to run"]
    assert log.read_bytes() == b"I: starting\nE: no such suite\nE: mmdebstrap failed to run\n"
