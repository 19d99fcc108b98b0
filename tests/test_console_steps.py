"""hats.console.Steps: numbering, nesting, timing, plain vs terminal output."""

from __future__ import annotations

import io

import pytest

from hats.console import INDENT, PlainProgress, Steps, as_steps, human_duration, step_duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def plain(total: int | None = None, **kwargs: object) -> tuple[Steps, list[str], Clock]:
    lines: list[str] = []
    clock = Clock()
    return Steps(emit=lines.append, total=total, clock=clock, **kwargs), lines, clock  # type: ignore[arg-type]


def test_top_level_steps_are_numbered_by_the_api_with_the_total() -> None:
    steps, lines, _ = plain(total=3)
    for title in ("keys", "image", "policy"):
        with steps.step(title):
            steps.log(f"{title} made")
    assert lines == [
        "[1/3] keys",
        "      keys made",
        "[2/3] image",
        "      image made",
        "[3/3] policy",
        "      policy made",
    ]


def test_without_a_total_the_number_stands_alone() -> None:
    steps, lines, _ = plain()
    with steps.step("a"):
        pass
    with steps.step("b"):
        pass
    assert lines == ["[1] a", "[2] b"]


def test_nested_steps_are_numbered_under_their_parent_and_indented() -> None:
    steps, lines, _ = plain(total=2)
    with steps.step("base"):
        with steps.step("mmdebstrap"):
            steps.log("I: installing")
        with steps.step("normalising"):
            pass
    with steps.step("image"), steps.step("layers"):
        pass
    assert lines == [
        "[1/2] base",
        "      [1.1] mmdebstrap",
        "            I: installing",
        "      [1.2] normalising",
        "[2/2] image",
        "      [2.1] layers",
    ]
    assert " " * len("[1/2] ") == INDENT


def test_a_long_step_reports_its_duration_a_short_one_does_not() -> None:
    steps, lines, clock = plain(total=2)
    with steps.step("quick"):
        clock.now += 0.4
    with steps.step("slow"):
        clock.now += 12.3
    assert lines == ["[1/2] quick", "[2/2] slow", "[2/2] slow: done in 12 s"]


def test_a_nested_long_step_reports_at_its_own_indentation() -> None:
    steps, lines, clock = plain()
    with steps.step("outer"), steps.step("inner"):
        clock.now += 2.5
    assert lines == [
        "[1] outer",
        "      [1.1] inner",
        "      [1.1] inner: done in 2.5 s",
        "[1] outer: done in 2.5 s",
    ]


def test_a_failed_step_says_so_with_its_duration_and_the_error_propagates() -> None:
    steps, lines, clock = plain(total=1)
    with pytest.raises(RuntimeError, match="boom"), steps.step("image"):
        clock.now += 0.2
        raise RuntimeError("boom")
    assert lines == ["[1/1] image", "[1/1] image: failed after 0.2 s"]
    # The stack is unwound: the next step is top-level again.
    with steps.step("again"):
        pass
    assert lines[-1] == "[2/1] again"


def test_durations() -> None:
    assert step_duration(0.42) == "0.4 s"
    assert step_duration(12.3) == "12 s"
    assert step_duration(125) == "2m05s"
    assert human_duration(7.4) == "7s"


def test_plain_on_a_stream_that_is_not_a_terminal_with_prefix() -> None:
    stream = io.StringIO()
    steps = Steps(stream, total=1, prefix="hats: base: ", clock=Clock())
    assert not steps.rich
    with steps.step("mmdebstrap"):
        steps.log("I: done")
    assert stream.getvalue() == "hats: base: [1/1] mmdebstrap\nhats: base:       I: done\n"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_rich_display_with_the_same_lines() -> None:
    stream = Tty()
    clock = Clock()
    steps = Steps(stream, total=1, clock=clock)
    assert steps.rich
    with steps.step("image"):
        steps.log("layer base")
        with steps.progress(1000, "compressing") as bar:
            bar.advance(500)
        clock.now += 3
    text = stream.getvalue()
    for line in ("[1/1] image", "      layer base", "[1/1] image: done in 3.0 s"):
        assert line in text
    assert steps._live is None  # the live display is closed with the last step


def test_plain_progress_through_steps() -> None:
    steps, lines, clock = plain(total=1)
    with steps.step("image"), steps.progress(1000, "compressing") as bar:
        bar.advance(500)
        clock.now += 1
        bar.advance(500)
    assert lines[1].startswith("      compressing: 50% (500 B of 1.0 kB)")
    assert lines[2] == "      compressing: 100% (1.0 kB of 1.0 kB), 1s"


def test_quiet_prints_nothing_and_emit_is_never_rich() -> None:
    stream = Tty()
    steps = Steps(stream, quiet=True)
    with steps.step("x"), steps.progress(10, "y") as bar:
        steps.log("z")
        bar.advance(10)
    assert stream.getvalue() == ""
    assert not Steps(emit=lambda _line: None).rich


def test_as_steps_wraps_a_callback_or_nothing() -> None:
    lines: list[str] = []
    steps = as_steps(lines.append)
    with steps.step("a"):
        steps("b")  # a Steps is also a progress(message) callback
    assert lines == ["[1] a", "      b"]
    assert as_steps(steps) is steps
    with as_steps(None).step("silent"):
        pass


def test_plain_progress_is_unchanged() -> None:
    lines: list[str] = []
    now = [0.0]
    progress = PlainProgress(1000, lines.append, clock=lambda: now[0])
    for _ in range(10):
        now[0] += 1
        progress.advance(100)
    assert len(lines) == 10 and lines[-1].startswith("compressing: 100%")
