"""docs/ARCHITECTURE.md cannot go stale: it names every module, and what it names exists.

Rules (issue 14: a newcomer finds where a rule lives from the doc):

- every module file under ``src/hats`` (not the generated ``pb/``, not
  ``__init__``/``__main__``) is named by its path below ``src/hats``
  (``image/build.py``; ``cli.py`` for a top-level module);
- the package list (the first code block, ``src/hats/``) names every
  top-level module and every package;
- every ``something.py`` the doc names exists: as a path from the repository
  root or from ``src/hats``, as the end of an existing file's path, or (a bare
  name) as some file's name; every ``hats.a.b`` is a module or a module's
  attribute.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "hats"
DOC = ROOT / "docs" / "ARCHITECTURE.md"

_PY_NAME = re.compile(r"(?<![\w./*-])([A-Za-z0-9][\w/.-]*\.py)\b")
_DOTTED = re.compile(r"\bhats(?:\.\w+)+")
_SEARCHED = ("src", "tests", "scripts", "bench", "examples")


def module_paths(src: Path) -> list[str]:
    """Every module file below ``src`` as ``pkg/mod.py``, without pb/ and __init__/__main__."""
    return sorted(
        path.relative_to(src).as_posix()
        for path in src.rglob("*.py")
        if path.relative_to(src).parts[0] != "pb"
        and path.name not in ("__init__.py", "__main__.py")
        and "__pycache__" not in path.parts
    )


def named_paths(doc: str) -> set[str]:
    """The ``something.py`` names in the doc (suffixes such as ``_pb2.py`` are not names)."""
    return set(_PY_NAME.findall(doc))


def unnamed_modules(doc: str, src: Path) -> list[str]:
    named = named_paths(doc)
    return [module for module in module_paths(src) if module not in named]


def package_list(doc: str) -> str:
    """The first code block that starts with ``src/hats/``."""
    match = re.search(r"```\nsrc/hats/\n(.*?)```", doc, re.S)
    assert match, "no package list (a code block starting with src/hats/)"
    return match.group(1)


def unlisted(doc: str, src: Path) -> list[str]:
    """Top-level modules and packages missing from the package list."""
    listed = {line.split()[0] for line in package_list(doc).splitlines() if line[:3].strip()}
    expected = sorted(
        [p.name for p in src.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
        + [p.name + "/" for p in src.iterdir() if (p / "__init__.py").exists()]
    )
    return [name for name in expected if name not in listed]


def missing_paths(doc: str, root: Path, src: Path) -> list[str]:
    files = [
        path.relative_to(root).as_posix()
        for top in _SEARCHED
        if (root / top).is_dir()
        for path in (root / top).rglob("*.py")
    ]
    missing = []
    for name in sorted(named_paths(doc)):
        if (root / name).is_file() or (src / name).is_file():
            continue
        if any(file.endswith("/" + name) for file in files):
            continue
        missing.append(name)
    return missing


def unresolved_dotted(doc: str, src_root: Path) -> list[str]:
    """``hats.a.b`` names that are neither a module nor an attribute of one."""
    bad = []
    for name in sorted(set(_DOTTED.findall(doc))):
        parts = name.split(".")
        for known in range(len(parts), 0, -1):
            base = src_root.joinpath(*parts[:known])
            if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
                break
        if known < len(parts) - 1:
            bad.append(name)
    return bad


def test_every_module_is_named_by_its_path() -> None:
    assert unnamed_modules(DOC.read_text(), SRC) == []


def test_the_package_list_names_every_package_and_top_level_module() -> None:
    assert unlisted(DOC.read_text(), SRC) == []


def test_every_named_file_and_module_exists() -> None:
    doc = DOC.read_text()
    assert missing_paths(doc, ROOT, SRC) == []
    assert unresolved_dotted(doc, SRC.parent) == []


def test_the_checks_catch_a_stale_doc(tmp_path: Path) -> None:
    """A moved module, a dropped one and a stale path are each found."""
    src = tmp_path / "src" / "hats"
    (src / "archive").mkdir(parents=True)
    (src / "pb").mkdir()
    for name in ("__init__.py", "cli.py", "archive/__init__.py", "archive/tar.py", "pb/x_pb2.py"):
        (src / name).write_text("")
    doc = (
        "```\nsrc/hats/\n  cli.py   the command\n```\n"
        "`image/tar.py` writes tars; `hats.image.tar.TarWriter`; `*_pb2.py` is generated.\n"
    )
    assert unnamed_modules(doc, src) == ["archive/tar.py"]
    assert unlisted(doc, src) == ["archive/"]
    assert missing_paths(doc, tmp_path, src) == ["image/tar.py"]
    assert unresolved_dotted(doc, src.parent) == ["hats.image.tar.TarWriter"]
    fixed = doc.replace("image/tar.py", "archive/tar.py").replace("hats.image", "hats.archive")
    fixed = fixed.replace("  cli.py", "  archive/ tar\n  cli.py")
    assert unnamed_modules(fixed, src) == []
    assert unlisted(fixed, src) == []
    assert missing_paths(fixed, tmp_path, src) == []
    assert unresolved_dotted(fixed, src.parent) == []
