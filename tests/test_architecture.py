"""The house's layers, checked on the source (docs/architecture.md).

* ``services/ledger/core`` is pure: no I/O, clock, randomness or concurrency, and no
  third-party code but signatures.
* Every domain's pure part (``services/<domain>/*.py``, its ``edge/`` excluded)
  follows the same rules, and may import only the ledger's core and its own pure
  modules — never its edge, another domain, the gateway or the composition.
* ``services/ledger`` imports no domain, not the gateway, not the composition (the
  simulator takes the application it runs).
* ``services/gateway`` imports no domain and not the composition: the composition
  hands it the domains' edges.
* No source module is over 800 lines, unless its docstring says why.
* Nothing registers itself by being imported: no module-level ``register(...)`` call.

Each check is proven able to fail on a deliberately wrong file
(``test_the_checks_catch_*``).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from services.composition import DOMAINS

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ROOT / "services"
CORE = SERVICES / "ledger" / "core"
MODULE_LINES_MAX = 800

# What pure code may never import: I/O, clocks, randomness, concurrency, the edges.
FORBIDDEN_IN_PURE = {
    "asyncio", "aio_pika", "aiohttp", "pymongo", "sqlite3", "socket", "time", "random",
    "os", "threading", "subprocess", "datetime", "secrets", "uuid", "io", "pathlib",
    "logging", "multiprocessing", "selectors", "signal", "ssl", "http", "urllib",
    "services.ledger.node", "services.ledger.sim", "services.gateway", "services.sdk",
    "services.runtime", "services.composition", "services.cli",
}
# The only third-party code pure parts may use: signatures.
ALLOWED_THIRD_PARTY_IN_PURE = {"cryptography", "nacl"}
DOMAIN_NAMES = tuple(d.name for d in DOMAINS)
# Packages that are domains (or will be: a folder for each validator's domain).
DOMAIN_PACKAGES = tuple(f"services.{name}" for name in
                        sorted({*DOMAIN_NAMES, "customs", "credit", "privacy", "trade"}))


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (inside functions too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names.add(node.module)
            elif node.level > 0:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                if node.module:
                    names.add(f"{base}.{node.module}")
                else:  # from .. import x: x is a module of the package
                    names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def matches(name: str, banned: set[str] | tuple[str, ...]) -> str | None:
    for b in banned:
        if name == b or name.startswith(b + "."):
            return b
    return None


def pure_problems(path: Path, own_package: str) -> list[str]:
    """What makes ``path`` (pure code of ``own_package``) impure, if anything."""
    out = []
    for name in imports_of(path):
        bad = matches(name, FORBIDDEN_IN_PURE)
        if bad is not None:
            out.append(f"imports {name}: pure code does no I/O")
            continue
        top = name.split(".")[0]
        if top == "services":
            allowed = name.startswith(("services.ledger.core", own_package))
            if not allowed or matches(name, (f"{own_package}.edge",)):
                out.append(f"imports {name}: a pure part imports the ledger's core and "
                           "its own pure modules only")
        elif top not in sys.stdlib_module_names and top != "__future__" \
                and top not in ALLOWED_THIRD_PARTY_IN_PURE:
            out.append(f"imports {name}: third-party code in a pure part")
    return out


def registers_on_import(path: Path) -> list[str]:
    """Module-level calls of something named ``register`` (self-registration)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in tree.body:
        value = node.value if isinstance(node, (ast.Expr, ast.Assign)) else None
        if isinstance(value, ast.Call):
            func = value.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "register":
                out.append(f"line {node.lineno}: registers itself at import")
    return out


def too_long(path: Path) -> str | None:
    lines = path.read_text().count("\n")
    if lines <= MODULE_LINES_MAX:
        return None
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    if f"{MODULE_LINES_MAX} lines" in doc:
        return None  # it says why it must be longer
    return f"{lines} lines (over {MODULE_LINES_MAX}, and its docstring does not say why)"


def _ids(p: Path) -> str:
    return str(p.relative_to(ROOT))


CORE_FILES = sorted(CORE.rglob("*.py"))
# (``__main__.py`` is the domain's validator process entry, not part of its rules)
DOMAIN_PURE_FILES = [(p, f"services.{name}") for name in DOMAIN_NAMES
                     for p in sorted((SERVICES / name).glob("*.py")) if p.name != "__main__.py"]
ALL_FILES = sorted(SERVICES.rglob("*.py"))


def test_the_pure_core_and_the_domains_exist() -> None:
    assert len(CORE_FILES) > 10
    assert DOMAIN_NAMES and all((SERVICES / n / "edge").is_dir() for n in DOMAIN_NAMES)
    assert len(DOMAIN_PURE_FILES) > 5


@pytest.mark.parametrize("path", CORE_FILES, ids=_ids)
def test_pure_core_imports_no_io(path: Path) -> None:
    assert pure_problems(path, "services.ledger.core") == []


@pytest.mark.parametrize(("path", "package"), DOMAIN_PURE_FILES,
                         ids=[_ids(p) for p, _ in DOMAIN_PURE_FILES])
def test_each_domains_pure_part_imports_no_io(path: Path, package: str) -> None:
    assert pure_problems(path, package) == []


@pytest.mark.parametrize("path", sorted((SERVICES / "ledger").rglob("*.py")), ids=_ids)
def test_ledger_imports_no_domain_no_gateway_no_composition(path: Path) -> None:
    """Not even the composition: the simulator takes the application it runs."""
    for name in imports_of(path):
        assert matches(name, (*DOMAIN_PACKAGES, "services.composition",
                              "services.gateway")) is None, f"imports {name}"


@pytest.mark.parametrize("path", sorted((SERVICES / "gateway").rglob("*.py")), ids=_ids)
def test_gateway_imports_no_domain_and_not_the_composition(path: Path) -> None:
    for name in imports_of(path):
        assert matches(name, (*DOMAIN_PACKAGES, "services.composition")) is None, (
            f"imports {name}: the gateway is a host; the composition hands it the domains")


@pytest.mark.parametrize("path", ALL_FILES, ids=_ids)
def test_no_module_is_longer_than_it_can_say_why(path: Path) -> None:
    assert too_long(path) is None


@pytest.mark.parametrize("path", ALL_FILES, ids=_ids)
def test_nothing_registers_itself_by_being_imported(path: Path) -> None:
    assert registers_on_import(path) == []


def test_every_domain_has_its_settings_section() -> None:
    from services.runtime.settings import NodeSettings

    for name in DOMAIN_NAMES:
        assert name in NodeSettings.model_fields, f"no settings section for {name}"


# --- the checks can fail ------------------------------------------------------------------

def test_the_checks_catch_a_pure_part_doing_io(tmp_path: Path) -> None:
    bad = ROOT / "services" / "trace" / "_architecture_probe.py"
    try:
        bad.write_text("import time\nfrom asyncio import sleep\n"
                       "from services.trace.edge.plugin import TracePlugin\n"
                       "def f():\n    import pymongo\n")
        problems = pure_problems(bad, "services.trace")
        assert len(problems) == 4, problems
    finally:
        bad.unlink()


def test_the_checks_catch_the_gateway_importing_a_domain() -> None:
    bad = ROOT / "services" / "gateway" / "_architecture_probe.py"
    try:
        bad.write_text("from services.trace.contract import TraceContract\n"
                       "from .. import composition\n")
        wrong = sorted(n for n in imports_of(bad)
                       if matches(n, (*DOMAIN_PACKAGES, "services.composition")))
        assert wrong == ["services.composition", "services.trace.contract"], wrong
    finally:
        bad.unlink()


def test_the_checks_catch_a_long_module_and_self_registration(tmp_path: Path) -> None:
    long_one = tmp_path / "long.py"
    long_one.write_text('"""A module."""\n' + "x = 1\n" * 900)
    assert too_long(long_one) is not None
    long_one.write_text('"""Longer than 800 lines because: a table."""\n' + "x = 1\n" * 900)
    assert too_long(long_one) is None
    registering = tmp_path / "registering.py"
    registering.write_text("from x import register\nregister('a', 1)\nX = schema.register(2)\n")
    assert len(registers_on_import(registering)) == 2
