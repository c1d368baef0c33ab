"""Tests for the contract interface: scoped state, events, failures (contract.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from services.ledger.core.contract import (
    BlockContext,
    Contract,
    Event,
    TxContext,
    payload_int,
    payload_str,
    static_fail,
)
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.errors import EncodingError, InvalidTransaction, TransactionFailed
from services.ledger.core.state import StateView, tree_from_items
from services.ledger.core.transactions import Transaction, sign_transaction

KEY = PrivateKey.derive("contract/sender")


def make_tx(payload: dict[str, Any], kind: str = "toy.act") -> Transaction:
    return sign_transaction(KEY, chain_id="c", kind=kind, nonce=0, payload=payload, created_at=0)


def make_ctx(
    payload: dict[str, Any] | None = None,
    *,
    roles: frozenset[str] = frozenset({"member"}),
    org_roles: frozenset[str] = frozenset({"merchant"}),
    view: StateView | None = None,
    events: list[Event] | None = None,
) -> TxContext:
    view = view or StateView(tree_from_items([("other/x", 5)]))
    return TxContext(
        view,
        "toy",
        [] if events is None else events,
        3,
        10,
        1_000,
        make_tx(payload or {}),
        "org-a",
        roles,
        org_roles,
    )


class Toy(Contract):
    name = "toy"
    actions: Mapping[str, frozenset[str] | None] = {"act": frozenset({"a", "b"}), "free": None}


def fail_code(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    with pytest.raises(TransactionFailed) as info:
        fn(*args, **kwargs)
    return info.value.code


# --------------------------------------------------------------------------- scope


def test_writes_are_scoped_to_the_namespace():
    ctx = make_ctx()
    ctx.put("k", 1)
    assert ctx.get("k") == 1
    assert ctx.has("k")
    assert ctx.read("toy/k") == 1
    assert dict(ctx._view.writes()) == {b"toy/k": b"1"}
    ctx.delete("k")
    assert not ctx.has("k")


def test_reads_any_namespace():
    ctx = make_ctx()
    assert ctx.read("other/x") == 5
    assert ctx.get("other/x") is None  # get is within the namespace


def test_context_fields():
    ctx = make_ctx({"a": 1})
    assert (ctx.namespace, ctx.height, ctx.time) == ("toy", 10, 1_000)
    assert ctx.sender == KEY.key_id
    assert ctx.sender_org == "org-a"
    assert ctx.payload == {"a": 1}


def test_emit_records_events_in_order():
    events: list[Event] = []
    ctx = make_ctx(events=events)
    ctx.emit("toy.thing.happened", {"n": 1})
    ctx.emit("toy.thing.happened_again", {})
    assert events == [
        Event("toy.thing.happened", {"n": 1}, 3, 0),
        Event("toy.thing.happened_again", {}, 3, 1),
    ]


def test_emit_copies_attributes():
    events: list[Event] = []
    ctx = make_ctx(events=events)
    attrs = {"n": 1}
    ctx.emit("toy.x.done", attrs)
    attrs["n"] = 2
    assert events[0].attributes == {"n": 1}


@pytest.mark.parametrize(
    "event_type", ["other.thing.happened", "toyx.thing.happened", "toy", "consortium.key.added"]
)
def test_emit_outside_namespace_refused(event_type):
    with pytest.raises(ValueError):
        make_ctx().emit(event_type, {})


def test_emit_checks_attributes():
    with pytest.raises(EncodingError):
        make_ctx().emit("toy.x.done", {"f": 1.5})


def test_block_context_events_have_no_tx_index():
    events: list[Event] = []
    ctx = BlockContext(StateView(tree_from_items([])), "toy", events, None, 4, 9)
    ctx.emit("toy.block.ended", {"h": 4})
    assert events == [Event("toy.block.ended", {"h": 4}, None, 0)]


def test_event_wire_round_trip():
    e = Event("toy.x.done", {"a": [1]}, None, 7)
    assert e.to_wire() == {
        "type": "toy.x.done",
        "attributes": {"a": [1]},
        "tx_index": None,
        "index": 7,
    }
    assert Event.from_wire(e.to_wire()) == e


def test_fail_raises_with_code():
    assert fail_code(make_ctx().fail, "conflict", "already there") == "conflict"


def test_require_admin():
    make_ctx(roles=frozenset({"admin"})).require_admin()
    assert fail_code(make_ctx(roles=frozenset({"member", "node"})).require_admin) == "forbidden"


def test_require_org_role():
    ctx = make_ctx(org_roles=frozenset({"carrier", "merchant"}))
    ctx.require_org_role("platform", "merchant")
    assert fail_code(ctx.require_org_role, "platform") == "forbidden"


# --------------------------------------------------------------------------- payload helpers


@pytest.mark.parametrize(
    ("payload", "ok"),
    [
        ({"s": "x"}, True),
        ({"s": "x" * 8}, True),
        ({"s": ""}, False),
        ({"s": "x" * 9}, False),
        ({"s": 1}, False),
        ({}, False),
        ({"s": None}, False),
    ],
)
def test_payload_str(payload, ok):
    ctx = make_ctx(payload)
    if ok:
        assert payload_str(ctx, "s", size_max=8) == payload["s"]
    else:
        assert fail_code(payload_str, ctx, "s", size_max=8) == "bad_payload"


@pytest.mark.parametrize(
    ("payload", "ok"),
    [
        ({"n": 0}, True),
        ({"n": 5}, True),
        ({"n": -1}, False),
        ({"n": 6}, False),
        ({"n": True}, False),
        ({"n": "1"}, False),
        ({}, False),
    ],
)
def test_payload_int(payload, ok):
    ctx = make_ctx(payload)
    if ok:
        assert payload_int(ctx, "n", lo=0, hi=5) == payload["n"]
    else:
        assert fail_code(payload_int, ctx, "n", lo=0, hi=5) == "bad_payload"


def test_static_fail():
    with pytest.raises(InvalidTransaction) as info:
        static_fail("nope")
    assert info.value.code == "bad_payload"


# --------------------------------------------------------------------------- check_static


def test_contract_check_static():
    toy = Toy()
    toy.check_static(make_tx({"a": 1, "b": 2, "c": 3}))
    toy.check_static(make_tx({}, kind="toy.free"))
    with pytest.raises(InvalidTransaction) as info:
        toy.check_static(make_tx({"a": 1}))
    assert info.value.code == "bad_payload"
    with pytest.raises(InvalidTransaction) as info:
        toy.check_static(make_tx({}, kind="toy.other"))
    assert info.value.code == "unknown_kind"


def test_default_hooks_do_nothing_and_apply_is_abstract():
    toy = Toy()
    view = StateView(tree_from_items([]))
    events: list[Event] = []
    toy.begin_block(BlockContext(view, "toy", events, None, 1, 0))
    toy.end_block(BlockContext(view, "toy", events, None, 1, 0))
    assert events == []
    assert dict(view.writes()) == {}
    with pytest.raises(NotImplementedError):
        toy.apply(make_ctx())
