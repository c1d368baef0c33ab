"""The platform end to end over the real broker and the MongoDB wire protocol: the SDK
submits, proofs verify offline, the views answer, and a partner consuming the
events exchange receives every event as a CloudEvent — also across a gateway crash."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from typing import Any

import aio_pika
import pytest

from services.gateway.events import from_amqp, to_structured
from services.sdk import proofs
from services.sdk.client import ApiError, Client
from tests.integration.conftest import Net

pytestmark = pytest.mark.functional


async def _consume(url: str, exchange: str, queue_name: str, want: int,
                   timeout_s: float) -> list[Any]:
    got: list[Any] = []
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name)
        deadline = time.monotonic() + timeout_s
        while len(got) < want and time.monotonic() < deadline:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.1)
                continue
            got.append(to_structured(from_amqp(message)))
    finally:
        await connection.close()
    return got


async def _bind_partner(url: str, exchange: str, queue_name: str, pattern: str) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC,
                                            durable=True)
        queue = await channel.declare_queue(queue_name, durable=False, auto_delete=False)
        await queue.bind(ex, routing_key=pattern)
    finally:
        await connection.close()


async def _delete_queue(url: str, queue_name: str) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await channel.queue_delete(queue_name)
    finally:
        await connection.close()


def test_sdk_views_and_partner_events_over_rabbitmq_and_mongodb(
        net_factory: Any, mongo_uri: str) -> None:
    net: Net = net_factory(env={"ECOSPHERE_MONGO_URI": mongo_uri,
                                "ECOSPHERE_VIEWS__DB_NAME": f"e2e_{uuid.uuid4().hex[:10]}"})
    partner_queue = f"{net.prefix}.partner.{uuid.uuid4().hex[:6]}"
    asyncio.run(_bind_partner(net.url, f"{net.prefix}.events", partner_queue, "notary.#"))
    try:
        net.start()
        net.wait_ready()
        client = Client(f"http://127.0.0.1:{net.port}", key=net.client_key,
                        genesis=net.genesis)
        sent = []
        for i in range(6):
            result = client.send("notary.anchor",
                                 {"digest": hashlib.sha256(f"e2e {i}".encode()).hexdigest()},
                                 verify=True)
            assert result["status"] == "committed"
            sent.append(result)
        # the views (MongoDB wire protocol) list them
        deadline = time.monotonic() + 30
        listed: set[str] = set()
        while time.monotonic() < deadline and len(listed) < len(sent):
            try:
                page = client.transactions(sender=net.client_key.key_id, limit=50)
                listed = {t["tx_hash"] for t in page["items"]}
            except ApiError:
                pass
            time.sleep(0.2)
        assert {r["tx_hash"] for r in sent} <= listed
        checked = client.transaction(sent[0]["tx_hash"], verify=True)
        proofs.verify_transaction(checked, net.genesis.validators, checked["transaction"])
        # the partner receives every event, once per id, with height and tx hash
        events = asyncio.run(_consume(net.url, f"{net.prefix}.events", partner_queue,
                                      len(sent), 30))
        by_tx = {e["txhash"]: e for e in events}
        for r in sent:
            ce = by_tx[r["tx_hash"]]
            assert ce["id"] == f"{r['tx_hash']}:{ce['eventindex']}"
            assert ce["type"] == "notary.document.anchored"
            assert ce["height"] == r["height"]
        # crash the gateway: after a restart the partner still misses nothing
        net.kill9("gateway")
        net.start("gateway")
        net.wait_ready(services=("gateway",))
        net.nonce = client.key_info()["next_usable_nonce"]
        more = [net.tx(f"after the gateway crashed {i}") for i in range(3)]
        results = net.submit(more)
        assert {r["status"] for r in results} == {"committed"}
        later = asyncio.run(_consume(net.url, f"{net.prefix}.events", partner_queue,
                                     len(more), 30))
        assert {r["tx_hash"] for r in results} <= {e["txhash"] for e in later}
    finally:
        asyncio.run(_delete_queue(net.url, partner_queue))
