"""Layering, checked on the source: the pure core imports no I/O, and imports point down."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "services" / "ledger" / "core"

# What the pure core may never import: I/O, clocks, randomness, concurrency.
FORBIDDEN_IN_CORE = {
    "asyncio", "aio_pika", "aiohttp", "pymongo", "sqlite3", "socket", "time", "random",
    "os", "threading", "subprocess", "datetime", "secrets", "uuid", "io", "pathlib",
    "logging", "multiprocessing", "selectors", "signal", "ssl", "http", "urllib",
    "services.ledger.node", "services.ledger.sim", "services.gateway", "services.trace",
    "services.customs", "services.credit", "services.composition", "services.cli",
}
# The only third-party code the core may use: signatures.
ALLOWED_THIRD_PARTY_IN_CORE = {"cryptography", "nacl"}
DOMAIN_PACKAGES = ("services.trace", "services.customs", "services.credit",
                   "services.gateway")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def matches(name: str, banned: set[str] | tuple[str, ...]) -> str | None:
    for b in banned:
        if name == b or name.startswith(b + "."):
            return b
    return None


CORE_FILES = sorted(CORE.rglob("*.py"))


def test_core_exists() -> None:
    assert len(CORE_FILES) > 10


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_core_imports_no_io(path: Path) -> None:
    import sys

    for name in imports_of(path):
        bad = matches(name, FORBIDDEN_IN_CORE)
        assert bad is None, f"{path.name} imports {name}: the core must stay pure"
        top = name.split(".")[0]
        if top not in sys.stdlib_module_names and top not in {"services", "__future__"}:
            assert top in ALLOWED_THIRD_PARTY_IN_CORE, f"{path.name} imports {name}"


@pytest.mark.parametrize("path", sorted((ROOT / "services" / "ledger").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_ledger_imports_no_domain_package(path: Path) -> None:
    """Not even the composition: the simulator takes the application it runs."""
    for name in imports_of(path):
        assert matches(name, (*DOMAIN_PACKAGES, "services.composition")) is None, (
            f"{path.name} imports {name}")


def test_checker_would_catch_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom asyncio import sleep\n")
    assert {"time", "asyncio"} <= imports_of(bad)
