"""``hats vm``: the guest's kernel and initramfs, the workload bundle, and the boot demo.

The guest itself is started by ``hats launcher serve --vmm qemu`` (the
launcher owns QEMU, as the reference launcher does); these commands prepare
what it boots and run the whole flow once.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import click

from hats.errors import HatsError
from hats.fsio import make_parent_dirs


@click.group("vm")
def vm_group() -> None:
    """Boot the system image in QEMU (insecure mode: no SEV-SNP)."""


@vm_group.command("assets")
@click.option("--json", "as_json", is_flag=True, help="Print the paths as JSON.")
def assets_command(as_json: bool) -> None:
    """Fetch the Debian kernel and build the stage1 initramfs (cached); print their paths.

    \b
    Example:
      hats vm assets --json
    """
    from hats.console import Steps
    from hats.vm.assets import ensure_guest_assets

    assets = ensure_guest_assets(progress=Steps(sys.stderr, prefix="hats: "))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "kernel": str(assets.kernel),
                    "initrd": str(assets.initrd),
                    "kernel_release": assets.kernel_release,
                }
            )
        )
    else:
        click.echo(f"kernel  {assets.kernel}")
        click.echo(f"initrd  {assets.initrd}")


@vm_group.command("workload-bundle")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the bundle tar (missing directories are created).",
)
@click.option(
    "--script",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The workload script [default: hats/demo/workload/get_keys.py].",
)
def workload_bundle_command(output: Path, script: Path | None) -> None:
    """Write the sample workload as a runc bundle with its own Python (for the guest).

    \b
    Example:
      hats vm workload-bundle -o out/bundle.tar
    """
    from hats.base.build import ensure_default_base
    from hats.packaging.agents_layer import build_agents_tree
    from hats.vm.workload import make_workload_bundle

    make_parent_dirs(output)
    base = ensure_default_base(with_python=True)
    with tempfile.TemporaryDirectory(prefix="hats-agents-") as tmp:
        agents = build_agents_tree(Path(tmp) / "agents")
        make_workload_bundle(output, base=base, agents_site=agents.site_dir, script=script)
    click.echo(f"wrote {output}")


@vm_group.command("bundle")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the system bundle tar (missing directories are created).",
)
@click.option(
    "--image",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The system image (.tar.xz), served to stage1 as system.tar.xz.",
)
@click.option(
    "--kernel",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The guest kernel (kernel_bin) [default: Debian's cloud kernel, as hats vm assets].",
)
@click.option(
    "--initrd",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The initramfs (initrd.cpio.xz) [default: hats stage1's, as hats vm assets].",
)
@click.option(
    "--stage0",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Oak's stage0_bin: the launcher then boots in reference mode [default: none, the"
    " insecure boot].",
)
def bundle_command(
    output: Path, image: Path, kernel: Path | None, initrd: Path | None, stage0: Path | None
) -> None:
    """Write a HATs system bundle (the reference's layout) for a launcher config's
    hats_system_bundle.

    \b
    Example:
      hats vm bundle -o out/system_bundle.tar --image out/image.tar.xz \\
          --stage0 tests/data/oak-stage0/stage0_bin
    """
    from hats.vm.sysbundle import BundleInputs, write_system_bundle

    if kernel is None or initrd is None:
        from hats.vm.assets import ensure_guest_assets

        assets = ensure_guest_assets(progress=lambda line: click.echo(f"hats: {line}", err=True))
        kernel = kernel or assets.kernel
        initrd = initrd or assets.initrd
    make_parent_dirs(output)
    inputs = BundleInputs(kernel=kernel, initrd=initrd, image=image, stage0=stage0)
    names = write_system_bundle(output, inputs)
    click.echo(f"wrote {output} ({', '.join(name[2:] for name in names[1:])})")


@vm_group.command("demo")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the files here (image, bundle, policy, console log) [default: a temporary one].",
)
@click.option(
    "--accel",
    type=click.Choice(["auto", "kvm", "tcg"]),
    default="auto",
    show_default=True,
    help="auto: KVM when a probe guest really boots, else TCG.",
)
@click.option(
    "--xz-block-size",
    default=None,
    help="Build the image in the parallel multi-block xz mode (e.g. 8MiB).",
)
@click.option(
    "--stage0",
    "stage0_bin",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Boot through this Oak stage0_bin (-bios; QEMU >= 8) [default: the checkout's"
    " tests/data/oak-stage0/stage0_bin when present and QEMU >= 8, else none: a simulated root].",
)
@click.option("--no-stage0", is_flag=True, help="No stage0: stage1 simulates the root (insecure).")
@click.option(
    "--guest-kernel-arg",
    "guest_kernel_args",
    multiple=True,
    metavar="ARG",
    help="Add ARG to the guest's kernel command line before ' -- ' (repeatable; e.g."
    " ipv6.disable=1): passed to the launcher, and the policy is made for that line. Opt-in:"
    " the line is then not the reference's.",
)
def demo_command(
    workdir: Path | None,
    accel: str,
    xz_block_size: str | None,
    stage0_bin: Path | None = None,
    no_stage0: bool = False,
    guest_kernel_args: tuple[str, ...] = (),
) -> None:
    """Build an image, boot it in QEMU with a TVS and the launcher; the workload gets its key.

    \b
    Example:
      hats vm demo --workdir out/vm --accel auto
      hats vm demo --guest-kernel-arg ipv6.disable=1
    """
    from hats.console import Steps
    from hats.vm.demo import STEPS, VmDemoOptions, run_vm_demo
    from hats.vm.kernelargs import check_kernel_args, kernel_args_line

    kernel_args = check_kernel_args(guest_kernel_args)  # before anything is built

    with tempfile.TemporaryDirectory(prefix="hats-vm-demo-") as tmp:
        if stage0_bin is not None and no_stage0:
            raise click.UsageError("--stage0 and --no-stage0 exclude each other")
        if stage0_bin is None and not no_stage0:
            from hats.vm.stage0 import default_stage0

            stage0_bin, reason = default_stage0()
            if stage0_bin is None:
                click.echo(f"firmware: no stage0 ({reason}); stage1 simulates the root")
        options = VmDemoOptions(
            workdir=workdir or Path(tmp),
            accel=accel,
            xz_block_size=xz_block_size,
            stage0=None if no_stage0 else stage0_bin,
            guest_kernel_args=kernel_args,
        )
        if options.stage0 is not None:
            click.echo(f"firmware: Oak stage0 {options.stage0}")
        if kernel_args:
            click.echo(kernel_args_line(kernel_args, prefix=""))
        # Numbered steps on stdout: plain lines, or rich's display on a terminal.
        result = run_vm_demo(options, Steps(sys.stdout, total=STEPS))
        timing = f" in {result.boot_to_keys:.0f} s after boot" if result.boot_to_keys else ""
        click.echo(f"OK: the workload in the guest got key 64{timing}")
        if not result.clean_poweroff:
            raise HatsError("the guest did not power off cleanly")
