"""The contract interface that every domain package implements.

A *contract* owns one namespace of state (its ``name``) and the transaction
kinds ``<name>.<action>``. Every replica runs the same contracts in the same
order (``services.composition``), so a contract must be a pure, deterministic
function of (state, transaction, block height, block time):

* no I/O, no wall clock, no randomness, no floats, no iteration over
  unordered containers whose order could differ between processes;
* raise :class:`TransactionFailed` (via :meth:`TxContext.fail`) to reject a
  transaction: the framework rolls back its writes and events;
* write only under its own namespace (enforced), read any namespace.

Lifecycle of a block: ``begin_block`` of every contract (deadlines that fell
due by this block's BFT time), then each transaction's ``apply``, then
``end_block``. Events are named in the past tense
(``<contract>.<entity>.<past_verb>``) and record what happened.

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from services.ledger.core.encoding import check_value
from services.ledger.core.errors import EncodingError, InvalidTransaction, TransactionFailed
from services.ledger.core.state import StateView
from services.ledger.core.transactions import Transaction

EVENT_ATTRS_BYTES_MAX = 16 * 1024


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened in a block: emitted by a transaction or a block hook."""

    type: str
    attributes: Mapping[str, Any]
    tx_index: int | None  # None: emitted by begin/end of block
    index: int  # position among the block's events

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "attributes": self.attributes,
            "tx_index": self.tx_index,
            "index": self.index,
        }

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> Event:
        return cls(obj["type"], obj["attributes"], obj["tx_index"], obj["index"])


class _Scope:
    """State access scoped to one contract's namespace for writes."""

    def __init__(self, view: StateView, namespace: str, events: list[Event],
                 tx_index: int | None, height: int, time: int, *, seed: bytes = b"") -> None:
        self._view = view
        self._prefix = namespace + "/"
        self._namespace = namespace
        self._events = events
        self._tx_index = tx_index
        self.height = height
        self.time = time
        #: the state root before this block: the same in every replica, unknown until
        #: the previous block committed. A deterministic draw (a dispute panel) may use
        #: it; a proposer can bias it by choosing transactions, so never for money.
        self.seed = seed

    @property
    def events_so_far(self) -> tuple[Event, ...]:
        """The block's events until now, every contract's (a later contract's block hook
        reacts to an earlier one's events: trade to trace's captures)."""
        return tuple(self._events)

    @property
    def namespace(self) -> str:
        return self._namespace

    def read(self, key: str) -> Any | None:
        """Read any key (any namespace)."""
        return self._view.get(key)

    def get(self, key: str) -> Any | None:
        """Read a key of this contract's namespace (``key`` without the prefix)."""
        return self._view.get(self._prefix + key)

    def has(self, key: str) -> bool:
        return self._view.has(self._prefix + key)

    def put(self, key: str, value: Any) -> None:
        self._view.put(self._prefix + key, value)

    def delete(self, key: str) -> None:
        self._view.delete(self._prefix + key)

    def emit(self, event_type: str, attributes: Mapping[str, Any]) -> None:
        if not event_type.startswith(self._prefix.replace("/", ".")):
            raise ValueError(f"event {event_type!r} outside namespace {self._namespace!r}")
        check_value(attributes)
        self._events.append(Event(event_type, dict(attributes), self._tx_index,
                                  len(self._events)))

    def fail(self, code: str, message: str) -> NoReturn:
        raise TransactionFailed(message, code=code)

    def checkpoint(self) -> tuple[int, int]:
        """A point to roll this transaction's writes and events back to (partial work
        inside one transaction, e.g. an EPCIS capture that proceeds past bad events)."""
        return self._view.checkpoint(), len(self._events)

    def rollback(self, checkpoint: tuple[int, int]) -> None:
        self._view.rollback(checkpoint[0])
        del self._events[checkpoint[1]:]


class BlockContext(_Scope):
    """What a block hook sees: state, block height and BFT time."""


class TxContext(_Scope):
    """What a transaction's ``apply`` sees."""

    def __init__(self, view: StateView, namespace: str, events: list[Event],
                 tx_index: int, height: int, time: int, tx: Transaction,
                 sender_org: str, sender_roles: frozenset[str],
                 org_roles: frozenset[str], *, seed: bytes = b"") -> None:
        super().__init__(view, namespace, events, tx_index, height, time, seed=seed)
        self.tx = tx
        self.sender = tx.sender
        self.sender_org = sender_org
        self.sender_roles = sender_roles  # the key's permissions: admin, node, member
        self.org_roles = org_roles  # the organisation's business roles

    @property
    def payload(self) -> Mapping[str, Any]:
        return self.tx.payload

    def require_org_role(self, *roles: str) -> None:
        if not self.org_roles.intersection(roles):
            self.fail("forbidden", f"{self.tx.kind} needs an organisation with role "
                      f"{' or '.join(roles)}")

    def require_admin(self) -> None:
        if "admin" not in self.sender_roles:
            self.fail("forbidden", f"{self.tx.kind} needs an organisation admin key")


class Contract:
    """Base class of contracts; override what the contract needs."""

    name: str = ""
    #: action -> required payload fields, checked statically (None: no check here)
    actions: Mapping[str, frozenset[str] | None] = {}

    def check_static(self, tx: Transaction) -> None:
        """Checks that need no state (payload schema). Raise :class:`InvalidTransaction`."""
        if tx.action not in self.actions:
            raise InvalidTransaction(f"unknown action {tx.kind!r}", code="unknown_kind")
        required = self.actions[tx.action]
        if required is not None and not required.issubset(tx.payload.keys()):
            missing = sorted(required - tx.payload.keys())
            raise InvalidTransaction(f"{tx.kind}: payload lacks {missing}", code="bad_payload")

    def apply(self, ctx: TxContext) -> None:
        """Validate against state and apply. Raise via ``ctx.fail`` to reject."""
        raise NotImplementedError

    def begin_block(self, ctx: BlockContext) -> None:
        """Runs before the block's transactions: deadlines due by ``ctx.time``."""

    def end_block(self, ctx: BlockContext) -> None:
        """Runs after the block's transactions."""


def payload_str(ctx: TxContext, field: str, *, size_max: int = 256) -> str:
    value = ctx.payload.get(field)
    if not isinstance(value, str) or not 0 < len(value) <= size_max:
        ctx.fail("bad_payload", f"{field} must be a string of 1..{size_max} characters")
    return value


def payload_int(ctx: TxContext, field: str, *, lo: int = 0, hi: int = 2**53 - 1) -> int:
    value = ctx.payload.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        ctx.fail("bad_payload", f"{field} must be an integer in [{lo}, {hi}]")
    return value


def static_fail(message: str) -> NoReturn:
    raise InvalidTransaction(message, code="bad_payload")


__all__ = [
    "BlockContext",
    "Contract",
    "EncodingError",
    "Event",
    "TxContext",
    "payload_int",
    "payload_str",
    "static_fail",
]
