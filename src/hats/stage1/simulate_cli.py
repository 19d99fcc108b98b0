"""``hats stage1``: simulate stage0/stage1 DICE data (INSECURE, for machines without SEV-SNP).

A thin shell over :func:`hats.attestation.simulate.simulate_stage1`: it hashes
the input files (streaming), and writes the length-delimited ``DiceData``
atomically with mode 0600 (it holds the system layer's private key, which is
never printed). User errors are :class:`HatsError` (one line).

The kernel command line is checked as our guest stage1 checks its arguments
(:func:`hats.stage1.cmdline.parse_stage1_args` on
:func:`~hats.stage1.cmdline.stage1_argv`): a stage1 flag given twice, or
``--init`` other than ``/sbin/init``, is refused; ``--allow-other-init``
accepts another init path (never the guest: upstream-facts F10).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from hats.attestation import dice
from hats.attestation.simulate import DEFAULT_KERNEL_CMDLINE, Stage0Inputs, default_digest
from hats.attestation.simulate import simulate_stage1 as _simulate
from hats.errors import HatsError
from hats.fsio import atomic_output, make_parent_dirs
from hats.hashing import file_sha256, read_failure
from hats.stage1.cmdline import parse_proc_cmdline, parse_stage1_args, stage1_argv

DICE_FILE_MODE = 0o600

# (keyword, file option, digest option, default-digest name, help noun)
_MEASURED = (
    ("kernel_sha256", "--kernel-image", "--kernel-sha256", "kernel", "kernel image"),
    ("setup_data_sha256", "--setup-data", "--setup-data-sha256", "setup data", "setup data"),
    ("initrd_sha256", "--initrd", "--initrd-sha256", "initrd", "initial RAM disk"),
    ("memory_map_sha256", "--memory-map", "--memory-map-sha256", "memory map", "memory map"),
    ("acpi_sha256", "--acpi", "--acpi-sha256", "acpi", "ACPI tables"),
)


def _file_sha256(path: str) -> bytes:
    try:
        return bytes.fromhex(file_sha256(path))
    except OSError as exc:
        raise HatsError(f"{path}: cannot read: {read_failure(exc)}") from None


def _hex_sha256(value: str, option: str) -> bytes:
    text = value.strip()
    if text.lower().startswith("sha256:"):
        text = text[len("sha256:") :]
    try:
        digest = bytes.fromhex(text)
    except ValueError:
        digest = b""
    if len(digest) != dice.SHA256_LENGTH:
        raise HatsError(f"{option}: expected 64 hexadecimal digits or sha256:HEX (a SHA-256)")
    return digest


@click.group("stage1")
def stage1_group() -> None:
    """Simulate stage1's DICE data (INSECURE: for machines without SEV-SNP)."""


def _measured_options(function: click.decorators.FC) -> click.decorators.FC:
    for _, file_option, digest_option, _, noun in reversed(_MEASURED):
        function = click.option(
            digest_option,
            metavar="[sha256:]HEX",
            help=f"SHA-256 of the {noun} (instead of the file).",
        )(function)
        function = click.option(
            file_option,
            metavar="FILE",
            type=click.Path(dir_okay=False),
            help=f"The {noun} to measure (default: a fixed simulated digest).",
        )(function)
    return function


@stage1_group.command("simulate")
@click.option(
    "--system-image",
    required=True,
    metavar="IMAGE.tar.xz",
    type=click.Path(dir_okay=False),
    help="The system image; its SHA-256 is the stage1 measurement.",
)
@click.option(
    "--kernel-cmdline",
    default=DEFAULT_KERNEL_CMDLINE,
    show_default=True,
    help="The kernel command line stage0 records (its stage1 flags are checked).",
)
@click.option(
    "--allow-other-init",
    is_flag=True,
    help="Accept a --init other than /sbin/init in --kernel-cmdline (our guest stage1 never"
    " does: a host could start a shell before the attested image's init).",
)
@_measured_options
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="DICE_FILE",
    type=click.Path(dir_okay=False),
    help="Where to write the length-delimited DiceData (mode 0600; missing directories are"
    " created).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document on stdout (output, digests, platform); nothing else.",
)
def simulate_command(
    system_image: str,
    kernel_cmdline: str,
    allow_other_init: bool,
    output: str,
    as_json: bool,
    **measured: str | None,
) -> None:
    """Write the DiceData stage1 would leave in /oak/dice, with a software root key.

    INSECURE: no hardware measures anything; the root layer says
    TEE_PLATFORM_NONE and carries stage0's fake (all-zero, unsigned) report
    binding the root key. The stage1 flags of --kernel-cmdline
    are checked as our guest stage1 does: none twice, --init only /sbin/init
    (unless --allow-other-init).

    \b
    Example:
      hats stage1 simulate --system-image out/image.tar.xz -o out/dice.bin
    """
    argv = stage1_argv(parse_proc_cmdline(kernel_cmdline))
    try:
        parse_stage1_args(argv, allow_other_init=allow_other_init)
    except HatsError as exc:
        raise type(exc)(f"--kernel-cmdline: {exc}") from None
    digests: dict[str, bytes] = {}
    for keyword, file_option, digest_option, name, _ in _MEASURED:
        path = measured.get(_param_name(file_option))
        text = measured.get(_param_name(digest_option))
        if path is not None and text is not None:
            raise HatsError(f"{file_option} and {digest_option} are mutually exclusive")
        if path is not None:
            digests[keyword] = _file_sha256(path)
        elif text is not None:
            digests[keyword] = _hex_sha256(text, digest_option)
        else:
            digests[keyword] = default_digest(name)
    image_sha256 = _file_sha256(system_image)
    dice_data = _simulate(image_sha256, Stage0Inputs(kernel_cmdline=kernel_cmdline, **digests))
    make_parent_dirs(Path(output))
    with atomic_output(Path(output), DICE_FILE_MODE) as handle:
        handle.write(dice.encode_dice_data(dice_data))
    if as_json:
        document = {
            "output": output,
            "system_image_sha256": image_sha256.hex(),
            "platform": "TEE_PLATFORM_NONE",
            "insecure": True,
            "kernel_cmdline": kernel_cmdline,
            **{keyword: digests[keyword].hex() for keyword, *_ in _MEASURED},
        }
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(f"system image sha256: {image_sha256.hex()}")
    click.echo(f"wrote {output} (INSECURE simulated DICE data, TEE_PLATFORM_NONE)")


def _param_name(option: str) -> str:
    return option.lstrip("-").replace("-", "_")
