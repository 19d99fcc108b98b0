"""Rules for the test suite itself: shared helpers are imported from support modules."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _sources() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_test_imports_a_conftest() -> None:
    # pytest imports every conftest.py as the module `conftest`: which one an
    # import finds depends on the order directories were collected in.
    pattern = re.compile(r"^\s*(from conftest import|import conftest\b)", re.MULTILINE)
    offenders = [str(p.relative_to(TESTS)) for p in _sources() if pattern.search(p.read_text())]
    assert offenders == []


def test_shared_fixtures_and_checks_have_one_definition() -> None:
    # `work` lives in tests/conftest.py; the key-material check in suite_support.py.
    for pattern, home in (
        (re.compile(r"^def work\(", re.MULTILINE), "conftest.py"),
        (re.compile(r"^def assert_no_key_material\(", re.MULTILINE), "suite_support.py"),
        (re.compile(r"^def short_dir\(", re.MULTILINE), "suite_support.py"),
        (re.compile(r"^class Process\b", re.MULTILINE), "suite_support.py"),
    ):
        homes = [str(p.relative_to(TESTS)) for p in _sources() if pattern.search(p.read_text())]
        assert homes == [home], pattern.pattern
