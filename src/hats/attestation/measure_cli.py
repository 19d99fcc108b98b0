"""``hats measure``: appraisal-policy reference values computed from build artifacts.

A thin shell over :mod:`hats.attestation.measure` (the rules are there). Each
command prints the value(s) a policy needs, or one JSON object with
``--json`` (the value, the inputs it was computed from, ``hats_version``).
Evidence files (``--cpu-from``) are read as ``hats evidence`` reads them.
"""

from __future__ import annotations

import json
from typing import Any

import click

import hats
from hats.attestation import measure

CPU_HELP = (
    "The host CPU's signature: FAMILY:MODEL:STEPPING in hex (e.g. 19:11:1), or a preset: "
    "milan (19:01:1), genoa (19:11:1), turin (1a:02:1). The launch digest differs with any "
    "of the three numbers, and parts of one product differ (Genoa-X/Bergamo/Siena are model "
    "A0h-AFh; the sev-snp-measure/QEMU 'EPYC-Genoa' model is stepping 0, real Genoa reports "
    "say 1): prefer --cpu-from, or the signature a report of the host carries."
)
CPU_FROM_HELP = (
    "Read the CPU signature from the SEV-SNP report of this evidence (report version 3 or "
    "later: CPUID family/model/stepping at 0x188-0x18A). Nothing is verified."
)


def _echo_json(document: dict[str, Any]) -> None:
    click.echo(json.dumps({"hats_version": hats.__version__, **document}, indent=2))


def cpu_json(cpu: measure.CpuSignature | None, source: str | None) -> dict[str, Any] | None:
    """``{"family": "0x19", "model": …, "stepping": …, "cpuid_eax": …, "from": source}``."""
    if cpu is None:
        return None
    return {
        "family": f"0x{cpu.family:02x}",
        "model": f"0x{cpu.model:02x}",
        "stepping": f"0x{cpu.stepping:x}",
        "cpuid_eax": f"0x{cpu.eax:08x}",
        "from": source,
    }


def resolve_cpu(cpu: str | None, cpu_from: str | None) -> tuple[measure.CpuSignature | None, str]:
    """The CPU signature of ``--cpu`` or ``--cpu-from`` (at most one), and where it came from."""
    if cpu is not None and cpu_from is not None:
        raise click.UsageError("give one of --cpu and --cpu-from")
    if cpu_from is not None:
        # The evidence reader is the `hats evidence` module: imported only when needed.
        from hats.attestation.cli import load_evidence

        return measure.cpu_from_evidence(load_evidence(cpu_from), cpu_from), f"evidence {cpu_from}"
    if cpu is not None:
        parsed = measure.parse_cpu(cpu)
        name = cpu.strip().lower()
        return parsed, (f"preset {name}" if name in measure.CPU_PRESETS else "--cpu")
    return None, "none"


def parse_guest_features(value: str) -> int:
    """``--guest-features`` as hex (``0x1`` or ``1``)."""
    try:
        number = int(value, 16)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not hex", param_hint="--guest-features") from None
    if not 0 <= number < 1 << 64:
        raise click.BadParameter("not a 64-bit value", param_hint="--guest-features")
    return number


@click.group("measure")
def measure_group() -> None:
    """Compute policy reference values from build artifacts (stage0, kernel, initrd)."""


@measure_group.command("stage0")
@click.argument("stage0_bin", type=click.Path(dir_okay=False))
@click.option(
    "--vcpus",
    required=True,
    type=click.IntRange(min=1, max=4096),
    help="The guest's vCPU count (one VMSA is measured per vCPU).",
)
@click.option("--cpu", help=CPU_HELP)
@click.option("--cpu-from", type=click.Path(dir_okay=False), help=CPU_FROM_HELP)
@click.option(
    "--vmm",
    type=click.Choice(measure.VMM_TYPES),
    default="qemu",
    show_default=True,
    help="The VMM whose initial vCPU state is measured (gce and ec2 ignore the CPU signature).",
)
@click.option(
    "--guest-features",
    default="0x1",
    show_default=True,
    help="SEV_FEATURES of the VMSAs, hex (0x1: SNP active, no other feature).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stage0_command(
    stage0_bin: str,
    vcpus: int,
    cpu: str | None,
    cpu_from: str | None,
    vmm: str,
    guest_features: str,
    as_json: bool,
) -> None:
    """Print STAGE0_BIN's AMD SEV-SNP launch measurement (the report's MEASUREMENT, hex).

    The policy's amd_sev.sha384. Computed with the sev-snp-measure library
    (virtee): the firmware's pages and SEV metadata sections, then one VMSA per
    vCPU. With the QEMU VMM the VMSAs carry the CPU signature, so it must be
    the host's exactly: use --cpu-from with an evidence from that host, or
    --cpu with the family, model and stepping its reports carry.

    \b
    Example:
      hats measure stage0 stage0_bin --vcpus 4 --cpu-from evidence.binarypb
    """
    signature, source = resolve_cpu(cpu, cpu_from)
    if vmm == "qemu" and signature is None:
        raise click.UsageError("give --cpu or --cpu-from (the QEMU VMM measures the CPU signature)")
    result = measure.snp_launch_measurement(
        stage0_bin,
        vcpus=vcpus,
        cpu=signature,
        vmm=vmm,
        guest_features=parse_guest_features(guest_features),
    )
    if not as_json:
        click.echo(result.sha384)
        return
    _echo_json(
        {
            "amd_sev_sha384": result.sha384,
            "firmware": result.firmware,
            "firmware_sha256": result.firmware_sha256,
            "vcpus": result.vcpus,
            "cpu": cpu_json(result.cpu, source),
            "vmm": result.vmm,
            "guest_features": f"0x{result.guest_features:x}",
        }
    )


@measure_group.command("kernel")
@click.argument("bzimage", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def kernel_command(bzimage: str, as_json: bool) -> None:
    """Print stage0's kernel image and setup data digests of BZIMAGE (SHA-256, hex).

    kernel_image_sha256: the bytes after the setup sectors. kernel_setup_data_sha256:
    the setup sectors as QEMU patches them (loader type, heap, command-line
    pointer; the initrd fields zeroed), as stage0 measures them.

    \b
    Example:
      hats measure kernel vmlinuz --json
    """
    digests = measure.kernel_digests(measure.read_file(bzimage, "kernel"), bzimage)
    if not as_json:
        click.echo(f"kernel_image_sha256: {digests.kernel_image_sha256}")
        click.echo(f"kernel_setup_data_sha256: {digests.kernel_setup_data_sha256}")
        return
    _echo_json(
        {
            "kernel": bzimage,
            "kernel_image_sha256": digests.kernel_image_sha256,
            "kernel_setup_data_sha256": digests.kernel_setup_data_sha256,
            "setup_sects": digests.setup_sects,
            "setup_bytes": digests.setup_size,
            "boot_protocol": f"{digests.protocol >> 8}.{digests.protocol & 0xFF:02d}",
        }
    )


@measure_group.command("initrd")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def initrd_command(file: str, as_json: bool) -> None:
    """Print stage0's initial RAM disk digest of FILE (the policy's init_ram_fs_sha256).

    \b
    Example:
      hats measure initrd initrd.img
    """
    digest = measure.file_sha256(file, "initrd")
    if as_json:
        _echo_json({"initrd": file, "init_ram_fs_sha256": digest})
    else:
        click.echo(digest)


@measure_group.command("cmdline")
@click.argument("text")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def cmdline_command(text: str, as_json: bool) -> None:
    """Print the anchored kernel_cmd_line_regex for the command line TEXT.

    TEXT literally, ^...$; when it ends with --launcher-addr=vsock://CID:PORT the
    port (new every boot) is [0-9]+ and nothing may follow it.

    \b
    Example:
      hats measure cmdline 'console=ttyS0 -- --launcher-addr=vsock://2:8080'
    """
    from hats.attestation.policy import cmdline_regex_for

    regex = cmdline_regex_for(text)
    if as_json:
        _echo_json({"kernel_cmdline": text, "kernel_cmd_line_regex": regex})
    else:
        click.echo(regex)
