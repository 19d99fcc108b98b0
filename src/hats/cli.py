"""The ``hats`` command: a thin shell over the sub-packages' own CLIs.

User errors (:class:`hats.errors.HatsError`) become one line on stderr and a
non-zero exit; usage errors exit 2 with click's message. Tracebacks are kept
only for bugs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hats import __version__
from hats.attestation.cli import evidence_group, policy_group
from hats.attestation.stage1_cli import stage1_group
from hats.base.cli import base_group
from hats.errors import HatsError
from hats.image.cli import image_group
from hats.keys.cli import keys_group
from hats.launcher.cli import launcher_group
from hats.tvs.cli import tvs_group
from hats.vm.cli import vm_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hats")
def cli() -> None:
    """Build, inspect and verify HATs system images."""


@cli.command(
    "orchestrator",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def orchestrator_command(args: tuple[str, ...]) -> int:
    """Run the HATs orchestrator (the image's /usr/bin/orchestrator_main; --help for flags)."""
    from hats.orchestrator import main as orchestrator_main

    return orchestrator_main(list(args))


@cli.command(
    "syslogd",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def syslogd_command(args: tuple[str, ...]) -> int:
    """Forward the journal to the launcher (the image's /usr/bin/oak_containers_syslogd)."""
    from hats.syslogd import main as syslogd_main

    return syslogd_main(list(args))


@cli.command(
    "agent",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def agent_command(args: tuple[str, ...]) -> int:
    """Export /proc metrics to the launcher (the image's /usr/bin/oak_containers_agent)."""
    from hats.agent import main as agent_main

    return agent_main(list(args))


@cli.command("demo")
@click.option(
    "--tvs", "tvs", type=click.IntRange(1, 3), default=1, show_default=True, help="Number of TVSes."
)
@click.option(
    "--share",
    type=click.Choice(["no-split", "xor", "shamir"]),
    default="no-split",
    show_default=True,
    help="How the secret is split across the TVSes.",
)
@click.option(
    "--image",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="A system image (.tar.xz) to bind; default: a minimal one built here.",
)
@click.option(
    "--tvs-heartbeat-frequency",
    "heartbeat",
    type=click.IntRange(min=1),
    help="Orchestrator heartbeat period in seconds.",
)
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Keep the demo's files here (default: a temporary directory).",
)
def demo_command(
    tvs: int, share: str, image: Path | None, heartbeat: int | None, workdir: Path | None
) -> int:
    """Run image → stage1 → TVS(es) → launcher → orchestrator → workload locally."""
    from hats.demo import DemoOptions, run_demo

    result = run_demo(
        DemoOptions(tvs=tvs, share=share, image=image, heartbeat=heartbeat, workdir=workdir),
        echo=click.echo,
    )
    if result.ok:
        click.echo(
            f"OK: the workload got key {result.expected_fingerprint} (fingerprint) "
            "from the TVS(es), bound to the image and bundle digests"
        )
        return 0
    click.echo("FAILED: the workload did not print the expected key fingerprint", err=True)
    return 1


cli.add_command(image_group)
cli.add_command(keys_group)
cli.add_command(base_group)
cli.add_command(stage1_group)
cli.add_command(evidence_group)
cli.add_command(policy_group)
cli.add_command(tvs_group)
cli.add_command(launcher_group)
cli.add_command(vm_group)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    try:
        result = cli.main(args=argv, prog_name="hats", standalone_mode=False)
    except HatsError as exc:
        click.echo(f"hats: error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("hats: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except BrokenPipeError:
        return 141
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
