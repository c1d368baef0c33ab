"""The trade contract: one namespace (``trade/``), its actions assembled from the
domain's modules.

Each module exports ``ACTIONS`` (action -> (handler, required payload fields, optional
payload fields)), ``DEADLINES`` (deadline kind -> handler, for items it scheduled with
ids ``<kind>:<rest>`` through ``services.ledger.core.deadlines``) and ``ON_BLOCK``
(handlers of the block's events so far, run at the end of every block: trace's
captures and certificate revocations). Unknown payload fields are refused: no free
text reaches the chain; personal data goes to the privacy vault and is named here by
record id.

Lifecycle of a block: ``begin_block`` fires the deadlines that fell due by its BFT time
(confirmation windows, late legs, dispute phases, late shipments); each transaction
runs its handler; ``end_block`` runs every module's ``ON_BLOCK`` in module order.

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from services.ledger.core import deadlines
from services.ledger.core.contract import BlockContext, Contract, TxContext, static_fail
from services.ledger.core.transactions import Transaction
from services.trade import (
    accounts,
    agreements,
    disputes,
    listings,
    logistics,
    merchants,
    orders,
    returns,
    reviews,
)

__all__ = ["NAME", "TradeContract"]

NAME = "trade"

Handler = Callable[[TxContext], None]
DeadlineHandler = Callable[[BlockContext, str, Any], None]
BlockHandler = Callable[[BlockContext], None]

_MODULES = (accounts, merchants, listings, reviews, orders, logistics, agreements,
            returns, disputes)


def _actions() -> dict[str, tuple[Handler, frozenset[str], frozenset[str]]]:
    out: dict[str, tuple[Handler, frozenset[str], frozenset[str]]] = {}
    for module in _MODULES:
        for action, spec in module.ACTIONS.items():
            if action in out:
                raise ValueError(f"trade action {action!r} is declared twice")
            out[action] = spec
    return out


def _deadlines() -> dict[str, DeadlineHandler]:
    out: dict[str, DeadlineHandler] = {}
    for module in _MODULES:
        for kind, handler in getattr(module, "DEADLINES", {}).items():
            if kind in out or ":" in kind:
                raise ValueError(f"trade deadline kind {kind!r} is declared twice or bad")
            out[kind] = handler
    return out


_ACTIONS = _actions()
_DEADLINES = _deadlines()
_ON_BLOCK: tuple[BlockHandler, ...] = tuple(
    handler for module in _MODULES for handler in getattr(module, "ON_BLOCK", ()))


class TradeContract(Contract):
    name = NAME
    actions: Mapping[str, frozenset[str] | None] = {
        action: required for action, (_, required, _) in _ACTIONS.items()}

    def check_static(self, tx: Transaction) -> None:
        super().check_static(tx)
        _, required, optional = _ACTIONS[tx.action]
        extra = sorted(set(tx.payload) - required - optional)
        if extra:
            static_fail(f"{tx.kind}: unknown payload fields {extra} (personal data goes "
                        "to the privacy vault and is named by its record id)")

    def apply(self, ctx: TxContext) -> None:
        _ACTIONS[ctx.tx.action][0](ctx)

    def begin_block(self, ctx: BlockContext) -> None:
        for _, item_id, data in deadlines.due(ctx, ctx.time):
            kind = item_id.split(":", 1)[0]
            handler = _DEADLINES.get(kind)
            if handler is not None:
                handler(ctx, item_id, data)

    def end_block(self, ctx: BlockContext) -> None:
        for handler in _ON_BLOCK:
            handler(ctx)
