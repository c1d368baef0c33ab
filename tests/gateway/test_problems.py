"""Ledger errors that are no fault of the client's input become 503 with Retry-After."""

from __future__ import annotations

from services.gateway.problems import problem_from
from services.ledger.core.errors import LedgerError, Unavailable, UpgradeRequired


def test_a_halted_gateway_answers_503_upgrade_required() -> None:
    problem = problem_from(UpgradeRequired(3, 120, (1, 2)))
    assert (problem.status, problem.code) == (503, "upgrade_required")
    assert problem.extra["retry_after_s"] > 0 and "version 3" in problem.detail


def test_a_stopped_replica_answers_503_replica_stopped() -> None:
    problem = problem_from(Unavailable("this replica has stopped"))
    assert (problem.status, problem.code) == (503, "replica_stopped")
    assert problem.extra["retry_after_s"] > 0


def test_an_unknown_ledger_error_is_an_internal_error_without_details() -> None:
    problem = problem_from(LedgerError("secret detail", code="weird"))
    assert (problem.status, problem.code) == (500, "internal")
    assert "secret" not in problem.detail
