"""The agents' command lines: reference flags, defaults and validation."""

from __future__ import annotations

import argparse
import subprocess
import sys
from types import ModuleType

import pytest

from hats import agent, orchestrator, syslogd
from hats.agent_common import resolve_launcher_addr
from hats.packaging.agents_layer import default_hats_source

ORCHESTRATOR_FLAGS = {
    "-h",
    "--help",
    "--launcher-addr",
    "--container-dir",
    "--ipc-socket-path",
    "--runtime-user",
    "--tvs-public-keys-file",
    "--secret-share-type",
    "--tvs-heartbeat-frequency",
}
# Our additions (docs/ARCHITECTURE.md, orchestrator): never change the reference's.
ORCHESTRATOR_EXTRA_FLAGS = {
    "--dice-file",
    "--max-secret-staleness",
    "--unwrap-secrets",
    "--rpc-timeout",
    "--runtime",
    "--enable-instance-signing",
    "--key-provisioning-addr",
    "--log-to-stderr",
}


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def _positionals(parser: argparse.ArgumentParser) -> list[str]:
    return [action.dest for action in parser._actions if not action.option_strings]


def test_orchestrator_has_exactly_the_reference_flags() -> None:
    parser = orchestrator.build_parser()
    assert _option_strings(parser) == ORCHESTRATOR_FLAGS | ORCHESTRATOR_EXTRA_FLAGS
    assert _positionals(parser) == ["orchestrator_addr"]
    assert parser.prog == "orchestrator_main"


def test_orchestrator_defaults() -> None:
    args = vars(orchestrator.build_parser().parse_args([]))
    reference = {
        "orchestrator_addr": "0.0.0.0:4000",
        "launcher_addr": "http://10.0.2.100:8080",
        "container_dir": "/oak_container",
        "ipc_socket_path": "/oak_utils/orchestrator_ipc",
        "runtime_user": "oakc",
        "tvs_public_keys_file": "/hats/tvs_public_keys.txt",
        "secret_share_type": "no-split",
        "tvs_heartbeat_frequency": 3600,
    }
    assert {key: args[key] for key in reference} == reference
    # the additions default to the reference's behaviour (or safer: no extra servers)
    assert args["dice_file"] == "/oak/dice" and args["runtime"] == "runc"
    assert args["key_provisioning_addr"] is None and not args["enable_instance_signing"]
    assert not args["unwrap_secrets"]


def test_orchestrator_parses_the_reference_unit_command_line() -> None:
    args = orchestrator.build_parser().parse_args(
        [
            "--container-dir",
            "/run/oak_containers_orchestrator/oak_container",
            "--ipc-socket-path",
            "/run/oak_containers_orchestrator/oak_utils/orchestrator_ipc",
            "--launcher-addr=vsock://2:8080",
            "--secret-share-type=shamir",
            "--tvs-heartbeat-frequency=1",
            "10.0.2.15:4000",
        ]
    )
    assert args.container_dir == "/run/oak_containers_orchestrator/oak_container"
    assert args.launcher_addr == "vsock://2:8080"
    assert args.secret_share_type == "shamir"
    assert args.tvs_heartbeat_frequency == 1
    assert args.orchestrator_addr == "10.0.2.15:4000"


@pytest.mark.parametrize("value", ["no-split", "shamir", "xor"])
def test_secret_share_type_choices(value: str) -> None:
    args = orchestrator.build_parser().parse_args(["--secret-share-type", value])
    assert args.secret_share_type == value


@pytest.mark.parametrize("value", ["XOR", "Shamir", "NONE", "No-Split", "no_split", "none", ""])
def test_secret_share_type_is_case_sensitive(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        orchestrator.build_parser().parse_args([f"--secret-share-type={value}"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_heartbeat_zero_is_rejected_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        orchestrator.build_parser().parse_args(["--tvs-heartbeat-frequency", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--tvs-heartbeat-frequency" in err
    assert "0 is not allowed" in err


@pytest.mark.parametrize("value", ["-5", "1.5", "abc", "+5", " 5", "1_000", "", "٣", str(2**64)])
def test_heartbeat_rejects_non_u64(value: str) -> None:
    with pytest.raises(SystemExit) as exc:
        orchestrator.build_parser().parse_args([f"--tvs-heartbeat-frequency={value}"])
    assert exc.value.code == 2


@pytest.mark.parametrize("value", ["1", "60", "3600", str(2**64 - 1), "007"])
def test_heartbeat_accepts_u64(value: str) -> None:
    args = orchestrator.build_parser().parse_args(["--tvs-heartbeat-frequency", value])
    assert args.tvs_heartbeat_frequency == int(value)


def test_no_abbreviated_flags() -> None:
    # clap (the reference) does not infer long flags from prefixes.
    with pytest.raises(SystemExit):
        orchestrator.build_parser().parse_args(["--launcher", "vsock://2:1"])


def test_orchestrator_rejects_two_positionals() -> None:
    with pytest.raises(SystemExit):
        orchestrator.build_parser().parse_args(["0.0.0.0:1", "0.0.0.0:2"])


EXPORT_FLAGS = {
    "--batch-size",
    "--queue-size",
    "--max-retry-delay",
    "--rpc-timeout",
    "--shutdown-timeout",
}
TELEMETRY_FLAGS = {
    "oak_containers_syslogd": EXPORT_FLAGS
    | {
        "--batch-delay",
        "--journal-directory",
        "--journal-file",
        "--all-boots",
        "--no-follow",
        "--journalctl",
    },
    "oak_containers_agent": EXPORT_FLAGS | {"--interval", "--proc-root", "--once"},
}


@pytest.mark.parametrize(
    ("module", "prog"),
    [(syslogd, "oak_containers_syslogd"), (agent, "oak_containers_agent")],
)
def test_syslogd_and_agent_take_one_optional_launcher_addr(module: ModuleType, prog: str) -> None:
    parser = module.build_parser()
    assert parser.prog == prog
    assert _option_strings(parser) == {"-h", "--help"} | TELEMETRY_FLAGS[prog]
    assert _positionals(parser) == ["launcher_addr"]
    assert parser.parse_args([]).launcher_addr is None  # resolved later: $LAUNCHER_ADDR, default
    assert parser.parse_args(["vsock://2:9000"]).launcher_addr == "vsock://2:9000"
    with pytest.raises(SystemExit):
        parser.parse_args(["a", "b"])


@pytest.mark.parametrize(
    ("argument", "environ", "expected"),
    [
        (None, {}, "http://10.0.2.100:8080"),
        (None, {"LAUNCHER_ADDR": "vsock://2:1234/"}, "vsock://2:1234/"),
        ("", {"LAUNCHER_ADDR": "vsock://2:1234/"}, "vsock://2:1234/"),  # systemd's ${…}, set
        ("", {}, "http://10.0.2.100:8080"),  # systemd's ${…}, unset: one empty argument
        ("", {"LAUNCHER_ADDR": "  "}, "http://10.0.2.100:8080"),
        ("unix:/l.sock", {"LAUNCHER_ADDR": "vsock://2:1/"}, "unix:/l.sock"),
    ],
)
def test_launcher_address_resolution(
    argument: str | None, environ: dict[str, str], expected: str
) -> None:
    assert resolve_launcher_addr(argument, environ) == expected


def test_agent_defaults() -> None:
    args = agent.build_parser().parse_args([])
    assert (args.interval, args.proc_root, args.once) == (60.0, "/proc", False)
    args = syslogd.build_parser().parse_args([])
    assert (args.batch_size, args.batch_delay, args.queue_size) == (512, 1.0, 8192)
    assert args.journal_directory is None and args.journal_file is None
    with pytest.raises(SystemExit):
        syslogd.build_parser().parse_args(["--journal-file", "a", "--journal-directory", "d"])


@pytest.mark.parametrize("module", [orchestrator, syslogd, agent])
def test_help_exits_zero(module: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        module.main(["--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_agents_import_only_the_standard_library() -> None:
    """No site-packages at all (-I -S): click, rich etc. are not importable."""
    src = default_hats_source().parent
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(src)!r})\n"
        "sys.dont_write_bytecode = True\n"
        "import hats.orchestrator, hats.syslogd, hats.agent\n"
        "outside = sorted(\n"
        "    name for name in sys.modules\n"
        "    if name.split('.')[0] not in sys.stdlib_module_names\n"
        "    and name.split('.')[0] not in ('hats', '__main__')\n"
        ")\n"
        "assert not outside, outside\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
