"""The trace domain's HTTP endpoints (the EPCIS 2.0 REST binding is ``epcis_api``).

Public, for consumers and customs (no signature needed):

``GET  /v1/trace/products/{gtin}``      master data and its certificates, each judged
``GET  /v1/trace/verify``               scan a product's QR code (its GS1 Digital Link):
                                        genuine, unknown serial, sold, decommissioned or
                                        suspected clone — every verification is recorded
``POST /v1/trace/certificates/verify``  the three checks of a presented certificate
``GET  /v1/trace/provenance``           a serialised item's or a lot's history, raw
                                        materials to sale, each step with its proof
``GET  /v1/trace/penalties``            penalties applied, by responsible party

Verdicts and certificate checks are read from the replica's state (the chain);
provenance and penalties from the views.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic import Field

import services.gateway.trace.views  # noqa: F401  (registers the trace views)
from services.gateway.models import Model, Open, PageQuery
from services.gateway.openapi import Endpoint
from services.gateway.problems import Problem, parse_json_body
from services.gateway.trace.provenance import (
    OPEN_HIGH,
    OPEN_LOW,
    ProvenanceCache,
    ProvenanceLimits,
    walk,
)
from services.gateway.trace.views import EPCIS_EVENTS, PENALTIES
from services.ledger.core.errors import LedgerError
from services.ledger.core.state import StateView
from services.trace import documents, identifiers
from services.trace.contract import certificate_in_force, clone_reason, item_key

#: what a provenance walk reads of each ``epcis_events`` document
_STEP_FIELDS = {f: 1 for f in ("type", "action", "bizStep", "disposition", "eventTime",
                               "bizLocation", "org", "tx_hash", "height", "pos",
                               "parentID", "epcs", "inputs", "outputs")}


class VerifyQuery(Model):
    link: str = Field(min_length=10, max_length=512,
                      description="The GS1 Digital Link (or EPC URN) read from the product")
    country: str = Field(pattern=r"^[A-Z]{2}$", description="Where the scan happens "
                                                             "(ISO 3166-1 alpha-2)")


class ProvenanceQuery(Model):
    id: str = Field(min_length=10, max_length=512,
                    description="An EPC URN or GS1 Digital Link (item or lot)")
    fresh: bool = Field(False, description="Bypass the gateway's provenance cache")


class PenaltiesQuery(PageQuery):
    responsible: str | None = Field(None, pattern=r"^[a-z0-9._-]{1,64}$")


class CertificateVerifyBody(Model):
    document: dict[str, Any]


class CertificateStatus(Open):
    merkle_root: str
    type: str
    issuer: str
    valid: bool


class ProductResponse(Open):
    gtin: str
    name: str
    brand_owner: str
    certificates: list[CertificateStatus]


class VerifyResponse(Open):
    verdict: str = Field(description="genuine | unknown_product | unknown_serial | sold | "
                                     "decommissioned | suspected_clone")
    epc: str | None
    product: dict[str, Any] | None
    certificates: list[CertificateStatus]
    scan_recorded: bool


class CheckModel(Open):
    ok: bool
    code: str
    message: str


class CertificateVerification(Open):
    valid: bool
    integrity: CheckModel
    status: CheckModel
    issuer: CheckModel


class ProvenanceStep(Open):
    event_hash: str
    type: str
    bizStep: str | None
    eventTime: int
    via: str
    tx_hash: str | None
    height: int


class ProvenanceResponse(Open):
    id: str
    steps: list[ProvenanceStep]
    truncated: bool


class PenaltyPage(Model):
    items: list[dict[str, Any]]
    next_cursor: str | None


def _span_query(collection: Any, spans: list[tuple[str, int, int]], limit: int) -> Any:
    """The view's documents for provenance spans (see provenance.walk's ``fetch``): events
    naming an identifier within its time span, in chain order — so a container's busy
    past cannot crowd the item's own period out of the limit — or, for a look-back span
    (high below low), the latest aggregation events naming it before the span."""
    lookback = [(i, low) for i, low, high in spans if high < low]
    if lookback:
        ors: list[dict[str, Any]] = [{"epcs": i, "type": "AggregationEvent",
                                      "eventTime": {"$lt": low}} for i, low in lookback]
        return collection.find(ors[0] if len(ors) == 1 else {"$or": ors}, _STEP_FIELDS) \
            .sort("eventTime", -1).to_list(limit)
    ors = []
    for ident, low, high in spans:
        bounds: dict[str, int] = {}
        if low != OPEN_LOW:
            bounds["$gte"] = low
        if high != OPEN_HIGH:
            bounds["$lte"] = high
        ors.append({"epcs": ident, **({"eventTime": bounds} if bounds else {})})
    return collection.find(ors[0] if len(ors) == 1 else {"$or": ors}, _STEP_FIELDS) \
        .sort("pos", 1).to_list(limit)


class TraceApi:
    def __init__(self, gateway: Any, limits: ProvenanceLimits | None = None) -> None:
        self.gateway = gateway
        self.provenance_limits = limits or ProvenanceLimits()
        self.provenance_cache = ProvenanceCache(self.provenance_limits)

    def on_projected(self, docs: Mapping[str, Mapping[Any, Mapping[str, Any]]] | None) -> None:
        """The projector wrote ``docs`` (collection -> _id -> fields; ``None``: the views
        were reset): drop the provenance answers new events can change."""
        if docs is None:
            self.provenance_cache.invalidate(None)
            return
        written = docs.get(EPCIS_EVENTS)
        if written:
            self.provenance_cache.invalidate(
                {ident for doc in written.values() for ident in doc.get("epcs", ())})

    def endpoints(self) -> list[Endpoint]:
        E = Endpoint  # noqa: N806
        return [
            E("GET", "/v1/trace/products/{gtin}", self.get_product,
              "A product's master data and certificates", "trace", {200: ProductResponse},
              path_params={"gtin": {"type": "string", "pattern": r"^[0-9]{8,14}$"}},
              errors=(400, 404, 429)),
            E("GET", "/v1/trace/verify", self.verify, "Verify a product from its QR code",
              "trace", {200: VerifyResponse}, query=VerifyQuery, errors=(400, 429)),
            E("POST", "/v1/trace/certificates/verify", self.verify_certificate,
              "Check a presented certificate: integrity, status, issuer", "trace",
              {200: CertificateVerification}, body=CertificateVerifyBody,
              errors=(400, 415, 422, 429)),
            E("GET", "/v1/trace/provenance", self.provenance,
              "An item's or lot's history with a proof for each step", "trace",
              {200: ProvenanceResponse}, query=ProvenanceQuery,
              errors=(400, 404, 429, 503)),
            E("GET", "/v1/trace/penalties", self.penalties, "Penalties applied", "trace",
              {200: PenaltyPage}, query=PenaltiesQuery, errors=(400, 429, 503)),
        ]

    # --- state helpers ---------------------------------------------------------------

    def _view(self) -> StateView:
        return StateView(self.gateway.runner.host.replica.tip.state)

    def _certificates(self, view: StateView, gtin: str) -> list[dict[str, Any]]:
        now = int(time.time() * 1000)
        out = []
        for root in view.get(f"trace/cert_subject/product:{gtin}") or []:
            record = view.get(f"trace/anchor/{root}")
            if record is None:
                continue
            valid = certificate_in_force(
                record, view.get(f"trace/accreditation/{record['issuer']}"), now)
            out.append({"merkle_root": root, "type": record["type"],
                        "issuer": record["issuer"], "valid_from": record["valid_from"],
                        "valid_until": record["valid_until"],
                        "revoked": record["revoked_at"] is not None
                        or bool(record.get("revoked_targets")), "valid": valid})
        return out

    # --- endpoints -------------------------------------------------------------------------

    async def get_product(self, request: web.Request) -> web.Response:
        from services.gateway.api import json_response

        try:
            gtin = identifiers.normalize_gtin(request.match_info["gtin"])
        except identifiers.IdentifierError as exc:
            raise Problem(400, exc.code, str(exc)) from exc
        view = self._view()
        product = view.get(f"trace/product/{gtin}")
        if product is None:
            raise Problem(404, "product_not_found", f"no product {gtin} on the chain")
        return json_response({**product, "certificates": self._certificates(view, gtin),
                              "digital_link": f"{identifiers.DIGITAL_LINK_HOST}/01/{gtin}"})

    async def verify(self, request: web.Request) -> web.Response:
        from services.gateway.api import json_response, parse_query

        q = parse_query(request, VerifyQuery)
        try:
            parsed = identifiers.parse_identifier(q.link)
        except identifiers.IdentifierError as exc:
            raise Problem(400, exc.code, str(exc)) from exc
        view = self._view()
        if not isinstance(parsed, identifiers.Sgtin):
            raise Problem(400, "not_serialised", "verification needs a serialised item "
                          "(GTIN + serial number)")
        product = view.get(f"trace/product/{parsed.gtin}")
        certificates = self._certificates(view, parsed.gtin) if product else []
        key = item_key(q.link)
        item = view.get(f"trace/{key}") if key else None
        if product is None:
            verdict = "unknown_product"
        elif item is None:
            verdict = "unknown_serial"
        elif item.get("clone_suspected") or clone_reason(item, q.country,
                                                          int(time.time() * 1000)):
            # the scan being made now can itself reveal the copy: say so to this consumer
            verdict = "suspected_clone"
        elif item["state"] == "decommissioned":
            verdict = "decommissioned"
        elif item["state"] == "sold":
            verdict = "sold"
        elif item["brand_owner"] != product["brand_owner"]:
            verdict = "suspected_clone"
        else:
            verdict = "genuine"
        recorded = False
        relay = self.gateway.relay
        if relay is not None and product is not None:
            try:
                relay.send("trace.record_scan", {"epc": parsed.to_digital_link(),
                                                 "country": q.country})
                recorded = True
            except LedgerError:
                recorded = False  # counted by the relay; the verdict still stands
        return json_response({
            "verdict": verdict, "epc": parsed.to_digital_link(), "product": product,
            "item": {k: item[k] for k in ("state", "brand_owner", "scans", "last_country")
                     if k in item} if item else None,
            "certificates": certificates, "scan_recorded": recorded,
            "certified": any(c["valid"] for c in certificates)})

    async def verify_certificate(self, request: web.Request) -> web.Response:
        from services.gateway.api import _is_hex32, json_response

        if request.content_type != "application/json":
            raise Problem(415, "unsupported_media_type", "send application/json")
        body = parse_json_body(await request.read())
        if not isinstance(body, dict) or not isinstance(body.get("document"), dict):
            raise Problem(422, "bad_payload", "send {document: <wrapped certificate>}")
        document = body["document"]
        view = self._view()
        root = (document.get("signature") or {}).get("merkleRoot") if isinstance(
            document.get("signature"), dict) else None
        anchor = issuer = None
        if isinstance(root, str) and _is_hex32(root):
            record = view.get(f"trace/anchor/{root}")
            if record is not None:
                anchor = documents.AnchorRecord.from_state(record)
                org = view.get(f"consortium/org/{record['issuer']}") or {}
                accreditations = view.get(f"trace/accreditation/{record['issuer']}") or {}
                issuer = documents.IssuerRecord.from_state({
                    "org": record["issuer"], "roles": org.get("roles", []),
                    "accreditations": accreditations.get("accreditations", [])})
        report = documents.verify(document, anchor=anchor, issuer=issuer,
                                  now_ms=int(time.time() * 1000))
        return json_response(report.to_json())

    async def provenance(self, request: web.Request) -> web.Response:
        """Events of the item, of what contained it (aggregations) and of what it was made
        from (transformations, back towards raw materials), in time order."""
        from services.gateway.api import json_response, parse_query

        q = parse_query(request, ProvenanceQuery)
        try:
            start = identifiers.to_digital_link(q.id)
        except identifiers.IdentifierError as exc:
            raise Problem(400, exc.code, str(exc)) from exc
        db = self.gateway.views_db()
        answer = None if q.fresh else self.provenance_cache.get(start)
        if answer is None:
            generation = self.provenance_cache.generation

            async def fetch(spans: list[tuple[str, int, int]],
                            limit: int) -> list[dict[str, Any]]:
                docs: list[dict[str, Any]] = await self.gateway.views_call(
                    _span_query(db[EPCIS_EVENTS], spans, limit))
                return docs

            answer = await walk(start, fetch, self.provenance_limits)
            if answer.steps:
                self.provenance_cache.put(start, answer, generation)
        if not answer.steps:
            raise Problem(404, "no_history", f"no event names {start}")
        return json_response({"id": start, "steps": answer.steps,
                              "truncated": answer.truncated})

    async def penalties(self, request: web.Request) -> web.Response:
        from services.gateway.api import json_response, parse_query

        q = parse_query(request, PenaltiesQuery)
        db = self.gateway.views_db()
        query: dict[str, Any] = {} if q.responsible is None else {"responsible": q.responsible}
        skip = 0
        if q.cursor is not None:
            if not (q.cursor.isascii() and q.cursor.isdigit() and len(q.cursor) <= 9):
                raise Problem(400, "bad_cursor", "bad cursor")
            skip = int(q.cursor)
        docs = await self.gateway.views_call(
            db[PENALTIES].find(query).sort("_id", 1).skip(skip).to_list(q.limit + 1))
        items = [{**{k: v for k, v in d.items() if k != "_id"}, "id": d["_id"]}
                 for d in docs[:q.limit]]
        more = len(docs) > q.limit
        return json_response({"items": items,
                              "next_cursor": str(skip + q.limit) if more else None})
