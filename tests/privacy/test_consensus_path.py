"""The privacy contract's rules depend on no Unicode table: every replica, whatever its
Python (and so its Unicode database), judges every transaction alike.

Only :func:`services.privacy.matching.normalize` uses Unicode tables (NFKC, case
folding, ``isdigit``/``isalnum``, the regex space class), and it is off the consensus
path: the comparing party runs it in its client and attests the boolean. These checks
read the source of the domain's pure part (``services/privacy/*.py``) and keep it so;
``test_contract.py::test_the_contract_never_normalizes`` runs every action with it
unusable."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = sorted((ROOT / "services" / "privacy").glob("*.py"))
#: the one function allowed to use Unicode tables, and the names only it may use
OFF_CHAIN = ("matching.py", "normalize")
OFF_CHAIN_NAMES = frozenset({"normalize", "unicodedata", "_SPACES", "_PUNCTUATION"})
#: str methods whose answer comes from the Unicode database (no-argument strip and
#: split strip and split on Unicode white space)
UNICODE_METHODS = frozenset({
    "casefold", "lower", "upper", "title", "capitalize", "swapcase", "isdigit", "isalnum",
    "isalpha", "isdecimal", "isnumeric", "isspace", "isidentifier", "isprintable",
    "islower", "isupper", "istitle", "splitlines"})
NO_ARGUMENT_UNICODE_METHODS = frozenset({"strip", "lstrip", "rstrip", "split", "rsplit"})
UNICODE_REGEX = ("\\s", "\\d", "\\w", "\\b", "\\S", "\\D", "\\W", "\\B")
UNICODE_FLAGS = frozenset({"I", "IGNORECASE", "U", "UNICODE"})


def _off_chain_lines(path: Path, tree: ast.Module) -> range:
    if path.name == OFF_CHAIN[0]:
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == OFF_CHAIN[1]:
                return range(node.lineno, (node.end_lineno or node.lineno) + 1)
    return range(0)


def _definitions(path: Path, tree: ast.Module) -> set[int]:
    """Lines of matching.py where an off-chain name is defined or imported (not used)."""
    out: set[int] = set()
    if path.name != OFF_CHAIN[0]:
        return out
    for node in tree.body:
        if isinstance(node, ast.Import) and [a.name for a in node.names] == ["unicodedata"]:
            out.add(node.lineno)
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id in OFF_CHAIN_NAMES for t in node.targets):
            out.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return out


def problems(path: Path, source: str) -> list[str]:
    tree = ast.parse(source, filename=str(path))
    allowed = set(_off_chain_lines(path, tree)) | _definitions(path, tree)
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if line in allowed:
            continue
        name = node.id if isinstance(node, ast.Name) else \
            node.attr if isinstance(node, ast.Attribute) else None
        if name in OFF_CHAIN_NAMES:
            found.append(f"{path.name}:{line}: uses {name} (off chain only)")
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = {a.name for a in node.names} | {getattr(node, "module", None) or ""}
            if names & (OFF_CHAIN_NAMES | {"unicodedata"}):
                found.append(f"{path.name}:{line}: imports {sorted(names)} (off chain only)")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method = node.func.attr
            if method in UNICODE_METHODS or (method in NO_ARGUMENT_UNICODE_METHODS
                                             and not node.args):
                found.append(f"{path.name}:{line}: .{method}() depends on Unicode tables")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and any(c in node.value for c in UNICODE_REGEX):
            found.append(f"{path.name}:{line}: a Unicode regex class in {node.value!r}")
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "re" and node.attr in UNICODE_FLAGS:
            found.append(f"{path.name}:{line}: re.{node.attr} depends on Unicode tables")
    return found


def test_the_pure_part_is_found() -> None:
    assert {p.name for p in PURE} >= {"contract.py", "matching.py", "payloads.py",
                                      "records.py", "grants.py", "keys.py", "erasure.py",
                                      "vocabulary.py"}


@pytest.mark.parametrize("path", PURE, ids=lambda p: p.name)
def test_no_rule_depends_on_unicode_tables(path: Path) -> None:
    assert problems(path, path.read_text()) == []


@pytest.mark.parametrize("bad", [
    "def check(v):\n    return normalize('name', v)\n",
    "import unicodedata\ndef check(v):\n    return unicodedata.normalize('NFC', v)\n",
    "def check(v):\n    return v.isdigit()\n",
    "def check(v):\n    return v.strip() == v\n",
    "import re\nX = re.compile(r'\\w+')\n",
    "import re\nX = re.compile('[a-z]', re.IGNORECASE)\n",
    "from services.privacy.matching import _SPACES\n",
    "from services.privacy.matching import normalize as n\n",
    "from unicodedata import category\n",
    "import unicodedata\n",
])
def test_the_check_catches_a_rule_that_would(bad: str) -> None:
    assert problems(Path("records.py"), bad)


def test_normalize_itself_is_allowed_where_it_is() -> None:
    source = (ROOT / "services" / "privacy" / "matching.py").read_text()
    assert problems(Path("matching.py"), source) == []
    assert problems(Path("records.py"), source)  # the same code anywhere else is not
