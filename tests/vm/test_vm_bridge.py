"""[launcher-qemu] virtual-bridge networking end to end, in a network namespace of its own.

The test makes a namespace (``ip netns add``) holding a bridge whose own
address is the gateway; no host interface is touched. The launcher
(``hats launcher serve --vmm qemu`` with a ``virtual_bridge`` config, listening
on the gateway) and QEMU run inside it (``ip netns exec``); QEMU's tap joins
the bridge through the reference's ifup script and the guest is configured
from ``ip=GUEST::GATEWAY:255.255.255.0::enp0s1:off``. The TVS runs outside
(a unix socket). Two boots of the image the other VM tests use (the session
fixture ``vm_setup``):

1. a policy for this command line → the workload gets key 64 over the bridge
   (the namespace sees the guest's MAC at its address); the saved evidence
   holds the ``ip=`` value, and ``hats evidence verify`` refuses it against a
   policy made for another ``ip=``;
2. a policy made for another ``ip=`` → the TVS refuses ("No matching
   appraisal policy"), no key.

The namespace (and with it the bridge and any tap) is deleted by the fixture's
finalizer, whatever happens. Skipped with the reason without root, ``ip`` or
``/dev/net/tun``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hats.demo import DemoSetup
from hats.vm.bridge import MAC_PREFIX, ip_option, virtual_bridge
from hats.vm.qemu import kernel_cmdline

pytestmark = [pytest.mark.slow, pytest.mark.vm]

GATEWAY = "10.213.7.1"
GUEST = "10.213.7.2"
OTHER_GUEST = "10.213.7.3"
PORT = 8080
RAMDRIVE_SIZE_KB = 1536 * 1024  # the launcher's default (VmOptions.ramdrive_size_kb)
BOOT_TIMEOUT = 480.0
HATS = [sys.executable, "-m", "hats"]


@dataclass(frozen=True)
class Netns:
    name: str
    bridge: str

    def ip(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "-n", self.name, *args], capture_output=True, text=True, check=False, timeout=30
        )


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    assert result.returncode == 0, f"ip {' '.join(args)}: {result.stderr.strip()}"


@pytest.fixture(scope="module")
def netns() -> Iterator[Netns]:
    if os.geteuid() != 0:
        pytest.skip("needs root (ip netns add, a tap joined to a bridge)")
    if shutil.which("ip") is None:
        pytest.skip("the ip command is not installed (Debian package iproute2)")
    if not Path("/dev/net/tun").exists():
        pytest.skip("/dev/net/tun does not exist (no tun module)")
    name = f"hats-test-{os.getpid()}-{secrets.token_hex(3)}"
    bridge = f"hbr{secrets.token_hex(3)}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "add", bridge, "type", "bridge")
        _ip("-n", name, "address", "add", f"{GATEWAY}/24", "dev", bridge)
        _ip("-n", name, "link", "set", bridge, "up")
        yield Netns(name, bridge)
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=30)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert name not in listed.split(), f"network namespace {name} is still there"


class _Process:
    """A child whose output lines are collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        return any(text in line for line in self.lines)

    def stop(self, timeout: float) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(5)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def _cmdline(guest: str) -> str:
    bridge = virtual_bridge("br0", guest, GATEWAY)  # the bridge's name is not in the cmdline
    return kernel_cmdline(
        launcher_addr=f"http://{GATEWAY}:{PORT}",
        ramdrive_size_kb=RAMDRIVE_SIZE_KB,
        network_mode="virtual_bridge",
        ip_config=ip_option(bridge),
    )


def _hats(setup: DemoSetup, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HATS, *map(str, args)],
        capture_output=True,
        text=True,
        env=setup.env,
        check=False,
        timeout=300,
    )


def _verify(setup: DemoSetup, evidence: Path, policy: Path) -> subprocess.CompletedProcess[str]:
    args: list[str | Path] = ["evidence", "verify", evidence, "--policy", policy]
    return _hats(setup, *args, "--accept-insecure", "--no-policy-signature")


def _policy(setup: DemoSetup, guest: str) -> Path:
    """An insecure policy for the image, the bundle and the command line giving ``guest``."""
    dice = setup.work / f"bridge-{guest}.dice.bin"
    policy = setup.work / f"bridge-{guest}.policy.txtpb"
    if policy.exists():
        return policy
    simulate: list[str | Path] = ["stage1", "simulate", "--system-image", setup.image]
    simulate += ["--kernel-cmdline", _cmdline(guest), "-o", dice]
    make: list[str | Path] = ["policy", "make", "--system-image-sha256", setup.image_sha256]
    make += ["--bundle", setup.bundle, "--like", dice, "--insecure", "-o", policy]
    for step in (simulate, make):
        result = _hats(setup, *step)
        assert result.returncode == 0, result.stderr
    return policy


@dataclass
class _Boot:
    launcher: str
    tvs: str
    key_line: str | None
    refused: bool
    console: str
    evidence: Path
    neighbours: str
    bridge_ports: str


def _boot(setup: DemoSetup, ns: Netns, policy: Path, tag: str) -> _Boot:
    """TVS outside, launcher and QEMU inside ``ns``; until a key line or a refusal."""
    work = setup.work
    config = work / f"bridge-{tag}.launcher.txtpb"
    config.write_text(
        "cvm_config { network_config { virtual_bridge {"
        f' virtual_bridge_device: "{ns.bridge}" cvm_ip_addr: "{GUEST}"'
        f' cvm_gateway_addr: "{GATEWAY}" }} }} }}\n'
    )
    tvs_address = f"unix:{work}/tvs-bridge-{tag}.sock"
    private, _ = setup.tvs_keys[0]
    tvs_env = {**setup.env, "HATS_TVS_PRIMARY_PRIVATE_KEY": private.hex()}
    tvs_args = ["tvs", "serve", "--listen", tvs_address, "--appraisal_policy_file", str(policy)]
    tvs_args += ["--accept_insecure_policies", "--secrets-file", str(setup.secrets_file)]
    tvs = _Process([*HATS, *tvs_args], tvs_env)
    launcher: _Process | None = None
    console = work / f"bridge-{tag}.console.log"
    evidence = work / f"bridge-{tag}.evidence.binarypb"
    key_line: str | None = None
    refused = False
    neighbours = bridge_ports = ""
    try:
        assert tvs.wait_for("listening on", 30), tvs.output
        launcher_env = {**setup.env, "HATS_TVS_AUTHENTICATION_KEY": setup.client_private.hex()}
        args = ["ip", "netns", "exec", ns.name, *HATS, "launcher", "serve"]
        args += ["--launcher_config_path", str(config), "--listen", f"{GATEWAY}:{PORT}"]
        args += ["--tvs_addresses", tvs_address, "--system-image", str(setup.image)]
        args += ["--bundle", str(setup.bundle), "--vmm", "qemu", "--accel", "auto"]
        args += ["--console-log", str(console), "--evidence-out", str(evidence)]
        launcher = _Process(args, launcher_env)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline and launcher.proc.poll() is None:
            for line in list(launcher.lines):
                if "oak-orchestrator.service: " in line and "private_key_sha256=" in line:
                    key_line = line
                elif "oak-orchestrator.service: orchestrator_main: " in line:
                    refused = True
            if key_line is not None or refused:
                break
            time.sleep(0.5)
        # While the guest still runs: the namespace has seen it on the bridge.
        neighbours = ns.ip("neigh", "show", "dev", ns.bridge).stdout
        bridge_ports = ns.ip("link", "show", "master", ns.bridge).stdout
    finally:
        if launcher is not None:
            launcher.stop(timeout=150.0)  # the power button first, then the kill
        tvs.stop(timeout=10.0)
    return _Boot(
        launcher=launcher.output if launcher is not None else "",
        tvs=tvs.output,
        key_line=key_line,
        refused=refused,
        console=console.read_text(errors="replace") if console.exists() else "",
        evidence=evidence,
        neighbours=neighbours,
        bridge_ports=bridge_ports,
    )


def test_the_workload_gets_its_key_over_the_bridge(vm_setup: DemoSetup, netns: Netns) -> None:
    boot = _boot(vm_setup, netns, _policy(vm_setup, GUEST), "ok")
    print(boot.launcher[-3000:])
    assert boot.key_line is not None, (
        f"no key line; launcher said:\n{boot.launcher[-4000:]}\nconsole:\n{boot.console[-3000:]}"
    )
    assert f"private_key_sha256={vm_setup.expected_fingerprint}" in boot.key_line
    assert vm_setup.secret.hex() not in boot.launcher + boot.console
    # The launcher put the NIC on a tap of our bridge and gave the guest the gateway.
    assert f"on bridge {netns.bridge}" in boot.launcher
    assert f"launcher http://{GATEWAY}:{PORT} over the bridge" in boot.launcher
    assert "tap" in boot.bridge_ports and f"master {netns.bridge}" in boot.bridge_ports
    # The guest spoke from its address with the reference's MAC prefix, on the bridge.
    neighbour = [line for line in boot.neighbours.splitlines() if line.startswith(f"{GUEST} ")]
    assert neighbour and f"lladdr {MAC_PREFIX}:" in neighbour[0], boot.neighbours
    # Stage1 configured the kernel's interface (eth0 before udev renames it) from ip=.
    assert f"{GUEST}/24" in boot.console
    # The address is in the attested command line: the saved evidence holds it, and a
    # policy made for another ip= refuses that evidence.
    assert f"ip={GUEST}::{GATEWAY}:255.255.255.0::enp0s1:off".encode() in boot.evidence.read_bytes()
    verify = [_verify(vm_setup, boot.evidence, _policy(vm_setup, g)) for g in (GUEST, OTHER_GUEST)]
    print(verify[1].stdout, verify[1].stderr)
    assert verify[0].returncode == 0, verify[0].stdout + verify[0].stderr
    assert verify[1].returncode != 0, verify[1].stdout
    assert any(
        "vm: powered off" in line or "vm: stopped" in line for line in boot.launcher.splitlines()
    ), boot.launcher[-2000:]


def test_a_policy_for_another_ip_refuses_the_guest(vm_setup: DemoSetup, netns: Netns) -> None:
    boot = _boot(vm_setup, netns, _policy(vm_setup, OTHER_GUEST), "refused")
    print(boot.launcher[-3000:])
    assert boot.refused, f"launcher said:\n{boot.launcher[-4000:]}\nTVS:\n{boot.tvs[-2000:]}"
    assert boot.key_line is None
    assert "No matching appraisal policy" in boot.launcher + boot.tvs
    assert "key_id=" not in boot.launcher
