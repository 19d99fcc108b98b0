"""Packaging of the in-image Python agents.

* :mod:`hats.packaging.lockfile` — the target interpreter (Debian bookworm's
  CPython 3.11, x86_64) and the hash-locked ``agents-requirements.txt``;
* :mod:`hats.packaging.lock` — regenerates that lock file
  (``python -m hats.packaging.lock``);
* :mod:`hats.packaging.fetch` — the verified wheel cache (``pip download
  --require-hashes``);
* :mod:`hats.packaging.wheels` — the deterministic wheel unpacker;
* :mod:`hats.packaging.agents_layer` — :func:`build_agents_tree`, the
  ``usr/bin`` launchers plus ``usr/lib/hats/python`` site directory that the
  image builder ships when the user brings no agent binaries.

Standard library only, like the rest of what goes into the image.
"""

from hats.packaging.agents_layer import (
    AgentsTree,
    TreeFile,
    agents_tree_digest,
    build_agents_tree,
    tree_digest,
)

__all__ = ["AgentsTree", "TreeFile", "agents_tree_digest", "build_agents_tree", "tree_digest"]
