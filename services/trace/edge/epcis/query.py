"""EPCIS 2.0 queries on the ``epcis_events`` view: parameters, paging, results.

:func:`parse_event_query` turns the standard's query parameters into a MongoDB filter
on the view plus checks on the full event (for the identifier matches, which also
look inside the event); :func:`run_query` reads matching events in chain order
(``pos``) within bounds; ``nextPageToken`` is an opaque cursor over ``pos`` bound to
its query (:func:`encode_page_token`). Unknown parameters are a 400
QueryParameterException; standard ones not implemented, a 501
ImplementationException.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.gateway.problems import Problem
from services.ledger.core.encoding import INT_MAX
from services.trace import epcis, epcis_values, identifiers
from services.trace.edge.epcis.binding import (
    EPCIS_CONTEXT,
    PAGE_TOKEN_CHARS_MAX,
    PER_PAGE_DEFAULT,
    PER_PAGE_MAX,
    QUERY_PARAMS_MAX,
    QUERY_READ_BATCH,
    QUERY_SCAN_MAX,
    QUERY_VALUE_CHARS_MAX,
    QUERY_VALUES_MAX,
    now_ms,
    numbers_as_numbers,
)
from services.trace.edge.views import EPCIS_EVENTS

_URI_SPLIT = re.compile(r",(?=[A-Za-z][A-Za-z0-9+.-]*:)")
_BIZ_TRANSACTION = "EQ_bizTransaction_"
#: standard EPCIS 2.0 query parameters not implemented here: answered 501
#: (ImplementationException), not 400 as if the name were unknown
_STANDARD_UNSUPPORTED = frozenset({
    "orderBy", "orderDirection", "eventCountLimit", "maxEventCount", "MATCH_epcClass",
    "MATCH_inputEPCClass", "MATCH_outputEPCClass", "MATCH_anyEPCClass", "EQ_quantity",
    "GT_quantity", "GE_quantity", "LT_quantity", "LE_quantity",
    "EQ_transformationID", "EQ_errorReason", "EXISTS_errorDeclaration",
    "GE_errorDeclarationTime", "LT_errorDeclarationTime", "EQ_correctiveEventID",
    "EQ_persistentDisposition_set", "EQ_persistentDisposition_unset"})


EventPredicate = Callable[[Mapping[str, Any]], bool]


@dataclass
class EventFilter:
    """A parsed query: a MongoDB filter on the view, plus checks on the full event."""

    conditions: list[dict[str, Any]] = field(default_factory=list)
    predicates: list[EventPredicate] = field(default_factory=list)
    normalised: dict[str, list[str]] = field(default_factory=dict)

    def mongo(self, after: int, before: int) -> dict[str, Any]:
        bounds = {"pos": {"$gt": after, "$lt": before}}
        return {"$and": [*self.conditions, bounds]} if self.conditions else bounds

    @property
    def digest(self) -> str:
        text = json.dumps(sorted(self.normalised.items()), separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def query_problem(detail: str, parameter: str | None = None) -> Problem:
    extra: dict[str, Any] = {"epcisException": "QueryParameterException"}
    if parameter is not None:
        extra["parameter"] = parameter[:128]
    return Problem(400, "query_parameter", detail, **extra)


def _split(value: str, *, uris: bool) -> list[str]:
    """The values of a multi-valued parameter: EPCIS 2.0 separates them with ``|`` (the
    REST binding's own example: ``EQ_bizStep=shipping|decommissioning``); commas are
    accepted too (EPCIS 1.x habit), except inside URIs."""
    parts = [part for piece in value.split("|")
             for part in (_URI_SPLIT.split(piece) if uris else piece.split(","))]
    return [p.strip() for p in parts if p.strip()]


@dataclass(frozen=True)
class _Ident:
    exact: str | None  # canonical Digital Link
    prefix: str | None  # an idpat pattern: canonical class Digital Link + "/"

    def matches(self, canonical: str) -> bool:
        if self.exact is not None:
            return canonical == self.exact
        return self.prefix is not None and canonical.startswith(self.prefix)

    def condition(self, field_name: str) -> dict[str, Any]:
        if self.exact is not None:
            return {field_name: self.exact}
        return {field_name: {"$regex": "^" + re.escape(self.prefix or "")}}


def _identifier(value: str, name: str) -> _Ident:
    try:
        canonical = identifiers.to_digital_link(value)
    except identifiers.IdentifierError as exc:
        raise query_problem(f"{name}: {value[:80]!r} is not an EPC URN, pattern or GS1 "
                             f"Digital Link ({exc.code})", name) from exc
    if value.startswith("urn:epc:idpat:"):
        return _Ident(None, canonical.rstrip("/") + "/")
    return _Ident(canonical, None)


def _canonical(identifier: object) -> str | None:
    if not isinstance(identifier, str):
        return None
    try:
        return identifiers.to_digital_link(identifier)
    except identifiers.IdentifierError:
        return identifier


def _ids_of(event: Mapping[str, Any], keys: Sequence[str], parent: bool) -> list[str]:
    out: list[str] = []
    for key in keys:
        for item in event.get(key) or ():
            canonical = _canonical(item)
            if canonical is not None:
                out.append(canonical)
    if parent:
        canonical = _canonical(event.get("parentID"))
        if canonical is not None:
            out.append(canonical)
    return out


def _match_predicate(wanted: Sequence[_Ident], keys: Sequence[str],
                     parent: bool) -> EventPredicate:
    def check(event: Mapping[str, Any]) -> bool:
        return any(w.matches(c) for c in _ids_of(event, keys, parent) for w in wanted)
    return check


def _location_variants(value: str, name: str) -> list[str]:
    """The spellings of one location the view may hold: as given, its canonical Digital
    Link, and its SGLN URN for every company prefix length (the view keeps the
    identifier as the capturing party wrote it)."""
    variants = {value}
    try:
        parsed = identifiers.parse_identifier(value)
    except identifiers.IdentifierError as exc:
        raise query_problem(f"{name}: {value[:80]!r} is not an SGLN URN or GS1 Digital "
                             f"Link ({exc.code})", name) from exc
    variants.add(parsed.to_digital_link())
    for cpl in range(6, 13):
        with contextlib.suppress(identifiers.IdentifierError, ValueError):
            variants.add(identifiers.to_urn(value, company_prefix_length=cpl))
    return sorted(variants)


def _time_bound(value: str, name: str) -> int:
    try:
        return epcis_values.parse_time(value, name)
    except epcis_values.EpcisError as exc:
        raise query_problem(f"{name}: {exc.message}", name) from exc


def _vocabulary(value: str, kind: str, name: str) -> str:
    try:
        return epcis_values.normalize_vocabulary(value, kind, path=name)
    except epcis_values.EpcisError as exc:
        raise query_problem(f"{name}: {exc.message}", name) from exc


def parse_event_query(pairs: Sequence[tuple[str, str]], *,
                      paging: bool = False) -> tuple[EventFilter, int, str | None]:
    """The filter, perPage and nextPageToken of the query parameters ``pairs``.

    Raises a 400 problem ``query_parameter`` for an unknown parameter or a bad value.
    """
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        if len(value) > QUERY_VALUE_CHARS_MAX * QUERY_VALUES_MAX:
            raise query_problem(f"{name[:64]}: value too long", name)
        grouped.setdefault(name, []).append(value)
    if len(grouped) > QUERY_PARAMS_MAX:
        raise query_problem(f"at most {QUERY_PARAMS_MAX} parameters")
    per_page = PER_PAGE_DEFAULT
    token: str | None = None
    flt = EventFilter()
    for name, raw_values in grouped.items():
        if name in ("perPage", "nextPageToken"):
            if not paging:
                raise query_problem(f"{name} is not part of a named query", name)
            if len(raw_values) != 1:
                raise query_problem(f"{name} is given more than once", name)
            if name == "perPage":
                text = raw_values[0]
                if not (text.isascii() and text.isdigit() and len(text) <= 7
                        and 1 <= int(text) <= PER_PAGE_MAX):
                    raise query_problem(f"perPage must be 1..{PER_PAGE_MAX}", name)
                per_page = int(text)
            else:
                token = raw_values[0]
            continue
        uris = name.startswith(("MATCH_", "EQ_readPoint", "EQ_bizLocation", "EQ_eventID",
                                _BIZ_TRANSACTION))
        values = [v for raw in raw_values for v in _split(raw, uris=uris)]
        if not values:
            raise query_problem(f"{name[:64]} has no value", name)
        if len(values) > QUERY_VALUES_MAX:
            raise query_problem(f"{name[:64]}: at most {QUERY_VALUES_MAX} values", name)
        if any(len(v) > QUERY_VALUE_CHARS_MAX for v in values):
            raise query_problem(f"{name[:64]}: a value is too long", name)
        _add_parameter(flt, name, values)
    return flt, per_page, token


def _add_parameter(flt: EventFilter, name: str, values: list[str]) -> None:
    cond = flt.conditions
    if name == "eventType":
        bad = [v for v in values if v not in epcis.EVENT_TYPES]
        if bad:
            raise query_problem(f"eventType: {bad[0][:80]!r} is not an EPCIS event type", name)
        normal = sorted(set(values))
        cond.append({"type": {"$in": normal}})
    elif name == "EQ_action":
        bad = [v for v in values if v not in epcis.ACTIONS]
        if bad:
            raise query_problem(f"EQ_action: {bad[0][:80]!r} is not ADD, OBSERVE or DELETE",
                                 name)
        normal = sorted(set(values))
        cond.append({"action": {"$in": normal}})
    elif name in ("EQ_bizStep", "EQ_disposition"):
        kind = name[3:]
        normal = sorted({_vocabulary(v, kind, name) for v in values})
        cond.append({kind: {"$in": normal}})
    elif name in ("GE_eventTime", "LT_eventTime", "GE_recordTime", "LT_recordTime"):
        if len(values) != 1:
            raise query_problem(f"{name} takes one time", name)
        millis = _time_bound(values[0], name)
        op = "$gte" if name.startswith("GE_") else "$lt"
        cond.append({name[3:]: {op: millis}})
        normal = [str(millis)]
    elif name in ("EQ_readPoint", "EQ_bizLocation"):
        variants = sorted({s for v in values for s in _location_variants(v, name)})
        cond.append({name[3:]: {"$in": variants}})
        normal = variants
    elif name in ("MATCH_epc", "MATCH_anyEPC", "MATCH_parentID", "MATCH_inputEPC",
                  "MATCH_outputEPC"):
        wanted = [_identifier(v, name) for v in values]
        exact = sorted({w.exact for w in wanted if w.exact is not None})
        ors: list[dict[str, Any]] = [{"epcs": {"$in": exact}}] if exact else []
        ors += [w.condition("epcs") for w in wanted if w.exact is None]
        cond.append(ors[0] if len(ors) == 1 else {"$or": ors})
        if name == "MATCH_epc":
            flt.predicates.append(_match_predicate(wanted, ("epcList", "childEPCs"), False))
        elif name == "MATCH_anyEPC":
            flt.predicates.append(_match_predicate(
                wanted, ("epcList", "childEPCs", "inputEPCList", "outputEPCList"), True))
        elif name == "MATCH_inputEPC":
            flt.predicates.append(_match_predicate(wanted, ("inputEPCList",), False))
        elif name == "MATCH_outputEPC":
            flt.predicates.append(_match_predicate(wanted, ("outputEPCList",), False))
        else:
            flt.predicates.append(_match_predicate(wanted, (), True))
        normal = sorted(w.exact or f"{w.prefix}*" for w in wanted)
    elif name == "EQ_eventID":
        normal = sorted(set(values))
        cond.append({"eventID": {"$in": normal}})
    elif name.startswith(_BIZ_TRANSACTION) and len(name) > len(_BIZ_TRANSACTION):
        btt = _vocabulary(name[len(_BIZ_TRANSACTION):], "btt", name)
        normal = sorted({f"{btt}|{v}" for v in values})
        cond.append({"bizTransactions": {"$in": normal}})
    elif name in _STANDARD_UNSUPPORTED:
        raise Problem(501, "query_parameter_unsupported", f"{name} is an EPCIS 2.0 query "
                      "parameter this repository does not implement (results come in "
                      "the order the chain recorded them)",
                      epcisException="ImplementationException", parameter=name)
    else:
        raise query_problem(f"unknown query parameter {name[:64]!r}", name)
    flt.normalised[name] = normal


def encode_page_token(pos: int, flt: EventFilter) -> str:
    raw = json.dumps([pos, flt.digest], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_page_token(token: str, flt: EventFilter) -> int:
    try:
        if len(token) > PAGE_TOKEN_CHARS_MAX:
            raise ValueError
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise query_problem("nextPageToken is not one of ours", "nextPageToken") from None
    if (not isinstance(value, list) or len(value) != 2 or type(value[0]) is not int
            or not 0 <= value[0] <= INT_MAX or value[1] != flt.digest):
        raise query_problem("nextPageToken belongs to another query (or is damaged)",
                             "nextPageToken")
    return int(value[0])


@dataclass
class QueryResult:
    events: list[dict[str, Any]]
    last_pos: int | None  # pos of the last event returned
    scanned_to: int  # every view document up to this pos was examined
    more: bool  # there are further matches (or unexamined documents) below the bound


def stored_event(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The event as the chain recorded it (undoing ``put_json_value``), served the way
    EPCIS 2.0 says a repository serves it: ``recordTime`` is when the repository (the
    chain: its block time) recorded the event, whatever the capture said, and an
    event captured without an ``eventID`` gets its CBV 2.0 hash as one."""
    text = doc.get("event_json")
    if isinstance(text, str):
        loaded = json.loads(text)
        event = loaded if isinstance(loaded, dict) else {}
    else:
        raw = doc.get("event")
        event = dict(raw) if isinstance(raw, Mapping) else {}
    if isinstance(doc.get("recordTime"), int):
        event["recordTime"] = epcis_values.format_time(doc["recordTime"])
    if "eventID" not in event and isinstance(doc.get("event_hash"), str):
        event["eventID"] = doc["event_hash"]
    return numbers_as_numbers(event)


async def run_query(db: Any, flt: EventFilter, *, after: int, want: int,
                    before: int) -> QueryResult:
    """Up to ``want`` matching events with ``after < pos < before``, in ``pos`` order."""
    found: list[tuple[int, dict[str, Any]]] = []
    cursor = after
    scanned = 0
    exhausted = False
    while len(found) <= want and scanned < QUERY_SCAN_MAX:
        batch = want + 1 - len(found)
        if flt.predicates:
            batch = min(QUERY_READ_BATCH, max(batch, 50), QUERY_SCAN_MAX - scanned)
        docs = await db[EPCIS_EVENTS].find(flt.mongo(cursor, before)) \
            .sort("pos", 1).limit(batch).to_list()
        for doc in docs:
            scanned += 1
            cursor = int(doc["pos"])
            event = stored_event(doc)
            if all(check(event) for check in flt.predicates):
                found.append((cursor, event))
                if len(found) > want:
                    break
        if len(docs) < batch:
            exhausted = True
            break
    more = len(found) > want or not exhausted
    page = found[:want]
    # With a further match found, the next read starts after the last one returned;
    # otherwise everything read so far was examined.
    scanned_to = page[-1][0] if len(found) > want else cursor
    return QueryResult([e for _, e in page], page[-1][0] if page else None, scanned_to,
                       more)


def query_document(events: list[dict[str, Any]], query_name: str, *,
                   subscription_id: str | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {"queryName": query_name}
    if subscription_id is not None:
        results["subscriptionID"] = subscription_id
    results["resultsBody"] = {"eventList": events}
    return {"@context": [EPCIS_CONTEXT], "type": "EPCISQueryDocument",
            "schemaVersion": "2.0", "creationDate": epcis_values.format_time(now_ms()),
            "epcisBody": {"queryResults": results}}


__all__ = [
    "EventFilter",
    "QueryResult",
    "decode_page_token",
    "encode_page_token",
    "parse_event_query",
    "query_document",
    "query_problem",
    "run_query",
    "stored_event",
]
