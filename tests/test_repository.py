"""The repository's promises: the README's two commands, and CI running the second."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text)[:2]


def test_readme_has_run_and_test_commands() -> None:
    run, test = readme_commands()
    assert "ecosphere up" in run
    assert "pytest" in test


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == readme_commands()[1]


def test_licence_is_apache() -> None:
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
