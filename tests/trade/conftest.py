"""A small marketplace on a composition-3 chain, for the trade domain's rule tests.

Organisations (registered by the platform operator's admin): ``paybank`` (payment
provider), ``shenzhen-gadgets`` (merchant, in CN), consumers ``anna``, ``ben``,
``chloe``, ``dario``, ``eva``, ``fritz`` (in DE), carriers ``rail-express`` and
``last-mile``. The operator (``operator``, role platform) is the genesis' first
organisation. Each organisation has one admin key, ``World.keys[<org>]``.

Money helpers: :meth:`World.fund` (the provider issues), :meth:`World.balance`,
:meth:`World.quote` (a provider-signed exchange-rate quote), and
:meth:`World.check_supply` (the invariant of docs/adr/0009-trade.md: call it after
blocks in every money test).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.execution import BlockExecution
from services.ledger.core.state import decode_value
from services.ledger.sim.testnet import make_testnet
from services.trade.money import holdings, quote_digest
from tests.ledger.core.conftest import Chain, rejected_codes

ORGS: dict[str, tuple[str, ...]] = {
    "paybank": ("payment",),
    "shenzhen-gadgets": ("merchant",),
    "anna": ("consumer",), "ben": ("consumer",), "chloe": ("consumer",),
    "dario": ("consumer",), "eva": ("consumer",), "fritz": ("consumer",),
    "rail-express": ("carrier",),
    "last-mile": ("carrier",),
}


def tag(label: str) -> str:
    """A payment provider's account tag (its HMAC of a fiat account) for ``label``."""
    return hashlib.sha256(f"account/{label}".encode()).hexdigest()


def digest(label: str) -> str:
    return hashlib.sha256(f"doc/{label}".encode()).hexdigest()


@dataclass
class World:
    chain: Chain
    keys: dict[str, PrivateKey]
    references: Iterator[int] = field(default_factory=lambda: iter(range(1, 10**9)))

    @property
    def operator(self) -> PrivateKey:
        return self.keys["operator"]

    def run(self, org: str, action: str, payload: dict[str, Any], *,
            time: int | None = None) -> BlockExecution:
        """One transaction of ``org``'s admin key in its own block."""
        tx = self.chain.tx(self.keys[org], f"trade.{action}", payload, created_at=time)
        return self.chain.block([tx], time=time)

    def ok(self, org: str, action: str, payload: dict[str, Any], *,
           time: int | None = None) -> BlockExecution:
        result = self.run(org, action, payload, time=time)
        assert not result.rejected, rejected_codes(result)
        self.check_supply()
        return result

    def code(self, org: str, action: str, payload: dict[str, Any], *,
             time: int | None = None) -> str:
        """The refusal code of a transaction that must fail (and change nothing)."""
        result = self.run(org, action, payload, time=time)
        assert len(result.rejected) == 1, "expected a refusal"
        assert not result.included  # refused: nothing of it is in the block
        return result.rejected[0].code

    def events(self, result: BlockExecution, kind: str) -> list[dict[str, Any]]:
        return [dict(e.attributes) for e in result.events if e.type == kind]

    def get(self, key: str) -> Any:
        return self.chain.get(f"trade/{key}")

    # --- money ----------------------------------------------------------------------------

    def fund(self, org: str, amount: int, currency: str = "EUR") -> None:
        self.ok("paybank", "issue", {"to": org, "money": {"amount": amount,
                                                          "currency": currency},
                                     "reference": f"ref-{next(self.references)}",
                                     "account_tag": tag(org)})

    def balance(self, org: str, currency: str = "EUR") -> int:
        value = self.get(f"balance/{org}/{currency}")
        return value if isinstance(value, int) else 0

    def quote(self, source: str, target: str, rate_num: int, rate_den: int, *,
              expires_in_ms: int = 600_000, nonce: str = "01" * 32) -> dict[str, Any]:
        key = self.keys["paybank"]
        body = {"provider": "paybank", "from": source, "to": target, "rate_num": rate_num,
                "rate_den": rate_den, "expires": self.chain.next_time + expires_in_ms,
                "nonce": nonce, "key_id": key.key_id}
        return {**body, "signature": key.sign(quote_digest(body)).hex()}

    def check_supply(self) -> None:
        """Per currency, outstanding supply equals the money held (docs/adr/0009)."""
        items = ((k.decode(), decode_value(v)) for k, v in self.chain.state.items()
                 if k.startswith(b"trade/"))
        for currency, (supply, held) in holdings(items).items():
            assert supply == held, f"{currency}: supply {supply} != held {held}"


@pytest.fixture
def world() -> World:
    net = make_testnet(composition=3)
    chain = Chain(net.genesis)
    operator = net.admin_keys[0]
    keys = {"operator": operator}
    for org, roles in ORGS.items():
        key = PrivateKey.derive(f"trade-test/{org}")
        tx = chain.tx(operator, "consortium.register_organisation",
                      {"id": org, "name": org, "roles": list(roles),
                       "admin_key": key.public.hex()})
        assert not chain.block([tx]).rejected
        keys[org] = key
    return World(chain, keys)
