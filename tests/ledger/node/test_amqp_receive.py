"""The AMQP transport's receiving side, without a broker: duplicate suppression keyed by
the bytes received and remembering only accepted messages."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterator

import pytest

from services.ledger.node.amqp import AmqpTransport


class Incoming:
    def __init__(self, body: bytes, message_id: str | None = None) -> None:
        self.body = body
        self.message_id = message_id or hashlib.sha256(body).hexdigest()[:32]
        self.settled: list[str] = []

    async def ack(self) -> None:
        self.settled.append("ack")

    async def reject(self, requeue: bool = False) -> None:
        self.settled.append("reject")


async def receive(verdicts: Iterator[bool], *messages: Incoming) -> tuple[list[bytes],
                                                                           AmqpTransport]:
    delivered: list[bytes] = []

    def deliver(body: bytes) -> bool:
        delivered.append(body)
        return next(verdicts)

    transport = AmqpTransport(url="amqp://unused", node_id="n", validator=True,
                              deliver=deliver)
    for message in messages:
        await transport._on_message(message)  # type: ignore[arg-type]
    return delivered, transport


@pytest.mark.asyncio
async def test_a_refused_message_is_handled_again_when_resent() -> None:
    """A vote refused now (its height not reached) comes back byte-identical in a resend
    (Ed25519 is deterministic): it must reach the replica again."""
    first, again = Incoming(b"vote"), Incoming(b"vote")
    delivered, transport = await receive(iter([False, True]), first, again)
    assert delivered == [b"vote", b"vote"]
    assert first.settled == ["reject"] and again.settled == ["ack"]
    assert transport.stats.duplicates == 0


@pytest.mark.asyncio
async def test_accepted_duplicates_are_dropped_by_content_not_by_the_claimed_id() -> None:
    delivered, transport = await receive(iter([True, True]), Incoming(b"a", "same-id"),
                                         Incoming(b"b", "same-id"),
                                         Incoming(b"a", "other-id"))
    assert delivered == [b"a", b"b"]  # a forged id cannot suppress other bytes
    assert transport.stats.duplicates == 1


@pytest.mark.asyncio
async def test_a_resent_transaction_batch_is_never_dropped_as_a_duplicate() -> None:
    """A batch a replica took once (its envelope was fine) may have had transactions its
    full mempool refused: the sender's re-gossip must reach it again."""
    delivered: list[bytes] = []

    def deliver(body: bytes) -> bool:
        delivered.append(body)
        return True

    transport = AmqpTransport(url="amqp://unused", node_id="n", validator=True,
                              deliver=deliver)
    for _ in range(2):
        await transport._on_txs_message(Incoming(b"txs"))  # type: ignore[arg-type]
    assert delivered == [b"txs", b"txs"] and transport.stats.duplicates == 0


class FailingExchange:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def publish(self, message: object, routing_key: str, mandatory: bool) -> None:
        raise self.error


@pytest.mark.asyncio
async def test_a_publish_that_fails_is_reported_to_the_sender_with_its_kind() -> None:
    """The regression: a failed publish was counted and dropped, and nobody re-sent the
    transactions it carried (their senders stayed wedged)."""
    from aio_pika.exceptions import ChannelClosed

    failed: list[str] = []

    transport = AmqpTransport(url="amqp://unused", node_id="n", validator=True,
                              deliver=lambda _: True)
    transport.limits = type(transport.limits)(reconnect_backoff_s=0.0)
    transport.on_publish_failed = failed.append
    transport._exchanges = {"txs": FailingExchange(ChannelClosed()),  # type: ignore[dict-item]
                            "consensus": FailingExchange(ConnectionError())}  # type: ignore[dict-item]
    task = asyncio.create_task(transport._publisher())
    transport.broadcast(b"batch", "txs")
    transport.broadcast(b"vote", "vote")
    for _ in range(50):
        await asyncio.sleep(0.01)
        if len(failed) == 2:
            break
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert failed == ["txs", "vote"]
    assert transport.stats.publish_failed == 2


@pytest.mark.asyncio
async def test_the_outbox_is_bounded_by_bytes_and_says_so() -> None:
    """While the broker is away, what waits to be published is bounded in bytes as well
    as in messages; a message that does not fit is counted and reported to the sender."""
    from services.ledger.node.amqp import AmqpLimits

    failed: list[str] = []
    transport = AmqpTransport(url="amqp://unused", node_id="n", validator=True,
                              deliver=lambda _: True,
                              limits=AmqpLimits(outbox_max=100, outbox_bytes_max=1_000))
    transport.on_publish_failed = failed.append
    for _ in range(3):
        transport.broadcast(b"x" * 400, "txs")
    assert transport._outbox.qsize() == 2 and transport.stats.outbox_dropped == 1
    assert failed == ["txs"]


def test_connection_changes_reach_the_listener() -> None:
    seen: list[bool] = []
    transport = AmqpTransport(url="amqp://unused", node_id="n", validator=True,
                              deliver=lambda _: True)
    transport.on_connection = seen.append
    transport._on_close()
    transport._on_reconnect()
    assert seen == [False, True] and transport.stats.connected
