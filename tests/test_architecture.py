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

# What pure code may never import: the edges and the hosts.
FORBIDDEN_IN_PURE = {
    "services.ledger.node", "services.ledger.sim", "services.gateway", "services.sdk",
    "services.runtime", "services.composition", "services.cli",
}
# The standard library pure code may use: an allow-list (a new module is a decision,
# not an accident): no I/O, clock, randomness, concurrency or floats' home (math).
ALLOWED_STDLIB_IN_PURE = {
    "__future__", "abc", "base64", "binascii", "bisect", "collections", "contextlib",
    "copy", "dataclasses", "decimal", "enum", "functools", "hashlib", "heapq", "hmac",
    "itertools", "json", "operator", "re", "string", "struct", "types", "typing",
    "unicodedata",
}
# The only third-party code pure parts may use: signatures.
ALLOWED_THIRD_PARTY_IN_PURE = {"cryptography", "nacl"}
# Built-ins that reach outside (files, the terminal) or run code from strings.
FORBIDDEN_BUILTINS_IN_PURE = {"open", "__import__", "exec", "eval", "compile", "input",
                              "breakpoint", "print"}
DOMAIN_NAMES = tuple(d.name for d in DOMAINS)
# Packages that are domains (or will be: a folder for each validator's domain).
DOMAIN_PACKAGES = tuple(f"services.{name}" for name in
                        sorted({*DOMAIN_NAMES, "customs", "credit", "privacy", "trade"}))


def package_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])


def import_statements(path: Path, package: str | None = None) -> list[tuple[int, list[str]]]:
    """Each import statement of ``path`` (at any depth, inside functions too) as its line
    and the modules it may name: for ``from X import y`` both ``X`` and ``X.y`` (``y``
    may be a module: ``from services import composition``). ``package``: the one
    ``path`` belongs to, for relative imports (default: from its place)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = package_of(path) if package is None else package
    out: list[tuple[int, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, [alias.name]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                module = node.module or ""
            else:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            out.append((node.lineno, [module, *(f"{module}.{alias.name}"
                                                for alias in node.names
                                                if alias.name != "*")]))
    return out


def imports_of(path: Path, package: str | None = None) -> set[str]:
    """Every module ``path`` imports or may import (see :func:`import_statements`)."""
    return {name for _, names in import_statements(path, package) for name in names}


def matches(name: str, banned: set[str] | tuple[str, ...]) -> str | None:
    for b in banned:
        if name == b or name.startswith(b + "."):
            return b
    return None


def _dependencies(own_package: str) -> tuple[str, ...]:
    """The packages of the domains ``own_package`` declares it depends on."""
    name = own_package.removeprefix("services.")
    return tuple(f"services.{d}" for domain in DOMAINS if domain.name == name
                 for d in domain.depends)


def _pure_import_problem(name: str, own_package: str) -> str | None:
    top = name.split(".", maxsplit=1)[0]
    if top == "services":
        if matches(name, FORBIDDEN_IN_PURE) is not None:
            return f"imports {name}: pure code does no I/O"
        mine = (own_package, *_dependencies(own_package))
        allowed = matches(name, ("services.ledger.core", *mine)) is not None \
            or name in ("services", "services.ledger")
        if not allowed or matches(name, tuple(f"{p}.edge" for p in mine)):
            return (f"imports {name}: a pure part imports the ledger's core, its own pure "
                    "modules and those of the domains it declares it depends on only")
        return None
    if top in sys.stdlib_module_names or top == "__future__":
        if top not in ALLOWED_STDLIB_IN_PURE:
            return (f"imports {name}: not on the pure standard-library allow-list (no "
                    "I/O, clock, randomness, concurrency or floats)")
        return None
    if top not in ALLOWED_THIRD_PARTY_IN_PURE:
        return f"imports {name}: third-party code in a pure part"
    return None


def pure_problems(path: Path, own_package: str) -> list[str]:
    """What makes ``path`` (pure code of ``own_package``) impure, if anything: one
    problem per offending import statement, and each use of a forbidden built-in."""
    out = []
    for line, names in import_statements(path, own_package):
        for name in names:
            problem = _pure_import_problem(name, own_package)
            if problem is not None:
                out.append(f"line {line}: {problem}")
                break
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in FORBIDDEN_BUILTINS_IN_PURE:
            out.append(f"line {node.lineno}: uses {node.id}(): pure code does no I/O and "
                       "runs no code from strings")
    return out


def _called_name(node: ast.expr) -> str:
    """``register`` for ``register``, ``x.register``, ``register(...)``, ``x.register(...)``."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def registers_on_import(path: Path) -> list[str]:
    """Module-level calls of something named ``register``, and module-level classes or
    functions decorated with one (self-registration)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in tree.body:
        value = node.value if isinstance(node, (ast.Expr, ast.Assign, ast.AnnAssign)) \
            else None
        if isinstance(value, ast.Call) and _called_name(value) == "register":
            out.append(f"line {node.lineno}: registers itself at import")
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            for decorator in node.decorator_list:
                if _called_name(decorator) == "register":
                    out.append(f"line {node.lineno}: {node.name} registers itself at "
                               "import (decorator)")
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


def test_domain_dependencies_are_declared_known_and_acyclic() -> None:
    names = {d.name for d in DOMAINS}
    graph = {d.name: d.depends for d in DOMAINS}
    for name, depends in graph.items():
        assert set(depends) <= names - {name}, f"{name} depends on unknown {depends}"
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle: {' -> '.join((*path, name))}"
        if name not in done:
            for dep in graph[name]:
                visit(dep, (*path, name))
            done.add(name)

    for name in graph:
        visit(name, ())


def test_every_domain_has_its_settings_section() -> None:
    from services.runtime.settings import NodeSettings

    for name in DOMAIN_NAMES:
        assert name in NodeSettings.model_fields, f"no settings section for {name}"


# --- the checks can fail ------------------------------------------------------------------

def test_the_checks_catch_a_pure_part_doing_io(tmp_path: Path) -> None:
    bad = tmp_path / "probe.py"
    bad.write_text("import time\nfrom asyncio import sleep\n"
                   "from services.trace.edge.plugin import TracePlugin\n"
                   "from services.trace import edge\n"
                   "from services import composition\n"
                   "import math\n"
                   "from . import contract\n"  # its own pure module: fine
                   "def f():\n    import pymongo\n    return open('x')\n"
                   "def g():\n    return eval('1'), __import__('os')\n")
    problems = pure_problems(bad, "services.trace")
    assert pure_problems(bad, "services.trade")  # a declared dependency's edge: no
    ok = tmp_path / "ok.py"
    ok.write_text("from services.trace.certificates import has_valid_certificate\n"
                  "from services.privacy import grants\n")
    assert pure_problems(ok, "services.trade") == []  # declared dependencies
    assert len(pure_problems(ok, "services.privacy")) == 1  # undeclared
    assert [p.split(":")[0] for p in problems] == [
        "line 1", "line 2", "line 3", "line 4", "line 5", "line 6", "line 9", "line 10",
        "line 12", "line 12"], problems


def test_the_checks_catch_the_gateway_importing_a_domain(tmp_path: Path) -> None:
    bad = tmp_path / "probe.py"
    bad.write_text("from services.trace.contract import TraceContract\n"
                   "from .. import composition\n"
                   "from services import privacy\n")
    wrong = sorted(n for n in imports_of(bad, "services.gateway")
                   if matches(n, (*DOMAIN_PACKAGES, "services.composition")))
    assert wrong == ["services.composition", "services.privacy", "services.trace.contract",
                     "services.trace.contract.TraceContract"], wrong


def test_the_checks_catch_a_long_module_and_self_registration(tmp_path: Path) -> None:
    long_one = tmp_path / "long.py"
    long_one.write_text('"""A module."""\n' + "x = 1\n" * 900)
    assert too_long(long_one) is not None
    long_one.write_text('"""Longer than 800 lines because: a table."""\n' + "x = 1\n" * 900)
    assert too_long(long_one) is None
    registering = tmp_path / "registering.py"
    registering.write_text("from x import register\nregister('a', 1)\nX = schema.register(2)\n"
                           "@catalogue.register('t')\nclass A: pass\n"
                           "@register\ndef f(): pass\n"
                           "@dataclass\nclass Fine: pass\n")
    assert len(registers_on_import(registering)) == 4
