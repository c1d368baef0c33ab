"""The AMQP transport (aio-pika): replicas talk through RabbitMQ, which they never trust.

Topology (declared here, idempotently, by every process; ``<p>`` is the
configurable prefix, ``ecosphere`` by default)::

    <p>.consensus   fanout  proposals, votes, status           -> every replica
    <p>.txs         fanout  transaction batches                -> every validator
    <p>.direct      direct  sync requests and replies, routing key = node key id
    <p>.events      topic   partner CloudEvents (published by gateways)
    <p>.dead        fanout  dead letters -> queue <p>.dead-letters (bounded)

    <p>.node.<id>.consensus   quorum queue: consensus + direct messages
    <p>.node.<id>.txs         quorum queue: transaction batches (validators only)

Each replica has two durable queues, not one: a burst of transaction batches
must never hold a vote back (head-of-line blocking), and RabbitMQ's priority
queues are not available as quorum queues. Both are bounded
(``x-max-length``, oldest dropped first: a replica that was down for long
catches up through sync, not by replaying stale votes), expire stale
messages (``x-message-ttl``), and dead-letter what the replica rejects.

Publishing: publisher confirms with up to ``publish_in_flight_max``
publishes outstanding (awaiting each is several times slower), ``mandatory``
so an unroutable message comes back as an error instead of vanishing, a
``message_id`` (SHA-256 of the body) for tracing. A message that could not be
published (the connection was down, the broker refused or returned it, the
outbox was full) is counted and reported to ``on_publish_failed`` with its
kind, so that whoever is responsible for it can send it again: the replica
re-gossips the transactions it accepted from clients (``ledger.core.regossip``);
consensus re-sends its own messages when it stalls.

Receiving: consensus messages are de-duplicated by the SHA-256 of the bytes
received (never trusting the id), remembering only accepted messages, so a
message refused once is handled again when resent. Transaction batches are not:
a re-sent batch must reach a replica that could not take it the first time
(its mempool was full), and the replica drops transactions it already holds
by hash before any signature check.
Consuming: manual acknowledgement after the replica handled the message —
which for a block means after it is durably stored, since the host's commit
fsyncs before it returns — with bounded prefetch. ``connect_robust`` restores
connection, channels, topology and consumers after the broker or network drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import aio_pika.abc
from aio_pika.exceptions import AMQPError, DeliveryError

log = logging.getLogger("ecosphere.amqp")

DeliverResult = bool  # True: handled; False: rejected (dead-lettered)


@dataclass(frozen=True, slots=True)
class AmqpLimits:
    prefetch: int = 512
    txs_prefetch: int = 16
    queue_length_max: int = 50_000
    consensus_ttl_ms: int = 120_000
    txs_ttl_ms: int = 600_000
    publish_in_flight_max: int = 512
    outbox_max: int = 20_000
    outbox_bytes_max: int = 256 * 1024 * 1024
    message_bytes_max: int = 64 * 1024 * 1024
    dedup_ids_max: int = 200_000
    dead_letters_max: int = 10_000
    reconnect_backoff_s: float = 1.0
    queue_type: str = "quorum"


@dataclass(frozen=True, slots=True)
class Topology:
    prefix: str = "ecosphere"

    @property
    def consensus(self) -> str:
        return f"{self.prefix}.consensus"

    @property
    def txs(self) -> str:
        return f"{self.prefix}.txs"

    @property
    def direct(self) -> str:
        return f"{self.prefix}.direct"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def dead(self) -> str:
        return f"{self.prefix}.dead"

    def queue(self, node_id: str, kind: str) -> str:
        return f"{self.prefix}.node.{node_id}.{kind}"


class TransportStats:
    def __init__(self) -> None:
        self.published = 0
        self.publish_failed = 0
        self.unroutable = 0
        self.outbox_dropped = 0
        self.received = 0
        self.duplicates = 0
        self.rejected = 0
        self.oversized = 0
        self.connected = False
        self.reconnects = 0


class AmqpTransport:
    """Implements the host's ``Transport`` (sync ``send``/``broadcast``) over RabbitMQ.

    ``send`` and ``broadcast`` only queue the bytes; a publisher task publishes
    them with confirms. ``deliver`` is called for every received message and
    returns False for a message the replica refused, which is then
    dead-lettered.
    """

    def __init__(self, *, url: str, node_id: str, validator: bool,
                 deliver: Callable[[bytes], DeliverResult], topology: Topology | None = None,
                 limits: AmqpLimits | None = None) -> None:
        self.url = url
        self.node_id = node_id
        self.validator = validator
        self.deliver = deliver
        self.topology = topology or Topology()
        self.limits = limits or AmqpLimits()
        self.stats = TransportStats()
        #: told the kind of every message that could not be published
        self.on_publish_failed: Callable[[str], None] | None = None
        #: told when the connection to the broker is lost (False) or back (True)
        self.on_connection: Callable[[bool], None] | None = None
        self._outbox_bytes = 0
        self._outbox: asyncio.Queue[tuple[str, str, bytes, str]] = asyncio.Queue(
            self.limits.outbox_max)
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Future[Any]] = set()
        self.ready = asyncio.Event()

    # --- Transport ----------------------------------------------------------------

    def send(self, peer: str, data: bytes) -> None:
        self._enqueue(self.topology.direct, peer, data, "direct")

    def broadcast(self, data: bytes, kind: str) -> None:
        exchange = self.topology.txs if kind == "txs" else self.topology.consensus
        self._enqueue(exchange, "", data, kind)

    def _enqueue(self, exchange: str, routing_key: str, data: bytes, kind: str) -> None:
        try:
            if self._outbox_bytes + len(data) > self.limits.outbox_bytes_max:
                raise asyncio.QueueFull
            self._outbox.put_nowait((exchange, routing_key, data, kind))
            self._outbox_bytes += len(data)
        except asyncio.QueueFull:
            # The broker is gone or too slow: counted, and reported to the sender
            # (consensus re-sends what matters, the replica re-gossips transactions).
            self.stats.outbox_dropped += 1
            self._report_failure(kind)

    def _tell_connection(self, connected: bool) -> None:
        if self.on_connection is not None:
            try:
                self.on_connection(connected)
            except Exception:
                log.exception("the connection callback failed")

    def _report_failure(self, kind: str) -> None:
        if self.on_publish_failed is not None:
            try:
                self.on_publish_failed(kind)
            except Exception:
                log.exception("the publish-failure callback failed")

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(
            self.url, client_properties={"connection_name": f"ecosphere-{self.node_id}"})
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        self._connection.close_callbacks.add(self._on_close)
        self._channel = await self._connection.channel(publisher_confirms=True,
                                                       on_return_raises=True)
        await self._channel.set_qos(prefetch_count=self.limits.prefetch)
        # Transaction batches are consumed on a channel of their own with a small
        # prefetch: a flood of batches then never queues in front of a vote inside
        # this process (each batch costs milliseconds; a vote must not wait for many).
        self._txs_channel = await self._connection.channel(publisher_confirms=False)
        await self._txs_channel.set_qos(prefetch_count=self.limits.txs_prefetch)
        await self._declare(self._channel)
        self.stats.connected = True
        self.ready.set()
        self._tasks.append(asyncio.create_task(self._publisher(), name="amqp-publisher"))

    async def _declare(self, channel: aio_pika.abc.AbstractChannel) -> None:
        t, limits = self.topology, self.limits
        ex = self._exchanges
        ex["consensus"] = await channel.declare_exchange(
            t.consensus, aio_pika.ExchangeType.FANOUT, durable=True)
        ex["txs"] = await channel.declare_exchange(t.txs, aio_pika.ExchangeType.FANOUT,
                                                   durable=True)
        ex["direct"] = await channel.declare_exchange(t.direct, aio_pika.ExchangeType.DIRECT,
                                                      durable=True)
        ex["events"] = await channel.declare_exchange(t.events, aio_pika.ExchangeType.TOPIC,
                                                      durable=True)
        ex["dead"] = await channel.declare_exchange(t.dead, aio_pika.ExchangeType.FANOUT,
                                                    durable=True)
        dead = await channel.declare_queue(
            f"{t.prefix}.dead-letters", durable=True,
            arguments={"x-queue-type": "quorum", "x-max-length": limits.dead_letters_max,
                       "x-overflow": "drop-head"})
        await dead.bind(ex["dead"])
        common: dict[str, Any] = {"x-queue-type": limits.queue_type,
                                  "x-max-length": limits.queue_length_max,
                  "x-overflow": "drop-head", "x-dead-letter-exchange": t.dead}
        consensus = await channel.declare_queue(
            t.queue(self.node_id, "consensus"), durable=True,
            arguments={**common, "x-message-ttl": limits.consensus_ttl_ms})
        await consensus.bind(ex["consensus"])
        await consensus.bind(ex["direct"], routing_key=self.node_id)
        await consensus.consume(self._on_consensus_message)
        if self.validator:
            # Declared (idempotently) on the consuming channel, so that the robust
            # channel re-declares, re-binds and re-consumes it after a reconnection.
            txs_exchange = await self._txs_channel.declare_exchange(
                t.txs, aio_pika.ExchangeType.FANOUT, durable=True)
            txs = await self._txs_channel.declare_queue(
                t.queue(self.node_id, "txs"), durable=True,
                arguments={**common, "x-message-ttl": limits.txs_ttl_ms})
            await txs.bind(txs_exchange)
            await txs.consume(self._on_txs_message)

    def _on_reconnect(self, *_: object) -> None:
        self.stats.reconnects += 1
        self.stats.connected = True
        log.warning("amqp reconnected (%d)", self.stats.reconnects)
        self._tell_connection(True)

    def _on_close(self, *_: object) -> None:
        self.stats.connected = False
        self._tell_connection(False)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=2)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
        self.stats.connected = False

    # --- receiving ---------------------------------------------------------------------

    async def _on_consensus_message(self, message: aio_pika.abc.AbstractIncomingMessage
                                    ) -> None:
        await self._on_message(message, dedup=True)

    async def _on_txs_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await self._on_message(message, dedup=False)

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage, *,
                          dedup: bool = True) -> None:
        self.stats.received += 1
        body = message.body
        if len(body) > self.limits.message_bytes_max:
            self.stats.oversized += 1
            self.stats.rejected += 1
            await _settle(message.reject(requeue=False))
            return
        # Duplicates are recognised by the bytes, not by the publisher's message id
        # (the broker and publishers are untrusted), and only once a message was
        # accepted: a message refused now (a key not yet known, a height not yet
        # reached) must be handled again when a peer resends the very same bytes.
        message_id = hashlib.sha256(body).digest()
        if dedup and message_id in self._seen:
            self.stats.duplicates += 1
            await _settle(message.ack())
            return
        try:
            ok = self.deliver(body)
        except Exception:
            log.exception("delivering a message failed")
            ok = False
        if ok:
            if dedup:
                self._remember(message_id)
            await _settle(message.ack())
        else:
            self.stats.rejected += 1
            await _settle(message.reject(requeue=False))

    def _remember(self, message_id: bytes) -> None:
        self._seen[message_id] = None
        if len(self._seen) > self.limits.dedup_ids_max:
            self._seen.popitem(last=False)

    # --- publishing -------------------------------------------------------------------

    async def _publisher(self) -> None:
        while True:
            exchange_name, routing_key, data, kind = await self._outbox.get()
            self._outbox_bytes -= len(data)
            while len(self._in_flight) >= self.limits.publish_in_flight_max:
                await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            key = {self.topology.consensus: "consensus", self.topology.txs: "txs",
                   self.topology.direct: "direct"}[exchange_name]
            message = aio_pika.Message(
                data, message_id=hashlib.sha256(data).hexdigest()[:32], type=kind,
                app_id=self.node_id, content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            try:
                publish = self._exchanges[key].publish(message, routing_key=routing_key,
                                                       mandatory=True)
                future = asyncio.ensure_future(publish)
            except (AMQPError, RuntimeError, ConnectionError) as exc:
                await self._publish_failed(exc, kind)
                continue
            self._in_flight.add(future)
            future.add_done_callback(functools.partial(self._published, kind=kind))

    def _published(self, future: asyncio.Future[Any], kind: str) -> None:
        self._in_flight.discard(future)
        if future.cancelled():
            self.stats.publish_failed += 1
            self._report_failure(kind)
            return
        exc = future.exception()
        if exc is None:
            self.stats.published += 1
            return
        if isinstance(exc, DeliveryError) and getattr(exc, "message", None) is not None:
            self.stats.unroutable += 1  # returned: no queue bound (peer not there yet)
        else:
            self.stats.publish_failed += 1
            log.debug("publish failed: %r", exc)
        self._report_failure(kind)

    async def _publish_failed(self, exc: BaseException, kind: str) -> None:
        self.stats.publish_failed += 1
        self._report_failure(kind)
        log.warning("publish failed, backing off: %r", exc)
        await asyncio.sleep(self.limits.reconnect_backoff_s)


async def _settle(awaitable: object) -> None:
    """Ack or reject; after a connection loss the broker redelivers, so errors are fine."""
    with contextlib.suppress(AMQPError, RuntimeError, ConnectionError):
        await awaitable  # type: ignore[misc]


async def broker_answers(url: str, timeout_s: float = 2.0) -> bool:
    """True if an AMQP broker accepts a connection at ``url`` within the timeout."""
    try:
        connection = await asyncio.wait_for(aio_pika.connect(url), timeout_s)
    except (TimeoutError, OSError, AMQPError, ConnectionError):
        return False
    await connection.close()
    return True


async def delete_topology(url: str, topology: Topology, node_ids: list[str]) -> None:
    """Remove a network's queues and exchanges (tests, and retiring a network)."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        names = [topology.queue(n, kind) for n in node_ids for kind in ("consensus", "txs")]
        names.append(f"{topology.prefix}.dead-letters")
        for name in names:
            with contextlib.suppress(AMQPError):
                await channel.queue_delete(name)
        for name in (topology.consensus, topology.txs, topology.direct, topology.events,
                     topology.dead):
            with contextlib.suppress(AMQPError):
                await channel.exchange_delete(name)
    finally:
        await connection.close()


class PrefixInUse(RuntimeError):
    """Another running network uses this topology prefix on this broker."""


async def claim_prefix(url: str, topology: Topology) -> aio_pika.abc.AbstractConnection:
    """Claim ``topology``'s prefix on the broker for as long as the returned connection
    stays open: an exclusive queue ``<prefix>.owner`` only one connection may hold. Two
    networks with one prefix (a data directory copied with its genesis, say) would
    otherwise share queues and steal each other's messages. Raises :class:`PrefixInUse`."""
    from aiormq.exceptions import ChannelLockedResource

    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await channel.declare_queue(f"{topology.prefix}.owner", exclusive=True,
                                    auto_delete=True)
    except ChannelLockedResource:
        await connection.close()
        raise PrefixInUse(f"another network uses the topology prefix {topology.prefix!r} on "
                          "this broker (a copy of this data directory?): stop it, or give "
                          "this one another prefix (ECOSPHERE_AMQP__PREFIX)") from None
    except BaseException:
        await connection.close()
        raise
    return connection
