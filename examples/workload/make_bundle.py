"""Build the sample bundle: ``python examples/workload/make_bundle.py OUT.tar``.

The bundle runs ``python3 get_keys.py`` in ``/app`` (see
:func:`hats.demo.sample_bundle.make_sample_bundle`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from hats.demo.sample_bundle import make_sample_bundle

if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: make_bundle.py OUT.tar", file=sys.stderr)
        sys.exit(2)
    print(make_sample_bundle(Path(sys.argv[1])))
