"""The gateway's request policies: rate limits that forged signatures cannot bypass, and
Idempotency-Key handling that never runs a request twice and stays bounded (found in
review)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.gateway.policies import Policies, PolicyLimits

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serving(limits: PolicyLimits, handler: Handler) -> AsyncIterator[TestClient[Any, Any]]:
    policies = Policies(limits, resolve_key=lambda _: None)
    app = web.Application(middlewares=policies.middlewares())
    for path in ("/a", "/b"):
        app.router.add_route("*", path, handler)
    async with TestClient(TestServer(app)) as client:
        yield client


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"path": request.path})


@pytest.mark.asyncio
async def test_forged_signatures_are_rate_limited_by_address() -> None:
    forged = {"Signature-Input": 'sig1=("@method");keyid="aa";created=1',
              "Signature": "sig1=:AAAA:"}

    async with serving(PolicyLimits(rate_per_s=0.001, rate_burst=2), ok) as client:
        statuses = [(await client.get("/a", headers=forged)).status for _ in range(6)]
    assert statuses[:2] != [429, 429] and statuses[2:] == [429] * 4


@pytest.mark.asyncio
async def test_a_running_request_is_never_forgotten_so_never_runs_twice() -> None:
    calls: list[str] = []
    release_a = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        key = request.headers["Idempotency-Key"]
        calls.append(key)
        if key == "A":
            await release_a.wait()
        return web.json_response({"n": len(calls)})

    async with serving(PolicyLimits(idempotency_entries_max=2), slow) as client:
        first = asyncio.create_task(client.post("/a", data=b"{}",
                                                headers={"Idempotency-Key": "A"}))
        await asyncio.sleep(0.1)
        statuses = [(await client.post("/a", data=b"{}",
                                       headers={"Idempotency-Key": k})).status
                    for k in ("A", "B", "C", "A")]
        release_a.set()
        statuses.append((await first).status)
    assert statuses[0] == 409  # the repeat while A runs
    assert statuses[3] == 409  # still running: B and C could not push A out
    assert calls.count("A") == 1


@pytest.mark.asyncio
async def test_the_same_key_on_another_path_or_query_is_not_a_replay() -> None:
    """A key names one request: on another path it is another request; with another
    query (``?wait=commit``) it is a mistake, not a replay of the earlier answer."""
    headers = {"Idempotency-Key": "K"}
    answers: list[str] = []
    async with serving(PolicyLimits(), ok) as client:
        for path in ("/a", "/b", "/a?wait=commit", "/a"):
            response = await client.post(path, data=b"{}", headers=headers)
            answer = await response.json()
            answers.append(f"{answer.get('path', answer.get('code'))}:"
                           f"{response.headers.get('Idempotent-Replayed', 'no')}")

    assert answers == ["/a:no", "/b:no", "idempotency_key_reused:no", "/a:true"]


@pytest.mark.asyncio
async def test_remembered_answers_are_bounded_by_bytes() -> None:
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 40_000, content_type="application/json")

    policies = Policies(PolicyLimits(idempotency_bytes_max=100_000,
                                     idempotency_answer_bytes_max=50_000),
                        resolve_key=lambda _: None)
    app = web.Application(middlewares=policies.middlewares())
    app.router.add_post("/a", big)
    async with TestClient(TestServer(app)) as client:
        for n in range(10):
            await client.post("/a", data=b"{}", headers={"Idempotency-Key": f"k{n}"})

    assert policies._idempotent_bytes <= 100_000 + 40_000
    assert len(policies._idempotent) <= 3


def test_the_client_address_behind_a_trusted_proxy() -> None:
    """Found in review: behind the ingress every client shared the ingress pod's rate
    limit. X-Forwarded-For is believed from the configured proxies only."""
    from aiohttp.test_utils import make_mocked_request

    def address(peer: str, forwarded: str | None, proxies: tuple[str, ...]) -> str:
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        request = make_mocked_request("GET", "/a", headers=headers)
        request._transport_peername = (peer, 1234)
        policies = Policies(PolicyLimits(trusted_proxies=proxies), resolve_key=lambda _: None)
        return policies.client_address(request)

    proxies = ("10.0.0.0/8",)
    assert address("10.1.2.3", "203.0.113.7", proxies) == "203.0.113.7"
    assert address("10.1.2.3", "198.51.100.1, 203.0.113.7, 10.9.9.9", proxies) == \
        "203.0.113.7"  # the right-most hop that is not a proxy
    assert address("203.0.113.9", "1.2.3.4", proxies) == "203.0.113.9"  # not a proxy: ignored
    assert address("10.1.2.3", "1.2.3.4", ()) == "10.1.2.3"  # no proxies configured
