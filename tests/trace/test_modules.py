"""The trace domain's pure modules stay readable (issue 11): each says in its docstring
what it is for, names its public surface in ``__all__`` and stays under 800 lines (a
longer one says why in its docstring), and no module reaches another's underscored
names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = sorted(p for p in (ROOT / "services" / "trace").glob("*.py")
              if p.name not in ("__init__.py", "__main__.py"))
TESTS = sorted((ROOT / "tests" / "trace").glob("*.py"))
LINES_MAX = 800


def test_the_pure_modules_are_found() -> None:
    assert {"contract.py", "documents.py", "epcis.py", "eventhash.py"} <= {
        p.name for p in PURE}


@pytest.mark.parametrize("path", PURE, ids=lambda p: p.name)
def test_module_is_documented_small_and_declares_its_surface(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    doc = ast.get_docstring(tree)
    assert doc, f"{path.name} has no module docstring"
    lines = len(text.splitlines())
    assert lines <= LINES_MAX or f"longer than {LINES_MAX} lines" in doc, (
        f"{path.name} has {lines} lines")
    assert any(isinstance(node, ast.Assign)
               and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
               for node in tree.body), f"{path.name} has no __all__"


def private_names_reached(tree: ast.Module) -> list[str]:
    """``_name`` imported from, or read as an attribute of, a services.trace module."""
    modules: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "services.trace":
                modules.update(a.asname or a.name for a in node.names)
            elif node.module.startswith("services.trace."):
                found.extend(a.name for a in node.names if a.name.startswith("_"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in modules and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            found.append(f"{node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("path", PURE + TESTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_module_reaches_another_modules_underscored_names(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert private_names_reached(tree) == []


def test_the_check_would_catch_a_reach() -> None:
    bad = ast.parse("from services.trace import eventhash as _eh\n"
                    "from services.trace.epcis import _fail\n"
                    "words = _eh._BIZSTEPS\n")
    assert private_names_reached(bad) == ["_fail", "_eh._BIZSTEPS"]
