"""The ``hats`` command: a thin shell over the sub-packages' own CLIs.

User errors (:class:`hats.errors.HatsError`) become one line on stderr and a
non-zero exit; usage errors exit 2 with click's message. Tracebacks are kept
only for bugs.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from hats import __version__
from hats.errors import HatsError
from hats.sharetype import DEFAULT_SHARE_TYPE, SHARE_TYPES
from hats.textsafe import printable

#: The command groups, loaded only when named: ``hats --help`` and ``hats X
#: --help`` import nothing but click and the one group asked for. name →
#: (module, attribute, the one-line help ``hats --help`` shows; a test checks it
#: equals the group's own).
LAZY_GROUPS: dict[str, tuple[str, str, str]] = {
    "image": (
        "hats.image.cli",
        "image_group",
        "Build, inspect, diff, verify and lint system images.",
    ),
    "keys": (
        "hats.keys.cli",
        "keys_group",
        "Check, generate and show TVS key files (tvs_public_keys.txt).",
    ),
    "base": ("hats.base.cli", "base_group", "Build the default Debian base root filesystem."),
    "stage1": (
        "hats.stage1.simulate_cli",
        "stage1_group",
        "Simulate stage1's DICE data (INSECURE: for machines without SEV-SNP).",
    ),
    "evidence": (
        "hats.attestation.cli",
        "evidence_group",
        "Inspect and verify attestation evidence (oak.attestation.v1.Evidence).",
    ),
    "measure": (
        "hats.attestation.measure_cli",
        "measure_group",
        "Compute policy reference values from build artifacts (stage0, kernel, initrd).",
    ),
    "policy": (
        "hats.attestation.cli",
        "policy_group",
        "Make and check TVS appraisal policies (text-format AppraisalPolicies).",
    ),
    "tvs": (
        "hats.tvs.cli",
        "tvs_group",
        "A TVS wire-compatible with the reference, for tests and demos.",
    ),
    "launcher": (
        "hats.launcher.cli",
        "launcher_group",
        "The host side of a HATs CVM: Oak Launcher, LauncherService, OTLP logs and metrics.",
    ),
    "vm": ("hats.vm.cli", "vm_group", "Boot the system image in QEMU (insecure mode: no SEV-SNP)."),
}


NO_DEFAULT = " [default: none]"


def teach(command: click.Command) -> None:
    """The help rules every ``hats`` command follows, applied once when it is loaded.

    * A group lists its commands with their whole first sentence (click cuts
      it at 45 characters).
    * Every option's help says its default: click's ``[default: X]`` when the
      option has one, else the help's own ``[default: …]`` text, else
      ``[default: none]`` (nothing is used unless the option is given).
      Flags (off unless given) and required options (or whose help says
      "required") are left as they are.
    """
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            if sub.short_help is None and sub.help:
                sub.short_help = sub.get_short_help_str(limit=1000)
            teach(sub)
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden:
            continue
        if param.is_flag or param.required or param.count:
            continue
        shown = param.show_default and param.default not in (None, "", ())
        text = (param.help or "").lower()
        if shown or "default" in text or "required" in text:
            continue
        param.help = (param.help or "").rstrip() + NO_DEFAULT


class LazyGroup(click.Group):
    """A click group whose sub-groups are imported on first use (see LAZY_GROUPS)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_GROUPS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_GROUPS and cmd_name not in self.commands:
            module, attribute, _ = LAZY_GROUPS[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{module}.{attribute} is not a click command")
            teach(command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List every command without importing the lazy groups."""
        rows = [
            (name, LAZY_GROUPS[name][2] if name in LAZY_GROUPS else self._short_help(name))
            for name in self.list_commands(ctx)
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _short_help(self, name: str) -> str:
        command = self.commands[name]
        return command.get_short_help_str(limit=200)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hats")
def cli() -> None:
    """Build, inspect and verify HATs system images, and run the agents and peers."""


@cli.command(
    "orchestrator",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def orchestrator_command(args: tuple[str, ...]) -> int:
    """Run the HATs orchestrator (the image's /usr/bin/orchestrator_main; --help for flags)."""
    from hats.orchestrator import main as orchestrator_main

    return orchestrator_main(list(args), prog="hats orchestrator")


@cli.command(
    "syslogd",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def syslogd_command(args: tuple[str, ...]) -> int:
    """Forward the journal to the launcher (the image's /usr/bin/oak_containers_syslogd)."""
    from hats.syslogd import main as syslogd_main

    return syslogd_main(list(args), prog="hats syslogd")


@cli.command(
    "agent",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def agent_command(args: tuple[str, ...]) -> int:
    """Export /proc metrics to the launcher (the image's /usr/bin/oak_containers_agent)."""
    from hats.agent import main as agent_main

    return agent_main(list(args), prog="hats agent")


@cli.command("demo")
@click.option(
    "--tvs", "tvs", type=click.IntRange(1, 3), default=1, show_default=True, help="Number of TVSes."
)
@click.option(
    "--share",
    type=click.Choice(SHARE_TYPES),
    default=DEFAULT_SHARE_TYPE.value,
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
    help="Orchestrator heartbeat period in seconds [default: the orchestrator's, 3600].",
)
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Keep the demo's files here: a new or empty directory, or a previous demo's (reused)"
    " [default: a temporary directory, removed].",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON summary on stdout at the end; the steps go to stderr.",
)
def demo_command(
    tvs: int,
    share: str,
    image: Path | None,
    heartbeat: int | None,
    workdir: Path | None,
    as_json: bool,
) -> int:
    """Run image → stage1 → TVS(es) → launcher → orchestrator → workload locally.

    \b
    Examples:
      hats demo
      hats demo --tvs 3 --share shamir --workdir out/demo --json
    """
    import json

    from hats.demo import DemoOptions, run_demo

    def echo(line: str) -> None:
        click.echo(line, err=as_json)

    result = run_demo(
        DemoOptions(tvs=tvs, share=share, image=image, heartbeat=heartbeat, workdir=workdir),
        echo=echo,
    )
    if as_json:
        document = {
            "ok": result.ok,
            "tvs": tvs,
            "share": share,
            "image_sha256": result.image_sha256,
            "expected_fingerprint": result.expected_fingerprint,
            "workload_output": result.workload_output.splitlines(),
            "workdir": None if workdir is None else str(workdir),
            "hats_version": __version__,
        }
        click.echo(json.dumps(document, indent=2))
        return 0 if result.ok else 1
    if result.ok:
        click.echo(
            f"OK: the workload got key {result.expected_fingerprint} (fingerprint) "
            "from the TVS(es), bound to the image and bundle digests"
        )
        return 0
    click.echo("FAILED: the workload did not print the expected key fingerprint", err=True)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    try:
        result = cli.main(args=argv, prog_name="hats", standalone_mode=False)
    except HatsError as exc:
        click.echo(f"hats: error: {printable(str(exc))}", err=True)
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
