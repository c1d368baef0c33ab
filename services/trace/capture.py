"""The trace contract's EPCIS capture: a party records supply-chain events (EPCIS 2.0,
validated by :mod:`services.trace.epcis`), signed by itself, either as a
``trace.capture`` transaction of its own or as its RFC 9421-signed HTTP request relayed
by a gateway (the relay cannot forge or alter it: the party's signature covers the
exact bytes). Each event is recorded under its CBV 2.0 hash (duplicates refused), moves
the serialised items it names along the supply chain, and is announced in full
(``trace.event.captured``: the trade domain's logistics reads tracking events and
temperature readings from it; trace knows nothing of trade).

Custody: an item's custodian is its brand owner from commissioning; the custodian hands
it over by naming the next holder in an event's destinationList (``possessing_party``,
else ``location``, registered on the chain), who takes custody with its next event about
the item. Only the brand owner or the custodian (or the party it is being handed to)
decommissions an item (``not_custodian``): decommissioning ends its life on the chain.

A refused event (``trace.capture.rejected``) carries its stable code and a fixed text for
that code (:data:`REJECTION_REASONS`), never an exception's text: that text would depend
on the Python version and the interpreter's settings, and the events are every replica's.

State: ``event/<hash>``, ``eventid/<sha256(eventID)>``, ``item/<epc>`` (see
:mod:`services.trace.contract`). Runs in every replica: it must never do I/O, read the
clock (block time is ``ctx.time``; events beyond ``EVENT_FUTURE_MS`` past it are clock
skew), draw randomness or use floats, and any change of behaviour forks the chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from services.ledger.core import httpsig
from services.ledger.core.contract import TxContext
from services.ledger.core.errors import TransactionFailed
from services.trace import epcis, epcis_values, eventhash, hashvalues, identifiers
from services.trace.items import STATE_BY_BIZSTEP, TERMINAL_STATES, sgtin_of

__all__ = [
    "CAPTURE_NESTING_MAX",
    "CAPTURE_ROLES",
    "EVENTS_PER_CAPTURE_MAX",
    "EVENT_FUTURE_MS",
    "REJECTION_REASONS",
    "capture",
    "custodian_of",
    "rejection_reason",
]

EVENT_FUTURE_MS = 5 * 60_000  # an event time this far past block time is clock skew
EVENTS_PER_CAPTURE_MAX = 500
#: a relayed capture body is parsed only if it nests at most this deep (a parser's
#: recursion limit depends on the replica's stack: it must never be what decides)
CAPTURE_NESTING_MAX = 64
CAPTURE_ROLES = ("manufacturer", "supplier", "carrier", "warehouse", "retailer", "merchant",
                 "marketplace", "customs_cn", "customs_eu", "certifier")
#: what ``trace.capture.rejected`` says for each code: fixed texts, never an exception's
#: text. That text is in every replica's events, so it must not depend on the Python
#: version, the interpreter's settings or the wording of an error message (a reworded
#: message would fork the chain). Details of a refusal come from the gateway's own
#: validation and dry run, off the chain.
REJECTION_REASONS: dict[str, str] = {
    "forbidden": "the capturing organisation may not record this event (its role, the "
                 "location's owner or the product's brand owner)",
    "bad_payload": "the capture is malformed",
    "bad_json": "the capture body is not JSON",
    "bad_number": "a number of the capture is out of range",
    "number_out_of_range": "a number of the event is out of range for the event hash",
    "nothing_captured": "no event of this capture was valid",
    "org_suspended": "the capturing organisation is not active",
    "clock_skew": "eventTime lies in the future of block time",
    "duplicate_event": "the event is already recorded (same CBV 2.0 event hash)",
    "duplicate_event_id": "the eventID names another recorded event",
    "unknown_location": "the event's location is not registered",
    "unknown_product": "the product of a commissioned serial is not registered",
    "decommissioned": "an item of the event was decommissioned",
    "not_custodian": "only an item's brand owner or its custodian on the chain "
                     "decommissions it",
}


def _fail(code: str, message: str) -> TransactionFailed:
    return TransactionFailed(message, code=code)


def capture(ctx: TxContext) -> None:
    """A party's capture: EPCIS events it signed as this transaction, or its signed HTTP
    request relayed by anyone (whose outcome the relay's transaction records)."""
    if "request" not in ctx.payload:
        _capture_events(ctx, ctx.sender_org, ctx.org_roles, ctx.payload["events"])
        return
    # A relayed, party-signed request: the relay's transaction always commits and
    # carries the outcome as events. Were it refused, its nonce would stay unused
    # and hold back every later relayed transaction (the relay cannot see that a
    # proposer dropped it).
    checkpoint = ctx.checkpoint()
    try:
        org, roles, raw_events = _signed_request(ctx)
        _capture_events(ctx, org, roles, raw_events)
    except TransactionFailed as exc:
        ctx.rollback(checkpoint)
        reason = rejection_reason(exc.code)
        if isinstance(exc, _EventRefused):  # all or nothing: say which event it was
            reason = f"event {exc.position}: {reason}"
        ctx.emit("trace.capture.rejected", {"position": None, "code": exc.code,
                                            "reason": reason, "org": None})


class _EventRefused(TransactionFailed):
    """An event of an all-or-nothing capture was refused: the whole capture is."""

    def __init__(self, position: int, refused: TransactionFailed) -> None:
        super().__init__(f"event {position}: {refused.message}", code=refused.code)
        self.position = position


def rejection_reason(code: str) -> str:
    """The fixed text ``trace.capture.rejected`` gives for ``code`` (a stable code of
    this module, of EPCIS validation, the event hash or the request's signature)."""
    if code in REJECTION_REASONS:
        return REJECTION_REASONS[code]
    if code.startswith("request_"):
        return "the capture request's signature does not verify (RFC 9421)"
    return "the event is not valid EPCIS 2.0"


def _capture_events(ctx: TxContext, org: str, roles: frozenset[str],
                    raw_events: object) -> None:
    if not roles.intersection(CAPTURE_ROLES):
        ctx.fail("forbidden", f"{org} has no role that captures supply-chain events")
    if not isinstance(raw_events, list) or not 0 < len(raw_events) <= \
            EVENTS_PER_CAPTURE_MAX:
        ctx.fail("bad_payload", f"a capture holds 1..{EVENTS_PER_CAPTURE_MAX} events")
    proceed = ctx.payload.get("error_behaviour", "rollback") == "proceed"
    accepted = 0
    for position, raw in enumerate(raw_events):
        checkpoint = ctx.checkpoint()
        try:
            _capture_one(ctx, org, raw, position)
            accepted += 1
        except TransactionFailed as exc:
            if not proceed:
                raise _EventRefused(position, exc) from exc
            ctx.rollback(checkpoint)
            ctx.emit("trace.capture.rejected", {"position": position, "code": exc.code,
                                                "reason": rejection_reason(exc.code),
                                                "org": org})
    if accepted == 0:
        ctx.fail("nothing_captured", "no event of this capture was valid")


def _signed_request(ctx: TxContext) -> tuple[str, frozenset[str], list[Any]]:
    """A party's RFC 9421-signed EPCIS capture request, relayed by a gateway."""
    request = ctx.payload["request"]
    if not isinstance(request, dict):
        ctx.fail("bad_payload", "request must be an object")
    body = request.get("body")
    headers = request.get("headers")
    if not isinstance(body, str) or not isinstance(headers, dict):
        ctx.fail("bad_payload", "request needs body (text) and headers")

    def resolve(key_id: str) -> bytes | None:
        record = ctx.read(f"consortium/key/{key_id}")
        if record is None or record["status"] != "active":
            return None
        return bytes.fromhex(record["public_key"])

    # The capture mode travels in the signed request: a relay must not turn an
    # all-or-nothing capture into a partial one (the payload may only repeat it).
    # ASCII case and HTTP's optional whitespace only: str.lower()/strip() follow the
    # Python version's Unicode tables ("ROLLBAC\u212a".lower() is "rollback")
    named = {_ascii_lower(str(k)): str(v) for k, v in headers.items()}
    behaviour = _ascii_lower(
        named.get(httpsig.ERROR_BEHAVIOUR_HEADER, "rollback").strip(" \t"))
    if behaviour not in ("rollback", "proceed"):
        ctx.fail("bad_payload", "GS1-Capture-Error-Behaviour is rollback or proceed")
    if ctx.payload.get("error_behaviour", behaviour) != behaviour:
        ctx.fail("bad_payload", "error_behaviour differs from the signed request's")
    required = httpsig.DEFAULT_REQUIRED_COMPONENTS | (
        {httpsig.ERROR_BEHAVIOUR_HEADER} if httpsig.ERROR_BEHAVIOUR_HEADER in named
        else set())
    try:
        key_id = httpsig.verify_request(
            method=str(request.get("method", "")), url=str(request.get("url", "")),
            headers={str(k): str(v) for k, v in headers.items()},
            body=body.encode(), now=ctx.time // 1000, resolve_key=resolve,
            replay=httpsig.ReplayCache(), max_age_s=3600,
            required_components=frozenset(required))
    except httpsig.HttpSigError as exc:
        ctx.fail(f"request_{exc.code}", f"the capture request's signature: {exc}")
    key = ctx.read(f"consortium/key/{key_id}")
    if key is None:
        ctx.fail("request_unknown_key", "the signing key is not registered")
    org = ctx.read(f"consortium/org/{key['org']}")
    if org is None or org["status"] != "active":
        ctx.fail("org_suspended", "the capturing organisation is not active")
    if not _nesting_within(body, CAPTURE_NESTING_MAX):
        ctx.fail("bad_payload", f"the capture body nests deeper than "
                                f"{CAPTURE_NESTING_MAX} levels")
    try:
        # JSON numbers as exact decimal text, bounded before Python's own limits
        document = epcis_values.parse_json(body)
        # POST /capture sends an EPCISDocument; POST /events one event
        is_document = isinstance(document, dict) and document.get("type") == \
            "EPCISDocument"
        events = epcis.validate_document(document) if is_document else [document]
    except epcis_values.EpcisError as exc:
        ctx.fail(exc.code, str(exc))
    except ValueError:
        # the parser's text (position, wording) is the Python version's: never kept
        ctx.fail("bad_json", "the capture body is not JSON")
    return key["org"], frozenset(org["roles"]), events


def _capture_one(ctx: TxContext, org: str, raw: object, position: int) -> None:
    try:
        event = epcis.validate_event(raw)
        ehash = eventhash.event_hash(event)
    except epcis_values.EpcisError as exc:
        raise _fail(exc.code, str(exc)) from exc
    except identifiers.IdentifierError as exc:
        raise _fail(exc.code, str(exc)) from exc
    except hashvalues.EventHashError as exc:
        # a value validation accepts but the hash cannot canonicalise (an extension's
        # "1e999999"): this event is refused, not the whole capture
        raise _fail(exc.code, str(exc)) from exc
    event_time = epcis_values.parse_time(event["eventTime"])
    if event_time > ctx.time + EVENT_FUTURE_MS:
        raise _fail("clock_skew", "eventTime lies in the future of block time")
    hash_key = f"event/{ehash.split(';')[1].split('?')[0]}"
    if ctx.has(hash_key):
        raise _fail("duplicate_event", f"event already recorded ({ehash})")
    event_id = event.get("eventID")
    if isinstance(event_id, str):
        # EPCIS 2.0: an eventID is unique across the repository (another event
        # under a known ID would hide behind it in GET /events/{eventID})
        id_key = f"eventid/{hashlib.sha256(event_id.encode()).hexdigest()}"
        if ctx.has(id_key):
            raise _fail("duplicate_event_id", f"eventID {event_id[:120]} names "
                                              "another recorded event")
        ctx.put(id_key, ehash)
    location = epcis.biz_location(event) or epcis.read_point(event)
    country = None
    if location is not None:
        gln = _gln_of(location)
        place = ctx.get(f"location/{gln}") if gln else None
        if place is None:
            raise _fail("unknown_location", f"location {location} is not registered")
        if place["org"] != org:
            raise _fail("forbidden", f"location {gln} belongs to {place['org']}, "
                        f"not {org}")
        country = place["country"]
    biz_step = event.get("bizStep")
    for epc in sorted(epcis.epcs_of(event)):
        _track_item(ctx, org, epc, event, biz_step, country, event_time)
    record = {"hash": ehash, "height": ctx.height, "tx": ctx.tx.hash.hex(),
              "position": position, "type": event["type"], "biz_step": biz_step,
              "time": event_time, "org": org}
    ctx.put(hash_key, record)
    ctx.emit("trace.event.captured", {
        "event_hash": ehash, "type": event["type"], "biz_step": biz_step,
        "disposition": event.get("disposition"), "org": org, "time": event_time,
        "location": location, "epcs": sorted(epcis.epcs_of(event))[:100],
        "position": position, "event": event})


def _track_item(ctx: TxContext, org: str, epc: str, event: dict[str, Any],
                biz_step: str | None, country: str | None, event_time: int) -> None:
    """Per-serialised-item facts: who commissioned it, who holds it, where it is, what
    it is."""
    sgtin = sgtin_of(epc)
    if sgtin is None:
        return  # lots, cases and pallets are tracked through their events only
    key = f"item/{sgtin.to_digital_link()}"
    item = ctx.get(key)
    action = event.get("action")
    state = STATE_BY_BIZSTEP.get(biz_step or "")
    if item is None:
        if biz_step != "commissioning" or action != "ADD":
            return  # unknown serial seen in an event: recorded, not tracked
        gtin = sgtin.gtin
        product = ctx.get(f"product/{gtin}")
        if product is None:
            raise _fail("unknown_product", f"product {gtin} is not registered")
        if product["brand_owner"] != org:
            raise _fail("forbidden", f"only {product['brand_owner']} commissions "
                        f"serials of {gtin}")
        item = {"epc": sgtin.to_digital_link(), "gtin": gtin, "state": "commissioned",
                "brand_owner": org, "custodian": org, "commissioned": event_time,
                "scans": 0, "clone_suspected": False}
    elif item["state"] in TERMINAL_STATES:
        raise _fail("decommissioned", f"{epc} was decommissioned")
    elif state in TERMINAL_STATES and org not in (
            item["brand_owner"], custodian_of(item), item.get("custody_to")):
        # Decommissioning ends an item's life on the chain for good (no later event is
        # accepted): only its brand owner or the party holding it (or the one its holder
        # hands it to) may do that, never any party that happens to capture events
        # (docs/adr/0005-clone-verdicts.md, amended).
        raise _fail("not_custodian", f"only {item['brand_owner']}, the brand owner, or "
                    f"{custodian_of(item)}, its custodian on the chain, decommissions "
                    f"{epc}")
    elif event_time < item.get("last_time", event_time):
        # A late-arriving earlier event is history (recorded, provable), not news:
        # it must not rewind where the item is now (a sold item back in transit).
        return
    _hand_over(ctx, item, org, event)
    if state is not None:
        item["state"] = state
    if event["type"] == "AggregationEvent":
        item["parent"] = event.get("parentID") if action != "DELETE" else None
    item.update(biz_step=biz_step, disposition=event.get("disposition"),
                last_time=event_time, last_org=org)
    if country is not None:
        item["last_country"] = country
    ctx.put(key, item)


def custodian_of(item: Mapping[str, Any]) -> str:
    """Who holds ``item`` according to the chain: its brand owner from commissioning,
    then each party its holder handed it to (items recorded before custody was kept
    are their brand owner's)."""
    return str(item.get("custodian", item["brand_owner"]))


def _hand_over(ctx: TxContext, item: dict[str, Any], org: str,
               event: dict[str, Any]) -> None:
    """Custody moves only with its holder's consent: the custodian names the next holder
    in the destinationList of an event of its own (EPCIS ``possessing_party``, else the
    destination ``location``, registered on the chain), and that party takes custody
    with its next event about the item. Anyone else's events are recorded, not custody."""
    if org == item.get("custody_to"):
        item["custodian"] = org
        del item["custody_to"]
        return
    if org != custodian_of(item):
        return
    receiver = _receiver(ctx, event)
    if receiver is not None and receiver != org:
        item["custody_to"] = receiver


def _receiver(ctx: TxContext, event: dict[str, Any]) -> str | None:
    """The organisation an event's destinationList hands its goods to: the registered
    owner of its ``possessing_party`` GLN, else of its ``location`` (None: neither is
    registered on the chain, or the event names no destination)."""
    found: dict[str, str] = {}
    for entry in event.get("destinationList") or ():
        kind = entry.get("type")
        if kind not in ("possessing_party", "location") or kind in found:
            continue
        gln = _gln_of(str(entry.get("destination", "")))
        place = ctx.get(f"location/{gln}") if gln else None
        if place is not None:
            found[kind] = place["org"]
    return found.get("possessing_party") or found.get("location")


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def _gln_of(location: str) -> str | None:
    try:
        parsed = identifiers.parse_identifier(location)
    except identifiers.IdentifierError:
        return None
    return parsed.gln if isinstance(parsed, (identifiers.Sgln, identifiers.Pgln)) else None


def _nesting_within(text: str, limit: int) -> bool:
    """Whether JSON ``text`` opens at most ``limit`` arrays/objects inside each other
    (brackets inside strings do not count)."""
    if text.count("[") + text.count("{") <= limit:
        return True
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True
