"""tests/mypy.ini names every test directory, and .ci/run checks every conftest.py.

A directory of tests/ missing from ``mypy_path`` would make mypy name its
modules ``dir.module`` (not the basename pytest imports them by) and miss the
imports of its helper modules; a conftest.py is checked only by .ci/run's loop.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def test_mypy_path_names_every_test_directory() -> None:
    config = configparser.ConfigParser()
    config.read(TESTS / "mypy.ini")
    listed = {
        entry.strip().replace("$MYPY_CONFIG_FILE_DIR", str(TESTS))
        for entry in config["mypy"]["mypy_path"].split(",")
        if entry.strip()
    }
    expected = {str(TESTS), str(TESTS / ".." / "src")} | {
        str(path.parent) for path in TESTS.glob("*/*.py")
    }
    assert listed == expected


def test_ci_checks_the_conftests_one_by_one() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    check = ".venv/bin/mypy --config-file tests/mypy.ini"
    assert f"\n{check}\n" in ci
    assert f'for conftest in tests/*/conftest.py; do {check} "$conftest"; done\n' in ci


def test_helpers_are_imported_by_their_basename() -> None:
    """``from tests import shared_data`` loads it a second time (as ``tests.shared_data``)
    and stops mypy: "Source file found twice under different module names"."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in TESTS.rglob("*.py")
        if re.search(r"^\s*(from tests(\.\w+)* import|import tests\b)", path.read_text(), re.M)
    ]
    assert offenders == []
