"""Disputes: opening, the panel draw, commit and reveal within deadlines, replacement of
absent panellists, the tally and the escrow's final move (docs/adr/0009-trade.md).

Most orders under dispute are put into state directly (an order holding its escrow,
the buyer's balance reduced by it, the juror pool), so those tests depend on orders.py's
functions and record only; the last test goes through the marketplace (listing,
placing, shipping, delivery filling the pool). The supply invariant is checked after
every block.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ledger.core.contract import BlockContext
from services.ledger.core.state import StateView, tree_from_items
from services.trade.disputes import (
    commitment_of,
    draw,
    draw_digest,
    juror_eligible,
    tally,
)
from services.trade.vocabulary import BPS, COMMIT_MS, DAY_MS, JUROR_WINDOW_MS, REVEAL_MS
from tests.trade.conftest import World, digest, tag
from tests.trade.market_world import add_org, publish_listing, put_state
from tests.trade.order_world import FEE_BPS, configure_fee, deliver, install_order_path, place, ship

MERCHANT = "shenzhen-gadgets"
POOL = ("ben", "chloe", "dario", "eva", "fritz")
HALF_DAY = DAY_MS // 2


# --- helpers -----------------------------------------------------------------------------------

def eur(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "EUR"}


def order(world: World, buyer: str, label: str, *, amount: int = 10_000,
          status: str = "delivered") -> str:
    """An order of ``buyer`` at the merchant holding ``amount`` in escrow."""
    world.fund(buyer, amount)
    order_id = hashlib.sha256(f"order/{label}".encode()).hexdigest()
    now = world.chain.time
    record = {"id": order_id, "buyer": buyer, "merchant": MERCHANT, "listing": "kettle",
              "quantity": 1, "unit_price": eur(amount), "shipping": {
                  "method": "rail", "price": eur(0), "days": 18},
              "ship_to": "DE", "address": digest(f"address/{buyer}"),
              "total": eur(amount), "paid": eur(amount), "quote": None,
              "escrow": eur(amount if status not in ("settled", "refunded") else 0),
              "status": status, "created": now, "shipment": None, "shipped_at": now,
              "delivered_at": now if status == "delivered" else None, "dispute": None,
              "return": None, "closed_at": None, "released": eur(0), "refunded": eur(0),
              "fee": eur(0), "counted": False}
    left = world.balance(buyer) - amount
    put_state(world, {f"trade/order/{order_id}": record,
                      f"trade/balance/{buyer}/EUR": left or None})
    if status in ("settled", "refunded"):  # the escrow went somewhere: keep supply = held
        put_state(world, {f"trade/balance/{MERCHANT}/EUR": world.balance(MERCHANT) + amount})
    world.check_supply()
    return order_id


def pool(world: World, entries: Iterable[tuple[str, int]]) -> None:
    put_state(world, {"trade/jurors": [[org, at] for org, at in entries]})


def advance(world: World, until: int) -> None:
    """Empty blocks every half day up to (not including) ``until``: a deadline walk
    covers at most one day per block."""
    while world.chain.time + HALF_DAY < until:
        world.chain.block([], time=world.chain.time + HALF_DAY)
        world.check_supply()


def salt(label: str) -> str:
    return hashlib.sha256(f"salt/{label}".encode()).hexdigest()


def open_payload(order_id: str, *, claim_bps: int = BPS, reason: str = "damaged",
                 evidence: list[str] | None = None) -> dict[str, Any]:
    return {"order": order_id, "reason": reason, "claim_bps": claim_bps,
            "evidence": evidence if evidence is not None else [digest("photo")]}


def ballot(dispute: str, org: str, vote: str, bps: int) -> dict[str, Any]:
    return {"dispute": dispute, "vote": vote, "refund_bps": bps, "salt": salt(org + dispute)}


def commit(world: World, dispute: str, org: str, vote: str, bps: int) -> None:
    world.ok(org, "commit_vote", {"dispute": dispute, "commitment": commitment_of(
        dispute, org, vote, bps, salt(org + dispute))})


class Court:
    """An open dispute whose panel was drawn."""

    def __init__(self, world: World, buyer: str, order_id: str, claim_bps: int = BPS
                 ) -> None:
        opened = world.ok(buyer, "open_dispute", open_payload(order_id, claim_bps=claim_bps))
        (event,) = world.events(opened, "trade.dispute.opened")
        self.world, self.id, self.order = world, event["dispute"], order_id
        drawn = world.chain.block([])
        (self.drawn,) = world.events(drawn, "trade.dispute.panel_drawn")
        self.jurors: list[str] = self.drawn["jurors"]
        self.moderator: str | None = self.drawn["moderator"]

    @property
    def record(self) -> dict[str, Any]:
        value = self.world.get(f"dispute/{self.id}")
        assert isinstance(value, dict)
        return value

    @property
    def panel(self) -> list[str]:
        return [*self.jurors, *([self.moderator] if self.moderator else [])]


@pytest.fixture
def court_world(world: World) -> World:
    """Moderator ``operator``; ``anna`` buys; in the pool: ben, chloe, dario (eligible),
    eva (shares anna's payment account), fritz (last delivery over a year ago), anna."""
    world.ok("operator", "set_moderators", {"orgs": ["operator"]})
    world.ok("paybank", "issue", {"to": "eva", "money": eur(1), "reference": "eva-1",
                                  "account_tag": tag("anna")})
    now = world.chain.time
    pool(world, [("fritz", now - JUROR_WINDOW_MS - 1), ("ben", now), ("chloe", now),
                 ("dario", now), ("eva", now), ("anna", now)])
    return world


# --- the encodings, the draw and the tally (pure) ----------------------------------------------

def test_the_commitment_is_the_documented_bytes() -> None:
    dispute, org = "ab" * 32, "ben"
    expected = hashlib.sha256(
        b"ecosphere/trade/vote/v1\x00" + dispute.encode() + b"\x00ben\x00split\x002500\x00"
        + salt("x").encode()).hexdigest()
    assert commitment_of(dispute, org, "split", 2500, salt("x")) == expected
    assert commitment_of(dispute, "chloe", "split", 2500, salt("x")) != expected


def test_the_draw_hash_is_the_documented_bytes() -> None:
    seed, dispute = bytes(range(32)), "cd" * 32
    expected = hashlib.sha256(
        b"ecosphere/trade/draw/v1\x00juror\x00" + seed + bytes.fromhex(dispute)
        + (2).to_bytes(4, "big") + (7).to_bytes(4, "big")).digest()
    assert draw_digest(seed, dispute, 2, "juror", 7) == expected


ORGS = [f"org-{i}" for i in range(12)]


@settings(max_examples=200, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), dispute=st.binary(min_size=32, max_size=32),
       round_=st.integers(0, 3), count=st.integers(0, 6),
       candidates=st.lists(st.sampled_from(ORGS), max_size=20),
       excluded=st.sets(st.sampled_from(ORGS)))
def test_the_draw_is_a_deterministic_sample_of_the_eligible(
        seed: bytes, dispute: bytes, round_: int, count: int, candidates: list[str],
        excluded: set[str]) -> None:
    def eligible(org: str) -> bool:
        return org not in excluded

    chosen = draw(seed, dispute.hex(), round_, "juror", candidates, count, eligible)
    assert chosen == draw(seed, dispute.hex(), round_, "juror", candidates, count, eligible)
    assert len(chosen) == len(set(chosen))
    assert not set(chosen) & excluded
    assert set(chosen) <= set(candidates)
    assert len(chosen) == min(count, len(set(candidates) - excluded))


def test_the_draw_is_uniform_over_seeds() -> None:
    candidates = [f"org-{i}" for i in range(10)]
    seats: Counter[str] = Counter()
    first: Counter[str] = Counter()
    runs = 4_000
    for n in range(runs):
        seed = hashlib.sha256(n.to_bytes(4, "big")).digest()
        chosen = draw(seed, "ef" * 32, 0, "juror", candidates, 3,
                      lambda org: org != "org-9")
        seats.update(chosen)
        first[chosen[0]] += 1
    assert "org-9" not in seats
    # each of 9 eligible sits in 3/9 of the runs (within 10 %: 4.5 standard deviations)
    # and heads the panel in 1/9 (within 20 %: 4.4 standard deviations)
    for org in candidates[:9]:
        assert abs(seats[org] * 9 - runs * 3) * 10 <= runs * 3
        assert abs(first[org] * 9 - runs) * 5 <= runs


def _scope(orgs: dict[str, str], tags: dict[str, list[str]], now: int) -> BlockContext:
    items: list[tuple[str, Any]] = [
        (f"consortium/org/{org}", {"id": org, "name": org, "roles": ["consumer"],
                                   "status": status, "since": 0})
        for org, status in orgs.items()]
    items += [(f"trade/tags/{org}", list(t)) for org, t in tags.items()]
    view = StateView(tree_from_items(items))
    return BlockContext(view, "trade", [], None, 1, now)


@settings(max_examples=100, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32),
       related=st.sets(st.sampled_from(ORGS[2:]), max_size=6),
       suspended=st.sets(st.sampled_from(ORGS[2:]), max_size=3),
       taken=st.sets(st.sampled_from(ORGS[2:]), max_size=3))
def test_a_juror_is_never_a_party_related_suspended_or_drawn_before(
        seed: bytes, related: set[str], suspended: set[str], taken: set[str]) -> None:
    buyer, merchant = ORGS[0], ORGS[1]
    tags = {buyer: [tag("b")], merchant: [tag("m")]}
    for i, org in enumerate(sorted(related)):
        tags[org] = [tag(f"own-{org}"), tag("b") if i % 2 else tag("m")]
    ctx = _scope({org: "suspended" if org in suspended else "active" for org in ORGS},
                 tags, 0)
    eligible = juror_eligible(ctx, (buyer, merchant), taken)
    chosen = draw(seed, "01" * 32, 0, "juror", ORGS, 3, eligible)
    assert not set(chosen) & {buyer, merchant, *related, *suspended, *taken}
    allowed = set(ORGS) - {buyer, merchant, *related, *suspended, *taken}
    assert len(chosen) == min(3, len(allowed))


def _seat(vote: str, bps: int, seat: str = "juror", status: str = "revealed"
          ) -> dict[str, Any]:
    return {"seat": seat, "status": status, "vote": vote, "refund_bps": bps}


def test_the_tally() -> None:
    none = {"release": 0, "split": 0, "refund": 0}
    assert tally([]) == ("release", 0, none, "default")
    assert tally([_seat("refund", BPS, status="committed")])[3] == "default"
    assert tally([_seat("refund", BPS), _seat("refund", BPS), _seat("release", 0)])[:2] == \
        ("refund", BPS)
    # split at the lower median of the split votes (an even count: integers only)
    option, share, votes, basis = tally([_seat("split", 3000), _seat("split", 7000),
                                         _seat("split", 2000), _seat("split", 9000),
                                         _seat("release", 0)])
    assert (option, share, basis) == ("split", 3000, "majority")
    assert votes == {"release": 1, "split": 4, "refund": 0}
    # a tie goes to the moderator's vote...
    assert tally([_seat("refund", BPS), _seat("refund", BPS), _seat("release", 0),
                  _seat("release", 0, "moderator")])[::3] == ("release", "moderator")
    assert tally([_seat("refund", BPS), _seat("release", 0),
                  _seat("split", 4000, "moderator")])[:2] == ("split", 4000)
    # ...and without it to the least change: release, then split, then refund
    assert tally([_seat("refund", BPS), _seat("split", 5000)])[::3] == ("split", "default")
    assert tally([_seat("refund", BPS), _seat("release", 0),
                  _seat("refund", BPS, "moderator", "unrevealed")])[::3] == \
        ("release", "default")


# --- opening ---------------------------------------------------------------------------------

def test_only_the_buyer_opens_a_dispute_about_an_open_order(court_world: World) -> None:
    world = court_world
    delivered = order(world, "anna", "a1")
    assert world.code("ben", "open_dispute", open_payload(delivered)) == "forbidden"
    assert world.code("anna", "open_dispute", open_payload("00" * 32)) == "not_found"
    for status in ("paid", "settled", "refunded", "returning"):
        undisputable = order(world, "anna", f"a-{status}", status=status)
        assert world.code("anna", "open_dispute", open_payload(undisputable)) == \
            "order_not_disputable"
    bad: list[dict[str, Any]] = [
        open_payload(delivered, reason="changed_my_mind"),
        open_payload(delivered, reason=["damaged"]),  # type: ignore[arg-type]
        open_payload(delivered, claim_bps=BPS + 1),
        open_payload(delivered, claim_bps=-1),
        open_payload(delivered, evidence=[]),
        open_payload(delivered, evidence=[digest("x"), digest("x")]),
        open_payload(delivered, evidence=[digest(str(i)) for i in range(17)]),
        open_payload(delivered, evidence=["not a digest"]),
        {**open_payload(delivered), "order": "ZZ"}]
    for payload in bad:
        assert world.code("anna", "open_dispute", payload) == "bad_payload", payload
    result = world.ok("anna", "open_dispute", open_payload(delivered, claim_bps=4000))
    (opened,) = world.events(result, "trade.dispute.opened")
    assert opened == {"dispute": opened["dispute"], "order": delivered, "buyer": "anna",
                      "merchant": MERCHANT, "reason": "damaged", "claim_bps": 4000,
                      "evidence": [digest("photo")]}
    assert world.get(f"order/{delivered}")["status"] == "disputed"
    assert world.get(f"dispute/{opened['dispute']}")["status"] == "drawing"
    assert world.code("anna", "open_dispute", open_payload(delivered)) == "already_disputed"
    assert world.code("anna", "confirm_receipt", {"order": delivered}) == "order_frozen"


def test_a_shipped_order_is_disputable_and_a_moderator_is_required(world: World) -> None:
    shipped = order(world, "anna", "s1", status="shipped")
    assert world.code("anna", "open_dispute", open_payload(shipped)) == "no_moderator"
    assert world.code("ben", "set_moderators", {"orgs": ["operator"]}) == "forbidden"
    assert world.code("operator", "set_moderators", {"orgs": ["paybank"]}) == "not_found"
    for orgs in ([], ["operator", "operator"], "operator", ["Operator!"]):
        assert world.code("operator", "set_moderators", {"orgs": orgs}) == "bad_payload"
    result = world.ok("operator", "set_moderators", {"orgs": ["operator"]})
    assert world.events(result, "trade.moderators.changed") == [
        {"orgs": ["operator"], "by": "operator"}]
    world.ok("anna", "open_dispute", open_payload(shipped))


# --- a whole dispute ----------------------------------------------------------------------------

def test_a_panel_decides_a_split_and_the_escrow_moves(court_world: World) -> None:
    world = court_world
    court = Court(world, "anna", order(world, "anna", "a1"), claim_bps=8000)
    # the only eligible jurors: not the buyer, not eva (anna's account), not fritz (stale)
    assert sorted(court.jurors) == ["ben", "chloe", "dario"]
    assert court.moderator == "operator"
    assert court.drawn["commit_deadline"] == world.chain.time + COMMIT_MS
    assert court.record["status"] == "commit"
    votes = {"ben": ("refund", BPS), "chloe": ("split", 4000), "dario": ("split", 6000),
             "operator": ("split", 5000)}
    for org in court.panel[:-1]:
        commit(world, court.id, org, *votes[org])
    assert court.record["status"] == "commit"
    last = world.ok(court.panel[-1], "commit_vote", {
        "dispute": court.id, "commitment": commitment_of(
            court.id, court.panel[-1], *votes[court.panel[-1]],
            salt(court.panel[-1] + court.id))})
    # every seat committed: the reveal opens at once
    assert world.events(last, "trade.dispute.reveal_opened") == [{
        "dispute": court.id, "order": court.order,
        "reveal_deadline": world.chain.time + REVEAL_MS}]
    balance = world.balance("anna")
    for org in court.panel[:-1]:
        result = world.ok(org, "reveal_vote", ballot(court.id, org, *votes[org]))
        assert world.events(result, "trade.dispute.vote_revealed") == [{
            "dispute": court.id, "panellist": org, "vote": votes[org][0],
            "refund_bps": votes[org][1]}]
    result = world.ok(court.panel[-1], "reveal_vote",
                      ballot(court.id, court.panel[-1], *votes[court.panel[-1]]))
    (decided,) = world.events(result, "trade.dispute.decided")
    assert decided == {"dispute": court.id, "order": court.order, "outcome": "split",
                       "refund_bps": 5000, "basis": "majority",
                       "votes": {"release": 0, "split": 3, "refund": 1},
                       "absent": [], "unrevealed": []}
    assert world.balance("anna") == balance + 5_000
    assert world.get(f"order/{court.order}")["status"] == "split"
    assert court.record["status"] == "decided"
    assert world.get("juror_record/chloe") == {
        "drawn": 1, "served": 1, "coherent": 1, "absent": 0, "unrevealed": 0}
    assert world.get("juror_record/ben")["coherent"] == 0
    assert world.code("ben", "reveal_vote", ballot(court.id, "ben", *votes["ben"])) == \
        "dispute_closed"
    assert world.code("anna", "open_dispute", open_payload(court.order)) == \
        "already_disputed"


def test_the_award_never_exceeds_the_claim(court_world: World) -> None:
    world = court_world
    court = Court(world, "anna", order(world, "anna", "a1"), claim_bps=3000)
    for org in court.panel:
        commit(world, court.id, org, "refund", BPS)
    balance = world.balance("anna")
    for org in court.panel:
        result = world.ok(org, "reveal_vote", ballot(court.id, org, "refund", BPS))
    (decided,) = world.events(result, "trade.dispute.decided")
    assert (decided["outcome"], decided["refund_bps"]) == ("split", 3000)
    assert world.balance("anna") == balance + 3_000


def test_voting_is_refused_out_of_turn_twice_or_wrongly(court_world: World) -> None:
    world = court_world
    court = Court(world, "anna", order(world, "anna", "a1"))
    juror = court.jurors[0]
    good = {"dispute": court.id,
            "commitment": commitment_of(court.id, juror, "refund", BPS, salt(juror + court.id))}
    assert world.code("eva", "commit_vote", good) == "not_on_panel"
    assert world.code("anna", "commit_vote", good) == "not_on_panel"
    assert world.code(juror, "commit_vote", {**good, "dispute": "00" * 32}) == "not_found"
    assert world.code(juror, "commit_vote", {**good, "commitment": "xyz"}) == "bad_payload"
    world.ok(juror, "commit_vote", good)
    assert world.code(juror, "commit_vote", good) == "already_committed"
    reveal = ballot(court.id, juror, "refund", BPS)
    assert world.code(juror, "reveal_vote", reveal) == "reveal_not_open"
    bad_votes: list[dict[str, Any]] = [
        {**reveal, "vote": "maybe"}, {**reveal, "vote": None},
        {**reveal, "vote": "release", "refund_bps": 100},
        {**reveal, "vote": "refund", "refund_bps": 9_999},
        {**reveal, "vote": "split", "refund_bps": 0},
        {**reveal, "vote": "split", "refund_bps": BPS},
        {**reveal, "refund_bps": "10000"}, {**reveal, "salt": "00"}]
    for payload in bad_votes:
        assert world.code(juror, "reveal_vote", payload) == "bad_payload", payload
    copycat = court.panel[1]  # commits the juror's commitment, to echo its reveal
    world.ok(copycat, "commit_vote", good)
    for org in court.panel[2:]:
        commit(world, court.id, org, "release", 0)
    assert court.record["status"] == "reveal"
    assert world.code(juror, "commit_vote", good) == "already_committed"
    assert world.code(juror, "reveal_vote", {**reveal, "vote": "release", "refund_bps": 0}
                      ) == "commitment_mismatch"
    assert world.code(juror, "reveal_vote", {**reveal, "salt": salt("other")}) == \
        "commitment_mismatch"
    world.ok(juror, "reveal_vote", reveal)
    # the panellist is bound into the commitment: the copy does not open with its reveal
    assert world.code(copycat, "reveal_vote", reveal) == "commitment_mismatch"
    assert world.code(juror, "reveal_vote", reveal) == "already_revealed"
    assert world.code("eva", "reveal_vote", ballot(court.id, "eva", "release", 0)) == \
        "not_on_panel"


def test_a_late_commit_is_refused_and_a_late_reveal_too(court_world: World) -> None:
    world = court_world
    court = Court(world, "anna", order(world, "anna", "a1"))
    late = court.panel[-1]
    for org in court.panel[:-1]:
        commit(world, court.id, org, "refund", BPS)
    deadline = court.record["commit_deadline"]
    advance(world, deadline)
    # the deadline fires in the block before the transactions: the seat is absent
    assert world.code(late, "commit_vote", {
        "dispute": court.id, "commitment": "00" * 32}, time=deadline) == "commit_closed"
    record = court.record
    assert record["status"] == "reveal"  # no one left to draw in: the reveal opened
    assert [s["status"] for s in record["panel"] if s["org"] == late] == ["absent"]
    assert world.code(late, "reveal_vote", ballot(court.id, late, "refund", BPS)) == \
        "no_commitment"
    # a block after a long pause: the deadline walk lags, block time still decides
    juror = court.panel[0]
    assert world.code(juror, "reveal_vote", ballot(court.id, juror, "refund", BPS),
                      time=record["reveal_deadline"] + DAY_MS) == "reveal_closed"


# --- absent panellists, defaults ------------------------------------------------------------------

def test_absent_panellists_are_replaced_and_recorded(world: World) -> None:
    add_org(world, "moderation-eu", ["platform"])
    world.ok("operator", "set_moderators", {"orgs": ["moderation-eu", "operator"]})
    now = world.chain.time
    pool(world, [(org, now) for org in POOL])
    court = Court(world, "anna", order(world, "anna", "a1"))
    assert len(court.jurors) == 3 and court.moderator in ("moderation-eu", "operator")
    present, absent = court.jurors[:2], court.jurors[2]
    for org in present:
        commit(world, court.id, org, "refund", BPS)
    deadline = court.record["commit_deadline"]
    advance(world, deadline)
    result = world.chain.block([], time=deadline)
    replaced = world.events(result, "trade.dispute.juror_replaced")
    assert sorted(e["absent"] for e in replaced) == sorted([absent, court.moderator])
    by_absent = {e["absent"]: e for e in replaced}
    assert by_absent[absent]["replacement"] in set(POOL) - set(court.jurors)
    assert by_absent[absent]["seat"] == "juror" and by_absent[absent]["round"] == 1
    assert by_absent[court.moderator]["replacement"] == (
        {"moderation-eu", "operator"} - {court.moderator}).pop()
    assert by_absent[absent]["commit_deadline"] == deadline + COMMIT_MS
    assert world.get(f"juror_record/{absent}")["absent"] == 1
    # the absent one's window is over; the replacements have a new one
    assert world.code(absent, "commit_vote", {"dispute": court.id,
                                              "commitment": "00" * 32}) == "commit_closed"
    assert world.code(present[0], "commit_vote", {"dispute": court.id,
                                                  "commitment": "00" * 32}
                      ) == "already_committed"
    new = [e["replacement"] for e in replaced]
    for org in new:
        commit(world, court.id, org, "release", 0)
    assert court.record["status"] == "reveal" and court.record["round"] == 1
    for org in [*present, *new]:
        vote = ("release", 0) if org in new else ("refund", BPS)
        result = world.ok(org, "reveal_vote", ballot(court.id, org, *vote))
    (decided,) = world.events(result, "trade.dispute.decided")
    # 2 refund, 2 release (one the moderator's): the tie goes to the moderator
    assert (decided["outcome"], decided["basis"]) == ("release", "moderator")
    assert sorted(decided["absent"]) == sorted([absent, court.moderator])
    assert world.get(f"order/{court.order}")["status"] == "settled"


def test_with_no_juror_the_moderator_alone_decides(world: World) -> None:
    world.ok("operator", "set_moderators", {"orgs": ["operator"]})
    court = Court(world, "anna", order(world, "anna", "a1"))
    assert (court.jurors, court.moderator) == ([], "operator")
    commit(world, court.id, "operator", "refund", BPS)
    balance = world.balance("anna")
    result = world.ok("operator", "reveal_vote", ballot(court.id, "operator", "refund", BPS))
    (decided,) = world.events(result, "trade.dispute.decided")
    assert (decided["outcome"], decided["basis"]) == ("refund", "majority")
    assert world.balance("anna") == balance + 10_000
    assert world.get(f"order/{court.order}")["status"] == "refunded"


def test_silence_releases_after_every_redraw(court_world: World) -> None:
    world = court_world
    court = Court(world, "anna", order(world, "anna", "a1"))
    merchant = world.balance(MERCHANT)
    rounds = 0
    while court.record["status"] == "commit":
        deadline = court.record["commit_deadline"]
        advance(world, deadline)
        result = world.chain.block([], time=deadline)
        rounds += 1
    (decided,) = world.events(result, "trade.dispute.decided")
    # the pool had only three eligible jurors and one moderator: nobody to redraw
    assert rounds == 1
    assert [(e["absent"], e["replacement"]) for e in world.events(
        result, "trade.dispute.juror_replaced")] == [(org, None) for org in court.panel]
    assert (decided["outcome"], decided["basis"], decided["refund_bps"]) == \
        ("release", "default", 0)
    assert sorted(decided["absent"]) == sorted(court.panel)
    assert world.balance(MERCHANT) == merchant + 10_000
    world.check_supply()


def test_redraws_stop_after_the_last_round(world: World) -> None:
    world.ok("operator", "set_moderators", {"orgs": ["operator"]})
    now = world.chain.time
    many = [f"juror-{i}" for i in range(16)]
    for org in many:
        add_org(world, org, ["consumer"])
    pool(world, [(org, now) for org in many])
    court = Court(world, "anna", order(world, "anna", "a1"))
    committed = court.panel[0]
    commit(world, court.id, committed, "split", 2500)
    replaced: list[dict[str, Any]] = []
    while court.record["status"] == "commit":
        deadline = court.record["commit_deadline"]
        advance(world, deadline)
        result = world.chain.block([], time=deadline)
        replaced += world.events(result, "trade.dispute.juror_replaced")
    # round 0: two jurors replaced, the moderator dropped (no other moderator); rounds 1
    # and 2: both replacements absent and replaced; round 3 is the last: both dropped
    assert [(e["round"], e["seat"], e["replacement"] is None) for e in replaced] == [
        (1, "juror", False), (1, "juror", False), (1, "moderator", True),
        (2, "juror", False), (2, "juror", False), (3, "juror", False), (3, "juror", False),
        (3, "juror", True), (3, "juror", True)]
    assert court.record["status"] == "reveal" and court.record["round"] == 3
    assert len({e["replacement"] for e in replaced} - {None}) == 6
    result = world.ok(committed, "reveal_vote", ballot(court.id, committed, "split", 2500))
    (decided,) = world.events(result, "trade.dispute.decided")
    assert (decided["outcome"], decided["refund_bps"]) == ("split", 2500)
    assert len(decided["absent"]) == 3 + 2 + 2 + 2


def test_an_unrevealed_vote_is_recorded(court_world: World) -> None:
    world = court_world
    court = Court(world, "anna", order(world, "anna", "a1"))
    for org in court.panel:
        commit(world, court.id, org, "refund", BPS)
    for org in court.panel[:2]:
        world.ok(org, "reveal_vote", ballot(court.id, org, "refund", BPS))
    deadline = court.record["reveal_deadline"]
    advance(world, deadline)
    result = world.chain.block([], time=deadline)
    (decided,) = world.events(result, "trade.dispute.decided")
    assert (decided["outcome"], decided["votes"]["refund"]) == ("refund", 2)
    assert sorted(decided["unrevealed"]) == sorted(court.panel[2:])
    assert world.get(f"juror_record/{court.panel[3]}")["unrevealed"] == 1
    world.check_supply()


# --- through the marketplace ---------------------------------------------------------------------

def test_a_dispute_through_the_real_order_flow(world: World,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Orders placed, shipped and delivered through orders.py fill the juror pool; a
    shipped order is disputed, delivered while frozen, and the panel's split pays the
    buyer its share and the merchant the rest less the platform's fee."""
    install_order_path(monkeypatch)
    configure_fee(world)
    listing = publish_listing(world)
    world.ok("operator", "set_moderators", {"orgs": ["operator"]})
    for buyer in POOL:
        delivered = place(world, buyer, listing)
        ship(world, delivered)
        deliver(world, delivered)
    assert [org for org, _ in world.get("jurors")] == list(POOL)
    disputed = place(world, "anna", listing)
    ship(world, disputed)
    total = world.get(f"order/{disputed}")["escrow"]["amount"]
    court = Court(world, "anna", disputed, claim_bps=BPS)
    assert len(court.jurors) == 3 and set(court.jurors) <= set(POOL)
    deliver(world, disputed)  # the parcel arrives meanwhile: the dispute still decides
    assert world.get(f"order/{disputed}")["status"] == "disputed"
    for org in court.panel:
        commit(world, court.id, org, "split", 2000)
    anna, merchant = world.balance("anna"), world.balance(MERCHANT)
    for org in court.panel:
        world.ok(org, "reveal_vote", ballot(court.id, org, "split", 2000))
    to_buyer = total * 2000 // BPS
    fee = (total - to_buyer) * FEE_BPS // BPS
    assert world.balance("anna") == anna + to_buyer
    assert world.balance(MERCHANT) == merchant + total - to_buyer - fee
    record = world.get(f"order/{disputed}")
    assert record["status"] == "split" and record["escrow"]["amount"] == 0
    advance_to = world.chain.time + 8 * DAY_MS  # the confirmation window changes nothing
    advance(world, advance_to)
    assert world.get(f"order/{disputed}")["status"] == "split"
