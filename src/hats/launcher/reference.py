"""``hats launcher serve --vmm qemu``: which guest to boot, and the reference argv on this host.

Pure: every decision is a function of what the caller found (config, flags,
which device files exist, whether KVM works), so each is tested alone.

The rules:

1. **Mode** (:func:`choose_mode`). *Reference mode* when a stage0 firmware is
   given (``--stage0``, or the system bundle's ``stage0_bin``) or the config's
   ``cvm_type`` is ``CVMTYPE_SEVSNP``: QEMU runs the reference launcher's argv
   (:func:`hats.launcher.qemu_argv.qemu_argv`, upstream-facts F7). Otherwise
   *insecure mode*: our q35 command line (:mod:`hats.vm.qemu`), QEMU's own
   firmware, stage1 simulates stage0's root. SEV-SNP without a stage0 is
   refused (the reference argv boots ``-bios STAGE0``). Either way the mode is
   said in one line at start.
2. **SEV-SNP hardware** (:func:`check_sevsnp`). A SEV-SNP guest needs
   ``/dev/sev`` (the AMD PSP driver with SEV-SNP) and ``/dev/kvm`` (it cannot
   run under TCG, so ``--accel tcg`` is refused too): when any is missing the
   launcher stops with one line naming each missing piece. It never boots an
   insecure guest instead.
3. **Launcher transport** (:func:`choose_transport`). With ``/dev/vhost-vsock``
   the launcher listens on ``vsock://2:PORT``, the port on the guest's command
   line (``--launcher-addr=vsock://2:PORT``). Without it the gRPC goes over the
   guest network, as in insecure mode: the ``vhost-vsock-pci`` device is
   dropped, the command line says ``--launcher-addr=http://10.0.2.100:8080`` and
   the SLIRP ``-netdev user`` gets a ``guestfwd`` to that address whose command
   relays each connection to the launcher's TCP or unix listener. On a
   ``virtual_bridge`` (a tap, no SLIRP) the guest dials the launcher on the
   gateway instead (``--launcher-addr=http://GATEWAY:PORT``, the launcher
   listening there: :func:`hats.vm.bridge.guest_launcher_addr`).
4. **Accelerator** (:func:`adapt_argv`). Without working KVM (the probe of
   :func:`hats.vm.qemu.choose_accel`) the same argv runs under TCG:
   ``-accel tcg -cpu max`` in place of ``-enable-kvm -cpu host``; said in one line
   (:func:`hats.vm.launch.accel_line`). A SEV-SNP guest is always asked for KVM.
5. **Host plumbing**, also :func:`adapt_argv`: ``-serial stdio`` becomes
   ``-serial file:<console log>`` (the launcher's stdout carries its own
   lines; a ``telnet:`` serial is kept) and ``-qmp unix:<socket>`` is appended,
   so the launcher can press the guest's power button. Nothing else changes:
   machine, memory, devices, ``-bios``/``-kernel``/``-initrd`` and the rest of
   the ``-append`` string are the reference's, word for word (unless
   ``--guest-kernel-arg`` adds kernel arguments before its ``--``: opt-in,
   said at start).
"""

from __future__ import annotations

from dataclasses import dataclass

from hats.errors import HatsError
from hats.launcher import qemu_argv as ref
from hats.pb.pcit.client import launcher_config_pb2
from hats.transport import VMADDR_CID_HOST, parse_address
from hats.vm.qemu import LAUNCHER_GUEST_ADDR, LAUNCHER_GUEST_HOST, LAUNCHER_GUEST_PORT, escape

SEVSNP = launcher_config_pb2.CVMTYPE_SEVSNP
KVM_WORDS = ("-enable-kvm", "-cpu", "host")
TCG_WORDS = ("-accel", "tcg", "-cpu", "max")


class ReferenceModeError(HatsError):
    """The reference guest cannot be launched here as configured."""


@dataclass(frozen=True)
class Mode:
    """Reference or insecure mode, and the line that says so."""

    reference: bool
    line: str


def choose_mode(*, stage0_source: str | None, sevsnp: bool) -> Mode:
    """Rule 1. ``stage0_source`` says where the stage0 comes from (``None``: there is none)."""
    if sevsnp and stage0_source is None:
        raise ReferenceModeError(
            "cvm_type CVMTYPE_SEVSNP needs a stage0 firmware (-bios): the system bundle has no"
            " stage0_bin and no --stage0 was given"
        )
    if stage0_source is not None:
        kind = "SEV-SNP" if sevsnp else "insecure (CVMTYPE_DEFAULT)"
        return Mode(
            True,
            f"vm: reference mode: {kind} guest through Oak stage0 ({stage0_source}), booted with"
            " the reference launcher's QEMU command line",
        )
    return Mode(
        False,
        "vm: insecure mode (no stage0: neither --stage0 nor a stage0_bin in the system bundle):"
        " QEMU's own firmware on q35, stage1 simulates the root",
    )


def sevsnp_missing(*, sev: bool, kvm: bool, accel: str) -> list[str]:
    """Rule 2: what a SEV-SNP launch lacks here (empty: nothing)."""
    missing = []
    if not sev:
        missing.append("/dev/sev (the AMD SEV-SNP firmware driver)")
    if not kvm:
        missing.append("/dev/kvm")
    if accel == "tcg":
        missing.append("KVM (--accel tcg was asked: SEV-SNP cannot run under TCG)")
    return missing


def check_sevsnp(*, sev: bool, kvm: bool, accel: str) -> None:
    """Rule 2: :class:`ReferenceModeError`, one line naming each missing piece."""
    missing = sevsnp_missing(sev=sev, kvm=kvm, accel=accel)
    if missing:
        raise ReferenceModeError(
            "cvm_type CVMTYPE_SEVSNP: this host cannot launch a SEV-SNP guest, it has no "
            + ", no ".join(missing)
            + " (refusing: no fallback to an insecure guest)"
        )


@dataclass(frozen=True)
class Transport:
    """How the guest reaches the launcher: vsock (with its port) or the guest network."""

    vsock: bool
    line: str
    vsock_port: int = 0


def choose_transport(*, vhost_vsock: bool, network_mode: str | None, vsock_port: int) -> Transport:
    """Rule 3. ``vsock_port`` is the port put on the command line."""
    if vhost_vsock:
        return Transport(
            True, f"vm: the launcher listens on vsock://2:{vsock_port} (host CID 2)", vsock_port
        )
    if network_mode == "virtual_bridge":
        return Transport(
            False,
            "vm: no /dev/vhost-vsock: the launcher's gRPC goes over the bridge (the guest dials"
            " the gateway), not vsock",
        )
    return Transport(
        False,
        "vm: no /dev/vhost-vsock: the launcher's gRPC goes over the guest network (SLIRP guest"
        f" forward {LAUNCHER_GUEST_HOST}:{LAUNCHER_GUEST_PORT}), not vsock",
    )


def vsock_listen(listen: str | None, drawn_port: int) -> str:
    """Rule 3 with vsock: the launcher's listen address, ``vsock://2:PORT``.

    ``--listen vsock://2:PORT`` (or ``vsock://PORT``) fixes the port; no
    ``--listen`` takes ``drawn_port``; any other address is refused (the
    reference's guest dials vsock only).
    """
    if listen is None:
        return f"vsock://2:{drawn_port}"
    address = parse_address(listen)
    if address.kind != "vsock" or address.cid != VMADDR_CID_HOST:
        raise ReferenceModeError(
            f"--listen {listen}: in reference mode with /dev/vhost-vsock the launcher listens on"
            " vsock://2:PORT (the guest's --launcher-addr); give that or no --listen"
        )
    return f"vsock://2:{address.port}"


@dataclass(frozen=True)
class HostPlumbing:
    """What :func:`adapt_argv` puts in for this host (rules 3–5)."""

    accel: str
    """``kvm`` or ``tcg``."""
    vsock: bool
    relay_command: str = ""
    """Without vsock, on SLIRP: the guest-forward command (one relay per connection)."""
    launcher_addr: str = LAUNCHER_GUEST_ADDR
    """Without vsock: the guest's ``--launcher-addr`` (on a bridge: the gateway's)."""
    console_log: str = ""
    qmp_socket: str = ""


def adapt_argv(argv: tuple[str, ...], host: HostPlumbing) -> list[str]:
    """The reference ``argv`` as it runs on this host (rules 3–5); nothing else changes."""
    words = list(argv)
    if host.accel == "tcg":
        _replace_run(words, KVM_WORDS, TCG_WORDS)
    elif host.accel != "kvm":
        raise ReferenceModeError(f"accelerator {host.accel!r}: expected kvm or tcg")
    if not host.vsock:
        _drop_vsock(words, host.launcher_addr, host.relay_command)
    serial = words.index("-serial") + 1 if "-serial" in words else -1
    if serial > 0 and words[serial] == "stdio" and host.console_log:
        words[serial] = f"file:{escape(host.console_log)}"
    if host.qmp_socket:
        words += ["-qmp", f"unix:{escape(host.qmp_socket)},server=on,wait=off"]
    return words


def _replace_run(words: list[str], old: tuple[str, ...], new: tuple[str, ...]) -> None:
    for start in range(len(words) - len(old) + 1):
        if tuple(words[start : start + len(old)]) == old:
            words[start : start + len(old)] = new
            return
    raise ReferenceModeError(f"the reference argv has no {' '.join(old)!r}")


def _drop_vsock(words: list[str], launcher_addr: str, relay_command: str) -> None:
    """Rule 3 without vsock: no vhost-vsock device, an http launcher address, on SLIRP a
    guest forward to it."""
    for index, word in enumerate(words):
        if word.startswith("vhost-vsock-pci,") and words[index - 1] == "-device":
            del words[index - 1 : index + 1]
            break
    append = words.index("-append") + 1
    head, sep, _ = words[append].rpartition("--launcher-addr=vsock://2:")
    if not sep:
        raise ReferenceModeError("the reference -append string has no --launcher-addr=vsock://2:")
    words[append] = f"{head}--launcher-addr={launcher_addr}"
    netdev = words.index("-netdev") + 1
    if not words[netdev].startswith("user,"):
        return  # a tap on a bridge: the guest dials launcher_addr directly
    forward = f"tcp:{LAUNCHER_GUEST_HOST}:{LAUNCHER_GUEST_PORT}-cmd:{escape(relay_command)}"
    words[netdev] += f",guestfwd={forward}"


def reference_config(
    config: launcher_config_pb2.LauncherConfig | None,
    *,
    qemu: str,
    ram_size_kb: int,
    num_cpus: int,
    ramdrive_size_kb: int,
    network_mode: str,
    host_proxy_port: int | None,
) -> launcher_config_pb2.LauncherConfig:
    """The config the reference argv is made from: ``config`` (or an empty one) with the
    launcher's final values (the config's, overridden by flags) for binary, memory, vCPUs,
    ramdrive and the SLIRP mode; a ``virtual_bridge`` is kept as it is."""
    result = launcher_config_pb2.LauncherConfig()
    if config is not None:
        result.CopyFrom(config)
    cvm = result.cvm_config
    cvm.vmm_binary = qemu
    cvm.ram_size_kb = ram_size_kb
    cvm.num_cpus = num_cpus
    cvm.ramdrive_size_kb = ramdrive_size_kb
    if cvm.network_config.WhichOneof("network_mode") != "virtual_bridge":
        slirp = getattr(cvm.network_config, network_mode)
        slirp.SetInParent()
        slirp.host_enclave_app_proxy_port = host_proxy_port or 0
    return result


@dataclass(frozen=True)
class ReferencePlan:
    """Everything the reference argv needs except what the guest thread decides at boot."""

    config: launcher_config_pb2.LauncherConfig
    stage0: str
    transport: Transport
    randomness: ref.Draw
    use_microvm: bool = False
    kernel_args: tuple[str, ...] = ()
    """``--guest-kernel-arg``: before the ``-append`` string's ``--`` (not the reference's)."""

    def command(
        self, kernel: str, initrd: str, script_path: str = ref.SCRIPT_TEMPLATE
    ) -> ref.QemuCommand:
        """The reference command (F7) for the resolved kernel and initrd; ``script_path``:
        where the caller writes a ``virtual_bridge`` ifup script."""
        paths = ref.BundlePaths(stage0=self.stage0, kernel=kernel, initrd=initrd)
        port = self.transport.vsock_port or 1  # without vsock the port is replaced (rule 3)
        return ref.qemu_argv(
            self.config,
            paths,
            launcher_vsock_port=port,
            randomness=self.randomness,
            use_microvm=self.use_microvm,
            script_path=script_path,
            kernel_args=self.kernel_args,
        )
