"""Partner events: every committed domain event, published as a CloudEvent 1.0.

After commit, each event of each block (``services.ledger.core.contract.Event``)
becomes one CloudEvent (:func:`to_cloudevent`):

==================  ===============================================================
``id``              ``<tx hash hex>:<event index>`` (``<block hash hex>:<event index>``
                    for events of a block hook): stable, so partners de-duplicate by it
``source``          ``/ecosphere/<chain id>``
``type``            the event type ``<contract>.<entity>.<past_verb>``
``subject``         what it is about (a digest, an organisation...), when the type names it
``time``            the block's BFT time (RFC 3339, UTC, millisecond precision)
``datacontenttype`` ``application/json``; ``data`` = the event's attributes
``height``          extension: block height
``txhash``          extension: transaction hash (absent for block-hook events)
``eventindex``      extension: position among the block's events
==================  ===============================================================

**Restricted events are not published.** An event type a domain's read policy
restricts (``services.gateway.read_policy``: e.g. ``privacy.access.granted``, "org X
read subject K's record for purpose P") is personal data of its parties; the shared
exchange has no reader to judge, so the publisher withholds it (counted in
``ecosphere_events_withheld_total``). It stays in the chain's store: its parties read
it signed, through the replay (:func:`replay` with the caller's ``visible``) or the
domain's own routes. ``docs/asyncapi.yaml`` does not list it.

It is published to the topic exchange ``<prefix>.events`` (``ecosphere.events``
by default; declared durable, like :class:`services.ledger.node.amqp.Topology`
does) with routing key = event type, so a partner binds e.g. ``notary.#`` or
``customs.declaration.*``. Schemas: :mod:`services.gateway.event_schemas`,
``docs/asyncapi.yaml``.

**AMQP encoding.** cloudevents 2.x ships two AMQP bindings:
``cloudevents.core.bindings.amqp`` implements the CloudEvents *AMQP 1.0*
binding (``cloudEvents_`` application-properties, AMQP 1.0 message
properties), which AMQP 0-9-1 — RabbitMQ's protocol — lacks; and
``cloudevents.core.bindings.rabbitmq`` implements the RabbitMQ protocol
binding (knative eventing-rabbitmq's CloudEvents spec for AMQP 0-9-1:
binary mode as ``ce-`` headers plus the ``content_type`` property, or
structured mode). We use the **rabbitmq** binding, nothing hand-written.

We publish in **structured content mode** (``content_type:
application/cloudevents+json``, the body is the whole event in the
CloudEvents JSON format): the body is then exactly what ``docs/asyncapi.yaml``
describes and exactly what :func:`replay` returns, so a partner parses live
and replayed events with one parser and validates them with one schema; and
the integer extensions stay JSON integers (binary mode turns every header
into a string). :func:`to_amqp` can produce binary mode too, and
:func:`from_amqp` reads both. The AMQP properties also carry ``message_id``
(= the CloudEvent id), ``type`` (= the event type), ``timestamp`` (block
time, seconds), ``app_id`` and persistent delivery.

**Delivery: at least once, in chain order, stable ids.** :class:`EventPublisher`
reads blocks and events from the replica's store from its checkpoint + 1 to
the tip, publishes them in chain order on one channel with publisher confirms
(many publishes in flight), and advances the checkpoint (a small file written
atomically: tmp, fsync, rename) to a height only once every publish of that
height and of all heights before it is confirmed. After a crash, a broker or
connection loss or a nack it publishes again from the checkpoint: a partner
may see an event twice, never misses one, and drops the duplicate by ``id``.
RabbitMQ routes one channel's messages in publish order, and a lost
connection loses a suffix of them, so after de-duplication events arrive in
chain order; the one exception is a broker nack of a single message whose
successors were accepted: that event then arrives after them, and its
``(height, eventindex)`` tells where it belongs. ``mandatory=False``: partners
that have not bound a queue simply miss live events and catch up by replay.

**Replay** is answered from the chain (:func:`replay`): any height, in
chain order, no gap, no duplicate, with a cursor to continue. (A partner that
only needs history since it bound may instead bind a RabbitMQ stream queue
and read it with ``x-stream-offset``; the chain is the only source for
history older than its binding.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import aio_pika
import aio_pika.abc
from cloudevents.core.bindings import rabbitmq
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from services.gateway.event_schemas import (
    DATA_CONTENT_TYPE,
    SPEC_VERSION,
    EventCatalogue,
)
from services.gateway.follower import FollowerLimits, FollowerLoop
from services.ledger.core.blocks import Block
from services.ledger.core.contract import Event
from services.ledger.node.amqp import Topology
from services.ledger.node.store import StoredBlock

log = logging.getLogger("ecosphere.events")

__all__ = [
    "Checkpoint",
    "CheckpointMismatch",
    "CloudEvent",
    "EventPublisher",
    "EventSource",
    "PublishFailed",
    "PublisherStats",
    "STRUCTURED_CONTENT_TYPE",
    "block_time",
    "event_id",
    "from_amqp",
    "from_structured",
    "read_checkpoint",
    "replay",
    "rfc3339",
    "to_amqp",
    "to_cloudevent",
    "to_structured",
    "write_checkpoint",
]

STRUCTURED_CONTENT_TYPE = JSONFormat.CONTENT_TYPE  # application/cloudevents+json
_INT_EXTENSIONS = ("height", "eventindex")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FORMAT = JSONFormat()
_ID_RE = re.compile(r"^([0-9a-f]{64}):(0|[1-9][0-9]{0,9})$")
_CURSOR_RE = re.compile(r"^(0|[1-9][0-9]{0,18})/(.+)$")
#: ``<height>/end``: a replay cursor after every event of a height (a filtered replay's,
#: where the height's last events were not the caller's to see)
HEIGHT_END = "end"
_INDEX_AFTER_ALL = 2**32
#: events a filtered replay page looks at, at most (then to the end of that height)
REPLAY_SCAN_MAX = 10_000


class EventSource(Protocol):
    """What the events need of a replica's store (``MemoryStore``, ``SqliteStore``)."""

    def height(self) -> int: ...

    def block(self, height: int) -> StoredBlock | None: ...

    def events(self, height: int) -> list[Event] | None: ...


# --- one event -------------------------------------------------------------------------

def block_time(ms: int) -> datetime:
    """A block's BFT time (ms since the Unix epoch) as an aware UTC datetime, exactly."""
    return _EPOCH + timedelta(milliseconds=ms)


def rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision: ``2026-01-01T00:00:00.446Z``."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def event_id(event: Event, block: Block) -> str:
    """``<tx hash>:<index>``; ``<block hash>:<index>`` for an event of a block hook."""
    return f"{_origin_hash(event, block)}:{event.index}"


def _origin_hash(event: Event, block: Block) -> str:
    if event.tx_index is None:
        return block.hash.hex()
    return block.txs[event.tx_index].hash.hex()


def to_cloudevent(event: Event, *, block: Block, chain_id: str,
                  catalogue: EventCatalogue) -> CloudEvent:
    """The CloudEvent of ``event``, emitted in ``block`` of chain ``chain_id``, its
    ``subject`` from ``catalogue`` (the gateway's is the composition's: with only the
    platform's, a domain's event would go without its subject)."""
    data = json.loads(json.dumps(dict(event.attributes)))  # a plain, independent copy
    attributes: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": event_id(event, block),
        "source": f"/ecosphere/{chain_id}",
        "type": event.type,
        "time": block_time(block.header.time),
        "datacontenttype": DATA_CONTENT_TYPE,
        "height": block.height,
        "eventindex": event.index,
    }
    if event.tx_index is not None:
        attributes["txhash"] = block.txs[event.tx_index].hash.hex()
    subject = catalogue.subject_of(event.type, data)
    if subject is not None:
        attributes["subject"] = subject
    return CloudEvent(attributes, data)


# --- the CloudEvents JSON format -----------------------------------------------------------

def to_structured(event: CloudEvent) -> dict[str, Any]:
    """The event in the CloudEvents JSON format (as a JSON object), time with ms precision."""
    obj: dict[str, Any] = json.loads(_FORMAT.write(event))
    moment = event.get_time()
    if moment is not None:
        obj["time"] = rfc3339(moment)
    return obj


def _structured_bytes(event: CloudEvent) -> bytes:
    return json.dumps(to_structured(event), separators=(",", ":"), sort_keys=True,
                      ensure_ascii=False).encode()


def from_structured(obj: Mapping[str, Any] | str | bytes) -> CloudEvent:
    """Parse one event in the CloudEvents JSON format."""
    raw = obj if isinstance(obj, str | bytes) else json.dumps(dict(obj))
    return _typed(_FORMAT.read(CloudEvent, raw))


def _typed(event: Any) -> CloudEvent:
    """Our integer extensions as integers (binary mode carries every attribute as text)."""
    attributes = dict(event.get_attributes())
    for name in _INT_EXTENSIONS:
        value = attributes.get(name)
        if isinstance(value, str):
            attributes[name] = int(value)
    return CloudEvent(attributes, event.get_data())


# --- AMQP 0-9-1 (RabbitMQ) ---------------------------------------------------------------

def to_amqp(event: CloudEvent, *, mode: Literal["structured", "binary"] = "structured",
            app_id: str = "ecosphere-gateway") -> aio_pika.Message:
    """The AMQP 0-9-1 message of ``event`` (the cloudevents RabbitMQ binding), persistent."""
    if mode == "structured":
        encoded = rabbitmq.RabbitMQMessage(headers={}, content_type=STRUCTURED_CONTENT_TYPE,
                                           body=_structured_bytes(event))
    else:
        binary = rabbitmq.to_binary(event, _FORMAT)
        headers = dict(binary.headers)
        moment = event.get_time()
        if moment is not None:  # the same text as in structured mode
            headers[f"{rabbitmq.CE_PREFIX}time"] = rfc3339(moment)
        encoded = rabbitmq.RabbitMQMessage(headers=headers, content_type=binary.content_type,
                                           body=binary.body)
    moment = event.get_time()
    return aio_pika.Message(
        encoded.body,
        headers=dict(encoded.headers) or None,
        content_type=encoded.content_type,
        message_id=event.get_id(),
        type=event.get_type(),
        timestamp=moment,
        app_id=app_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


class _AmqpMessage(Protocol):
    @property
    def body(self) -> bytes: ...

    @property
    def content_type(self) -> str | None: ...

    @property
    def headers(self) -> Mapping[str, Any]: ...


def from_amqp(message: _AmqpMessage) -> CloudEvent:
    """The CloudEvent of a received AMQP 0-9-1 message, structured or binary mode."""
    headers = {name: _header_text(value) for name, value in (message.headers or {}).items()}
    encoded = rabbitmq.RabbitMQMessage(headers=headers, content_type=message.content_type,
                                       body=bytes(message.body))
    return _typed(rabbitmq.from_rabbitmq(encoded, _FORMAT, CloudEvent))


def _header_text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


# --- replay, answered from the chain -----------------------------------------------------

def replay(store: EventSource, *, from_height: int, after: str | None = None,
           limit: int, chain_id: str | None = None, catalogue: EventCatalogue,
           visible: Callable[[Event], bool] | None = None, scan_max: int = REPLAY_SCAN_MAX
           ) -> tuple[list[dict[str, Any]], str | None]:
    """Committed events in chain order, as CloudEvents JSON objects, and the next cursor.

    Starts at the first event of ``from_height`` or, when ``after`` is given,
    right after that event, whichever comes later. ``after`` is a cursor this
    function returned (``<height>/<event id>``) or a bare event id, which is
    looked for from ``from_height`` on (pass the event's ``height`` extension
    as ``from_height``). Returns at most ``limit`` events and the cursor to pass
    as ``after`` to continue: pages follow each other with no gap and no
    duplicate. A page shorter than ``limit`` reached the tip; ask again later
    with the same cursor. The cursor is None only when there is nothing to
    continue after (an empty page and no ``after``).

    ``chain_id`` names the ``source``; by default each block's own chain id
    (the same thing on a sound store). ``catalogue`` gives each event its
    ``subject``: pass the one the publisher has, so a replayed event is the one
    published.

    ``visible``: only the events it keeps (the caller's view under the domains' read
    policies). A page then looks at about ``scan_max`` events at most (always to the
    end of a height) and may be shorter than ``limit`` — even empty — before the tip;
    a height whose last events it hid ends with the cursor ``<height>/end`` (after
    every event of that height), so that no cursor names an event the caller may not
    see, and no page is read twice.

    Raises ``ValueError`` for a bad argument or a cursor naming no event of
    this chain. Reads the store only.
    """
    if from_height < 1:
        raise ValueError("from_height must be at least 1")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    tip = store.height()
    height, index = from_height, 0  # the first position to return
    cursor = None
    if after is not None:
        at_height, at_index, cursor = _locate(store, after, from_height, tip)
        height, index = max((height, index), (at_height, at_index + 1))
    out: list[dict[str, Any]] = []
    scanned = 0
    while height <= tip and len(out) < limit and scanned < scan_max:
        events = _events_at(store, height)
        todo = [e for e in events if e.index >= index]
        if todo:
            block = _block_at(store, height)
            hidden_last = False
            for event in todo:
                if len(out) >= limit:
                    break
                scanned += 1
                if visible is not None and not visible(event):
                    hidden_last = True
                    continue
                ce = to_cloudevent(event, block=block,
                                   chain_id=chain_id or block.header.chain_id,
                                   catalogue=catalogue)
                out.append(to_structured(ce))
                cursor, hidden_last = f"{height}/{ce.get_id()}", False
            if hidden_last:
                cursor = f"{height}/{HEIGHT_END}"
        height, index = height + 1, 0
    return out, cursor


def _locate(store: EventSource, after: str, from_height: int, tip: int) -> tuple[int, int, str]:
    """(height, index, canonical cursor) of the event ``after`` names (``<height>/end``:
    after the last event of that height)."""
    match = _CURSOR_RE.match(after)
    ident = match.group(2) if match else after
    if match and ident == HEIGHT_END:
        height = int(match.group(1))
        if not 1 <= height <= tip:
            raise ValueError(f"cursor {after!r} names no height of this chain")
        return height, _INDEX_AFTER_ALL, f"{height}/{HEIGHT_END}"
    id_match = _ID_RE.match(ident)
    if id_match is None:
        raise ValueError(f"cursor {after!r} is neither <height>/<event id> nor an event id")
    origin, index = id_match.group(1), int(id_match.group(2))
    heights = [int(match.group(1))] if match else range(from_height, tip + 1)
    for height in heights:
        if not 1 <= height <= tip:
            break
        events = _events_at(store, height)
        if index < len(events) and events[index].index == index:
            block = _block_at(store, height)
            if _origin_hash(events[index], block) == origin:
                return height, index, f"{height}/{ident}"
    raise ValueError(f"cursor {after!r} names no event of this chain"
                     + ("" if match else f" at or after height {from_height}"))


def _events_at(store: EventSource, height: int) -> list[Event]:
    events = store.events(height)
    if events is None:
        raise RuntimeError(f"the store lacks the events of height {height}")
    return events


def _block_at(store: EventSource, height: int) -> Block:
    stored = store.block(height)
    if stored is None:
        raise RuntimeError(f"the store lacks block {height}")
    return stored.block


# --- the checkpoint --------------------------------------------------------------------

class CheckpointMismatch(RuntimeError):
    """The checkpoint names a block the store does not hold: another chain's checkpoint."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    height: int  # every event of heights 1..height was published and confirmed
    block_hash: str | None  # hex hash of that block (None at height 0)


def read_checkpoint(path: Path) -> Checkpoint:
    """The checkpoint in ``path``; height 0 if there is none yet."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return Checkpoint(0, None)
    height, block_hash = raw.get("height"), raw.get("block_hash")
    if not isinstance(height, int) or height < 0 or not (
            block_hash is None or isinstance(block_hash, str)):
        raise ValueError(f"{path}: not an events checkpoint")
    return Checkpoint(height, block_hash)


def write_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Atomically and durably: a temporary file, fsync, rename, fsync of the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    data = json.dumps({"height": checkpoint.height, "block_hash": checkpoint.block_hash},
                      sort_keys=True).encode()
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the publisher ---------------------------------------------------------------------

@dataclass
class PublisherStats:
    published: int = 0  # publishes the broker confirmed
    failed: int = 0  # publishes that failed (nack, timeout, connection lost): published again
    lag_blocks: int = 0  # the store's height minus the confirmed height
    checkpoint: int = 0  # the height in the checkpoint file
    connected: bool = False
    reconnects: int = 0
    errors: int = 0  # passes that failed (broker away, publish not confirmed): retried
    withheld: int = 0  # restricted events not published (their parties read them signed)


class PublishFailed(Exception):
    """A publish of the pass was not confirmed; the checkpoint stayed before it."""


class EventPublisher:
    """Publishes every committed block's events, in chain order, at least once.

    ``run(stop)`` until ``stop`` is set; call ``notify()`` (on the event loop)
    after each commit to publish at once (it also polls every
    ``poll_interval_s``). ``stats`` holds the counters for metrics.
    """

    def __init__(self, store: EventSource, *, url: str, checkpoint_path: Path | str,
                 topology: Topology | None = None, in_flight_max: int = 512,
                 publish_timeout_s: float = 30.0, poll_interval_s: float = 1.0,
                 checkpoint_interval_s: float = 0.2, reconnect_backoff_s: float = 0.5,
                 reconnect_backoff_max_s: float = 30.0, reconnect_interval_s: float = 2.0,
                 stop_grace_s: float = 2.0, app_id: str = "ecosphere-gateway",
                 catalogue: EventCatalogue,
                 withheld: Callable[[str], bool] | None = None) -> None:
        if in_flight_max < 1:
            raise ValueError("in_flight_max must be at least 1")
        self.store = store
        self.url = url
        self.checkpoint_path = Path(checkpoint_path)
        self.topology = topology or Topology()
        self.in_flight_max = in_flight_max
        self.publish_timeout_s = publish_timeout_s
        self.poll_interval_s = poll_interval_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self.reconnect_backoff_s = reconnect_backoff_s
        self.reconnect_backoff_max_s = reconnect_backoff_max_s
        self.reconnect_interval_s = reconnect_interval_s
        self.stop_grace_s = stop_grace_s
        self.app_id = app_id
        self.catalogue = catalogue
        #: event types never published (default: those the catalogue withholds)
        self.withheld = withheld or catalogue.withheld.__contains__
        self.stats = PublisherStats()
        self.loop = FollowerLoop(self, FollowerLimits(
            poll_interval_s=poll_interval_s, retry_backoff_s=reconnect_backoff_s,
            retry_backoff_max_s=reconnect_backoff_max_s))
        self._stop: asyncio.Event | None = None
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._in_flight: set[asyncio.Future[Any]] = set()
        # height -> [publishes not yet confirmed, block hash hex], in height order
        self._pending: OrderedDict[int, list[Any]] = OrderedDict()
        self._confirmed = Checkpoint(0, None)  # in memory; the file may lag behind it
        self._written = Checkpoint(0, None)
        self._failure: BaseException | None = None
        self._checkpoint_checked = True  # (load_checkpoint decides)

    @property
    def connection_name(self) -> str:
        """The AMQP connection's name (RabbitMQ shows it; tests close it by it)."""
        return f"{self.app_id}-events@{self.topology.prefix}"

    # --- lifecycle ------------------------------------------------------------------------

    name = "partner events"

    def notify(self) -> None:
        """A block was committed: publish without waiting for the next poll."""
        self.loop.notify()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set (the shared follower loop: retries with backoff
        while the broker is away, at once when its connection comes back)."""
        self.load_checkpoint()
        self._stop = stop
        await self.loop.run(stop)

    async def step(self) -> int:
        """Connect if needed, publish up to the tip; how many heights were confirmed."""
        if self._exchange is None:
            await self._connect()
        before = self._confirmed.height
        return await self.publish_pending(self._stop) - before

    def on_failure(self, exc: BaseException, failures: int) -> None:
        self.stats.errors += 1

    async def close(self) -> None:
        await self._settle_in_flight(self.stop_grace_s)
        with contextlib.suppress(OSError):
            await self._flush_checkpoint()
        await self._disconnect()

    def load_checkpoint(self) -> Checkpoint:
        """Resume from the checkpoint file (``run`` does it), checked against the store."""
        checkpoint = read_checkpoint(self.checkpoint_path)
        self._confirmed = self._written = checkpoint
        self._checkpoint_checked = checkpoint.height == 0
        self._check_checkpoint()
        self.stats.checkpoint = checkpoint.height
        self.stats.lag_blocks = max(0, self.store.height() - checkpoint.height)
        return checkpoint

    def _check_checkpoint(self) -> bool:
        """Whether the checkpoint's block is the store's (raises if it is another);
        False while the store has not reached it yet (a replica still catching up):
        nothing may be published until it is checked, or a checkpoint of another
        chain would silently skip this chain's first events."""
        if self._checkpoint_checked:
            return True
        checkpoint = self._confirmed
        stored = self.store.block(checkpoint.height)
        if stored is None:
            return False
        if stored.block.hash.hex() != checkpoint.block_hash:
            raise CheckpointMismatch(
                f"{self.checkpoint_path} names block {checkpoint.height} "
                f"{checkpoint.block_hash}, the store holds {stored.block.hash.hex()}")
        self._checkpoint_checked = True
        return True

    async def _connect(self) -> None:
        connection = await aio_pika.connect_robust(
            self.url, client_properties={"connection_name": self.connection_name},
            reconnect_interval=self.reconnect_interval_s)
        try:
            connection.reconnect_callbacks.add(self._on_reconnect)
            connection.close_callbacks.add(self._on_close)
            channel = await connection.channel(publisher_confirms=True)
            self._exchange = await channel.declare_exchange(
                self.topology.events, aio_pika.ExchangeType.TOPIC, durable=True)
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        self._connection = connection
        self.stats.connected = True

    def _on_reconnect(self, *_: object) -> None:
        self.stats.reconnects += 1
        self.stats.connected = True
        self.loop.retry_now()  # end a backoff: the broker is back

    def _on_close(self, *_: object) -> None:
        self.stats.connected = False

    async def _disconnect(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
        self.stats.connected = False

    # --- publishing ---------------------------------------------------------------------------

    async def publish_pending(self, stop: asyncio.Event | None = None) -> int:
        """Publish from the confirmed height + 1 up to the store's tip; the new confirmed height.

        Raises :class:`PublishFailed` (after every publish in flight settled and
        the checkpoint was written) if a publish was not confirmed; the next
        call starts again after the last confirmed height.
        """
        exchange = self._exchange
        if exchange is None:
            raise RuntimeError("not connected")
        self._failure = None
        self._pending.clear()
        if not self._check_checkpoint():
            return self._confirmed.height  # the store has not reached the checkpoint
        tip = self.store.height()
        self.stats.lag_blocks = max(0, tip - self._confirmed.height)
        last_flush = time.monotonic()
        height = self._confirmed.height + 1
        try:
            while height <= tip and self._failure is None and not (stop and stop.is_set()):
                await self._publish_height(exchange, height)
                height += 1
                if time.monotonic() - last_flush >= self.checkpoint_interval_s:
                    await self._flush_checkpoint()
                    last_flush = time.monotonic()
        finally:
            stopping = stop is not None and stop.is_set()
            await self._settle_in_flight(self.stop_grace_s if stopping else None)
            self._pending.clear()
            await self._flush_checkpoint()
        if self._failure is not None:
            raise PublishFailed(f"a publish failed: {self._failure!r}") from self._failure
        return self._confirmed.height

    async def _publish_height(self, exchange: aio_pika.abc.AbstractExchange,
                              height: int) -> None:
        stored = self.store.block(height)
        stored_events = self.store.events(height)
        if stored is None or stored_events is None:
            raise RuntimeError(f"the store lacks block {height} below its tip")
        block = stored.block
        events = [e for e in stored_events if not self.withheld(e.type)]
        self.stats.withheld += len(stored_events) - len(events)
        messages = [to_amqp(to_cloudevent(e, block=block, chain_id=block.header.chain_id,
                                          catalogue=self.catalogue),
                            app_id=self.app_id) for e in events]
        self._pending[height] = [len(messages), block.hash.hex()]
        for event, message in zip(events, messages, strict=True):
            while len(self._in_flight) >= self.in_flight_max and self._failure is None:
                await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            if self._failure is not None:
                return
            # A robust channel waits for the connection to come back before it
            # publishes: the outer timeout bounds that wait as well.
            future = asyncio.ensure_future(asyncio.wait_for(exchange.publish(
                message, routing_key=event.type, mandatory=False,
                timeout=self.publish_timeout_s), self.publish_timeout_s))
            self._in_flight.add(future)
            future.add_done_callback(functools.partial(self._settled, height))
        self._advance()

    def _settled(self, height: int, future: asyncio.Future[Any]) -> None:
        self._in_flight.discard(future)
        exc = asyncio.CancelledError() if future.cancelled() else future.exception()
        if exc is not None:
            self.stats.failed += 1
            self._failure = self._failure or exc
            return
        self.stats.published += 1
        entry = self._pending.get(height)
        if entry is not None:
            entry[0] -= 1
            self._advance()

    def _advance(self) -> None:
        """Move the confirmed height over every leading height whose publishes all confirmed."""
        while self._pending:
            height, (remaining, block_hash) = next(iter(self._pending.items()))
            if remaining > 0:
                break
            self._pending.popitem(last=False)
            self._confirmed = Checkpoint(height, block_hash)
        self.stats.lag_blocks = max(0, self.store.height() - self._confirmed.height)

    async def _settle_in_flight(self, timeout: float | None) -> None:
        """Wait for the publishes in flight; after ``timeout``, give up on them (unconfirmed)."""
        if not self._in_flight:
            return
        _, late = await asyncio.wait(set(self._in_flight), timeout=timeout)
        for future in late:
            future.cancel()
        if late:
            await asyncio.wait(late)

    async def _flush_checkpoint(self) -> None:
        confirmed = self._confirmed
        if confirmed == self._written:
            return
        await asyncio.to_thread(write_checkpoint, self.checkpoint_path, confirmed)
        self._written = confirmed
        self.stats.checkpoint = confirmed.height


class PublisherCollector(Collector):
    """``/metrics``: the partner-event publisher's figures (ecosphere_events_*)."""

    def __init__(self, publisher: EventPublisher) -> None:
        self.publisher = publisher

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self.publisher.stats
        for name, doc, value in (
                ("published", "Partner events the broker confirmed", stats.published),
                ("publish_failed", "Partner-event publishes that failed (sent again)",
                 stats.failed),
                ("publisher_errors", "Publishing passes that failed (retried)", stats.errors),
                ("withheld", "Restricted events not published (read signed by their "
                 "parties)", stats.withheld),
                ("publisher_reconnects", "Reconnections of the publisher", stats.reconnects)):
            counter = CounterMetricFamily(f"ecosphere_events_{name}", doc)
            counter.add_metric([], value)
            yield counter
        for name, doc, gauge_value in (
                ("lag_blocks", "Committed blocks whose events are not yet confirmed",
                 stats.lag_blocks),
                ("checkpoint", "The height in the publisher's checkpoint file",
                 stats.checkpoint),
                ("connected", "The publisher is connected to the broker",
                 int(stats.connected))):
            gauge = GaugeMetricFamily(f"ecosphere_events_{name}", doc)
            gauge.add_metric([], gauge_value)
            yield gauge
