"""Progress of a build's compression, for terminals and for logs.

The one progress API is :mod:`hats.console` (numbered, timed steps; plain
lines off a terminal, rich's display on one). This module keeps the build's
names for what it uses from there:

- the total is the exact size of the uncompressed tar, known from the plan
  (:class:`hats.image.build.BuildPlan`) before compression starts; the
  count is of tar bytes the compressor has consumed;
- without a terminal (CI logs), :class:`~hats.console.PlainProgress` prints one
  plain line at each 10% step or after ``interval`` seconds without one,
  whichever comes first, and never two for the same step; the last at 100%;
  on a terminal the CLI shows rich's bar.
"""

from __future__ import annotations

from hats.console import PlainProgress, human_duration, human_size

__all__ = ["PlainProgress", "human_duration", "human_size"]
