"""Who may read what through the platform's generic routes: the domains declare, the host
enforces.

The gateway's own routes (``/v1/state``, ``/v1/transactions``, ``/v1/events``,
``/v1/events/replay``, ``/v1/blocks/{height}``) and its partner-event publisher serve
every domain's chain data. Some of it is personal data even when pseudonymous (a
subject's records, who they share them with, who read them): a domain that holds such
data declares a :class:`ReadPolicy` on its :class:`~services.gateway.plugin.DomainEdge`:

* what is restricted — state key prefixes, event type prefixes, transaction kind
  prefixes — with explicit public exceptions (also prefixes);
* a judge: given the caller (the key id of a verified RFC 9421 signature, or None),
  the tip's state and block time, a predicate telling which of the domain's restricted
  items (:class:`StateItem`, :class:`EventItem`, :class:`TransactionItem`) that caller
  may read. Built once per request, so it may cache what it looks up.

Everything no policy restricts stays public. The host (:class:`ReadGuard`) asks every
policy that restricts an item; all must agree. A restricted item the caller may not
read is answered as absent (404 for a single item, never 403: existence is not
confirmed), left out of lists, redacted in block bodies to its Merkle leaf hash, and
never published on the shared partner exchange. The gateway imports no domain: it sees
only these values.

This module does no I/O; a judge reads only the state it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.ledger.core.state import StateView

__all__ = ["EventItem", "Judge", "ReadGuard", "ReadItem", "ReadPolicy", "Reader", "StateItem",
           "TransactionItem"]


@dataclass(frozen=True, slots=True)
class StateItem:
    """A state value as ``GET /v1/state/{key}`` would answer it."""

    key: str
    value: Any  # the decoded JSON value; None when the key is absent


@dataclass(frozen=True, slots=True)
class EventItem:
    """A committed event (from the store or the views)."""

    type: str
    attributes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TransactionItem:
    """A committed transaction."""

    kind: str
    sender: str  # key id
    payload: Mapping[str, Any]
    tx_hash: str  # lowercase hex


ReadItem = StateItem | EventItem | TransactionItem
#: (the signed caller's key id or None, the tip's state, the tip's block time in ms) ->
#: which of the domain's restricted items that caller may read
Judge = Callable[[str | None, StateView, int], Callable[[ReadItem], bool]]


def _matches(name: str, prefixes: tuple[str, ...], public: tuple[str, ...]) -> bool:
    return name.startswith(prefixes) and not name.startswith(public)


@dataclass(frozen=True)
class ReadPolicy:
    """What a domain restricts on the generic routes, and who may read it."""

    judge: Judge
    state_prefixes: tuple[str, ...] = ()
    event_prefixes: tuple[str, ...] = ()
    kind_prefixes: tuple[str, ...] = ()
    #: exceptions: public although under a restricted prefix
    public_state_prefixes: tuple[str, ...] = ()
    public_event_prefixes: tuple[str, ...] = ()
    public_kind_prefixes: tuple[str, ...] = ()

    def restricts_state_key(self, key: str) -> bool:
        return _matches(key, self.state_prefixes, self.public_state_prefixes)

    def restricts_event_type(self, event_type: str) -> bool:
        return _matches(event_type, self.event_prefixes, self.public_event_prefixes)

    def restricts_kind(self, kind: str) -> bool:
        return _matches(kind, self.kind_prefixes, self.public_kind_prefixes)

    def restricts(self, item: ReadItem) -> bool:
        if isinstance(item, StateItem):
            return self.restricts_state_key(item.key)
        if isinstance(item, EventItem):
            return self.restricts_event_type(item.type)
        return self.restricts_kind(item.kind)


class Reader:
    """One caller's view of the restricted items, for one request (at one tip)."""

    def __init__(self, guard: ReadGuard, principal: str | None, view: StateView,
                 time_ms: int) -> None:
        self.guard, self.principal, self.view, self.time_ms = guard, principal, view, time_ms
        self._judges: dict[int, Callable[[ReadItem], bool]] = {}
        #: whether an item was shown because of who signed (the answer is then private)
        self.showed_restricted = False

    def may_read(self, item: ReadItem) -> bool:
        """Public, or every policy restricting ``item`` lets this caller read it."""
        restricting = [(i, p) for i, p in enumerate(self.guard.policies) if p.restricts(item)]
        if not restricting:
            return True
        for index, policy in restricting:
            judge = self._judges.get(index)
            if judge is None:
                judge = self._judges[index] = policy.judge(self.principal, self.view,
                                                           self.time_ms)
            if not judge(item):
                return False
        self.showed_restricted = True
        return True


class ReadGuard:
    """The host's side: every domain's read policy, asked for each item served."""

    def __init__(self, policies: Iterable[ReadPolicy] = ()) -> None:
        self.policies: tuple[ReadPolicy, ...] = tuple(policies)

    def __bool__(self) -> bool:
        return bool(self.policies)

    def restricts_state_key(self, key: str) -> bool:
        return any(p.restricts_state_key(key) for p in self.policies)

    def restricts_event_type(self, event_type: str) -> bool:
        return any(p.restricts_event_type(event_type) for p in self.policies)

    def restricts_kind(self, kind: str) -> bool:
        return any(p.restricts_kind(kind) for p in self.policies)

    def kind_prefixes(self) -> tuple[str, ...]:
        """Every restricted transaction kind starts with one of these."""
        return tuple(prefix for p in self.policies for prefix in p.kind_prefixes)

    def reader(self, principal: str | None, view: StateView, time_ms: int) -> Reader:
        return Reader(self, principal, view, time_ms)
