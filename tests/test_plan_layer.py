"""Imports only go downward (docs/architecture.md): plan below run below report, and inside report one run's
summary below the study tables below summary.md. The workflow's input functions import plan (tune search replay,
guided start) without the training or reporting code."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "scripts" / "zerosweep"
# Each layer may import itself and the layers before it, never one after it.
LAYERS = ["zerosweep.plan", "zerosweep.run", "zerosweep.report.run_summary", "zerosweep.report.study",
          "zerosweep.report.tune", "zerosweep.report.summary"]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of what a module imports, relative imports resolved against its own package."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import module` too
    return names


def layer(name: str) -> int | None:
    return next((index for index, prefix in enumerate(LAYERS) if name == prefix or name.startswith(prefix + ".")),
                None)


def test_imports_only_go_downward() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert any(module_name(path) == "zerosweep.plan.tune.search" for path in modules)
    upward = {}
    for path in modules:
        own = layer(module_name(path))
        if own is None:
            continue
        found = sorted(name for name in imported_modules(path) if (other := layer(name)) is not None and other > own)
        if found:
            upward[module_name(path)] = found
    assert upward == {}


def test_relative_imports_are_resolved() -> None:
    names = imported_modules(PACKAGE / "plan" / "tune" / "search.py")
    assert {"zerosweep.plan.tune.memory_model.MemoryModel", "zerosweep.plan.tune.studies.boundary"} <= names
    # an upward import would be caught: report.study's tables import report.run_summary, not the reverse
    assert any(layer(name) == 2 for name in imported_modules(PACKAGE / "report" / "study" / "table_rows.py"))
