"""Thousands of random order lifecycles on one chain per seed: place (in euro, or in
yuan under a quote), pay, cancel, ship, track, deliver, confirm, dispute and decide,
let windows lapse on block time (confirmation, late shipment, legs, returns), return,
refund.

After every block: the supply invariant (``World.check_supply``) and that every order
moved only along the state machine of docs/adr/0009-trade.md (a terminal order never
changes, but for the right of withdrawal reaching past a release). At the end, every
order is in exactly one terminal state, its escrow is empty and accounted for exactly
once by its events (released + fee + refunded + split == total), and the listings'
stock is what the lifecycles left.

Shipping is logistics' real path: the merchant's ``trade.create_shipment``, the
carrier's ``departing`` event captured in trace, its ``trade.confirm_delivery``; a
return parcel likewise from the buyer. A dispute's opening and decision go through the
test-only path of order_world.py (``orders.freeze`` then ``release`` / ``refund`` /
``split``): the panels are tests/trade/test_disputes.py's subject. A seed and the
commit reproduce a run exactly; failing seeds are fixed, never skipped.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.execution import BlockExecution
from services.trade.orders import TERMINAL
from services.trade.vocabulary import DAY_MS
from tests.trade.conftest import World, tag
from tests.trade.market_world import MERCHANT, add_org, publish_listing
from tests.trade.order_world import address, configure_fee, install_order_path, order_payload
from tests.trade.shipping_world import CARRIER, HOUR_MS, LAST_MILE, leg, tracking_event

SEEDS = (1, 2, 3)
LIFECYCLES = 700  # per seed
BUYERS = 48
KEYS = 48  # keys of the merchant, each carrier and the clerk: one transaction per key a block
STOCK = 10**6

#: status -> statuses one block may lead to (a deadline and a transaction may both act)
NEXT: dict[str, set[str]] = {
    "paid": {"shipped", "refunded"},
    "shipped": {"delivered", "disputed", "settled", "refunded", "split"},
    "delivered": {"settled", "disputed", "returning", "refunded", "split"},
    "disputed": {"settled", "refunded", "split"},
    "returning": {"refunded", "settled"},
    "settled": {"returning", "refunded"},  # the right of withdrawal outlives the release
    "refunded": set(),
    "split": set(),
}

#: what every seed must have exercised (else the run proves less than it claims)
EXERCISED = frozenset({
    "paid under a quote", "trade.order.cancelled", "trade.order.shipped",
    "trade.order.delivered", "confirmed by the buyer", "confirmed by the window",
    "trade.penalty.applied", "trade.escrow.split", "trade.return.authorised",
    "trade.return.refunded", "trade.return.lapsed", "return refunded by the merchant",
    "trade.shipment.departed", "trade.shipment.delivered", "trade.leg.late",
    "refused:total_mismatch", "refused:order_not_cancellable", "refused:order_closed"})

Step = tuple[str, str, dict[str, Any]]  # sender organisation, kind, payload


@dataclass
class Driver:
    world: World
    rng: random.Random
    listings: list[dict[str, Any]]
    buyers: list[str]
    keyring: dict[str, list[PrivateKey]]
    orders: dict[str, str] = field(default_factory=dict)  # id -> status after last block
    quantity: dict[str, int] = field(default_factory=dict)
    escrow_out: Counter[str] = field(default_factory=Counter)
    releases: Counter[str] = field(default_factory=Counter)
    restocked: Counter[str] = field(default_factory=Counter)
    abandoned: set[str] = field(default_factory=set)  # returns never sent back
    seen: Counter[str] = field(default_factory=Counter)  # event types, refusal codes
    blocks: int = 0
    serial: int = 0
    now: int = 0  # the time of the block being planned

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    # --- one block -------------------------------------------------------------------------

    def block(self, planned: list[Step], time: int) -> None:
        """``planned``: at most as many steps per organisation as it has keys."""
        free = {org: iter(keys) for org, keys in self.keyring.items()}
        txs = [self.world.chain.tx(next(free[org]), kind, payload, created_at=time)
               for org, kind, payload in planned]
        result = self.world.chain.block(txs, time=time)
        self.blocks += 1
        self.world.check_supply()
        self.seen.update(f"refused:{r.code}" for r in result.rejected)
        acted = {str(p.get("order") or p.get("return_of")) for _, _, p in planned}
        self.observe(result, acted)

    def observe(self, result: BlockExecution, acted: set[str]) -> None:
        """Follow the block's events; check every order that could have moved: the open
        ones, and any closed one a transaction or an event named."""
        touched = set(acted)
        for event in result.events:
            a = event.attributes
            self.seen[event.type] += 1
            if "order" in a:
                touched.add(str(a["order"]))
            if event.type == "trade.order.confirmed":
                self.seen[f"confirmed by the {a['by']}"] += 1
            elif event.type == "trade.order.paid" and a["quote_provider"] is not None:
                self.seen["paid under a quote"] += 1
            elif event.type == "trade.order.placed":
                self.orders[a["order"]] = "paid"
                self.quantity[a["order"]] = a["quantity"]
            elif event.type == "trade.escrow.released":
                self.escrow_out[a["order"]] += a["money"]["amount"] + a["fee"]["amount"]
                self.releases[a["order"]] += 1
            elif event.type == "trade.escrow.refunded":
                self.escrow_out[a["order"]] += a["money"]["amount"]
                self.restocked[a["order"]] += a["reason"] == "cancelled"
            elif event.type == "trade.escrow.split":
                self.escrow_out[a["order"]] += (a["refunded"]["amount"]
                                                + a["money"]["amount"] + a["fee"]["amount"])
            elif event.type == "trade.return.refunded":
                self.restocked[a["order"]] += 1
                self.seen["return refunded by the merchant"] += a["balance"] > 0
        for order_id, before in self.orders.items():
            if before in TERMINAL and order_id not in touched:
                continue  # only a transaction moves a closed order (a return): touched
            now = self.world.get(f"order/{order_id}")["status"]
            assert now == before or now in NEXT[before], (order_id, before, now)
            self.orders[order_id] = now

    # --- what to do with an order ----------------------------------------------------------

    def place(self, buyer: str) -> Step:
        listing = self.rng.choice(self.listings)
        payload = order_payload(listing, address(self.world, buyer),
                                quantity=self.rng.randint(1, 3),
                                method=self.rng.choice(("rail", "air")),
                                ship_to=self.rng.choice(("DE", "FR", "PL")))
        if self.rng.random() < 0.2:  # the buyer pays in yuan
            payload["quote"] = self.world.quote(
                "CNY", "EUR", self.rng.randint(120, 140), 1_000,
                expires_in_ms=self.now - self.world.chain.next_time + 600_000,
                nonce=f"{self.next_serial():064x}")
        if self.rng.random() < 0.03:  # a wrong total: refused, nothing moves
            payload["total"] = {**payload["total"], "amount": payload["total"]["amount"] + 1}
        return buyer, "trade.place_order", payload

    def parcel(self, shipment_id: str | None, carrier: str) -> Step | None:
        """The next move of a parcel: its carrier's departure, then its delivery."""
        shipment = self.world.get(f"shipment/{shipment_id}") if shipment_id else None
        if shipment is None or shipment["status"] == "delivered":
            return None
        if shipment["status"] == "created":
            if self.rng.random() < 0.1:
                return None  # held at the origin: the departure deadline passes
            event = tracking_event(self.world, "departing", shipment["waybill"],
                                   carrier=carrier)
            return carrier, "trace.capture", {"events": [event]}
        return carrier, "trade.confirm_delivery", {"shipment": shipment_id,
                                                   "proof_digest": f"{self.serial:064x}"}

    def ship(self, order_id: str, sender: str, carrier: str, back: bool) -> Step:
        n = self.next_serial()
        now = self.now
        origin, destination = ("DEDUI", "CNXMN") if back else ("CNXMN", "DEDUI")
        return sender, "trade.create_shipment", {
            "shipment": f"s-{n}", "order" if not back else "return_of": order_id,
            "carrier": carrier, "waybill": f"W-{n}",
            "legs": [leg("rail", carrier, origin, destination, now + HOUR_MS,
                         now + 10 * DAY_MS)]}

    def act(self, order_id: str, status: str, finishing: bool) -> Step | None:
        """One random step of an order (sometimes a refused one), or None to wait."""
        record = self.world.get(f"order/{order_id}")
        buyer, merchant, ref = record["buyer"], record["merchant"], {"order": order_id}
        roll = self.rng.random()
        if status == "paid":
            if finishing or roll < 0.15:
                return self.rng.choice((buyer, merchant)), "trade.cancel_order", ref
            if roll < 0.75:
                return self.ship(order_id, merchant, CARRIER, back=False)
            return None  # late: the dispatch deadline pays the penalty
        if status == "shipped":
            if roll < 0.08:
                return "clerk", "trade.t_freeze", {**ref, "dispute": order_id}
            if roll < 0.12:
                return buyer, "trade.cancel_order", ref  # refused: shipped
            return self.parcel(record["shipment"], CARRIER)
        if status == "delivered":
            if roll < 0.3:
                return buyer, "trade.confirm_receipt", ref
            if roll < 0.45:
                if self.rng.random() < 0.25 and len(self.orders) < LIFECYCLES // 3:
                    self.abandoned.add(order_id)  # early: its lapse ends the run soon
                return buyer, "trade.request_return", {**ref, "reason": "withdrawal"}
            if roll < 0.5:
                return "clerk", "trade.t_freeze", {**ref, "dispute": order_id}
            return None  # silence: the window releases
        if status == "disputed":
            return self.decide(order_id, record)
        if status == "returning" or (status == "settled" and record["return"]):
            return self.send_back(order_id, buyer, finishing)
        if status == "settled" and not finishing and roll < 0.05:
            return buyer, "trade.request_return", {**ref, "reason": "defective"}
        if roll < 0.02:  # a closed order: every change is refused
            return buyer, "trade.confirm_receipt", ref
        return None

    def send_back(self, order_id: str, buyer: str, finishing: bool) -> Step | None:
        """The buyer's return parcel: shipped back unless abandoned, then carried (it may
        arrive after the return lapsed: refunded all the same)."""
        parcel = self.world.get(f"return_shipment/{order_id}")
        if parcel is not None:
            return self.parcel(parcel, LAST_MILE)
        if order_id in self.abandoned or self.orders[order_id] != "returning":
            return None
        if finishing or self.rng.random() < 0.6:
            return self.ship(order_id, buyer, LAST_MILE, back=True)
        return None

    def decide(self, order_id: str, record: dict[str, Any]) -> Step:
        roll = self.rng.random()
        if roll < 0.4:
            return "clerk", "trade.t_release", {"order": order_id}
        if roll < 0.7:
            return "clerk", "trade.t_refund", {"order": order_id,
                                               "amount": record["escrow"]["amount"]}
        return "clerk", "trade.t_split", {"order": order_id,
                                          "refund_bps": self.rng.randint(0, 10_000)}

    # --- rounds ---------------------------------------------------------------------------

    def round(self, placing: int, finishing: bool = False) -> None:
        self.now = self.world.chain.time + self.step_ms(finishing)  # the block's time
        planned: list[Step] = []
        budget = {org: len(keys) for org, keys in self.keyring.items()}
        idle_buyers = list(self.buyers)
        self.rng.shuffle(idle_buyers)
        for buyer in idle_buyers[:placing]:
            planned.append(self.place(buyer))
            budget[buyer] -= 1
        live = [o for o, s in self.orders.items() if s not in ("refunded", "split")]
        self.rng.shuffle(live)
        for order_id in live[:160]:
            step = self.act(order_id, self.orders[order_id], finishing)
            if step is None or budget[step[0]] == 0:
                continue  # one transaction per key and block (nonces)
            budget[step[0]] -= 1
            planned.append(step)
        self.block(planned, self.now)

    def step_ms(self, finishing: bool) -> int:
        """The time to the next block: mostly hours and days, so windows close while
        orders are still being placed (a day is what one block's deadline walk covers)."""
        if finishing:
            return DAY_MS
        roll = self.rng.random()
        if roll < 0.2:
            return 1_000
        if roll < 0.55:
            return self.rng.randint(1, 12) * HOUR_MS
        return DAY_MS


def member_keys(world: World, org: str, count: int) -> list[PrivateKey]:
    keys = [PrivateKey.derive(f"lifecycles/{org}/{i}") for i in range(count - 1)]
    txs = [world.chain.tx(world.keys[org], "consortium.add_key", {
        "public_key": key.public.hex(), "permissions": ["member"]}) for key in keys]
    assert not world.chain.block(txs).rejected
    return [world.keys[org], *keys]


def _h(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def _all(world: World, txs: list[Any]) -> None:
    result = world.chain.block(txs)
    assert not result.rejected, [r.code for r in result.rejected]
    world.check_supply()


def enrol(world: World, buyers: list[str]) -> None:
    """Consumers with money in euro and yuan and a delivery address, a block a step."""
    keys = {org: PrivateKey.derive(f"lifecycles/{org}") for org in buyers}
    _all(world, [world.chain.tx(world.operator, "consortium.register_organisation", {
        "id": org, "name": org, "roles": ["consumer"], "admin_key": key.public.hex()})
        for org, key in keys.items()])
    world.keys.update(keys)
    _all(world, [world.chain.tx(world.keys["paybank"], "trade.issue", {
        "to": org, "money": {"amount": 10**11, "currency": currency},
        "reference": f"enrol-{org}-{currency}", "account_tag": tag(org)})
        for org in buyers for currency in ("EUR", "CNY")])
    _all(world, [world.chain.tx(key, "privacy.register_key", {
        "scope": "self", "public_key": _h(f"x25519/{org}"), "country": "DE"})
        for org, key in keys.items()])
    _all(world, [world.chain.tx(key, "privacy.create_record", {
        "category": "address", "jurisdiction": "DE", "holders": [f"key:{key.key_id}"],
        "commitment": _h(f"c/{org}"), "ciphertext_hash": _h(f"x/{org}"),
        "wrap_hashes": {f"key:{key.key_id}": _h(f"w/{org}")}})
        for org, key in keys.items()])


def setup(world: World, seed: int) -> Driver:
    configure_fee(world)
    listings = [publish_listing(world, "tea-1", stock=STOCK, late_shipment_penalty=200),
                publish_listing(world, "tea-2", stock=STOCK, price=999, dispatch_days=5,
                                return_days=30)]
    world.fund(MERCHANT, 50_000)
    world.ok(MERCHANT, "deposit", {"money": {"amount": 40_000, "currency": "EUR"}})
    buyers = [f"buyer-{i}" for i in range(BUYERS)]
    enrol(world, buyers)
    add_org(world, "clerk", ("platform",))
    keyring = {org: [world.keys[org]] for org in buyers}
    for org in (MERCHANT, CARRIER, LAST_MILE, "clerk"):
        keyring[org] = member_keys(world, org, KEYS)
    world.ok("paybank", "issue", {"to": "buyer-0", "money": {"amount": 1, "currency": "EUR"},
                                  "reference": "shared-account",
                                  "account_tag": tag(MERCHANT)})  # self-dealing
    return Driver(world, random.Random(seed), listings, buyers, keyring)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_lifecycles_keep_the_money_and_end_in_one_terminal_state(
        world: World, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    install_order_path(monkeypatch)
    driver = setup(world, seed)
    while len(driver.orders) < LIFECYCLES:
        driver.round(placing=driver.rng.randint(0, 24))
    for _ in range(200):  # then every order to its end, on block time
        if all(s in TERMINAL for s in driver.orders.values()):
            break
        driver.round(placing=0, finishing=True)
    placed = Counter[str]()
    for order_id, status in driver.orders.items():
        record = world.get(f"order/{order_id}")
        assert status in TERMINAL and record["status"] == status, (order_id, status)
        assert record["escrow"]["amount"] == 0
        assert driver.escrow_out[order_id] == record["total"]["amount"], order_id
        assert driver.releases[order_id] <= 1 and driver.restocked[order_id] <= 1
        placed[record["listing"]] += driver.quantity[order_id] * (
            1 - driver.restocked[order_id])
    for listing in driver.listings:
        stock = world.get(f"listing/{MERCHANT}/{listing['id']}")["stock"]
        assert stock == STOCK - placed[listing["id"]]
    ends = Counter(driver.orders.values())
    assert len(driver.orders) >= LIFECYCLES and set(ends) == TERMINAL, ends
    missed = sorted(EXERCISED - set(driver.seen))
    assert not missed, f"seed {seed} never exercised {missed}"
    print(f"seed {seed}: {len(driver.orders)} lifecycles, {driver.blocks} blocks "
          f"checked, ends {dict(ends)}, refusals "
          f"{ {k: v for k, v in driver.seen.items() if k.startswith('refused')} }")
