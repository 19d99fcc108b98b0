"""Every command in README.md's ``sh`` code blocks runs as written (issue 15, item 10).

The commands are extracted from the README (continuation lines joined,
trailing ``# comments`` kept as the shell would ignore them) and run with
``sh -c`` in order, in a fresh directory that holds links to this checkout's
``.venv``, ``tests`` and ``examples`` (so ``out/`` starts empty and a
command may use what an earlier one wrote, as a reader would).

Each command must be classified below; an unclassified one fails the test,
so a new README command gets a decision. Not run here, with the reason:

* ``scripts/setup.sh && … image build examples/test_single.toml``: root,
  mmdebstrap and minutes of xz (``tests/image/test_default_base_image.py``,
  slow, runs that job);
* ``image build … --xz-block-size 8MiB``: needs the default base
  (``test_readme_fast_build_example_runs_as_written``, slow);
* ``hats vm demo``: boots QEMU (``tests/vm/test_vm_boot.py``, slow);
* ``.venv/bin/python -m pytest``: this test suite itself;
* the virtual-bridge lines (``sudo ip link add br0 …``, ``sudo … launcher
  serve``): root and a bridge on the host (``tests/vm/test_vm_bridge.py``
  does the same in a network namespace of its own, slow);
* the reference-mode lines (``hats vm bundle … IMAGE.tar.xz``, ``launcher serve
  --launcher_config_path launcher_config.txtpb …``): templates, booted by
  ``tests/vm/test_launcher_reference_boot.py`` (slow);
* the ``launcher serve … --vmm qemu`` / ``… --logs-file`` lines and
  ``launcher metrics cvm-metrics.json``: templates with placeholders
  (``IMAGE.tar.xz``, ``…``) and a running CVM, shown for their flags.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: Commands not run here (prefix → why); see the module docstring.
NOT_RUN = {
    "scripts/setup.sh": "root + mmdebstrap + minutes of xz: tests/image/test_default_base_image.py",
    ".venv/bin/python -m pytest": "the test suite itself",
    ".venv/bin/hats vm demo": "boots QEMU: tests/vm (slow)",
    "hats launcher serve --tvs_addresses unix:/path/tvs.sock": "a template (IMAGE.tar.xz, a VM)",
    ".venv/bin/hats launcher serve …": "a template (…) needing a running CVM",
    ".venv/bin/hats launcher metrics": "reads the metrics file of a running launcher",
    "sudo ip link add br0 type bridge": "root: a bridge on the host (tests/vm/test_vm_bridge.py)",
    "sudo .venv/bin/hats launcher serve": "root, a bridge, a VM: tests/vm/test_vm_bridge.py",
    ".venv/bin/hats vm bundle -o out/system_bundle.tar --image IMAGE.tar.xz": (
        "a template (IMAGE.tar.xz): tests/vm/test_launcher_reference_boot.py (slow)"
    ),
    ".venv/bin/hats launcher serve --launcher_config_path launcher_config.txtpb": (
        "a template (a config, a TVS, a VM): tests/vm/test_launcher_reference_boot.py (slow)"
    ),
    ".venv/bin/hats image build examples/test_single.toml --xz-block-size": (
        "needs the default base: test_readme_fast_build_example_runs_as_written (slow)"
    ),
}

#: Commands run here (prefixes), quick and without root.
RUN = (
    ".venv/bin/hats demo",
    ".venv/bin/hats evidence verify",
    ".venv/bin/hats keys gen",
    ".venv/bin/hats policy make",
    ".venv/bin/hats policy check",
)


def readme_commands() -> list[str]:
    """The commands of the README's ``sh`` blocks, one string each."""
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip():
                commands.append(" ".join(command.split()))
    return commands


def test_every_readme_command_is_classified() -> None:
    commands = readme_commands()
    assert len(commands) >= 12
    for command in commands:
        ran = command.startswith(RUN)
        skipped = any(command.startswith(prefix) for prefix in NOT_RUN)
        assert ran != skipped, f"classify this README command (run or not, why): {command}"


def test_readme_commands_run_as_written(tmp_path: Path) -> None:
    for name in (".venv", "tests", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    ran = []
    for command in readme_commands():
        if not command.startswith(RUN):
            continue
        result = subprocess.run(
            ["sh", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        if "--json" in command.split("#")[0].split():
            json.loads(result.stdout)  # one JSON document, nothing else
        ran.append(command)
    assert len(ran) >= 7
    # The own-key flow ends with the evidence accepted under the new key.
    last = json.loads(result.stdout)
    assert last["accepted"] is True and last["policy_signature"].startswith("the key sha256:")


@pytest.mark.parametrize("group", ["demo", "tvs serve", "tvs split-secret", "orchestrator"])
def test_commands_list_names(group: str) -> None:
    listing = README.read_text().split("## Commands", 1)[1].split("```")[1]
    assert f"\nhats {group}" in listing


def test_commands_list_shows_what_policy_make_needs() -> None:
    listing = README.read_text().split("## Commands", 1)[1].split("```")[1]
    make = listing.split("hats policy make", 1)[1].split("\nhats ", 1)[0]
    needed = ["--system-image-sha256", "--bundle-sha256", "-o P.txtpb", "unless --like"]
    needed += ["--min-tcb", "--memory-map-sha256", "--acpi-table-sha256", "--cmdline"]
    for option in needed:
        assert option in make
