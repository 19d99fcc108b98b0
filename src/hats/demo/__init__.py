"""The demos: the whole HATs flow run once, locally (``hats demo``) or in QEMU (``hats vm demo``).

Modules:

- :mod:`hats.demo.harness` — the public process harness: ``hats`` commands
  run as steps (:func:`run_step`), servers as collected processes
  (:class:`Process`, :func:`processes`);
- :mod:`hats.demo.setup` — what both demos make (keys, DICE data, policy,
  secret: :class:`DemoSetup`) and the peers they start (TVS, launcher,
  orchestrator command line);
- :mod:`hats.demo.local` — ``hats demo``: everything as local processes;
- :mod:`hats.demo.sample_bundle` and :mod:`hats.demo.workload` — the sample
  workload (``get_keys.py``, package data) and its OCI bundle.

The VM demo (:mod:`hats.vm.demo`) lives with the VM tools it needs and uses
only this package's public names. The names below are re-exported for
callers (the CLI, the tests, the benchmarks).
"""

from hats.demo.harness import DemoError, Process, hats_command, processes, run_step, start
from hats.demo.local import (
    WORKDIR_MARK,
    DemoOptions,
    DemoResult,
    claim_workdir,
    minimal_image,
    prepare,
    run_demo,
    toy_base_root,
)
from hats.demo.setup import (
    KEY_ID,
    DemoSetup,
    make_policy,
    orchestrator_args,
    start_launcher,
    start_tvs,
    write_secrets_file,
)

__all__ = [
    "KEY_ID",
    "WORKDIR_MARK",
    "DemoError",
    "DemoOptions",
    "DemoResult",
    "DemoSetup",
    "Process",
    "claim_workdir",
    "hats_command",
    "make_policy",
    "minimal_image",
    "orchestrator_args",
    "prepare",
    "processes",
    "run_demo",
    "run_step",
    "start",
    "start_launcher",
    "start_tvs",
    "toy_base_root",
    "write_secrets_file",
]
