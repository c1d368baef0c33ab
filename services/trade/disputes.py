"""Disputes: a panel of verified buyers and a platform moderator decides a frozen escrow.

The paper's "multi-consumer co-management and common supervision" (Kleros-style): the
buyer of a shipped or delivered order opens a dispute with evidence (digests only:
documents and EPCIS events stay off chain); its escrow is frozen; a panel is drawn at
random from buyers who recently received an order and one platform moderator; each
panellist commits to a vote, then reveals it; the majority decides, finally.

Actions:

* ``trade.open_dispute {order, reason, claim_bps, evidence}`` by a key of the order's
  buyer while the order is ``shipped`` or ``delivered`` and was never disputed
  (``orders.freeze``). ``reason`` is one of :data:`REASONS`; ``claim_bps`` (0..10000)
  the share of the escrow claimed back; ``evidence`` 1..``EVIDENCE_MAX`` distinct
  64-hex digests. Refused with ``no_moderator`` while no moderator can sit.
* ``trade.set_moderators {orgs}`` by an admin key of a ``platform`` organisation:
  1..``MODERATORS_MAX`` active ``platform`` organisations the moderator is drawn from.
  (The consortium keeps no list of organisations; this one is explicit, so the
  platform decides who moderates and the draw reads one key.)
* ``trade.commit_vote {dispute, commitment}`` by an admin or member key of a
  panellist's organisation before the commit deadline.
* ``trade.reveal_vote {dispute, vote, refund_bps, salt}`` by the same organisation
  after the commit phase ended and before the reveal deadline. ``vote`` is
  ``release`` (``refund_bps`` 0), ``refund`` (10000) or ``split`` (1..9999).

The commitment (the SDK reproduces it; :func:`commitment_of`) is 64 lowercase hex
digits of::

    SHA-256( b"ecosphere/trade/vote/v1" 0x00 dispute 0x00 panellist 0x00 vote
             0x00 refund_bps 0x00 salt )

every field ASCII: ``dispute`` its 64 lowercase hex id, ``panellist`` the committing
organisation's id, ``vote`` the word, ``refund_bps`` in decimal without leading zeros
("0", "2500", "10000"), ``salt`` 64 lowercase hex digits (32 random bytes, kept secret
until the reveal). The panellist's id is bound in, so a panellist cannot copy another's
commitment and then echo its reveal.

The draw (:func:`draw`). The panel is drawn by the deadline ``draw`` in the first block
after the one that opened the dispute, from that block's ``ctx.seed`` (the state root
after the opening block): the buyer chooses the dispute id (its transaction's hash) and
knows the current root, so a draw inside the opening transaction would let it grind ids
for a friendly panel. Pick ``counter`` (0, 1, ...) of one round and seat kind takes
index ``H mod n`` of the ``n`` candidates not yet taken, where ``H`` is the big-endian
integer of::

    SHA-256( b"ecosphere/trade/draw/v1" 0x00 seat 0x00 seed dispute(32 bytes)
             round(4 bytes, big-endian) counter(4 bytes, big-endian) )

(``seat``: ``juror`` or ``moderator``); the taken candidate is swapped with the last
and the list shortened (without replacement); an ineligible one is discarded and the
draw goes on. The first ``k`` eligible are a uniform sample of the eligible (modulo
bias below n / 2^256). Jurors come from ``jurors`` (kept by ``orders.mark_delivered``)
with a delivery within ``JUROR_WINDOW_MS``, active, neither party, sharing no payment
account tag with either (``accounts.tags_of``), and never drawn before for this
dispute; the moderator from ``moderators``, active with role ``platform``, neither
party. Too small a pool gives a smaller panel; with no juror the moderator alone
decides; a dispute whose moderators all left by the draw goes on without one.

Phases (block time): ``commit`` for ``COMMIT_MS`` after the draw. At the commit
deadline every panellist without a commitment is recorded absent and replaced by a new
draw of its seat kind (``juror_replaced``; ``replacement`` null when nobody is left to
draw or after ``REDRAWS_MAX`` rounds); the window restarts (``COMMIT_MS``) for the
replacements only, the others' commitments stand. When every seat has committed (or
no replacement was drawn), ``reveal`` opens for ``REVEAL_MS``; when every committed
panellist has revealed (or the deadline passes), the dispute is decided. Either phase
closes early once nobody is awaited: a commitment is binding, so nothing is gained by
waiting. Nobody committed: decided at once, by the default.

The decision (:func:`tally`): the option most revealed votes chose; the share of a
``split`` is the lower median of the split votes' ``refund_bps``. A tie goes to the
moderator's revealed vote if it is among the tied; otherwise, and when nobody revealed,
to the smallest change from the status quo (``release``, then ``split``, then
``refund``): the buyer brought the claim and bears the burden of proof, and the
escrow's default was to reach the merchant. The award never exceeds the claim: the
escrow moves by ``min(share, claim_bps)`` (0: ``orders.release``; 10000:
``orders.refund`` of the whole escrow; else ``orders.split``), and ``outcome`` names
what moved. Final: ``dispute/<id>`` is ``decided`` and never changes again.

State (under ``trade/``)::

    dispute/<id>        {id, order, buyer, merchant, reason, claim_bps, evidence, opened,
                         status: drawing|commit|reveal|decided, round, panel: [{org,
                         seat: juror|moderator, round, status: drawn|committed|revealed
                         |absent|unrevealed, commitment, vote, refund_bps}],
                         commit_deadline, reveal_deadline, bucket,
                         outcome, refund_bps, votes, basis, decided}
    moderators          {orgs, by, since}
    juror_record/<org>  {drawn, served, coherent, absent, unrevealed}: for credit later
                        (served: revealed in a decided dispute; coherent: voted the
                        option the panel decided, before the claim's cap; absent: no
                        commitment in time; unrevealed: committed, never revealed)
    jurors              the pool, written by orders.mark_delivered (read here)

Events (``trade.`` ...; ``null`` where a value is absent)::

    dispute.opened          {dispute, order, buyer, merchant, reason, claim_bps, evidence}
    dispute.panel_drawn     {dispute, order, jurors: [org], moderator, commit_deadline}
    dispute.vote_committed  {dispute, panellist, commitment}
    dispute.juror_replaced  {dispute, order, absent, seat, replacement, round,
                             commit_deadline}
    dispute.reveal_opened   {dispute, order, reveal_deadline}
    dispute.vote_revealed   {dispute, panellist, vote, refund_bps}
    dispute.decided         {dispute, order, outcome: release|refund|split, refund_bps,
                             votes: {release, split, refund}, basis:
                             majority|moderator|default, absent: [org],
                             unrevealed: [org]}
    moderators.changed      {orgs, by}

Deadline ids: ``draw:<id>``, ``commit:<id>:<round>``, ``reveal:<id>``.

Refusals: ``bad_payload``, ``not_found``, ``forbidden``, ``already_disputed``,
``order_not_disputable``, ``no_moderator``, ``not_on_panel``, ``commit_closed``,
``already_committed``, ``reveal_not_open``, ``reveal_closed``, ``no_commitment``,
``already_revealed``, ``commitment_mismatch``, ``dispute_closed``.

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from services.ledger.core import deadlines
from services.ledger.core.contract import BlockContext, TxContext, _Scope
from services.ledger.core.encoding import tagged_hash
from services.ledger.core.errors import InvariantViolation
from services.trade import orders
from services.trade.accounts import tags_of
from services.trade.money import Money
from services.trade.vocabulary import (
    BPS,
    COMMIT_MS,
    EVIDENCE_MAX,
    HEX64_RE,
    JUROR_WINDOW_MS,
    ORG_RE,
    PANEL_BUYERS,
    PLATFORM_ROLES,
    REDRAWS_MAX,
    REVEAL_MS,
    ActionSpec,
    BlockHandler,
    DeadlineHandler,
    as_list,
    digest,
    integer,
    text_id,
)

__all__ = ["ACTIONS", "DEADLINES", "DRAW_TAG", "MODERATORS_MAX", "ON_BLOCK", "REASONS",
           "VOTES", "VOTE_TAG", "commitment_of", "draw", "draw_digest", "juror_eligible",
           "moderator_eligible", "tally"]

VOTE_TAG: Final = b"ecosphere/trade/vote/v1"
DRAW_TAG: Final = b"ecosphere/trade/draw/v1"
#: why a buyer disputes (a fixed set: no free text on chain)
REASONS: Final = frozenset({"not_delivered", "not_as_described", "damaged", "counterfeit",
                            "incomplete", "wrong_item", "other"})
#: the options, in the order ties fall back on (the least change from the status quo)
VOTES: Final = ("release", "split", "refund")
MODERATORS_MAX: Final = 16
DISPUTABLE: Final = frozenset({"shipped", "delivered"})
_KEY_PERMISSIONS: Final = frozenset({"admin", "member"})


# --- the draw and the tally (pure functions of their arguments) ---------------------------

def draw_digest(seed: bytes, dispute: str, round_: int, seat: str, counter: int) -> bytes:
    """The hash behind pick ``counter`` of ``round_`` for a ``seat`` kind (see above)."""
    data = (seat.encode("ascii") + b"\x00" + seed + bytes.fromhex(dispute)
            + round_.to_bytes(4, "big") + counter.to_bytes(4, "big"))
    return tagged_hash(DRAW_TAG, data)


def draw(seed: bytes, dispute: str, round_: int, seat: str, candidates: Iterable[str],
         count: int, eligible: Callable[[str], bool]) -> list[str]:
    """Up to ``count`` distinct ``eligible`` candidates, uniformly without replacement,
    in draw order; ``eligible`` is asked only about the candidates the draw reaches."""
    remaining = list(dict.fromkeys(candidates))  # distinct, first occurrence's order
    chosen: list[str] = []
    counter = 0
    while remaining and len(chosen) < count:
        pick = draw_digest(seed, dispute, round_, seat, counter)
        index = int.from_bytes(pick, "big") % len(remaining)
        counter += 1
        candidate = remaining[index]
        remaining[index] = remaining[-1]
        remaining.pop()
        if eligible(candidate):
            chosen.append(candidate)
    return chosen


def tally(panel: Sequence[Mapping[str, Any]]) -> tuple[str, int, dict[str, int], str]:
    """(option, refund share in bps, votes per option, basis: majority|moderator|default)
    of a panel's revealed votes."""
    revealed = [seat for seat in panel if seat["status"] == "revealed"]
    votes = {option: 0 for option in VOTES}
    for seat in revealed:
        votes[seat["vote"]] += 1
    top = max(votes.values())
    tied = [option for option in VOTES if votes[option] == top]
    moderator = [seat["vote"] for seat in revealed if seat["seat"] == "moderator"]
    if not revealed:
        option, basis = "release", "default"
    elif len(tied) == 1:
        option, basis = tied[0], "majority"
    elif moderator and moderator[0] in tied:
        option, basis = moderator[0], "moderator"
    else:
        option, basis = tied[0], "default"
    if option == "split":
        shares = sorted(seat["refund_bps"] for seat in revealed if seat["vote"] == "split")
        share = shares[(len(shares) - 1) // 2]  # the lower median: integers only
    else:
        share = BPS if option == "refund" else 0
    return option, share, votes, basis


def commitment_of(dispute: str, panellist: str, vote: str, refund_bps: int,
                  salt: str) -> str:
    """The commitment a panellist sends for a vote (the encoding is above)."""
    data = "\x00".join((dispute, panellist, vote, str(refund_bps), salt))
    return tagged_hash(VOTE_TAG, data.encode("ascii")).hex()


# --- reading -----------------------------------------------------------------------------

def _record(ctx: _Scope, dispute_id: str) -> dict[str, Any] | None:
    value = ctx.get(f"dispute/{dispute_id}")
    return value if isinstance(value, dict) else None


def _active_org(ctx: _Scope, org: str) -> dict[str, Any] | None:
    record = ctx.read(f"consortium/org/{org}")
    if isinstance(record, dict) and record.get("status") == "active":
        return record
    return None


def _pool(ctx: _Scope) -> list[str]:
    """The juror pool's organisations with a delivery within ``JUROR_WINDOW_MS``."""
    since = ctx.time - JUROR_WINDOW_MS
    return [org for org, delivered in ctx.get("jurors") or () if delivered >= since]


def _moderators(ctx: _Scope) -> list[str]:
    return list((ctx.get("moderators") or {}).get("orgs", ()))


def juror_eligible(ctx: _Scope, parties: tuple[str, str], taken: Iterable[str]
                   ) -> Callable[[str], bool]:
    """Whether an organisation of the pool may sit as a juror between ``parties`` (buyer,
    merchant), ``taken`` already drawn for the dispute."""
    party_tags = tags_of(ctx, parties[0]) | tags_of(ctx, parties[1])
    excluded = {*parties, *taken}

    def eligible(org: str) -> bool:
        return (org not in excluded
                and _active_org(ctx, org) is not None
                and not tags_of(ctx, org) & party_tags)
    return eligible


def moderator_eligible(ctx: _Scope, parties: tuple[str, str], taken: Iterable[str]
                       ) -> Callable[[str], bool]:
    """Whether an organisation may sit as the moderator between ``parties``."""
    excluded = {*parties, *taken}

    def eligible(org: str) -> bool:
        found = _active_org(ctx, org)
        return (org not in excluded and found is not None
                and bool(PLATFORM_ROLES & set(found.get("roles", ()))))
    return eligible


def _draw_seats(ctx: _Scope, record: dict[str, Any], seat: str, count: int) -> list[str]:
    """Draw ``count`` new panellists of kind ``seat`` in the record's current round, and
    seat them."""
    parties = (record["buyer"], record["merchant"])
    taken = [s["org"] for s in record["panel"]]
    if seat == "juror":
        candidates, eligible = _pool(ctx), juror_eligible(ctx, parties, taken)
    else:
        candidates, eligible = _moderators(ctx), moderator_eligible(ctx, parties, taken)
    drawn = draw(ctx.seed, record["id"], record["round"], seat, candidates, count, eligible)
    for org in drawn:
        record["panel"].append({"org": org, "seat": seat, "round": record["round"],
                                "status": "drawn", "commitment": None, "vote": None,
                                "refund_bps": None})
        _count(ctx, org, "drawn")
    return drawn


def _count(ctx: _Scope, org: str, field: str) -> None:
    key = f"juror_record/{org}"
    counts = ctx.get(key) or {"drawn": 0, "served": 0, "coherent": 0, "absent": 0,
                              "unrevealed": 0}
    counts[field] += 1
    ctx.put(key, counts)


# --- opening -----------------------------------------------------------------------------

def _evidence(ctx: TxContext) -> list[str]:
    items = as_list(ctx, ctx.payload.get("evidence"), "evidence", EVIDENCE_MAX)
    evidence = [digest(ctx, item, "evidence[]") for item in items]
    if not evidence or len(set(evidence)) != len(evidence):
        ctx.fail("bad_payload", "evidence must hold 1.."
                                f"{EVIDENCE_MAX} distinct digests")
    return evidence


def open_dispute(ctx: TxContext) -> None:
    """The buyer contests an order in escrow: the escrow freezes until the panel decides."""
    order_id = text_id(ctx, ctx.payload.get("order"), "order", HEX64_RE)
    reason = ctx.payload.get("reason")
    if not isinstance(reason, str) or reason not in REASONS:
        ctx.fail("bad_payload", f"reason must be one of {sorted(REASONS)}")
    claim_bps = integer(ctx, ctx.payload.get("claim_bps"), "claim_bps", 0, BPS)
    evidence = _evidence(ctx)
    order = orders.order_of(ctx, order_id)
    if order is None:
        ctx.fail("not_found", f"no order {order_id}")
    if order["buyer"] != ctx.sender_org:
        ctx.fail("forbidden", "only the order's buyer opens a dispute about it")
    if order.get("dispute") is not None:
        ctx.fail("already_disputed", f"order {order_id} was disputed before "
                                     f"({order['dispute']})")
    if order["status"] not in DISPUTABLE:
        ctx.fail("order_not_disputable", f"order {order_id} is {order['status']}: only "
                                         "a shipped or delivered order is disputed")
    parties = (order["buyer"], order["merchant"])
    if not any(map(moderator_eligible(ctx, parties, ()), _moderators(ctx))):
        ctx.fail("no_moderator", "no platform moderator can sit (trade.set_moderators)")
    dispute_id = ctx.tx.hash.hex()
    orders.freeze(ctx, order, dispute_id)
    ctx.put(f"dispute/{dispute_id}", {
        "id": dispute_id, "order": order_id, "buyer": order["buyer"],
        "merchant": order["merchant"], "reason": reason, "claim_bps": claim_bps,
        "evidence": evidence, "opened": ctx.time, "status": "drawing", "round": 0,
        "panel": [], "commit_deadline": None, "reveal_deadline": None, "bucket": None,
        "outcome": None, "refund_bps": None, "votes": None, "basis": None,
        "decided": None})
    # drawn next block, from a seed the buyer could not know when it chose the id
    deadlines.schedule(ctx, ctx.time + 1, f"draw:{dispute_id}")
    ctx.emit("trade.dispute.opened", {
        "dispute": dispute_id, "order": order_id, "buyer": order["buyer"],
        "merchant": order["merchant"], "reason": reason, "claim_bps": claim_bps,
        "evidence": evidence})


def set_moderators(ctx: TxContext) -> None:
    """The platform names the organisations a dispute's moderator is drawn from."""
    ctx.require_org_role(*PLATFORM_ROLES)
    ctx.require_admin()
    items = as_list(ctx, ctx.payload.get("orgs"), "orgs", MODERATORS_MAX)
    orgs = [text_id(ctx, item, "orgs[]", ORG_RE) for item in items]
    if not orgs or len(set(orgs)) != len(orgs):
        ctx.fail("bad_payload", f"orgs must name 1..{MODERATORS_MAX} distinct organisations")
    for org in orgs:
        found = _active_org(ctx, org)
        if found is None or not PLATFORM_ROLES & set(found.get("roles", ())):
            ctx.fail("not_found", f"{org!r} is not an active platform organisation")
    orgs.sort()
    ctx.put("moderators", {"orgs": orgs, "by": ctx.sender_org, "since": ctx.height})
    ctx.emit("trade.moderators.changed", {"orgs": orgs, "by": ctx.sender_org})


# --- the phases ----------------------------------------------------------------------------

def _save(ctx: _Scope, record: dict[str, Any]) -> None:
    ctx.put(f"dispute/{record['id']}", record)


def _start_commit(ctx: _Scope, record: dict[str, Any]) -> None:
    record["status"] = "commit"
    record["commit_deadline"] = ctx.time + COMMIT_MS
    record["bucket"] = deadlines.schedule(ctx, record["commit_deadline"],
                                          f"commit:{record['id']}:{record['round']}")


def _on_draw(ctx: BlockContext, item_id: str, data: Any) -> None:
    record = _record(ctx, item_id.split(":", 1)[1])
    if record is None or record["status"] != "drawing":
        return
    jurors = _draw_seats(ctx, record, "juror", PANEL_BUYERS)
    moderator = _draw_seats(ctx, record, "moderator", 1)
    if record["panel"]:
        _start_commit(ctx, record)
        _save(ctx, record)
    ctx.emit("trade.dispute.panel_drawn", {
        "dispute": record["id"], "order": record["order"], "jurors": jurors,
        "moderator": moderator[0] if moderator else None,
        "commit_deadline": record["commit_deadline"]})
    if not record["panel"]:
        _decide(ctx, record)  # nobody can sit: the default decides


def _on_commit_deadline(ctx: BlockContext, item_id: str, data: Any) -> None:
    _, dispute_id, round_text = item_id.split(":")
    record = _record(ctx, dispute_id)
    if record is None or record["status"] != "commit" or record["round"] != int(round_text):
        return  # closed early, or a later round's window
    absent = [seat for seat in record["panel"] if seat["status"] == "drawn"]
    for seat in absent:
        seat["status"] = "absent"
        _count(ctx, seat["org"], "absent")
    redraw = record["round"] < REDRAWS_MAX
    if redraw:
        record["round"] += 1
    replacements = [(seat, _draw_seats(ctx, record, seat["seat"], 1) if redraw else [])
                    for seat in absent]
    replaced = any(drawn for _, drawn in replacements)
    if replaced:
        _start_commit(ctx, record)
        _save(ctx, record)
    for seat, drawn in replacements:
        ctx.emit("trade.dispute.juror_replaced", {
            "dispute": record["id"], "order": record["order"], "absent": seat["org"],
            "seat": seat["seat"], "replacement": drawn[0] if drawn else None,
            "round": record["round"],
            "commit_deadline": record["commit_deadline"] if drawn else None})
    if not replaced:
        _open_reveal(ctx, record)  # nobody new to wait for


def _open_reveal(ctx: _Scope, record: dict[str, Any]) -> None:
    if not any(seat["status"] == "committed" for seat in record["panel"]):
        _decide(ctx, record)
        return
    record["status"] = "reveal"
    record["reveal_deadline"] = ctx.time + REVEAL_MS
    record["bucket"] = deadlines.schedule(ctx, record["reveal_deadline"],
                                          f"reveal:{record['id']}")
    _save(ctx, record)
    ctx.emit("trade.dispute.reveal_opened", {
        "dispute": record["id"], "order": record["order"],
        "reveal_deadline": record["reveal_deadline"]})


def _on_reveal_deadline(ctx: BlockContext, item_id: str, data: Any) -> None:
    record = _record(ctx, item_id.split(":", 1)[1])
    if record is not None and record["status"] == "reveal":
        _decide(ctx, record)


def _decide(ctx: _Scope, record: dict[str, Any]) -> None:
    """Tally, move the escrow, record the panellists' conduct: final."""
    order = orders.order_of(ctx, record["order"])
    if order is None or order["status"] != "disputed" or order["dispute"] != record["id"]:
        raise InvariantViolation(f"dispute {record['id']}: order {record['order']} is not "
                                 "frozen for it")
    option, share, votes, basis = tally(record["panel"])
    refund_bps = min(share, record["claim_bps"])  # never more than the buyer claimed
    outcome = "release" if refund_bps == 0 else "refund" if refund_bps == BPS else "split"
    if outcome == "release":
        orders.release(ctx, order)
    elif outcome == "refund":
        orders.refund(ctx, order, Money(order["escrow"]["amount"],
                                        order["escrow"]["currency"]))
    else:
        orders.split(ctx, order, refund_bps)
    for seat in record["panel"]:
        if seat["status"] == "committed":
            seat["status"] = "unrevealed"
            _count(ctx, seat["org"], "unrevealed")
        elif seat["status"] == "revealed":
            _count(ctx, seat["org"], "served")
            if seat["vote"] == option:
                _count(ctx, seat["org"], "coherent")
    record.update(status="decided", outcome=outcome, refund_bps=refund_bps, votes=votes,
                  basis=basis, decided=ctx.time, bucket=None)
    _save(ctx, record)
    ctx.emit("trade.dispute.decided", {
        "dispute": record["id"], "order": record["order"], "outcome": outcome,
        "refund_bps": refund_bps, "votes": votes, "basis": basis,
        "absent": [s["org"] for s in record["panel"] if s["status"] == "absent"],
        "unrevealed": [s["org"] for s in record["panel"] if s["status"] == "unrevealed"]})


# --- voting ----------------------------------------------------------------------------------

def _seat_of(ctx: TxContext) -> tuple[dict[str, Any], dict[str, Any]]:
    """The dispute named in the payload and the sender organisation's seat on it."""
    dispute_id = text_id(ctx, ctx.payload.get("dispute"), "dispute", HEX64_RE)
    record = _record(ctx, dispute_id)
    if record is None:
        ctx.fail("not_found", f"no dispute {dispute_id}")
    if not _KEY_PERMISSIONS & ctx.sender_roles:
        ctx.fail("forbidden", "a panellist votes with an admin or member key")
    seats = [seat for seat in record["panel"] if seat["org"] == ctx.sender_org]
    if not seats:
        ctx.fail("not_on_panel", f"{ctx.sender_org} does not sit on dispute {dispute_id}")
    if record["status"] == "decided":
        ctx.fail("dispute_closed", f"dispute {dispute_id} was decided")
    return record, seats[0]


def commit_vote(ctx: TxContext) -> None:
    commitment = digest(ctx, ctx.payload.get("commitment"), "commitment")
    record, seat = _seat_of(ctx)
    if seat["status"] in ("committed", "revealed", "unrevealed"):
        ctx.fail("already_committed", "this panellist committed its vote before")
    if record["status"] != "commit" or seat["status"] != "drawn" \
            or ctx.time >= record["commit_deadline"]:
        ctx.fail("commit_closed", "the commit window of this panellist is closed")
    seat.update(status="committed", commitment=commitment)
    ctx.emit("trade.dispute.vote_committed", {
        "dispute": record["id"], "panellist": ctx.sender_org, "commitment": commitment})
    if any(s["status"] == "drawn" for s in record["panel"]):
        _save(ctx, record)
        return
    deadlines.cancel(ctx, record["bucket"], f"commit:{record['id']}:{record['round']}")
    _open_reveal(ctx, record)  # nobody is awaited: reveal at once


def _vote(ctx: TxContext) -> tuple[str, int, str]:
    vote = ctx.payload.get("vote")
    if not isinstance(vote, str) or vote not in VOTES:
        ctx.fail("bad_payload", f"vote must be one of {list(VOTES)}")
    refund_bps = integer(ctx, ctx.payload.get("refund_bps"), "refund_bps", 0, BPS)
    if (vote == "release" and refund_bps != 0) or (vote == "refund" and refund_bps != BPS) \
            or (vote == "split" and not 0 < refund_bps < BPS):
        ctx.fail("bad_payload", f"refund_bps must be 0 for release, {BPS} for refund and "
                                f"1..{BPS - 1} for split")
    return vote, refund_bps, digest(ctx, ctx.payload.get("salt"), "salt")


def reveal_vote(ctx: TxContext) -> None:
    vote, refund_bps, salt = _vote(ctx)
    record, seat = _seat_of(ctx)
    if record["status"] != "reveal":
        ctx.fail("reveal_not_open", "votes are revealed once the commit phase ended")
    if ctx.time >= record["reveal_deadline"]:
        ctx.fail("reveal_closed", "the reveal deadline passed")
    if seat["status"] == "revealed":
        ctx.fail("already_revealed", "this panellist revealed its vote before")
    if seat["status"] != "committed":
        ctx.fail("no_commitment", "this panellist committed no vote in time")
    if commitment_of(record["id"], ctx.sender_org, vote, refund_bps, salt) \
            != seat["commitment"]:
        ctx.fail("commitment_mismatch", "the vote does not match the commitment")
    seat.update(status="revealed", vote=vote, refund_bps=refund_bps)
    ctx.emit("trade.dispute.vote_revealed", {
        "dispute": record["id"], "panellist": ctx.sender_org, "vote": vote,
        "refund_bps": refund_bps})
    if any(s["status"] == "committed" for s in record["panel"]):
        _save(ctx, record)
        return
    deadlines.cancel(ctx, record["bucket"], f"reveal:{record['id']}")
    _decide(ctx, record)  # every committed vote is in


#: action -> (handler, required payload fields, optional payload fields)
ACTIONS: dict[str, ActionSpec] = {
    "open_dispute": (open_dispute, frozenset({"order", "reason", "claim_bps", "evidence"}),
                     frozenset()),
    "set_moderators": (set_moderators, frozenset({"orgs"}), frozenset()),
    "commit_vote": (commit_vote, frozenset({"dispute", "commitment"}), frozenset()),
    "reveal_vote": (reveal_vote, frozenset({"dispute", "vote", "refund_bps", "salt"}),
                    frozenset()),
}
DEADLINES: dict[str, DeadlineHandler] = {
    "draw": _on_draw, "commit": _on_commit_deadline, "reveal": _on_reveal_deadline}
ON_BLOCK: tuple[BlockHandler, ...] = ()
