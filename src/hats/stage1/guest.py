"""The guest's stage1: PID 1 of our initramfs, until it hands over to the image's systemd.

It does what Oak's stage1 does (``system-image.md`` §3.2–3.4), in the
insecure (non-SEV) mode:

1. configure the network from the kernel's ``ip=`` option (the launcher is
   reached over QEMU's user network here, see :mod:`hats.stage1.network`);
2. mount a tmpfs on ``/rootfs`` (size ``brd.rd_size`` KiB when given: the
   reference sizes its ramdisk with it): the staging root;
3. fetch the system image with ``oak.containers.Launcher/GetOakSystemImage``
   (retried while the launcher is unreachable, until the first chunk) and
   push each chunk, as it arrives, through :mod:`hats.stage1.pipeline`:
   SHA-256 of the bytes received, ``.xz`` decoding (blocks in parallel on the
   vCPUs for multi-block images), unpacking into ``/rootfs`` with Oak's rules
   (:mod:`hats.stage1.unpack`). The digest is final only when the stream has
   ended and the container and the tar were read to their ends; nothing in
   ``/rootfs`` is used before that (see that module for why staging and not
   buffering);
4. with the final digest, create the DICE data for the next layer: with real Oak stage0's hand-off
   (``--oak-dice`` …, :mod:`hats.stage1.handoff`, taken and zeroed before the
   network is up) the system layer is added to stage0's evidence, signed by
   stage0's layer-1 key; without it (no stage0) the insecure chain is simulated
   (:func:`hats.attestation.simulate.simulate_stage1`; stage0's event records
   this boot's ``/proc/cmdline``), which is said once on the console;
5. the after-unpack steps (``/etc/machine-id``, ``/oak/dice``,
   ``/.dockerenv``);
6. take the interface down (the image's systemd-networkd configures it, after
   udev has renamed it), unmount ``/proc``, ``/sys``, ``/dev`` and switch to
   the new root: ``busybox switch_root /rootfs <init>`` with only
   ``LAUNCHER_ADDR`` in the environment.

The console gets the split of the image's time (``fetched N bytes in X s``,
hashing, decompressing, unpacking), which ``bench/vm_boot_bench.py`` reads.

Every failure prints one line ``hats-stage1: error: …`` on the console and
exits, which panics the kernel; the launcher's ``panic=-1`` and QEMU's
``-no-reboot`` then stop the VM.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hats.errors import HatsError
from hats.stage1.errors import Stage1Error
from hats.textsafe import printable
from hats.toolrun import run as run_tool

if TYPE_CHECKING:
    from hats.pb.oak.attestation.v1 import dice_pb2
    from hats.stage1.cmdline import Stage1Args
    from hats.stage1.pipeline import PipelineResult

BUSYBOX = "/bin/busybox"
ROOTFS = Path("/rootfs")
PROC_CMDLINE = Path("/proc/cmdline")
FETCH_BUDGET = 120.0
#: The whole image stream, unpacking included (a stalling launcher is bounded).
STREAM_BUDGET = 900.0


def log(message: str) -> None:
    print(f"hats-stage1: {message}", flush=True)


def busybox(*args: str) -> None:
    """Run a busybox applet; :class:`Stage1Error` in :mod:`hats.toolrun`'s one form if it fails:
    ``ip link set lo up: busybox failed (exit 1): LAST LINE``."""
    run_tool([BUSYBOX, *args], what=" ".join(args), error=Stage1Error)


def configure_network(kernel_args: list[str]) -> str | None:
    """Apply the ``ip=`` option; the interface configured, or ``None`` without one."""
    from hats.stage1.network import choose_device, find_ip_option, parse_ip_option

    option = find_ip_option(kernel_args)
    if option is None:
        return None
    config = parse_ip_option(option)
    device = choose_device(config.device, sorted(os.listdir("/sys/class/net")))
    busybox("ip", "link", "set", "lo", "up")
    busybox("ip", "addr", "add", config.cidr, "dev", device)
    busybox("ip", "link", "set", device, "up")
    if config.gateway:
        busybox("ip", "route", "add", "default", "via", config.gateway, "dev", device)
    log(f"network: {device} {config.cidr}" + (f" via {config.gateway}" if config.gateway else ""))
    return device


def _stream_image(launcher_addr: str, rootfs: Path) -> tuple[PipelineResult, float]:
    """Fetch the image and push every chunk through the pipeline as it arrives.

    Retried while the launcher is unreachable, until the first chunk: after
    that a failure of the stream stops stage1. Returns the result and the
    seconds from the request to the last chunk.
    """
    import grpc
    from google.protobuf import empty_pb2

    from hats.pb.oak.containers import interfaces_pb2_grpc
    from hats.stage1.pipeline import ImagePipeline
    from hats.transport import parse_address

    target = parse_address(launcher_addr).grpc_target()
    deadline = time.monotonic() + FETCH_BUDGET
    delay = 0.5
    workers = os.cpu_count() or 1
    while True:
        with (
            grpc.insecure_channel(target) as channel,
            ImagePipeline(rootfs, workers=workers, mknod=True) as pipeline,
        ):
            stub = interfaces_pb2_grpc.LauncherStub(channel)
            started = time.monotonic()
            try:
                for response in stub.GetOakSystemImage(empty_pb2.Empty(), timeout=STREAM_BUDGET):
                    pipeline.feed(bytes(response.image_chunk))
                fetched = time.monotonic() - started
                log(f"fetched {pipeline.size} bytes in {fetched:.2f} s")
                return pipeline.finish(), fetched
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else None
                retry = pipeline.size == 0 and code == grpc.StatusCode.UNAVAILABLE
                if not retry or time.monotonic() > deadline:
                    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
                    # The launcher's words: one escaped line, never its terminal codes.
                    raise Stage1Error(
                        f"GetOakSystemImage from {launcher_addr}: {printable(details or '')}"
                    ) from None
        log(f"launcher {launcher_addr} unreachable, retrying in {delay:.1f} s")
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def _log_pipeline(result: PipelineResult, fetched: float) -> None:
    """The split of the image's time on the console (the VM bench reads these lines)."""
    how = (
        f"{result.blocks} blocks on {result.workers} threads"
        if result.mode == "parallel"
        else "one stream, one thread"
    )
    log(
        f"sha256 {result.sha256.hex()} of {result.size} bytes, "
        f"hashing {result.digest_seconds:.2f} s"
    )
    log(f"decompressed {result.tar_bytes} bytes in {result.decompress_seconds:.2f} s ({how})")
    report = result.report
    log(
        f"unpacked {report.members} entries ({report.bytes} bytes) in "
        f"{result.unpack_seconds:.2f} s (waited {result.unpack_waited:.2f} s for data); "
        f"image done {fetched + result.tail_seconds:.2f} s after the request, "
        f"{result.tail_seconds:.2f} s after the last chunk"
    )


def mount_rootfs(kernel_args: list[str]) -> None:
    options = "mode=0755"
    for arg in kernel_args:
        if arg.startswith("brd.rd_size=") and arg.split("=", 1)[1].isdigit():
            options += f",size={arg.split('=', 1)[1]}k"
    ROOTFS.mkdir(exist_ok=True)
    busybox("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(ROOTFS))


def take_handoff(args: Stage1Args) -> dice_pb2.DiceData | None:
    """Stage0's DiceData (its range zeroed), or ``None`` without stage0 (said once)."""
    from hats.stage1.handoff import handoff_from_args, take_stage0_dice

    found = handoff_from_args(args)
    if found is None:
        log("no stage0 hand-off (no --oak-dice): simulating the stage0 layer (insecure root)")
        return None
    taken = take_stage0_dice(found)
    layers = len(taken.dice_data.evidence.layers)
    log(
        f"stage0 hand-off at {found.describe()}: DiceData with {layers} layer(s), "
        f"{taken.event_count} event(s); the DICE range now reads as zeros"
    )
    return taken.dice_data


def run(argv: Sequence[str]) -> tuple[str, str]:
    """Steps 1–5; returns (init path, LAUNCHER_ADDR value) for the hand-over.

    Start-up order: the first console line comes before any heavy import
    (gRPC and protobuf are imported by the fetch, cryptography and the DICE
    code only once the image is in), so the console's first line marks
    stage1's start and not the end of its imports.
    """
    from hats.stage1.cmdline import launcher_addr_env, parse_proc_cmdline, parse_stage1_args

    args = parse_stage1_args(list(argv))
    kernel_cmdline = PROC_CMDLINE.read_text(encoding="utf-8").rstrip("\n")
    kernel_args = parse_proc_cmdline(kernel_cmdline).kernel_args
    log(f"launcher {args.launcher_addr}, init {args.init}")
    stage0 = take_handoff(args)
    configure_network(kernel_args)
    # The image is unpacked into the tmpfs (the staging root) while it arrives;
    # nothing in it is used until the digest below is final (hats.stage1.pipeline).
    mount_rootfs(kernel_args)
    result, fetched = _stream_image(args.launcher_addr, ROOTFS)
    _log_pipeline(result, fetched)
    from hats.attestation import dice
    from hats.attestation.simulate import Stage0Inputs, simulate_stage1
    from hats.stage1.finish import finish_root

    image_sha256 = result.sha256
    if stage0 is not None:
        attester = dice.DiceAttester(stage0)
        attester.extend(dice.system_layer_event(image_sha256))
        dice_data = attester.dice_data()
    else:
        dice_data = simulate_stage1(image_sha256, Stage0Inputs(kernel_cmdline=kernel_cmdline))
    encoded = dice.encode_dice_data(dice_data)
    finish_root(ROOTFS, encoded)
    return args.init, launcher_addr_env(args.launcher_addr)


def hand_over(init: str, launcher_addr: str) -> None:
    """Step 6: never returns on success."""
    for device in sorted(os.listdir("/sys/class/net")):
        if device != "lo":
            busybox("ip", "link", "set", device, "down")
    for mount in ("/sys", "/proc", "/dev"):
        run_tool([BUSYBOX, "umount", "-l", mount], error=Stage1Error, check=False)
    log(f"switching to the system image: {init}")
    os.execve(BUSYBOX, ["switch_root", str(ROOTFS), init], {"LAUNCHER_ADDR": launcher_addr})


def main(argv: Sequence[str] | None = None) -> int:
    try:
        init, launcher_addr = run(sys.argv[1:] if argv is None else argv)
        hand_over(init, launcher_addr)
    except HatsError as exc:
        print(f"hats-stage1: error: {exc}", flush=True)
    except Exception as exc:  # PID 1 must say why it stops, whatever the cause
        print(f"hats-stage1: error: {type(exc).__name__}: {exc}", flush=True)
    return 1
