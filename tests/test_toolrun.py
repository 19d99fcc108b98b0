"""hats.toolrun.run: one error form for external tools; the command line logged, never the env."""

from __future__ import annotations

import logging
import sys

import pytest

from hats.errors import HatsError
from hats.toolrun import ToolError, failure, last_line, run, tool_name

PY = sys.executable


def py(code: str) -> list[str]:
    return [PY, "-c", code]


def test_success_returns_stdout() -> None:
    result = run(py("print('hello')"))
    assert result.returncode == 0 and result.text == "hello\n"


def test_a_failure_is_one_line_tool_status_and_its_last_stderr_line() -> None:
    code = (
        "import sys; print('step 1', file=sys.stderr);"
        " print('E: no such suite', file=sys.stderr); sys.exit(3)"
    )
    with pytest.raises(ToolError) as failed:
        run(["/usr/bin/env", PY, "-c", code], tool="mmdebstrap")
    assert str(failed.value) == "mmdebstrap failed (exit 3): E: no such suite"
    assert "\n" not in str(failed.value)


def test_what_prefixes_the_message_and_the_error_class_is_the_callers() -> None:
    class FetchError(HatsError):
        pass

    with pytest.raises(FetchError) as failed:
        run(py("import sys; sys.exit(2)"), what="kernel package", tool="apt-get", error=FetchError)
    assert str(failed.value) == "kernel package: apt-get failed (exit 2): no output"


def test_stdout_is_the_detail_when_stderr_is_empty() -> None:
    with pytest.raises(ToolError, match=r"failed \(exit 1\): only here$"):
        run(py("import sys; print('only here'); sys.exit(1)"), tool="x")


def test_explain_picks_the_detail() -> None:
    with pytest.raises(ToolError) as failed:
        run(py("import sys; sys.exit(4)"), tool="t", explain=lambda r: f"custom {r.returncode}")
    assert str(failed.value) == "t failed (exit 4): custom 4"


def test_check_false_returns_the_failed_run() -> None:
    result = run(py("import sys; sys.stderr.write('bad\\n'); sys.exit(5)"), check=False)
    assert result.returncode == 5 and result.stderr == "bad\n"
    assert str(failure("pip", 5, last_line(result.stderr))) == "pip failed (exit 5): bad"


def test_missing_tool_and_timeout() -> None:
    with pytest.raises(ToolError) as missing:
        run(["hats-no-such-tool-xyz", "--version"], what="probe")
    assert str(missing.value) == "probe: hats-no-such-tool-xyz is not installed"
    with pytest.raises(ToolError) as late:
        run(py("import time; time.sleep(5)"), tool="sleeper", timeout=0.2)
    assert str(late.value) == "sleeper timed out after 0.2 s"


def test_binary_input_and_output() -> None:
    result = run(
        py("import sys; sys.stdout.buffer.write(sys.stdin.buffer.read()[::-1])"),
        input=b"\x00\x01",
        binary=True,
    )
    assert result.stdout == b"\x01\x00"


def test_streamed_stderr_goes_to_the_callback_line_by_line() -> None:
    seen: list[str] = []
    code = "import sys; [print(f'I: {i}', file=sys.stderr) for i in range(3)]; print('out')"
    result = run(py(code), on_stderr=seen.append)
    assert seen == ["I: 0", "I: 1", "I: 2"]
    assert result.stdout == ""  # streamed runs discard stdout
    with pytest.raises(ToolError, match=r"failed \(exit 1\): E: last$"):
        run(py("import sys; print('E: last', file=sys.stderr); sys.exit(1)"), on_stderr=seen.append)


def test_the_command_line_is_logged_at_debug_never_the_environment(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="hats.toolrun")
    run(py("pass"), env={"HATS_TVS_PRIMARY_PRIVATE_KEY": "aa" * 32})
    text = caplog.text
    assert "running " in text and "-c pass" in text
    assert "aa" * 32 not in text


def test_tool_names() -> None:
    assert tool_name(["/usr/bin/dpkg-deb", "-x"]) == "dpkg-deb"
    assert tool_name([PY, "-m", "pip", "download"]) == "pip"
    assert tool_name([PY, "-m", "hats", "image"]) == "hats"
    assert last_line("a\n\n  b  \n\n") == "b"
    assert last_line("", b"x\ny\n") == "y"
    assert last_line("") == "no output"
