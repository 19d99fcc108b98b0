"""Modules the usual start-up path does not use stay unimported until a flag needs them.

Issue [boot-fast]: under emulation every imported module costs the boot
time. ``no-split`` (one TVS) never loads the xor/shamir share code (and the
``json`` it brings); only ``--unwrap-secrets`` loads the key wrapping.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

SPLIT_ONLY = ("hats.protocol.xor", "hats.protocol.shamir", "hats.protocol.share_format", "json")
UNWRAP_ONLY = ("hats.protocol.key_wrapping",)


def _modules_after(code: str) -> list[set[str]]:
    """Run ``code`` in a fresh ``python -I``; each ``snap()`` it calls gives one module set."""
    prelude = "import sys\ndef snap():\n    print(repr(sorted(sys.modules)))\n"
    result = subprocess.run(
        [sys.executable, "-I", "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [set(ast.literal_eval(line)) for line in result.stdout.splitlines()]


def test_no_split_start_up_loads_neither_splitters_nor_key_wrapping() -> None:
    (loaded,) = _modules_after(
        """
        import hats.orchestrator, hats.orchestrator.startup
        from hats.orchestrator.secret_manager import SecretCombiner, TvsReply
        from hats.orchestrator.state import Secret
        combiner = SecretCombiner("no-split", 1)
        secrets = combiner.combine([TvsReply(tvs="TVS 0", secrets=(Secret("64", "p", b"k"),))])
        assert [s.key_id for s in secrets] == ["64"]
        snap()
        """
    )
    loaded &= set(SPLIT_ONLY + UNWRAP_ONLY)
    assert loaded == set(), f"imported on the no-split path: {sorted(loaded)}"


def test_the_splitters_and_unwrapping_load_when_asked_for() -> None:
    (before, after) = _modules_after(
        """
        import hats.orchestrator.startup as startup
        from hats.orchestrator.secret_manager import SecretCombiner, make_splitter
        snap()
        assert make_splitter("xor", 2) is not None
        assert make_splitter("shamir", 3) is not None
        try:
            startup.wrapping_keys_for_unwrap(
                startup.LauncherMetadata(b"", b"", (b"\\x01" * 5,))
            )
        except startup.StartupError as exc:
            assert str(exc).startswith("--unwrap-secrets: launcher's wrapping keys: "), exc
        else:
            raise AssertionError("a 5-byte wrapping key was accepted")
        snap()
        """
    )
    assert not before & set(SPLIT_ONLY[:3] + UNWRAP_ONLY)
    assert set(SPLIT_ONLY[:3] + UNWRAP_ONLY) <= after
