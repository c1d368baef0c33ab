"""Behind a proxy the gateway checks RFC 9421 signatures against its configured public
origin, never against the Host header a client sends."""

from __future__ import annotations

import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.gateway.policies import PRINCIPAL, Policies, PolicyLimits
from services.ledger.core.crypto import PrivateKey
from services.sdk.httpsig import sign_request

KEY = PrivateKey.derive("signed-origin")


async def status_for(signed_url: str, host: str, public_base_url: str | None) -> int:
    async def whoami(request: web.Request) -> web.Response:
        return web.json_response({"principal": request.get(PRINCIPAL)})

    policies = Policies(PolicyLimits(public_base_url=public_base_url),
                        resolve_key=lambda key_id: KEY.public.raw if key_id == KEY.key_id
                        else None)
    app = web.Application(middlewares=policies.middlewares())
    app.add_routes([web.get("/v1/me", whoami)])
    async with TestClient(TestServer(app)) as client:
        headers = {"Host": host}
        headers.update(sign_request(KEY, method="GET", url=signed_url, headers={},
                                    body=None, now=int(time.time()), nonce="n1"))
        response = await client.get("/v1/me", headers=headers)
        return response.status


@pytest.mark.asyncio
async def test_signatures_are_checked_against_the_public_origin() -> None:
    public = "https://api.ecosphere.example"
    assert await status_for(f"{public}/v1/me", "10.0.0.7:8080", public) == 200
    # A request signed for another gateway's name, replayed with that Host header.
    assert await status_for("http://other-gateway:8080/v1/me", "other-gateway:8080",
                            public) == 401
    # Without a configured origin the Host header decides (development).
    assert await status_for("http://other-gateway:8080/v1/me", "other-gateway:8080",
                            None) == 200
