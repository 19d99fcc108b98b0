"""Where hats keeps its caches: the base, the agents' wheels, xz blocks, the VM's assets.

``$HATS_CACHE_DIR`` if set and not empty, else ``~/.cache/hats``; each user
of the cache has its own subdirectory (``base``, ``agents-wheels``,
``xz-blocks``, ``vm``).
"""

from __future__ import annotations

import os
from pathlib import Path

#: The environment variable naming the cache directory.
CACHE_ENV = "HATS_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$HATS_CACHE_DIR`` if set (and not empty), else ``~/.cache/hats``."""
    value = os.environ.get(CACHE_ENV, "")
    if value:
        return Path(value)
    return Path.home() / ".cache" / "hats"
