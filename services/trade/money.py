"""Money: ISO 4217 amounts in integer minor units, exchange-rate quotes, and the supply
invariant.

An amount is ``{"amount": <int>, "currency": "EUR"}``: minor units (cents for EUR, yen
for JPY), never a float. Conversion between currencies happens only under a quote a
payment provider signed; the arithmetic is exact (integers) and rounds once, in a
stated direction.

The supply invariant (docs/adr/0009-trade.md): per currency, what providers issued
minus what they paid out equals everything held — balances, deposits, escrows and
pending payouts. :func:`holdings` computes both sides from a state listing, for tests
and audits.

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from services.ledger.core import consortium, crypto
from services.ledger.core.contract import TxContext
from services.ledger.core.encoding import encode, tagged_hash
from services.trade.vocabulary import AMOUNT_MAX, HEX64_RE, ORG_RE, QUOTE_MS_MAX

__all__ = ["CURRENCIES", "QUOTE_TAG", "Money", "Quote", "convert", "holdings", "money",
           "parse_quote", "quote_digest"]

#: ISO 4217 code -> minor-unit exponent (the currencies the platform settles in)
CURRENCIES: Final[Mapping[str, int]] = {
    "EUR": 2, "CNY": 2, "USD": 2, "GBP": 2, "PLN": 2, "CZK": 2, "HUF": 2, "CHF": 2,
    "SEK": 2, "DKK": 2, "JPY": 0,
}
QUOTE_TAG: Final = b"ecosphere/trade/quote/v1"
RATE_MAX: Final = 10**12  # numerator and denominator of a rate
_QUOTE_FIELDS: Final = frozenset({"provider", "from", "to", "rate_num", "rate_den",
                                  "expires", "nonce", "key_id", "signature"})


@dataclass(frozen=True, slots=True)
class Money:
    amount: int  # minor units, 0..AMOUNT_MAX
    currency: str  # a key of CURRENCIES

    def to_wire(self) -> dict[str, Any]:
        return {"amount": self.amount, "currency": self.currency}


def money(ctx: TxContext, value: object, field: str, *, positive: bool = False,
          currency: str | None = None) -> Money:
    """Parse an amount (refusals: ``bad_payload``, ``currency_mismatch``)."""
    if not isinstance(value, dict) or set(value) != {"amount", "currency"}:
        ctx.fail("bad_payload", f"{field} must be {{amount, currency}}")
    amount, code = value["amount"], value["currency"]
    low = 1 if positive else 0
    if not isinstance(amount, int) or isinstance(amount, bool) \
            or not low <= amount <= AMOUNT_MAX:
        ctx.fail("bad_payload", f"{field}.amount must be integer minor units in "
                                f"[{low}, {AMOUNT_MAX}]")
    if not isinstance(code, str) or code not in CURRENCIES:
        ctx.fail("bad_payload", f"{field}.currency must be one of {sorted(CURRENCIES)}")
    if currency is not None and code != currency:
        ctx.fail("currency_mismatch", f"{field} is in {code}, expected {currency}")
    return Money(amount, code)


@dataclass(frozen=True, slots=True)
class Quote:
    """A payment provider's signed offer: one major unit of ``source`` costs
    ``rate_num / rate_den`` major units of ``target``, until ``expires``."""

    provider: str
    source: str
    target: str
    rate_num: int
    rate_den: int
    expires: int
    nonce: str
    key_id: str
    signature: bytes

    def body(self) -> dict[str, Any]:
        """What the provider signs (canonical JSON, tagged): everything but the signature."""
        return {"provider": self.provider, "from": self.source, "to": self.target,
                "rate_num": self.rate_num, "rate_den": self.rate_den,
                "expires": self.expires, "nonce": self.nonce, "key_id": self.key_id}


def quote_digest(body: Mapping[str, Any]) -> bytes:
    return tagged_hash(QUOTE_TAG, encode(dict(body)))


def parse_quote(ctx: TxContext, value: object) -> Quote:
    """A quote that verifies now: signed by an active key of an active payment provider,
    not expired, not used before (refusals: ``bad_payload``, ``bad_quote``,
    ``quote_expired``, ``quote_used``). Marks it used."""
    if not isinstance(value, dict) or set(value) != _QUOTE_FIELDS:
        ctx.fail("bad_payload", f"quote must have exactly {sorted(_QUOTE_FIELDS)}")
    provider, source, target = value["provider"], value["from"], value["to"]
    if not isinstance(provider, str) or not ORG_RE.fullmatch(provider):
        ctx.fail("bad_payload", "quote.provider must be an organisation id")
    if source not in CURRENCIES or target not in CURRENCIES or source == target:
        ctx.fail("bad_payload", "quote.from and quote.to must be two settled currencies")
    for field in ("rate_num", "rate_den"):
        rate = value[field]
        if not isinstance(rate, int) or isinstance(rate, bool) or not 1 <= rate <= RATE_MAX:
            ctx.fail("bad_payload", f"quote.{field} must be an integer in [1, {RATE_MAX}]")
    expires = value["expires"]
    if not isinstance(expires, int) or isinstance(expires, bool) or expires < 0:
        ctx.fail("bad_payload", "quote.expires must be block time in ms")
    nonce, key_id, signature = value["nonce"], value["key_id"], value["signature"]
    if not isinstance(nonce, str) or not HEX64_RE.fullmatch(nonce):
        ctx.fail("bad_payload", "quote.nonce must be 64 lowercase hex digits")
    if not isinstance(key_id, str) or not isinstance(signature, str) \
            or len(signature) != 128:
        ctx.fail("bad_payload", "quote.key_id and quote.signature (hex) are required")
    try:
        raw_signature = bytes.fromhex(signature)
    except ValueError:
        ctx.fail("bad_payload", "quote.signature must be hex")
    quote = Quote(provider, str(source), str(target), value["rate_num"], value["rate_den"],
                  expires, nonce, key_id, raw_signature)
    if ctx.time > expires:
        ctx.fail("quote_expired", "the quote expired")
    if expires - ctx.time > QUOTE_MS_MAX:
        ctx.fail("bad_quote", f"a quote is valid for at most {QUOTE_MS_MAX // 60_000} "
                              "minutes")
    key = ctx.read(f"{consortium.NAME}/key/{key_id}")
    org = ctx.read(f"{consortium.NAME}/org/{provider}")
    if not isinstance(key, dict) or key.get("org") != provider \
            or key.get("status") != "active" or not isinstance(org, dict) \
            or org.get("status") != "active" or "payment" not in org.get("roles", ()):
        ctx.fail("bad_quote", "the quote is not signed by an active key of an active "
                              "payment provider")
    public_key = bytes.fromhex(key["public_key"])
    if not crypto.verify(public_key, raw_signature, quote_digest(quote.body())):
        ctx.fail("bad_quote", "the quote's signature does not verify")
    used = f"quote_used/{provider}/{nonce}"
    if ctx.has(used):
        ctx.fail("quote_used", "the quote was used before")
    ctx.put(used, ctx.height)
    return quote


def convert(quote: Quote, price: Money) -> Money:
    """What the buyer pays in ``quote.source`` for ``price`` in ``quote.target``: rounded
    up to the minor unit, so the provider never issues more than it was paid for.

    price_major = price.amount / 10^e_t; pay_major = price_major * rate_den / rate_num;
    pay_minor = pay_major * 10^e_s = price.amount * rate_den * 10^e_s
    / (rate_num * 10^e_t), rounded up."""
    if price.currency != quote.target:
        raise ValueError("the quote converts into another currency")
    num = price.amount * quote.rate_den * 10 ** CURRENCIES[quote.source]
    den = quote.rate_num * 10 ** CURRENCIES[quote.target]
    return Money(-(-num // den), quote.source)


def holdings(items: Iterable[tuple[str, Any]]) -> dict[str, tuple[int, int]]:
    """Per currency, (outstanding supply, money held), from ``trade/...`` state items
    ``(key, value)``: the two must be equal after every block."""
    supply: dict[str, int] = {}
    held: dict[str, int] = {}

    def hold(currency: str, amount: int) -> None:
        held[currency] = held.get(currency, 0) + amount

    for key, value in items:
        if not key.startswith("trade/"):
            continue
        parts = key.split("/")
        kind = parts[1]
        if kind == "supply" and len(parts) == 3:
            supply[parts[2]] = supply.get(parts[2], 0) + value["issued"] - value["redeemed"]
        elif kind in ("balance", "deposit") and len(parts) == 4:
            hold(parts[3], value)
        elif kind == "payout" and len(parts) == 3 and value.get("status") == "pending":
            hold(value["money"]["currency"], value["money"]["amount"])
        elif kind == "order" and len(parts) == 3:
            escrow = value.get("escrow")
            if escrow and escrow["amount"]:
                hold(escrow["currency"], escrow["amount"])
    return {c: (supply.get(c, 0), held.get(c, 0)) for c in sorted({*supply, *held})}
