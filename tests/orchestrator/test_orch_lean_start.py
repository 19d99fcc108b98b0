"""The orchestrator imports only what its first TVS round needs before that round."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

#: Needed only after start-up: serving the IPC socket, unpacking and running the bundle.
AFTER_FIRST_ROUND = (
    "hats.orchestrator.services",
    "hats.orchestrator.bundle",
    "hats.orchestrator.runtime",
    "hats.archive.tarstream",
)


def test_serving_and_bundle_modules_are_imported_after_the_first_round() -> None:
    code = textwrap.dedent(
        """
        import json, sys
        import hats.orchestrator as orchestrator
        import hats.orchestrator.startup as startup

        class Stop(Exception):
            pass

        def start(config):
            print(json.dumps(sorted(sys.modules)))
            raise Stop

        startup.start = start
        orchestrator.resolve_user = lambda name: (0, 0)
        try:
            orchestrator.run(orchestrator.build_parser().parse_args([]))
        except Stop:
            pass
        print(json.dumps(sorted(sys.modules)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    at_start, after = (set(json.loads(line)) for line in result.stdout.splitlines())
    assert "grpc" in at_start  # start-up's own needs are there
    assert not at_start & set(AFTER_FIRST_ROUND)
    # start() raised before the serving code: run() never got to import it either.
    assert not after & set(AFTER_FIRST_ROUND)
