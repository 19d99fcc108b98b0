"""What every fuzz test checks, in one place.

A parser or server entry point fed hostile bytes may only fail with a
:class:`hats.errors.HatsError`; one input must take well under a second, and
the Python memory it allocates must stay bounded whatever the input claims
(a decompression bomb, a huge length field, deep nesting). ``check_hostile``
runs one input under those rules; the fuzz tests call it from hypothesis
strategies with bounded example counts, so the whole fuzz set stays under a
minute.
"""

from __future__ import annotations

import contextlib
import time
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from hats.errors import HatsError

T = TypeVar("T")

#: One input may take this long (the issue's bound is one second; tracemalloc
#: slows Python code down, so it is measured without it).
MAX_SECONDS = 1.0
#: Peak Python allocation for one input, in bytes.
MAX_PEAK_BYTES = 64 * 1024 * 1024


class Outcome:
    """What happened to one input: a value, or the HatsError it raised."""

    def __init__(self, value: object = None, error: HatsError | None = None) -> None:
        self.value = value
        self.error = error


def check_hostile(
    parse: Callable[[], T],
    *,
    max_seconds: float = MAX_SECONDS,
    max_peak_bytes: int = MAX_PEAK_BYTES,
    measure_memory: bool = True,
) -> Outcome:
    """Run ``parse()`` once; only HatsError may escape, within time and memory.

    Any other exception propagates (hypothesis reports it with the input).
    The time is taken on a run without tracemalloc; the memory peak on a
    second run with it, unless ``measure_memory`` is false (for entry points
    that cannot run twice, e.g. a stream that consumes its input).
    """
    start = time.perf_counter()
    try:
        outcome = Outcome(value=parse())
    except HatsError as error:
        outcome = Outcome(error=error)
    elapsed = time.perf_counter() - start
    assert elapsed < max_seconds, f"one input took {elapsed:.2f} s (bound {max_seconds} s)"
    if measure_memory:
        tracemalloc.start()
        try:
            with contextlib.suppress(HatsError):
                parse()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < max_peak_bytes, f"one input allocated {peak} bytes at peak"
    if outcome.error is not None:
        message = str(outcome.error)
        assert "\n" not in message, f"error is not one line: {message!r}"
    return outcome


def fuzz(examples: int) -> settings:
    """Hypothesis settings for a fuzz test: ``examples`` inputs, no per-example deadline."""
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


def mutations(seed: bytes, max_edits: int = 4) -> st.SearchStrategy[bytes]:
    """``seed`` with a few bytes flipped, inserted, deleted, or cut short."""

    def apply(edits: list[tuple[int, int, int]]) -> bytes:
        data = bytearray(seed)
        for kind, position, value in edits:
            if not data:
                break
            at = position % len(data)
            if kind == 0:
                data[at] ^= value or 1
            elif kind == 1:
                data.insert(at, value)
            elif kind == 2:
                del data[at]
            else:
                del data[at:]
        return bytes(data)

    edit = st.tuples(st.integers(0, 3), st.integers(0, 1 << 20), st.integers(0, 255))
    return st.lists(edit, min_size=1, max_size=max_edits).map(apply)
