"""Accounts: balances, deposits, issuance and payout by payment providers, the fee.

State (under ``trade/``)::

    balance/<org>/<CUR>        int minor units (absent: 0)
    deposit/<org>/<CUR>        int: locked to pay penalties (agreements, listings)
    supply/<CUR>               {issued, redeemed}: all providers together
    issued_by/<provider>/<CUR> {issued, redeemed}: one provider's share
    reference/<provider>/<ref> the height a payment reference was used at (no double issue)
    payout/<id>                {id, holder, provider, money, account_tag, status, ...}
    tags/<org>                 [account tags]: fiat accounts the org funded or paid out to
    debt/<org>/<CUR>           int: penalties and refunds its deposit could not cover
    config                     {fee_bps, fee_org}

Other modules move money only through :func:`credit`, :func:`debit`,
:func:`lock_deposit`... so the supply invariant (money.holdings) has one place to hold.

This module never does I/O.
"""

from __future__ import annotations

from typing import Any, NoReturn

from services.ledger.core.contract import TxContext, _Scope
from services.ledger.core.errors import InvariantViolation
from services.trade.money import Money, money
from services.trade.vocabulary import (
    ACCOUNT_TAGS_MAX,
    BPS,
    FEE_BPS_MAX,
    HEX64_RE,
    ORG_RE,
    PAYMENT_ROLES,
    PLATFORM_ROLES,
    REFERENCE_RE,
    ActionSpec,
    text_id,
)

__all__ = ["ACTIONS", "balance", "credit", "debit", "deposit_of", "fee_of", "pay_penalty",
           "tags_of"]


# --- reading ---------------------------------------------------------------------------------

def balance(ctx: _Scope, org: str, currency: str) -> int:
    value = ctx.get(f"balance/{org}/{currency}")
    return value if isinstance(value, int) else 0


def deposit_of(ctx: _Scope, org: str, currency: str) -> int:
    value = ctx.get(f"deposit/{org}/{currency}")
    return value if isinstance(value, int) else 0


def tags_of(ctx: _Scope, org: str) -> frozenset[str]:
    return frozenset(ctx.get(f"tags/{org}") or ())


def fee_of(ctx: _Scope, amount: int) -> tuple[int, str | None]:
    """The platform's fee on a released ``amount`` and the organisation it goes to."""
    config = ctx.get("config") or {}
    fee_org = config.get("fee_org")
    if fee_org is None:
        return 0, None
    return amount * int(config.get("fee_bps", 0)) // BPS, str(fee_org)


# --- moving money (every other module goes through these) --------------------------------------

def _set(ctx: _Scope, key: str, value: int) -> None:
    if value:
        ctx.put(key, value)
    else:
        ctx.delete(key)


def credit(ctx: _Scope, org: str, amount: Money) -> None:
    key = f"balance/{org}/{amount.currency}"
    _set(ctx, key, balance(ctx, org, amount.currency) + amount.amount)


def debit(ctx: _Scope, org: str, amount: Money, *, code: str = "insufficient_funds") -> None:
    """Take ``amount`` from ``org``'s balance, or refuse with ``code`` (a TxContext fails;
    a block hook must check :func:`balance` first)."""
    have = balance(ctx, org, amount.currency)
    if have < amount.amount:
        raise_fail(ctx, code, f"{org} holds {have} minor units of {amount.currency}, "
                              f"needs {amount.amount}")
    _set(ctx, f"balance/{org}/{amount.currency}", have - amount.amount)


def raise_fail(ctx: _Scope, code: str, message: str) -> NoReturn:
    """Refuse the transaction; in a block hook (which must check balances first) moving
    money that is not there is a bug that must stop the replica, not a refusal."""
    if isinstance(ctx, TxContext):
        ctx.fail(code, message)
    raise InvariantViolation(f"a block hook moved money it does not hold: {message}")


def lock_deposit(ctx: _Scope, org: str, amount: Money) -> None:
    debit(ctx, org, amount)
    key = f"deposit/{org}/{amount.currency}"
    _set(ctx, key, deposit_of(ctx, org, amount.currency) + amount.amount)


def unlock_deposit(ctx: _Scope, org: str, amount: Money) -> None:
    have = deposit_of(ctx, org, amount.currency)
    if have < amount.amount:
        raise_fail(ctx, "insufficient_deposit", f"{org}'s deposit holds {have}")
    _set(ctx, f"deposit/{org}/{amount.currency}", have - amount.amount)
    credit(ctx, org, amount)


def pay_penalty(ctx: _Scope, payer: str, payee: str, amount: Money) -> tuple[int, int]:
    """Pay ``amount`` from ``payer``'s deposit to ``payee``'s balance, as much as the
    deposit holds; the rest becomes ``payer``'s debt. Returns (paid, shortfall). Never
    refuses: a penalty is a consequence, not a request."""
    have = deposit_of(ctx, payer, amount.currency)
    paid = min(have, amount.amount)
    _set(ctx, f"deposit/{payer}/{amount.currency}", have - paid)
    if paid:
        credit(ctx, payee, Money(paid, amount.currency))
    shortfall = amount.amount - paid
    if shortfall:
        key = f"debt/{payer}/{amount.currency}"
        owed = ctx.get(key)
        ctx.put(key, (owed if isinstance(owed, int) else 0) + shortfall)
    return paid, shortfall


def _supply(ctx: _Scope, provider: str, currency: str, *, issued: int = 0,
            redeemed: int = 0) -> None:
    for key in (f"supply/{currency}", f"issued_by/{provider}/{currency}"):
        record = ctx.get(key) or {"issued": 0, "redeemed": 0}
        record = {"issued": record["issued"] + issued,
                  "redeemed": record["redeemed"] + redeemed}
        ctx.put(key, record)


def issue_to(ctx: _Scope, provider: str, org: str, amount: Money) -> None:
    """New money, by ``provider`` (fiat arrived, or a conversion it quoted)."""
    _supply(ctx, provider, amount.currency, issued=amount.amount)
    credit(ctx, org, amount)


def redeem_from(ctx: _Scope, provider: str, org: str, amount: Money) -> None:
    """Money destroyed from ``org``'s balance by ``provider`` (paid out, or converted)."""
    debit(ctx, org, amount)
    _supply(ctx, provider, amount.currency, redeemed=amount.amount)


def _remember_tag(ctx: TxContext, org: str, tag: str) -> None:
    tags = [t for t in ctx.get(f"tags/{org}") or [] if t != tag]
    tags.append(tag)
    ctx.put(f"tags/{org}", tags[-ACCOUNT_TAGS_MAX:])


def _account_tag(ctx: TxContext) -> str:
    return text_id(ctx, ctx.payload.get("account_tag"), "account_tag", HEX64_RE)


# --- actions -----------------------------------------------------------------------------------

def issue(ctx: TxContext) -> None:
    """A payment provider received fiat for ``to``: the same amount appears on chain."""
    ctx.require_org_role(*PAYMENT_ROLES)
    to = text_id(ctx, ctx.payload.get("to"), "to", ORG_RE)
    org = ctx.read(f"consortium/org/{to}")
    if not isinstance(org, dict) or org.get("status") != "active":
        ctx.fail("not_found", f"organisation {to!r} is not an active member")
    amount = money(ctx, ctx.payload.get("money"), "money", positive=True)
    reference = text_id(ctx, ctx.payload.get("reference"), "reference", REFERENCE_RE)
    used = f"reference/{ctx.sender_org}/{reference}"
    if ctx.has(used):
        ctx.fail("duplicate_reference", f"payment reference {reference} was issued before")
    ctx.put(used, ctx.height)
    tag = _account_tag(ctx)
    issue_to(ctx, ctx.sender_org, to, amount)
    _remember_tag(ctx, to, tag)
    ctx.emit("trade.funds.issued", {"provider": ctx.sender_org, "to": to,
                                    "money": amount.to_wire(), "reference": reference})


def request_payout(ctx: TxContext) -> None:
    """A holder asks a provider to pay its balance out to a fiat account."""
    provider = text_id(ctx, ctx.payload.get("provider"), "provider", ORG_RE)
    org = ctx.read(f"consortium/org/{provider}")
    if not isinstance(org, dict) or org.get("status") != "active" \
            or not PAYMENT_ROLES & set(org.get("roles", ())):
        ctx.fail("not_found", f"{provider!r} is not an active payment provider")
    amount = money(ctx, ctx.payload.get("money"), "money", positive=True)
    tag = _account_tag(ctx)
    debit(ctx, ctx.sender_org, amount)
    payout_id = ctx.tx.hash.hex()
    ctx.put(f"payout/{payout_id}", {
        "id": payout_id, "holder": ctx.sender_org, "provider": provider,
        "money": amount.to_wire(), "account_tag": tag, "status": "pending",
        "requested": ctx.time})
    _remember_tag(ctx, ctx.sender_org, tag)
    ctx.emit("trade.payout.requested", {"payout": payout_id, "holder": ctx.sender_org,
                                        "provider": provider, "money": amount.to_wire()})


def _pending_payout(ctx: TxContext) -> dict[str, Any]:
    ctx.require_org_role(*PAYMENT_ROLES)
    payout_id = text_id(ctx, ctx.payload.get("payout"), "payout", HEX64_RE)
    record = ctx.get(f"payout/{payout_id}")
    if not isinstance(record, dict):
        ctx.fail("not_found", f"no payout {payout_id}")
    if record["provider"] != ctx.sender_org:
        ctx.fail("forbidden", "only the provider asked pays a payout out")
    if record["status"] != "pending":
        ctx.fail("payout_closed", f"payout {payout_id} is {record['status']}")
    return record


def complete_payout(ctx: TxContext) -> None:
    """The provider paid the fiat out: the claim is destroyed."""
    record = _pending_payout(ctx)
    reference = text_id(ctx, ctx.payload.get("reference"), "reference", REFERENCE_RE)
    amount = Money(record["money"]["amount"], record["money"]["currency"])
    _supply(ctx, ctx.sender_org, amount.currency, redeemed=amount.amount)
    record.update(status="completed", reference=reference, closed=ctx.time)
    ctx.put(f"payout/{record['id']}", record)
    ctx.emit("trade.payout.completed", {"payout": record["id"], "holder": record["holder"],
                                        "provider": ctx.sender_org,
                                        "money": record["money"], "reference": reference})


def fail_payout(ctx: TxContext) -> None:
    """The provider could not pay out: the money returns to the holder's balance."""
    record = _pending_payout(ctx)
    credit(ctx, record["holder"], Money(record["money"]["amount"],
                                        record["money"]["currency"]))
    record.update(status="failed", closed=ctx.time)
    ctx.put(f"payout/{record['id']}", record)
    ctx.emit("trade.payout.failed", {"payout": record["id"], "holder": record["holder"],
                                     "provider": ctx.sender_org, "money": record["money"]})


def deposit(ctx: TxContext) -> None:
    """Lock part of the sender organisation's balance as its deposit."""
    amount = money(ctx, ctx.payload.get("money"), "money", positive=True)
    lock_deposit(ctx, ctx.sender_org, amount)
    ctx.emit("trade.deposit.locked", {"org": ctx.sender_org, "money": amount.to_wire()})


def withdraw_deposit(ctx: TxContext) -> None:
    """Unlock deposit back to the balance, never below what the organisation's active
    agreements require (``deposit_required/<org>/<CUR>``, kept by agreements.py)."""
    amount = money(ctx, ctx.payload.get("money"), "money", positive=True)
    required = ctx.get(f"deposit_required/{ctx.sender_org}/{amount.currency}")
    required = required if isinstance(required, int) else 0
    held = deposit_of(ctx, ctx.sender_org, amount.currency)
    if held < amount.amount:
        ctx.fail("insufficient_deposit", f"the deposit holds {held} minor units of "
                                         f"{amount.currency}")
    if held - amount.amount < required:
        ctx.fail("deposit_required", f"active agreements require {required} minor units "
                                     f"of {amount.currency} to stay deposited")
    unlock_deposit(ctx, ctx.sender_org, amount)
    ctx.emit("trade.deposit.released", {"org": ctx.sender_org, "money": amount.to_wire()})


def configure(ctx: TxContext) -> None:
    """The platform's fee on released escrow and the organisation it goes to."""
    ctx.require_org_role(*PLATFORM_ROLES)
    ctx.require_admin()
    fee_bps = ctx.payload.get("fee_bps")
    if not isinstance(fee_bps, int) or isinstance(fee_bps, bool) \
            or not 0 <= fee_bps <= FEE_BPS_MAX:
        ctx.fail("bad_payload", f"fee_bps must be an integer in [0, {FEE_BPS_MAX}]")
    fee_org = text_id(ctx, ctx.payload.get("fee_org"), "fee_org", ORG_RE)
    org = ctx.read(f"consortium/org/{fee_org}")
    if not isinstance(org, dict) or org.get("status") != "active":
        ctx.fail("not_found", f"organisation {fee_org!r} is not an active member")
    ctx.put("config", {"fee_bps": fee_bps, "fee_org": fee_org, "by": ctx.sender_org,
                       "since": ctx.height})
    ctx.emit("trade.config.changed", {"fee_bps": fee_bps, "fee_org": fee_org,
                                      "by": ctx.sender_org})


#: action -> (handler, required payload fields, optional payload fields)
ACTIONS: dict[str, ActionSpec] = {
    "issue": (issue, frozenset({"to", "money", "reference", "account_tag"}), frozenset()),
    "request_payout": (request_payout, frozenset({"provider", "money", "account_tag"}),
                       frozenset()),
    "complete_payout": (complete_payout, frozenset({"payout", "reference"}), frozenset()),
    "fail_payout": (fail_payout, frozenset({"payout"}), frozenset()),
    "deposit": (deposit, frozenset({"money"}), frozenset()),
    "withdraw_deposit": (withdraw_deposit, frozenset({"money"}), frozenset()),
    "configure": (configure, frozenset({"fee_bps", "fee_org"}), frozenset()),
}
