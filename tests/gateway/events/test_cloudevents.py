"""Partner events as CloudEvents: mapping, AMQP encoding, replay, checkpoint, publisher.

The integration test runs the publisher against the real RabbitMQ: it skips
locally (with the reason) when no broker answers, and fails under CI
(``CI=true``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aio_pika
import pytest
import pytest_asyncio
from pamqp.commands import Basic
from pydantic import ValidationError

from services.composition import COMPOSITIONS, event_catalogue
from services.gateway import events as ev
from services.gateway.event_schemas import (
    PLATFORM_EVENTS,
    CloudEventEnvelope,
    EventCatalogue,
)
from services.ledger.core.blocks import Block, BlockHeader, events_root, tx_root
from services.ledger.core.contract import Event
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.execution import Application
from services.ledger.core.genesis import ChainParams
from services.ledger.core.transactions import Transaction, sign_transaction
from services.ledger.core.validators import Validator, ValidatorSet
from services.ledger.node.amqp import Topology, broker_answers
from services.ledger.node.settings import DEFAULT_AMQP_URL
from services.ledger.node.store import MemoryStore, StoredBlock
from services.ledger.sim.simulator import SimConfig, Simulation
from services.ledger.sim.testnet import make_testnet

AMQP_URL = os.environ.get("ECOSPHERE_TEST_AMQP_URL", DEFAULT_AMQP_URL)
CATALOGUE = event_catalogue()  # the gateway's: every domain's partner events


# --- chains to publish ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def sim_store() -> MemoryStore:
    """A committed chain from the deterministic simulator (notary events)."""
    sim = Simulation(3, SimConfig(faults=False, byzantine=0, txs=40))
    sim.run()
    store = sim.honest[0].store
    assert store.height() > 10
    return store


# The platform contracts' events; the trace domain's are checked in tests/trace.
PLATFORM_TYPES = set(PLATFORM_EVENTS.types())
validate_data = PLATFORM_EVENTS.validate

def all_events(store: ev.EventSource) -> list[tuple[int, Event, Block]]:
    out: list[tuple[int, Event, Block]] = []
    for height in range(1, store.height() + 1):
        stored = store.block(height)
        events = store.events(height)
        assert stored is not None and events is not None
        out.extend((height, e, stored.block) for e in events)
    return out


@dataclass
class GovernanceChain:
    """Blocks built by hand through ``Application.execute``: every consortium event type."""

    blocks: list[tuple[Block, list[Event]]]

    @property
    def events(self) -> list[tuple[Event, Block]]:
        return [(e, b) for b, es in self.blocks for e in es]


def governance_chain() -> GovernanceChain:
    testnet = make_testnet(params=ChainParams(proposal_ttl_ms=120_000, upgrade_delay=2))
    genesis = testnet.genesis
    # this code knows versions 2 and 3 of the composition, so the chain can upgrade to 2
    # and schedule (then cancel) 3
    app = Application.versioned({1: COMPOSITIONS[1](), 2: COMPOSITIONS[1](),
                                 3: COMPOSITIONS[1]()})
    state = app.genesis_state(genesis)
    blocks: list[tuple[Block, list[Event]]] = []
    nonces: dict[str, int] = {}
    prev = b"\x00" * 32
    clock = [genesis.genesis_time]

    def tx(key: PrivateKey, kind: str, payload: dict[str, Any]) -> Transaction:
        nonce = nonces.get(key.key_id, 0)
        nonces[key.key_id] = nonce + 1
        return sign_transaction(key, chain_id=genesis.chain_id, kind=kind, nonce=nonce,
                                payload=payload, created_at=clock[0])

    def block(txs: list[Transaction], time: int) -> list[Event]:
        nonlocal state, prev
        clock[0] = time
        result = app.execute(state, height=len(blocks) + 1, time=time, txs=txs,
                             skip_failed=True)
        assert [r.code for r in result.rejected] == []
        header = BlockHeader(genesis.chain_id, len(blocks) + 1, prev, time,
                             testnet.validator_keys[0].key_id, tx_root(result.included),
                             len(result.included), result.state.root, b"\x01" * 32,
                             result.validators_next.hash, events_root(result.events),
                             b"\x02" * 32)
        built = Block(header, tuple(result.included), None)
        blocks.append((built, list(result.events)))
        state, prev = result.state, built.hash
        return list(result.events)

    a, c = testnet.admin_keys, testnet.client_keys
    t0 = genesis.genesis_time
    new_admin, new_key, successor = (PrivateKey.derive(f"events-test/{n}") for n in "abc")
    new_validator = PrivateKey.derive("events-test/validator")
    keep = [v for v in genesis.validators.validators
            if v.key_id != testnet.validator_keys[3].key_id]
    new_set = ValidatorSet.of([*keep, Validator(new_validator.key_id, new_validator.public.raw,
                                                1, "credit-center")])
    set_validators = {"type": "set_validators", "effective_height": 5, "validators": [
        {"public_key": v.public_key.hex(), "power": v.power, "org": v.org}
        for v in new_set.validators]}
    suspend = {"type": "suspend_organisation", "org": "merchants"}
    grant = {"type": "grant_roles", "org": "merchants", "roles": ["retailer"]}
    upgrade = {"type": "schedule_upgrade", "version": 2, "height": 5}

    block([tx(a[0], "consortium.register_organisation",
              {"id": "acme", "name": "Acme Ltd", "roles": ["carrier"],
               "admin_key": new_admin.public.hex()}),
           tx(a[1], "consortium.add_key",
              {"public_key": new_key.public.hex(), "permissions": ["member"]}),
           tx(c[0], "consortium.rotate_key", {"public_key": successor.public.hex()}),
           tx(c[1], "consortium.revoke_key", {"key_id": c[1].key_id, "reason": "lost"}),
           tx(c[2], "notary.anchor", {"digest": "ab" * 32, "label": "invoice"})], t0)
    proposals = [tx(a[0], "consortium.propose", {"action": a_}) for a_ in
                 (suspend, set_validators, upgrade)] + [
        tx(a[1], "consortium.propose", {"action": grant})]
    block(proposals, t0 + 1_000)
    pids = [p.hash.hex() for p in proposals]
    block([tx(k, "consortium.approve", {"proposal": pid})
           for pid in pids[:3] for k in (a[1], a[2])], t0 + 2_000)
    block([], t0 + 3_000)  # 4: the new validator set is installed at its end
    # 5 (below) runs composition version 2: its begin-block hook says so
    block([], t0 + 1_000 + 120_000)  # 5: the grant proposal expires
    for action in ({"type": "schedule_upgrade", "version": 3, "height": 50},
                   {"type": "cancel_upgrade", "version": 3}):  # 6-9: scheduled, cancelled
        proposal = tx(a[0], "consortium.propose", {"action": action})
        block([proposal], clock[0] + 1_000)
        block([tx(k, "consortium.approve", {"proposal": proposal.hash.hex()})
               for k in (a[1], a[2])], clock[0] + 1_000)
    return GovernanceChain(blocks)


@pytest.fixture(scope="module")
def governance() -> GovernanceChain:
    return governance_chain()


def test_governance_chain_emits_every_registered_event_type(governance):
    emitted = {e.type for e, _ in governance.events}
    assert emitted == PLATFORM_TYPES  # the trace domain's are checked in tests/trace
    assert {e.type for e, _ in governance.events if e.tx_index is None} == {
        "consortium.proposal.expired", "consortium.validators.changed",
        "consortium.composition.upgraded"}


def test_every_emitted_event_matches_its_data_schema(governance, sim_store):
    for event, _ in governance.events:
        validate_data(event.type, dict(event.attributes))
    for _, event, _ in all_events(sim_store):
        validate_data(event.type, dict(event.attributes))


def test_data_schema_rejects_drift():
    good = {"digest": "ab" * 32, "by": "cd" * 16, "org": "merchants", "label": ""}
    validate_data("notary.document.anchored", good)
    for bad in ({**good, "extra": 1}, {**good, "digest": "AB" * 32},
                {k: v for k, v in good.items() if k != "org"}):
        with pytest.raises(ValidationError):
            validate_data("notary.document.anchored", bad)
    with pytest.raises(ValidationError):
        validate_data("consortium.key.added", {"key_id": "ab" * 16, "org": "x",
                                               "permissions": ["root"], "by": "ab" * 16})
    with pytest.raises(KeyError):
        validate_data("notary.document.shredded", good)


def test_the_catalogue_checks_names_and_conflicts():
    model = PLATFORM_EVENTS.models["notary.document.anchored"]
    for name in ("Notary.document.anchored", "notary.anchored", "notary.document.anchored.x"):
        with pytest.raises(ValueError):
            EventCatalogue([(name, model, None)])
    with pytest.raises(ValueError):  # a type declared twice
        PLATFORM_EVENTS.extended([("notary.document.anchored", model, "digest")])
    with pytest.raises(ValueError):  # one model name per type
        PLATFORM_EVENTS.extended([("notary.document.copied", model, None)])
    with pytest.raises(ValueError):
        EventCatalogue([("notary.document.anchored", model, "nope")])
    assert "notary.document.anchored" not in EventCatalogue()  # nothing registers itself


def test_transaction_event_as_cloudevent(sim_store):
    height, event, block = all_events(sim_store)[3]
    assert event.tx_index is not None
    tx = block.txs[event.tx_index]
    ce = ev.to_cloudevent(event, block=block, chain_id="ecosphere-sim", catalogue=CATALOGUE)
    assert ce.get_id() == f"{tx.hash.hex()}:{event.index}"
    assert ce.get_source() == "/ecosphere/ecosphere-sim"
    assert ce.get_type() == event.type == "notary.document.anchored"
    assert ce.get_specversion() == "1.0"
    assert ce.get_datacontenttype() == "application/json"
    moment = ce.get_time()
    assert moment == ev.block_time(block.header.time)
    assert moment is not None and moment.tzinfo is not None
    assert ce.get_extension("height") == height == block.height
    assert ce.get_extension("txhash") == tx.hash.hex()
    assert ce.get_extension("eventindex") == event.index
    assert ce.get_subject() == event.attributes["digest"]
    assert ce.get_data() == dict(event.attributes)
    extensions = set(ce.get_attributes()) - {"specversion", "id", "source", "type", "subject",
                                             "time", "datacontenttype"}
    assert extensions == {"height", "txhash", "eventindex"}
    assert all(name.isalnum() and name.islower() for name in extensions)
    envelope = CloudEventEnvelope.model_validate(ev.to_structured(ce))
    envelope.validated_data()


def test_block_hook_event_is_identified_by_the_block_hash(governance):
    hooks = [(e, b) for e, b in governance.events if e.tx_index is None]
    assert len(hooks) == 3  # validators changed, composition upgraded, proposal expired
    for event, block in hooks:
        ce = ev.to_cloudevent(event, block=block, chain_id=block.header.chain_id,
                              catalogue=CATALOGUE)
        assert ce.get_id() == f"{block.hash.hex()}:{event.index}"
        assert ce.get_extension("txhash") is None
        assert "txhash" not in ev.to_structured(ce)
        assert ce.get_extension("height") == block.height
        CloudEventEnvelope.model_validate(ev.to_structured(ce)).validated_data()


def test_ids_are_unique_and_stable(governance, sim_store):
    pairs = [(e, b) for _, e, b in all_events(sim_store)] + governance.events
    ids = [ev.event_id(e, b) for e, b in pairs]
    assert len(set(ids)) == len(ids)
    # the same event read again (another replica's store, a restart) has the same id
    again = [ev.to_cloudevent(e, block=b, chain_id="x",
                              catalogue=CATALOGUE).get_id() for e, b in pairs]
    assert again == ids


def test_several_events_of_one_transaction_share_its_hash(governance):
    # the third approval executes the proposal: two events of one transaction
    by_tx: dict[str, list[str]] = {}
    for event, block in governance.events:
        ce = ev.to_cloudevent(event, block=block, chain_id="c", catalogue=CATALOGUE)
        if event.tx_index is not None:
            by_tx.setdefault(ce.get_extension("txhash"), []).append(ce.get_id())
    multi = [ids for ids in by_tx.values() if len(ids) > 1]
    assert multi
    for ids in multi:
        assert len(set(ids)) == len(ids)
        assert len({i.split(":")[0] for i in ids}) == 1


# --- encodings -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample(governance) -> list[ev.CloudEvent]:
    return [ev.to_cloudevent(e, block=b, chain_id=b.header.chain_id, catalogue=CATALOGUE)
            for e, b in governance.events]


def same(a: ev.CloudEvent, b: ev.CloudEvent) -> None:
    assert a.get_attributes() == b.get_attributes()
    assert a.get_data() == b.get_data()


def test_structured_json_round_trip(sample):
    for ce in sample:
        obj = ev.to_structured(ce)
        assert obj["time"].endswith("Z") and len(obj["time"]) == len("2026-01-01T00:00:00.000Z")
        assert isinstance(obj["height"], int) and isinstance(obj["eventindex"], int)
        assert obj["data"] == ce.get_data()
        same(ev.from_structured(obj), ce)
        same(ev.from_structured(json.dumps(obj).encode()), ce)


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_amqp_round_trip(sample, mode):
    for ce in sample:
        message = ev.to_amqp(ce, mode=mode)
        assert message.message_id == ce.get_id()
        assert message.type == ce.get_type()
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        if mode == "structured":
            assert message.content_type == "application/cloudevents+json"
            assert json.loads(message.body) == ev.to_structured(ce)
        else:
            assert message.content_type == "application/json"
            assert json.loads(message.body) == ce.get_data()
            assert message.headers["ce-id"] == ce.get_id()
            assert message.headers["ce-height"] == str(ce.get_extension("height"))
        same(ev.from_amqp(message), ce)


def test_from_amqp_reads_header_bytes_as_received(sample):
    ce = sample[0]
    message = ev.to_amqp(ce, mode="binary")
    received = SimpleNamespace(body=message.body, content_type=message.content_type,
                               headers={k: str(v).encode() for k, v in message.headers.items()})
    same(ev.from_amqp(received), ce)


# --- replay from the chain -----------------------------------------------------------------

def expected_ids(store: ev.EventSource, from_height: int = 1) -> list[str]:
    return [ev.event_id(e, b) for h, e, b in all_events(store) if h >= from_height]


def walk(store: ev.EventSource, limit: int, from_height: int = 1,
         after: str | None = None) -> Iterator[list[dict[str, Any]]]:
    while True:
        page, cursor = ev.replay(store, from_height=from_height, after=after, limit=limit,
                                 catalogue=CATALOGUE)
        assert len(page) <= limit
        yield page
        if len(page) < limit:
            return
        assert cursor is not None
        after = cursor


@pytest.mark.parametrize("limit", [1, 3, 7, 1000])
def test_replay_walks_every_event_once_in_order(sim_store, limit):
    items = [item for page in walk(sim_store, limit) for item in page]
    assert [i["id"] for i in items] == expected_ids(sim_store)
    positions = [(i["height"], i["eventindex"]) for i in items]
    assert positions == sorted(set(positions))
    for item in items:
        CloudEventEnvelope.model_validate(item).validated_data()


@pytest.mark.parametrize("from_height", [1, 2, 17, 40])
def test_replay_from_any_height(sim_store, from_height):
    items = [item for page in walk(sim_store, 4, from_height) for item in page]
    assert [i["id"] for i in items] == expected_ids(sim_store, from_height)
    assert all(i["height"] >= from_height for i in items)


class BlockListStore:
    """Hand-built blocks as an event source (no certificates: replay does not read them)."""

    def __init__(self, blocks: list[tuple[Block, list[Event]]]) -> None:
        self.blocks = blocks

    def height(self) -> int:
        return len(self.blocks)

    def block(self, height: int) -> StoredBlock | None:
        if not 1 <= height <= len(self.blocks):
            return None
        return StoredBlock(self.blocks[height - 1][0], None)  # type: ignore[arg-type]

    def events(self, height: int) -> list[Event] | None:
        return list(self.blocks[height - 1][1]) if 1 <= height <= len(self.blocks) else None


def test_replay_includes_block_hook_events(governance):
    store = BlockListStore(governance.blocks)
    items = [item for page in walk(store, 2) for item in page]
    assert [i["id"] for i in items] == [ev.event_id(e, b) for e, b in governance.events]
    assert {i["type"] for i in items} == PLATFORM_TYPES
    for item in items:
        CloudEventEnvelope.model_validate(item).validated_data()


def test_replay_cursor_forms(sim_store):
    first, cursor = ev.replay(sim_store, from_height=1, limit=5, catalogue=CATALOGUE)
    assert cursor == f"{first[-1]['height']}/{first[-1]['id']}"
    rest, _ = ev.replay(sim_store, from_height=1, after=cursor, limit=3, catalogue=CATALOGUE)
    # a bare event id, looked for from from_height = its height (the extension)
    bare, bare_cursor = ev.replay(sim_store, from_height=first[-1]["height"],
                                  after=first[-1]["id"], limit=3, catalogue=CATALOGUE)
    assert bare == rest
    assert bare_cursor == f"{rest[-1]['height']}/{rest[-1]['id']}"
    # a bare id found by scanning from an earlier height
    scanned, _ = ev.replay(sim_store, from_height=1, after=first[-1]["id"], limit=3,
                           catalogue=CATALOGUE)
    assert scanned == rest
    # from_height beyond the cursor wins
    later, _ = ev.replay(sim_store, from_height=30, after=cursor, limit=3, catalogue=CATALOGUE)
    assert later[0]["height"] == 30 or later[0]["height"] > 30
    assert [i["id"] for i in later] == expected_ids(sim_store, 30)[:3]


def test_replay_names_the_chain_it_is_asked_for(sim_store):
    default, _ = ev.replay(sim_store, from_height=1, limit=2, catalogue=CATALOGUE)
    named, _ = ev.replay(sim_store, from_height=1, limit=2, chain_id="ecosphere-sim",
                         catalogue=CATALOGUE)
    assert default == named
    assert {i["source"] for i in default} == {"/ecosphere/ecosphere-sim"}


def test_replay_at_the_tip_keeps_the_cursor(sim_store):
    items = [item for page in walk(sim_store, 1000) for item in page]
    cursor = f"{items[-1]['height']}/{items[-1]['id']}"
    page, again = ev.replay(sim_store, from_height=1, after=cursor, limit=10, catalogue=CATALOGUE)
    assert page == [] and again == cursor
    assert ev.replay(sim_store, from_height=sim_store.height() + 1, limit=10,
                     catalogue=CATALOGUE) == ([], None)


@pytest.mark.parametrize("after", [
    "nonsense", "12/nonsense", "ab" * 32 + ":0", "3/" + "ab" * 32 + ":0", "0/" + "ab" * 32 + ":0",
])
def test_replay_refuses_unknown_cursors(sim_store, after):
    with pytest.raises(ValueError):
        ev.replay(sim_store, from_height=1, after=after, limit=5, catalogue=CATALOGUE)


def test_replay_refuses_a_cursor_at_the_wrong_height(sim_store):
    _, cursor = ev.replay(sim_store, from_height=1, limit=3, catalogue=CATALOGUE)
    assert cursor is not None
    height, ident = cursor.split("/")
    with pytest.raises(ValueError):
        ev.replay(sim_store, from_height=1, after=f"{int(height) + 1}/{ident}", limit=5,
                  catalogue=CATALOGUE)
    with pytest.raises(ValueError):  # a bare id is looked for from from_height on only
        ev.replay(sim_store, from_height=int(height) + 1, after=ident, limit=5, catalogue=CATALOGUE)


@pytest.mark.parametrize("kwargs", [{"from_height": 0, "limit": 5},
                                    {"from_height": 1, "limit": 0}])
def test_replay_refuses_bad_arguments(sim_store, kwargs):
    with pytest.raises(ValueError):
        ev.replay(sim_store, **kwargs, catalogue=CATALOGUE)


# --- the checkpoint ------------------------------------------------------------------------

def test_checkpoint_round_trip(tmp_path):
    path = tmp_path / "sub" / "events.checkpoint"
    assert ev.read_checkpoint(path) == ev.Checkpoint(0, None)
    ev.write_checkpoint(path, ev.Checkpoint(12, "ab" * 32))
    assert ev.read_checkpoint(path) == ev.Checkpoint(12, "ab" * 32)
    ev.write_checkpoint(path, ev.Checkpoint(13, "cd" * 32))
    assert ev.read_checkpoint(path) == ev.Checkpoint(13, "cd" * 32)
    assert sorted(p.name for p in path.parent.iterdir()) == ["events.checkpoint"]
    path.write_text(json.dumps({"height": "x"}))
    with pytest.raises(ValueError):
        ev.read_checkpoint(path)


@pytest.mark.asyncio
async def test_publisher_refuses_another_chains_checkpoint(tmp_path, sim_store):
    path = tmp_path / "events.checkpoint"
    ev.write_checkpoint(path, ev.Checkpoint(5, "00" * 32))
    publisher = ev.EventPublisher(sim_store, url="amqp://guest:guest@127.0.0.1:1/",
                                  checkpoint_path=path, catalogue=CATALOGUE)
    with pytest.raises(ev.CheckpointMismatch):
        await publisher.run(asyncio.Event())


@pytest.mark.asyncio
async def test_publisher_without_broker_backs_off_and_stops(tmp_path, sim_store):
    publisher = ev.EventPublisher(sim_store, url="amqp://guest:guest@127.0.0.1:1/",
                                  checkpoint_path=tmp_path / "cp", reconnect_backoff_s=0.01,
                                  reconnect_backoff_max_s=0.05, catalogue=CATALOGUE)
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert not publisher.stats.connected
    assert publisher.stats.published == 0
    assert publisher.stats.lag_blocks == sim_store.height()
    assert ev.read_checkpoint(tmp_path / "cp").height == 0


class FlakyExchange:
    """Confirms publishes, except: the ``fail_at``-th is nacked (and, when ``lost``, every
    later one fails too, as when the connection drops)."""

    def __init__(self, fail_at: int | None = None, *, lost: bool = False) -> None:
        self.fail_at = fail_at
        self.lost = lost
        self.calls = 0
        self.published: list[tuple[str, aio_pika.Message]] = []

    async def publish(self, message: aio_pika.Message, routing_key: str, *,
                      mandatory: bool, timeout: float | None) -> None:
        assert mandatory is False
        self.calls += 1
        call = self.calls
        failing = self.fail_at is not None and (call == self.fail_at or
                                                (self.lost and call > self.fail_at))
        # the nack comes late: later publishes of the pipeline are confirmed before it
        await asyncio.sleep(0.05 if failing else 0)
        if failing:
            raise aio_pika.exceptions.DeliveryError(None, Basic.Nack(delivery_tag=call))
        self.published.append((routing_key, message))


@pytest.mark.parametrize("lost", [True, False], ids=["connection-lost", "one-nack"])
@pytest.mark.asyncio
async def test_failed_publish_keeps_the_checkpoint_and_publishes_again(tmp_path, sim_store,
                                                                       lost):
    """At least once: a failure stops the pass; the next starts after the confirmed height."""
    path = tmp_path / "cp"
    publisher = ev.EventPublisher(sim_store, url="unused", checkpoint_path=path,
                                  in_flight_max=4, catalogue=CATALOGUE)
    publisher.load_checkpoint()
    flaky = FlakyExchange(fail_at=20, lost=lost)
    publisher._exchange = flaky  # type: ignore[assignment]  # no broker: a fake exchange
    chain_order = expected_ids(sim_store)
    failed_id = chain_order[19]

    with pytest.raises(ev.PublishFailed):
        await publisher.publish_pending()
    failed_at = ev.read_checkpoint(path).height
    first = [ev.from_amqp(m) for _, m in flaky.published]
    assert failed_id not in {e.get_id() for e in first}
    # the checkpoint stays below the failed event's height, above everything confirmed
    failed_height = next(h for h, e, b in all_events(sim_store)
                         if ev.event_id(e, b) == failed_id)
    assert 0 < failed_at < failed_height
    assert set(expected_ids(sim_store)[:19]) <= {e.get_id() for e in first}
    for routing_key, message in flaky.published:
        assert routing_key == message.type
    publisher._exchange = good = FlakyExchange()  # type: ignore[assignment]
    assert await publisher.publish_pending() == sim_store.height()
    again = [ev.from_amqp(m) for _, m in good.published]
    assert [e.get_id() for e in again] == expected_ids(sim_store, failed_at + 1)
    received = first + again
    assert ev.read_checkpoint(path).height == sim_store.height()
    assert publisher.stats.failed == (flaky.calls - 19 if lost else 1)
    assert publisher.stats.lag_blocks == 0
    # what a partner does: drop duplicates by id; nothing is missing
    seen: dict[str, ev.CloudEvent] = {}
    for event in received:
        seen.setdefault(event.get_id(), event)
    assert sorted(seen, key=chain_order.index) == chain_order
    by_position = sorted(seen.values(), key=lambda e: (e.get_extension("height"),
                                                       e.get_extension("eventindex")))
    assert [e.get_id() for e in by_position] == chain_order
    if lost:
        # the broker lost a suffix of the stream: first occurrences are in chain order
        assert list(seen) == chain_order
    else:
        # events after the nacked one were confirmed, then published again: duplicates,
        # and the nacked event arrives after them (its height and eventindex order it)
        assert len(received) > len(seen)
        assert list(seen) != chain_order


# --- against the real RabbitMQ -------------------------------------------------------------

@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def broker_url() -> str:
    if not await broker_answers(AMQP_URL):
        if os.environ.get("CI") == "true":
            pytest.fail(f"no AMQP broker at {AMQP_URL}: CI must run the events integration test")
        pytest.skip(f"no AMQP broker at {AMQP_URL} (start one: rabbitmq-server -detached)")
    return AMQP_URL


class GrowingStore:
    """The simulator's store, revealed up to ``visible``: commits arriving over time."""

    def __init__(self, inner: MemoryStore, visible: int) -> None:
        self.inner = inner
        self.visible = visible

    def height(self) -> int:
        return min(self.visible, self.inner.height())

    def block(self, height: int) -> StoredBlock | None:
        return self.inner.block(height) if height <= self.height() else None

    def events(self, height: int) -> list[Event] | None:
        return self.inner.events(height) if height <= self.height() else None


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


async def drain(queue: aio_pika.abc.AbstractQueue, count: int,
                timeout: float = 20.0) -> list[aio_pika.abc.AbstractIncomingMessage]:
    out: list[aio_pika.abc.AbstractIncomingMessage] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(out) < count:
        message = await queue.get(fail=False, no_ack=True)
        if message is None:
            if loop.time() > deadline:
                raise AssertionError(f"received {len(out)} of {count} messages")
            await asyncio.sleep(0.02)
            continue
        out.append(message)
    return out


@pytest.mark.functional
@pytest.mark.asyncio
async def test_publisher_over_rabbitmq_at_least_once_in_order(broker_url, sim_store,
                                                              tmp_path: Path):
    topology = Topology(f"test-events-{uuid.uuid4().hex[:12]}")
    notary_ids = [ev.event_id(e, b) for _, e, b in all_events(sim_store)
                  if e.type.startswith("notary.")]
    assert len(notary_ids) == 40
    checkpoint = tmp_path / "events.checkpoint"

    async def run_publisher(notary: aio_pika.abc.AbstractQueue,
                            others: aio_pika.abc.AbstractQueue) -> None:
        store = GrowingStore(sim_store, visible=10)
        publisher = ev.EventPublisher(store, url=broker_url, checkpoint_path=checkpoint,
                                      topology=topology, in_flight_max=8,
                                      poll_interval_s=60.0, catalogue=CATALOGUE)
        stop = asyncio.Event()
        task = asyncio.create_task(publisher.run(stop))
        try:
            await until(lambda: publisher.stats.checkpoint == 10)
            store.visible = sim_store.height()  # more blocks committed: notify() wakes it
            publisher.notify()
            await until(lambda: publisher.stats.checkpoint == sim_store.height(), 10.0)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        assert publisher.stats.failed == 0
        assert publisher.stats.lag_blocks == 0
        assert publisher.stats.published == len(all_events(sim_store))

        received = await drain(notary, len(notary_ids))
        events = [ev.from_amqp(m) for m in received]
        assert [e.get_id() for e in events] == notary_ids  # unique, in chain order
        by_id = {ev.event_id(e, b): (h, e, b) for h, e, b in all_events(sim_store)}
        for message, ce in zip(received, events, strict=True):
            height, event, block = by_id[ce.get_id()]
            assert message.routing_key == ce.get_type() == event.type
            assert message.message_id == ce.get_id()
            assert message.content_type == "application/cloudevents+json"
            assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            assert ce.get_data() == dict(event.attributes)
            assert ce.get_extension("height") == height
            assert ce.get_extension("eventindex") == event.index
            assert event.tx_index is not None
            assert ce.get_extension("txhash") == block.txs[event.tx_index].hash.hex()
            assert ce.get_source() == "/ecosphere/ecosphere-sim"
            assert ce.get_time() == ev.block_time(block.header.time)
            CloudEventEnvelope.model_validate(json.loads(message.body)).validated_data()
        assert await others.get(fail=False) is None  # routing: nothing but notary.#

        # A crash after publishing but before the checkpoint reached the tip: the
        # checkpoint file is older, so the restarted publisher sends some events again.
        older = sim_store.height() // 2
        stored = sim_store.block(older)
        assert stored is not None
        ev.write_checkpoint(checkpoint, ev.Checkpoint(older, stored.block.hash.hex()))
        again = ev.EventPublisher(sim_store, url=broker_url, checkpoint_path=checkpoint,
                                  topology=topology, catalogue=CATALOGUE)
        stop = asyncio.Event()
        task = asyncio.create_task(again.run(stop))
        try:
            await until(lambda: again.stats.checkpoint == sim_store.height())
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        resent = [h for h, e, _ in all_events(sim_store)
                  if h > older and e.type.startswith("notary.")]
        duplicates = [ev.from_amqp(m) for m in await drain(notary, len(resent))]
        assert await notary.get(fail=False) is None
        assert all(d.get_id() in set(notary_ids) for d in duplicates)
        # the partner de-duplicates by id and has every event exactly once, in order
        seen: dict[str, None] = {}
        for ce in events + duplicates:
            seen.setdefault(ce.get_id(), None)
        assert list(seen) == notary_ids
        assert len(events) + len(duplicates) > len(seen)

    connection = await aio_pika.connect(broker_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(topology.events,
                                                  aio_pika.ExchangeType.TOPIC, durable=True)
        notary = await channel.declare_queue(f"{topology.prefix}.partner.notary",
                                             auto_delete=False)
        await notary.bind(exchange, routing_key="notary.#")
        others = await channel.declare_queue(f"{topology.prefix}.partner.consortium")
        await others.bind(exchange, routing_key="consortium.#")
        try:
            await run_publisher(notary, others)
        finally:
            await notary.delete(if_unused=False, if_empty=False)
            await others.delete(if_unused=False, if_empty=False)
            await channel.exchange_delete(topology.events)
    finally:
        await connection.close()


def close_connection_named(name: str) -> int:
    """Close the broker-side connections whose client named itself ``name``; how many."""
    listed = subprocess.run(["rabbitmqctl", "list_connections", "pid", "client_properties",
                             "-q", "--no-table-headers"],
                            check=True, capture_output=True, text=True, timeout=60)
    closed = 0
    for line in listed.stdout.splitlines():
        pid, _, properties = line.partition("\t")
        if f'{{"connection_name","{name}"}}' in properties:
            subprocess.run(["rabbitmqctl", "close_connection", pid, "test: broker drops it"],
                           check=True, capture_output=True, text=True, timeout=60)
            closed += 1
    return closed


@pytest.mark.functional
@pytest.mark.asyncio
async def test_publisher_survives_a_dropped_connection(broker_url, sim_store, tmp_path: Path):
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed: cannot drop a connection broker-side")
    topology = Topology(f"test-events-{uuid.uuid4().hex[:12]}")
    notary_ids = [ev.event_id(e, b) for _, e, b in all_events(sim_store)
                  if e.type.startswith("notary.")]

    async def drop_and_resume(queue: aio_pika.abc.AbstractQueue) -> None:
        store = GrowingStore(sim_store, visible=15)
        publisher = ev.EventPublisher(store, url=broker_url, checkpoint_path=tmp_path / "cp",
                                      topology=topology, poll_interval_s=60.0,
                                      reconnect_interval_s=0.3, reconnect_backoff_s=0.1,
                                      catalogue=CATALOGUE)
        stop = asyncio.Event()
        task = asyncio.create_task(publisher.run(stop))
        try:
            await until(lambda: publisher.stats.checkpoint == 15)
            closed = await asyncio.to_thread(close_connection_named, publisher.connection_name)
            assert closed == 1
            store.visible = sim_store.height()
            publisher.notify()
            await until(lambda: publisher.stats.checkpoint == sim_store.height(), 60.0)
            assert publisher.stats.reconnects >= 1
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
        seen: dict[str, ev.CloudEvent] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while len(seen) < len(notary_ids):
            message = await queue.get(fail=False, no_ack=True)
            if message is None:
                assert loop.time() < deadline, f"{len(seen)} of {len(notary_ids)} events"
                await asyncio.sleep(0.02)
                continue
            event = ev.from_amqp(message)
            seen.setdefault(event.get_id(), event)
        assert sorted(seen, key=notary_ids.index) == notary_ids
        by_position = sorted(seen.values(), key=lambda e: (e.get_extension("height"),
                                                           e.get_extension("eventindex")))
        assert [e.get_id() for e in by_position] == notary_ids

    connection = await aio_pika.connect(broker_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(topology.events,
                                                  aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(f"{topology.prefix}.partner", auto_delete=False)
        await queue.bind(exchange, routing_key="notary.#")
        try:
            await drop_and_resume(queue)
        finally:
            await queue.delete(if_unused=False, if_empty=False)
            await channel.exchange_delete(topology.events)
    finally:
        await connection.close()


@pytest.mark.asyncio
async def test_a_checkpoint_beyond_the_store_is_checked_once_the_store_gets_there(tmp_path,
                                                                                 sim_store):
    """Found in review: a foreign checkpoint above a (still catching up) store was taken
    on trust, and this chain's events up to its height were never published."""

    class Growing:
        def __init__(self, store: Any, upto: int) -> None:
            self.store, self.upto = store, upto

        def height(self):
            return min(self.upto, self.store.height())

        def block(self, height):
            return self.store.block(height) if height <= self.upto else None

        def __getattr__(self, name):
            return getattr(self.store, name)

    assert sim_store.height() >= 5
    store = Growing(sim_store, 2)
    path = tmp_path / "events.checkpoint"
    ev.write_checkpoint(path, ev.Checkpoint(5, "ab" * 32))
    publisher = ev.EventPublisher(store, url="amqp://guest:guest@127.0.0.1:1/",
                                  checkpoint_path=path, catalogue=CATALOGUE)
    publisher.load_checkpoint()  # nothing to compare with yet
    publisher._exchange = object()  # type: ignore[assignment]  # never used: it stops first
    assert await publisher.publish_pending() == 5
    store.upto = 5
    with pytest.raises(ev.CheckpointMismatch):
        await publisher.publish_pending()
    good = ev.Checkpoint(5, sim_store.block(5).block.hash.hex())
    ev.write_checkpoint(path, good)
    publisher.load_checkpoint()
    assert publisher._check_checkpoint()
