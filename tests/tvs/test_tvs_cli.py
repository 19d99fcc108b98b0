"""``hats tvs split-secret`` and ``hats tvs serve`` (as a real subprocess)."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from tvs_testing import CLIENT, NOW, POLICY_PATH, PRIMARY, SECONDARY, Client, Stream, public

from hats.errors import HatsError
from hats.protocol.shamir import ShamirSharing
from hats.protocol.xor import XorSharing
from hats.tvs.cli import tvs_group


def split(*args: str) -> list[str]:
    result = CliRunner().invoke(tvs_group, ["split-secret", *args])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_split_secret_xor_prints_one_share_per_line() -> None:
    lines = split("--scheme", "xor", "--shares", "3", "--secret", "736563726574")
    assert len(lines) == 3
    for line in lines:
        assert list(json.loads(line)) == ["value"]
        assert " " not in line
    assert XorSharing(3).recover([line.encode() for line in lines]) == b"secret"


def test_split_secret_shamir_defaults_to_n_minus_1() -> None:
    lines = split("--scheme", "shamir", "--shares", "3", "--secret", "00ff")
    assert [json.loads(line)["index"] for line in lines] == [1, 2, 3]
    assert [list(json.loads(line)) for line in lines] == [["value", "index"]] * 3
    assert ShamirSharing(3, 2).recover([lines[2].encode(), lines[0].encode()]) == b"\x00\xff"


def test_split_secret_shamir_with_threshold() -> None:
    lines = split("--scheme", "shamir", "--shares", "4", "--threshold", "3", "--secret", "01")
    shares = [line.encode() for line in lines]
    assert ShamirSharing(4, 3).recover(shares[1:]) == b"\x01"


@pytest.mark.parametrize(
    "args",
    [
        ["--scheme", "xor", "--shares", "2", "--threshold", "1", "--secret", "00"],
        ["--scheme", "shamir", "--shares", "1", "--secret", "00"],
        ["--scheme", "shamir", "--shares", "3", "--secret", "00" * 61],
        ["--scheme", "xor", "--shares", "2", "--secret", "zz"],
    ],
)
def test_split_secret_errors(args: list[str]) -> None:
    result = CliRunner().invoke(tvs_group, ["split-secret", *args])
    assert result.exit_code != 0
    assert isinstance(result.exception, HatsError)
    assert "zz" not in str(result.exception)


def test_split_secret_unknown_scheme_is_a_usage_error() -> None:
    result = CliRunner().invoke(
        tvs_group, ["split-secret", "--scheme", "aes", "--shares", "2", "--secret", "00"]
    )
    assert result.exit_code == 2


def tvs_command() -> list[str]:
    """``hats tvs`` once wired into the main CLI, else the group itself."""
    from hats.cli import cli

    if "tvs" in cli.commands:
        return [sys.executable, "-m", "hats", "tvs"]
    return [sys.executable, "-c", "from hats.tvs.cli import tvs_group; tvs_group()"]


BASE_FLAGS = [
    f"--primary_private_key={PRIMARY.hex()}",
    f"--appraisal_policy_file={POLICY_PATH}",
    f"--now={NOW.isoformat()}",
]


class Served:
    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*tvs_command(), "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.address = self._wait_listening()

    def _wait_listening(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        # epoll, not select(): no FD_SETSIZE limit, whatever else the suite has open.
        with selectors.DefaultSelector() as waiting:
            waiting.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if waiting.select(0.5):
                    line = self.proc.stdout.readline()
                    if line.startswith("listening on "):
                        return line.removeprefix("listening on ").strip()
                    if not line:
                        break
        self.proc.kill()
        _, err = self.proc.communicate()
        raise AssertionError(f"TVS did not start: {err}")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        return err


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for item in started:
        if item.proc.poll() is None:
            item.proc.kill()
            item.proc.communicate()


def session(target: str, tvs_key: bytes = PRIMARY) -> list[tuple[str, str, bytes]]:
    client = Client(tvs_public_key=public(tvs_key))
    stream = Stream(target)
    client.process_init_response(stream.exchange(client.init_request()))
    secrets = client.secrets(stream.exchange(client.verify_request()))
    assert stream.close() == []
    return secrets


def test_serve_with_the_reference_flags_on_a_unix_socket(
    tmp_path: Path, served: list[Served]
) -> None:
    socket = f"unix:{tmp_path / 'tvs.sock'}"
    tvs = Served(
        [
            *BASE_FLAGS,
            f"--secondary_private_key={SECONDARY.hex()}",
            f"--user_authentication_public_key={public(CLIENT).hex()}",
            "--user_key_id=9",
            "--user_public_key=pub",
            "--user_secret=c0ffee",
            "--enable_policy_signature",
            "--listen",
            socket,
        ]
    )
    served.append(tvs)
    assert tvs.address == socket
    assert session(socket) == [("9", "pub", b"\xc0\xff\xee")]
    assert session(socket, SECONDARY) == [("9", "pub", b"\xc0\xff\xee")]
    log = tvs.stop()
    assert "report accepted" in log
    assert "c0ffee" not in log and PRIMARY.hex() not in log


def test_serve_on_port_from_the_environment(served: list[Served]) -> None:
    tvs = Served(
        [*BASE_FLAGS, f"--user_authentication_public_key={public(CLIENT).hex()}"],
        env={"PORT": "0"},
    )
    served.append(tvs)
    port = int(tvs.address.rpartition(":")[2])
    assert port > 0
    assert session(f"127.0.0.1:{port}") == [("64", "some public key", b"secret")]
    tvs.stop()


def test_split_trust_tvses_serve_one_share_each(tmp_path: Path, served: list[Served]) -> None:
    shares = split("--scheme", "xor", "--shares", "2", "--secret", "6b6579")
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(
        f'[[users]]\nauthentication_public_key = "{public(CLIENT).hex()}"\n'
        '[[users.secrets]]\nkey_id = "5"\npublic_key = "hpke"\n'
        f"shares = {json.dumps(shares)}\n"
    )
    replies = []
    for index in (1, 2):
        tvs = Served(
            [
                *BASE_FLAGS,
                "--listen=127.0.0.1:0",
                f"--secrets-file={secrets_file}",
                f"--share-index={index}",
            ]
        )
        served.append(tvs)
        replies.append(session(tvs.address))
    assert [r[0][:2] for r in replies] == [("5", "hpke")] * 2
    assert [r[0][2] for r in replies] == [s.encode() for s in shares]
    assert XorSharing(2).recover([r[0][2] for r in replies]) == b"key"


def run_failing(args: list[str]) -> str:
    proc = subprocess.run(
        [*tvs_command(), "serve", *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    return proc.stderr


def test_serve_refuses_a_bad_policy_signature(tmp_path: Path) -> None:
    text = POLICY_PATH.read_text().replace('signature: "db', 'signature: "dc')
    policy = tmp_path / "policy.txtpb"
    policy.write_text(text)
    err = run_failing(
        [
            f"--primary_private_key={PRIMARY.hex()}",
            f"--appraisal_policy_file={policy}",
            f"--user_authentication_public_key={public(CLIENT).hex()}",
            "--enable_policy_signature=true",
            "--listen=127.0.0.1:0",
        ]
    )
    assert "policy 0" in err and "signature" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--listen=127.0.0.1:0"], "--user_authentication_public_key or --secrets-file"),
        ([f"--user_authentication_public_key={public(CLIENT).hex()}"], "--port and --listen"),
        (
            [
                "--listen=127.0.0.1:0",
                f"--user_authentication_public_key={public(CLIENT).hex()}",
                "--enable_dynamic_policy_fetching",
            ],
            "not supported",
        ),
    ],
)
def test_serve_usage_errors(extra: list[str], message: str) -> None:
    assert message in run_failing([*BASE_FLAGS, *extra])
