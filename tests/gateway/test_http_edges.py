"""The HTTP edge's answers to what clients get wrong (issue 10, item 4): content codings,
clients that go away, 405 without Allow, and the formats the OpenAPI document states
(they must describe what the SDK sends)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import re
import zlib
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from services.gateway import models
from services.gateway.openapi import SIGNATURE, Endpoint, openapi_document, signature_input_pattern
from services.gateway.policies import (
    HANDLER_ARGS,
    Policies,
    PolicyLimits,
    content_codings,
    decode_content,
)
from services.gateway.problems import HTTP_STATS, HttpStats, Problem, problem_middleware
from services.ledger.core.crypto import PrivateKey
from services.sdk.httpsig import sign_request

# --- content codings -------------------------------------------------------------------

def coded(body: bytes, coding: str) -> bytes:
    if coding in ("gzip", "x-gzip"):
        return gzip.compress(body)
    if coding == "deflate":
        return zlib.compress(body)
    raise ValueError(coding)


def test_content_codings_are_undone_last_applied_first() -> None:
    body = b'{"hello": "world"}' * 50
    assert decode_content(coded(body, "gzip"), ["gzip"], 10_000) == body
    assert decode_content(coded(body, "deflate"), ["deflate"], 10_000) == body
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    sent = raw_deflate.compress(body) + raw_deflate.flush()
    assert decode_content(sent, ["deflate"], 10_000) == body  # no zlib wrapper, as some send
    stacked = coded(coded(body, "deflate"), "gzip")  # Content-Encoding: deflate, gzip
    assert decode_content(stacked, ["deflate", "gzip"], 10_000) == body
    members = gzip.compress(body[:100]) + gzip.compress(body[100:])
    assert decode_content(members, ["gzip"], 10_000) == body  # RFC 1952: several members


@pytest.mark.parametrize(("sent", "coding", "status"), [
    (b"not compressed at all", "gzip", 400),
    (b"not compressed at all", "deflate", 400),
    (gzip.compress(b"x" * 1000)[:-12], "gzip", 400),  # truncated
    (zlib.compress(b"{}") + b"trailing", "deflate", 400),
    (gzip.compress(b"[" * 20_000), "gzip", 413),  # a bomb: 20 kB from ~100 bytes
])
def test_a_body_that_does_not_decode_within_the_limit_is_a_problem(
        sent: bytes, coding: str, status: int) -> None:
    with pytest.raises(Problem) as refused:
        decode_content(sent, [coding], 10_000)
    assert refused.value.status == status
    assert refused.value.code == ("body_too_large" if status == 413 else "bad_content_encoding")
    if status == 413:
        assert "10000" in refused.value.detail


@pytest.mark.parametrize(("header", "codings"), [
    ("gzip", ["gzip"]), ("GZip", ["gzip"]), ("identity", []), ("x-gzip", ["x-gzip"]),
    ("deflate, gzip", ["deflate", "gzip"]), ("identity, gzip", ["gzip"]),
])
def test_content_codings_listed(header: str, codings: list[str]) -> None:
    request = make_mocked_request("POST", "/", headers={"Content-Encoding": header},
                                  payload=mock.Mock())
    assert content_codings(request) == codings


@pytest.mark.parametrize("header", ["br", "zstd", "compress", "gzip, gzip, gzip", "x-y"])
def test_other_content_codings_are_415_naming_those_accepted(header: str) -> None:
    request = make_mocked_request("POST", "/", headers={"Content-Encoding": header},
                                  payload=mock.Mock())
    with pytest.raises(Problem) as refused:
        content_codings(request)
    assert (refused.value.status, refused.value.code) == (415, "unsupported_content_encoding")
    assert refused.value.headers["Accept-Encoding"] == "gzip, deflate"


def test_without_a_body_the_content_coding_does_not_matter() -> None:
    request = make_mocked_request("GET", "/", headers={"Content-Encoding": "br"})
    assert content_codings(request) == []


@contextlib.asynccontextmanager
async def serving(handler: Any, *, handler_args: dict[str, Any] | None = None,
                  limits: PolicyLimits | None = None) -> AsyncIterator[TestClient[Any, Any]]:
    policies = Policies(limits or PolicyLimits(), resolve_key=lambda _: None)
    app = web.Application(middlewares=policies.middlewares(),
                          handler_args=handler_args)
    app[HTTP_STATS] = HttpStats()
    app.router.add_post("/a", handler)
    app.router.add_get("/a", handler)
    async with TestClient(TestServer(app)) as client:
        yield client


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read(), content_type="application/json")


@pytest.mark.functional  # over a real socket
@pytest.mark.parametrize("handler_args", [HANDLER_ARGS, None])
@pytest.mark.asyncio
async def test_the_handler_reads_the_body_decoded_once(
        handler_args: dict[str, Any] | None) -> None:
    """Decoded by the policy (the gateway's HANDLER_ARGS) or by aiohttp (an app served
    without them): never twice."""
    body = b'{"decoded": true}'

    async with serving(echo, handler_args=handler_args) as client:
        answer = await client.post("/a", data=gzip.compress(body),
                                   headers={"Content-Encoding": "gzip"})
        assert (answer.status, await answer.read()) == (200, body)


@pytest.mark.functional  # over a real socket
@pytest.mark.asyncio
async def test_a_corrupt_body_decoded_by_aiohttp_is_a_400_too() -> None:
    """Where aiohttp decodes (no HANDLER_ARGS), its payload error is mapped as well."""
    async with serving(echo, handler_args=None) as client:
        answer = await client.post("/a", data=b"garbage" * 10,
                                   headers={"Content-Encoding": "deflate"})
        status, problem = answer.status, await answer.json(content_type=None)
    assert status == 400 and problem["code"] == "bad_content_encoding"


# --- the problem middleware ------------------------------------------------------------

async def call_middleware(handler: Any, *,
                          closing: bool) -> tuple[web.StreamResponse, HttpStats]:
    app = web.Application()
    stats = app[HTTP_STATS] = HttpStats()
    transport = mock.Mock()
    transport.is_closing.return_value = closing
    request = make_mocked_request("POST", "/v1/transactions", app=app, transport=transport)
    return await problem_middleware(request, handler), stats


@pytest.mark.parametrize("error", [ConnectionResetError("Connection lost"),
                                   web.RequestPayloadError("peer went away")])
@pytest.mark.asyncio
async def test_a_client_gone_mid_request_is_counted_not_logged(
        error: Exception, caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise error

    caplog.set_level(logging.DEBUG, logger="ecosphere.gateway")
    response, stats = await call_middleware(handler, closing=True)
    assert response.status == 499 and stats.client_disconnects == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


@pytest.mark.asyncio
async def test_a_connection_of_our_own_that_fails_is_still_an_error(
        caplog: pytest.LogCaptureFixture) -> None:
    """Not every ConnectionResetError is the client leaving: an outbound call's is ours."""
    async def handler(request: web.Request) -> web.StreamResponse:
        raise ConnectionResetError("webhook peer reset")

    response, stats = await call_middleware(handler, closing=False)
    assert response.status == 500 and stats.client_disconnects == 0
    assert [r.levelno for r in caplog.records if r.name == "ecosphere.gateway"] == \
        [logging.ERROR]


@pytest.mark.asyncio
async def test_a_cancelled_handler_stays_cancelled_and_is_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await call_middleware(handler, closing=True)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.asyncio
async def test_an_unreadable_body_is_a_400() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            raise ContentEncodingError("deflate")
        except ContentEncodingError as exc:
            raise web.RequestPayloadError("bad body") from exc

    response, _ = await call_middleware(handler, closing=False)
    assert response.status == 400


@pytest.mark.functional  # over a real socket
@pytest.mark.asyncio
async def test_a_405_lists_the_methods_of_the_resource() -> None:
    async with serving(echo) as client:
        answer = await client.put("/a", data=b"{}")
        status, allow = answer.status, answer.headers.get("Allow", "")
        problem = await answer.json(content_type=None)
    assert status == 405 and problem["code"] == "method_not_allowed"
    assert {m.strip() for m in allow.split(",")} == {"GET", "HEAD", "POST"}


@pytest.mark.functional  # over a real socket
@pytest.mark.asyncio
async def test_an_idempotency_key_is_printable_ascii() -> None:
    statuses: list[int] = []
    async with serving(echo) as client:
        for key in ("order 42", "order-42", " x", "x" * 129, "caf\u00e9"):
            answer = await client.post("/a", data=b"{}",
                                       headers={"Idempotency-Key": key})
            statuses.append(answer.status)

    # " x": the header's own whitespace is stripped: it is the key "x"
    assert statuses == [200, 200, 200, 400, 400]


# --- what the OpenAPI document states ----------------------------------------------------

def test_the_signature_patterns_describe_what_the_sdk_sends() -> None:
    key = PrivateKey.derive("pattern")
    url = "https://gateway.example/v1/me"
    get = sign_request(key, method="GET", url=url, headers={}, body=None, now=1_700_000_000,
                       nonce="n0nce_-1")
    post = sign_request(key, method="POST", url=url, headers={
        "Content-Type": "application/json", "GS1-Capture-Error-Behaviour": "proceed"},
        body=b"{}", now=1_700_000_000, nonce="abc")
    assert re.fullmatch(signature_input_pattern(with_body=False), get["Signature-Input"])
    assert re.fullmatch(signature_input_pattern(with_body=True), post["Signature-Input"])
    assert not re.fullmatch(signature_input_pattern(with_body=True), get["Signature-Input"])
    for signed in (get, post):
        assert re.fullmatch(SIGNATURE, signed["Signature"])


def test_the_document_states_the_formats_the_server_enforces() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    endpoints = [
        Endpoint("POST", "/t", handler, "submit", "t", {200: models.TxResult},
                 body=models.SignedTransaction, signed=True,
                 problems={422: (models.BatchRejected, "refused")}),
        Endpoint("GET", "/b", handler, "list", "t", {200: models.BlockPage},
                 query=models.BlocksQuery),
    ]
    doc = openapi_document(endpoints, title="t", version="1")
    post = doc["paths"]["/t"]["post"]
    headers = {p["name"]: p["schema"] for p in post["parameters"] if p["in"] == "header"}
    assert headers["Idempotency-Key"]["pattern"] == models.IDEMPOTENCY_KEY
    assert headers["Signature-Input"]["pattern"] == signature_input_pattern(with_body=True)
    assert headers["Signature"]["pattern"] == SIGNATURE
    assert {"400", "401", "413", "415", "422", "429"} <= set(post["responses"])
    assert post["responses"]["422"]["content"]["application/problem+json"]["schema"] == \
        {"$ref": "#/components/schemas/BatchRejected"}
    problem = doc["components"]["schemas"]["ProblemDetails"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    cursor = next(p for p in doc["paths"]["/b"]["get"]["parameters"] if p["name"] == "cursor")
    assert cursor["schema"]["pattern"] == models.CURSOR
    assert cursor["schema"]["format"] == "ecosphere-cursor-blocks"
