"""plan/ is the layer below run/ and report/: the workflow's input functions import it (tune search replay,
guided start) without the training or reporting code."""

from __future__ import annotations

import ast
from pathlib import Path

PLAN = Path(__file__).resolve().parents[1] / "scripts" / "zerosweep" / "plan"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of what a plan module imports (relative imports resolved against zerosweep.plan)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            package = ["zerosweep", "plan"][: max(0, 2 - node.level + 1)] if node.level else []
            names.add(".".join([*package, node.module or ""]).strip("."))
    return names


def test_plan_imports_neither_run_nor_report() -> None:
    modules = sorted(PLAN.glob("*.py"))
    assert any(path.stem == "tune_search" for path in modules)
    upward = {path.name: sorted(name for name in imported_modules(path)
                                if name.startswith(("zerosweep.run", "zerosweep.report")))
              for path in modules}
    assert {name: found for name, found in upward.items() if found} == {}


def test_relative_imports_are_resolved() -> None:
    source = PLAN / "tune_search.py"
    assert {"zerosweep.plan.memory_model", "zerosweep.plan.tune"} <= imported_modules(source)
