"""Fuzzing the API from its own OpenAPI document (schemathesis), with every check
schemathesis has: no 5xx, ever; every error is application/problem+json carrying type,
title, status, detail and code; every answer conforms to the document; data the
document calls valid is accepted and data it calls invalid is refused.

The few exclusions are below, each for one server behaviour on named operations only.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
)

from services.gateway.views.queries import encode_cursor
from services.gateway.views.schema import BLOCKS, EVENTS, TRANSACTIONS
from services.ledger.core.encoding import INT_MAX
from tests.live import LiveNetwork, start_live, stop_live

pytestmark = pytest.mark.functional
EXAMPLES = 60  # positive cases per operation
NEGATIVE_EXAMPLES = 30  # negative cases per operation (invalid by the document)

#: Valid by the document, refused by the server for what JSON Schema cannot say: the
#: only answers positive_data_acceptance is not asked to accept, per operation and code.
SEMANTIC_REFUSALS: dict[str, frozenset[str]] = {
    # A schema-shaped transaction is still signed by nobody registered, or its signature
    # does not verify, or it names another chain: the ledger's static and state checks
    # (batch_rejected: every item of a batch refused so).
    # bad_encoding: JSON Schema's integer admits 1.0, canonical JSON wants 1.
    "POST /v1/transactions": frozenset({
        "unknown_sender", "bad_signature", "wrong_chain", "bad_encoding", "bad_kind",
        "bad_payload", "bad_sender", "key_mismatch", "tx_too_large", "too_early",
        "batch_rejected"}),
    # trace/api.py (another owner) declares a GTIN as 8..14 digits; the check digit
    # (GS1 mod 10) is enforced and not in the document.
    "GET /v1/trace/products/{gtin}": frozenset({"bad_check_digit"}),
    # ...and a link or id as 10..512 characters: it must parse as an EPC URN or a
    # GS1 Digital Link (a grammar, not a pattern).
    # (tag_counter and tag_signature come together: a rule across two parameters)
    "GET /v1/trace/verify": frozenset({"bad_identifier", "not_serialised",
                                       "bad_check_digit", "incomplete_tag_code",
                                       "bad_digital_link"}),
    "GET /v1/trace/provenance": frozenset({"bad_identifier", "bad_check_digit",
                                           "bad_digital_link"}),
}
#: An Idempotency-Key names one request: a key generated again with another body is
#: refused on any POST (state across requests, not the document's business).
SEMANTIC_REFUSALS_ANYWHERE = frozenset({"idempotency_key_reused"})
#: Invalid by the document, accepted by the server: operations whose handler is more
#: lenient than its declared body (negative_data_rejection is skipped for their 2xx).
#: trace/api.py's verify_certificate reads {document} and ignores other members that
#: its CertificateVerifyBody forbids (another owner's file; reported to them).
LENIENT_BODIES = frozenset({"POST /v1/trace/certificates/verify"})


@pytest.fixture(scope="module")
def fuzz_live(tmp_path_factory: pytest.TempPathFactory, mongo_uri: str) -> Iterator[LiveNetwork]:
    net, thread, _ = start_live(tmp_path_factory.mktemp("fuzz"), mongo_uri=mongo_uri)
    yield net
    stop_live(net, thread)


def register_cursor_formats(live: LiveNetwork) -> None:
    """Cursors the server really accepts, for the ``format`` the document gives each:
    the views' (any sort key of the right list) and the replay's (events on the chain)."""
    key = st.integers(0, INT_MAX)
    schemathesis.openapi.format("ecosphere-cursor-blocks", st.builds(
        encode_cursor, st.just(BLOCKS), key))
    for kind in (TRANSACTIONS, EVENTS):
        schemathesis.openapi.format(f"ecosphere-cursor-{kind}", st.builds(
            encode_cursor, st.just(kind), key, key))
    client = live.client(live.demo_key)
    client.send("notary.anchor", {"digest": "f" * 64})
    with urllib.request.urlopen(f"{live.url}/v1/events/replay?limit=50", timeout=30) as answer:
        events = json.loads(answer.read())["items"]
    assert events, "the chain has no event to continue after"
    schemathesis.openapi.format("ecosphere-replay-cursor", st.sampled_from(
        [f"{e['height']}/{e['id']}" for e in events]))


def pair_signature_fields(case: Any) -> None:
    """RFC 9421 ties Signature to Signature-Input by its label, and expires follows
    created: cross-field rules JSON Schema cannot state. A positive case keeps each
    field's generated value (valid by its pattern) and gets the two made consistent."""
    headers = case.headers or {}
    inputs, signature = headers.get("Signature-Input"), headers.get("Signature")
    if not inputs or not signature:
        return
    label = inputs.split("=", 1)[0]
    headers["Signature"] = label + "=" + signature.split("=", 1)[1]
    created = re.search(r";created=([0-9]+)", inputs)
    if created is not None:
        headers["Signature-Input"] = re.sub(r";expires=[0-9]+", f";expires={created[1]}",
                                            inputs)


def refused_by_aiohttp(response: Any) -> bool:
    """aiohttp refuses a request line or field over its 8190-byte limit (max_line_size)
    with a plain-text 400 before any application code runs. Long strings of non-ASCII
    characters (percent-encoded, up to twelve bytes each) reach it: a bound on the whole
    encoded URL that no parameter's schema can state."""
    return bool(response.status_code == 400
                and response.text.startswith("Got more than 8190 bytes"))


def check_case(case: Any, mode: GenerationMode) -> None:
    if mode.is_positive and case.operation.definition.raw.get("security"):
        pair_signature_fields(case)
    response = case.call(timeout=30)
    assert response.status_code < 500, (case.path, response.status_code, response.text[:300])
    excluded = []
    label = f"{case.method} {case.operation.path}"
    if refused_by_aiohttp(response):
        excluded += [content_type_conformance, response_schema_conformance,
                     positive_data_acceptance]
    elif response.status_code >= 400:
        content_type = response.headers.get("content-type") or [""]
        first = content_type[0] if isinstance(content_type, list) else content_type
        assert first.startswith("application/problem+json"), (
            case.path, response.status_code, response.headers)
        body = response.json()
        for member in ("type", "title", "status", "detail", "code"):
            assert member in body, (case.path, member, body)
        assert body["status"] == response.status_code
        if body["code"] in SEMANTIC_REFUSALS.get(label, frozenset()) | \
                SEMANTIC_REFUSALS_ANYWHERE:
            excluded.append(positive_data_acceptance)
    elif label in LENIENT_BODIES and mode.is_negative:
        excluded.append(negative_data_rejection)
    case.validate_response(response, checks=ALL_CHECKS, excluded_checks=excluded)


load_all_checks()
ALL_CHECKS = list(CHECKS.get_all())


def test_api_never_fails_and_speaks_problem_json(fuzz_live: LiveNetwork) -> None:
    """Every operation of /openapi.json, with cases generated from its schema, valid
    and invalid.

    Driven programmatically (hypothesis ``@given`` per operation) rather than by
    schemathesis' pytest plugin, which does not load under this pytest."""
    register_cursor_formats(fuzz_live)
    schema = schemathesis.openapi.from_url(f"{fuzz_live.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 14
    started = time.monotonic()
    for mode, examples in ((GenerationMode.POSITIVE, EXAMPLES),
                           (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES)):
        for operation in operations:
            if mode.is_negative and not has_parameters(operation):
                continue  # nothing to make invalid
            fuzz(operation, mode, examples)
    assert time.monotonic() - started < 600


def fuzz(operation: Any, mode: GenerationMode, examples: int) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        check_case(case, mode)

    run()


def has_parameters(operation: Any) -> bool:
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody"))
