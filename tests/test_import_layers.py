"""The package layers and no package cycles (scripts/check_imports.py, run by CI)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_imports.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_imports", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _load()
LAYERS = (("top",), ("mid_a", "mid_b"), ("low",))


def _graph(*edges: tuple[str, str]) -> dict[str, dict[str, set[str]]]:
    graph: dict[str, dict[str, set[str]]] = {p: {} for layer in LAYERS for p in layer}
    for a, b in edges:
        graph[a][b] = {f"hats.{a}.x"}
    return graph


def test_the_source_tree_holds_the_shape() -> None:
    assert check.problems(check.package_graph()) == []


def test_every_package_is_in_a_layer() -> None:
    layered = {p for layer in check.LAYERS for p in layer}
    packages = {
        p.stem if p.suffix == ".py" else p.name
        for p in (ROOT / "src" / "hats").iterdir()
        if p.name not in {"__init__.py", "__pycache__", "py.typed"}
        and (p.suffix == ".py" or (p / "__init__.py").exists())
    }
    assert packages == layered


def test_downward_imports_are_fine() -> None:
    assert check.problems(_graph(("top", "mid_a"), ("mid_a", "low")), LAYERS, {}) == []


def test_an_upward_import_is_reported_with_its_module() -> None:
    (line,) = check.problems(_graph(("low", "top")), LAYERS, {})
    assert line == "hats.low imports hats.top, which is above it (hats.low.x)"


def test_siblings_in_one_layer_are_independent() -> None:
    (line,) = check.problems(_graph(("mid_a", "mid_b")), LAYERS, {})
    assert "which is the same layer as it" in line


def test_a_cycle_is_reported() -> None:
    found = check.problems(_graph(("top", "low"), ("low", "top")), LAYERS, {})
    assert "import cycle between packages: hats.low <-> hats.top" in found


def test_an_allowed_exception_is_skipped_and_a_stale_one_reported() -> None:
    allowed = {("low", "top"): "known", ("mid_a", "top"): "gone"}
    found = check.problems(_graph(("top", "low"), ("low", "top")), LAYERS, allowed)
    assert found == [
        "allowed exception hats.mid_a -> hats.top is no longer needed: remove it from ALLOWED"
    ]


def test_a_package_outside_the_layers_is_reported() -> None:
    graph = _graph()
    graph["new"] = {}
    assert check.problems(graph, LAYERS, {}) == [
        "package hats.new is in no layer (add it to LAYERS in scripts/check_imports.py)"
    ]


def test_lazy_and_relative_imports_count_type_checking_ones_do_not() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from ..errors import HatsError\n"
        "if TYPE_CHECKING:\n"
        "    from hats.vm import qemu\n"
        "def f() -> None:\n"
        "    import hats.base.cache\n"
    )
    found = check.imported_modules(source, "hats.image.build", is_package=False)
    assert {"hats.image.sibling", "hats.errors.HatsError", "hats.base.cache"} <= found
    assert not any(name.startswith("hats.vm") for name in found)


def test_the_script_exits_zero_on_this_tree() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "layers and package cycles OK" in result.stdout
