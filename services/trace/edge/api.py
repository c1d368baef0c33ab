"""The trace domain's HTTP endpoints (the EPCIS 2.0 REST binding is ``services.trace.edge.epcis``).

Public, for consumers and customs (no signature needed):

``GET  /v1/trace/products/{gtin}``      master data and its certificates, each judged
``GET  /v1/trace/verify``               scan a product's QR code or tap its secure tag
                                        (its GS1 Digital Link): genuine, unknown serial,
                                        sold, decommissioned or suspected clone, and what
                                        the scan itself proves (docs/adr/0005)
``POST /v1/trace/certificates/verify``  the three checks of a presented certificate
``GET  /v1/trace/provenance``           a serialised item's or a lot's history, raw
                                        materials to sale, each step with its proof

Verdicts and certificate checks are read from the replica's state (the chain);
provenance from the views. A verification's scan is judged with the contract's own
``judge_scan`` (the answer is the judgement the chain will make) and queued for the
chain within the anonymous scan budget (``scans``); it never makes the item a
suspected clone by itself. (Penalties moved to the trade domain with its agreements.)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web
from pydantic import Field

from services.gateway.models import HEX32, Model, Open
from services.gateway.openapi import Endpoint
from services.gateway.problems import Problem, parse_json_body
from services.ledger.core.state import StateView
from services.trace import documents, identifiers
from services.trace.certificates import certificate_in_force
from services.trace.edge.provenance import (
    OPEN_HIGH,
    OPEN_LOW,
    ProvenanceCache,
    ProvenanceLimits,
    walk,
)
from services.trace.edge.scans import ScanLimits, ScanRecorder
from services.trace.edge.views import EPCIS_EVENTS
from services.trace.items import item_key
from services.trace.scans import (
    CLONE_WINDOW_MS,
    EVIDENCE_ANONYMOUS,
    PROOF_ABSENT,
    PROOF_INVALID,
    PROOF_REPLAYED,
    PROOF_VALID,
    TAG_COUNTER_MAX,
    Scan,
    ScanJudgement,
    TagCode,
    judge_scan,
)

#: what a provenance walk reads of each ``epcis_events`` document
_STEP_FIELDS = {f: 1 for f in ("type", "action", "bizStep", "disposition", "eventTime",
                               "bizLocation", "org", "tx_hash", "height", "pos",
                               "parentID", "epcs", "inputs", "outputs")}


COUNTRY = r"^[A-Z]{2}$"
GTIN_PATH = r"^(?:[0-9]{8}|[0-9]{12,14})$"  # GTIN-8/12/13/14, check digit checked
TAG_SIGNATURE = r"^[0-9a-fA-F]{128}$"
#: fields of a tag's code a tag writes into the link it serves
LINK_COUNTER, LINK_SIGNATURE = "ctr", "sig"
LINK_QUERY_FIELDS_MAX = 32


class VerifyQuery(Model):
    link: str = Field(min_length=10, max_length=512,
                      description="The GS1 Digital Link (or EPC URN) read from the product. "
                                  "A secure tag's link carries its code: ?ctr=<counter, "
                                  "decimal>&sig=<Ed25519 signature, 128 hex digits>")
    country: str = Field(pattern=COUNTRY, description="Where the scan happens, as the "
                                                      "scanner claims (ISO 3166-1 alpha-2)")
    tag_counter: int | None = Field(None, ge=0, le=TAG_COUNTER_MAX,
                                    description="A secure tag's code when the link does "
                                                "not carry it: its counter (with "
                                                "tag_signature)")
    tag_signature: str | None = Field(None, pattern=TAG_SIGNATURE,
                                      description="A secure tag's code: its Ed25519 "
                                                  "signature (with tag_counter)")


class ProvenanceQuery(Model):
    id: str = Field(min_length=10, max_length=512,
                    description="An EPC URN or GS1 Digital Link (item or lot)")
    fresh: bool = Field(False, description="Bypass the gateway's provenance cache")


class CertificateVerifyBody(Model):
    document: dict[str, Any]


class CertificateStatus(Open):
    merkle_root: str = Field(pattern=HEX32)
    type: str
    issuer: str
    valid_from: int
    valid_until: int
    revoked: bool
    valid: bool


class ProductResponse(Open):
    gtin: str = Field(pattern=r"^[0-9]{14}$")
    name: str
    brand_owner: str
    certificates: list[CertificateStatus]
    digital_link: str


class ScanOutcome(Open):
    evidence: Literal["possession", "anonymous"] = Field(
        description="possession: the tag's fresh code proves the genuine tag was tapped "
                    "(not where); anonymous: anything anyone could have sent")
    proof: Literal["valid", "replayed", "invalid", "absent"] = Field(
        description="the tag code: valid; replayed (an earlier tap's code again, e.g. a "
                    "copied link: it judges this scan, never the item); invalid; absent")
    recorded: bool = Field(description="queued for the chain's next scan batch")
    not_recorded_reason: Literal["unknown_product", "no_relay", "budget_exhausted",
                                 "queue_full", "closing"] | None


class ScanWarning(Open):
    code: Literal["scan_anomaly", "recent_anomaly", "replayed_code", "invalid_code",
                  "tag_not_tapped"]
    message: str


class ItemSummary(Open):
    state: str
    brand_owner: str
    scans: int | None = None
    last_country: str | None = None
    tagged: bool
    anomalies: int


class VerifyResponse(Open):
    verdict: Literal["genuine", "unknown_product", "unknown_serial", "sold",
                     "decommissioned", "suspected_clone"] = Field(
        description="About the item, from evidence only: an anonymous scan never makes it "
                    "a suspected clone (docs/adr/0005)")
    epc: str
    product: dict[str, Any] | None
    item: ItemSummary | None
    certificates: list[CertificateStatus]
    certified: bool
    scan: ScanOutcome
    warnings: list[ScanWarning] = Field(description="Weak signals for the consumer, never "
                                                    "the verdict")
    scan_recorded: bool = Field(description="scan.recorded (kept for older clients)")


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
    def __init__(self, gateway: Any, limits: ProvenanceLimits | None = None,
                 scan_limits: ScanLimits | None = None) -> None:
        self.gateway = gateway
        self.provenance_limits = limits or ProvenanceLimits()
        self.provenance_cache = ProvenanceCache(self.provenance_limits)
        scan_limits = scan_limits or ScanLimits()
        # started on first use, on the running loop; stopped by close()
        self.scans = ScanRecorder(lambda: self.gateway.relay, scan_limits)

    async def close(self) -> None:
        """Stop recording scans (what is queued goes out in one last batch)."""
        await self.scans.close()

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
              path_params={"gtin": {"type": "string", "pattern": GTIN_PATH}},
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
        ]

    # --- state helpers ---------------------------------------------------------------

    def _view(self) -> StateView:
        view: StateView = self.gateway.chain.view()
        return view

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
        code = _tag_code(q)
        try:
            parsed = identifiers.parse_identifier(q.link)
        except identifiers.IdentifierError as exc:
            raise Problem(400, exc.code, str(exc)) from exc
        if not isinstance(parsed, identifiers.Sgtin):
            raise Problem(400, "not_serialised", "verification needs a serialised item "
                          "(GTIN + serial number)")
        view = self._view()
        product = view.get(f"trace/product/{parsed.gtin}")
        certificates = self._certificates(view, parsed.gtin) if product else []
        key = item_key(q.link)
        item = view.get(f"trace/{key}") if key else None
        scan = Scan(parsed.to_digital_link(), q.country, code)
        judgement = self._judge(item, scan)
        if product is None:
            verdict = "unknown_product"
        elif item is None:
            verdict = "unknown_serial"
        elif item.get("clone_suspected") or judgement.clone_reason is not None:
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
        not_recorded = self._record(scan, judgement, product is not None)
        return json_response({
            "verdict": verdict, "epc": scan.epc, "product": product,
            "item": _item_summary(item), "certificates": certificates,
            "certified": any(c["valid"] for c in certificates),
            "scan": {"evidence": judgement.evidence, "proof": judgement.proof,
                     "recorded": not_recorded is None,
                     "not_recorded_reason": not_recorded},
            "warnings": _warnings(item, judgement, scan, _now_ms()),
            "scan_recorded": not_recorded is None})

    def _judge(self, item: Mapping[str, Any] | None, scan: Scan) -> ScanJudgement:
        """The contract's judgement of this scan, on the chain's state plus the codes
        this gateway has queued and not yet seen committed (a code queued once is a
        replay the second time, whether or not its batch has committed)."""
        if item is None:
            return ScanJudgement(PROOF_ABSENT if scan.code is None else PROOF_INVALID,
                                 EVIDENCE_ANONYMOUS, None, None)
        seen = self.scans.counter_seen(scan.epc)
        if seen > item.get("tag_counter", 0):
            item = {**item, "tag_counter": seen}
        return judge_scan(item, scan, _now_ms(), reader=None)

    def _record(self, scan: Scan, judgement: ScanJudgement, known: bool) -> str | None:
        """Queue the scan for the chain: None, or why it will not be recorded (a 429
        problem when the item's valid tag codes come faster than its own budget)."""
        if not known:
            return "unknown_product"  # nobody to tell, nothing to count it against
        if self.gateway.relay is None:
            return "no_relay"
        return self.scans.offer(scan, proven=judgement.proof == PROOF_VALID)

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


def _now_ms() -> int:
    return int(time.time() * 1000)


def _tag_code(q: VerifyQuery) -> TagCode | None:
    """The tag's code of a verification: in the link's own query string (a tag writes
    it into the URL it serves) or in the tag_* parameters (both: they must agree)."""
    if (q.tag_counter is None) != (q.tag_signature is None):
        raise Problem(400, "incomplete_tag_code", "tag_counter and tag_signature come "
                                                  "together")
    given = None if q.tag_counter is None or q.tag_signature is None else \
        TagCode(q.tag_counter, bytes.fromhex(q.tag_signature))
    in_link = _link_tag_code(q.link)
    if given is not None and in_link is not None and given != in_link:
        raise Problem(400, "conflicting_tag_code", "the link and the tag_* parameters "
                                                   "carry different codes")
    return given or in_link


def _link_tag_code(link: str) -> TagCode | None:
    if not link.startswith(("https://", "http://")) or "?" not in link:
        return None
    try:
        fields = parse_qsl(urlsplit(link).query, keep_blank_values=True,
                           max_num_fields=LINK_QUERY_FIELDS_MAX)
    except ValueError as exc:
        raise Problem(400, "bad_tag_code", f"the link's query string: {exc}") from exc
    values: dict[str, list[str]] = {}
    for name, value in fields:
        if name in (LINK_COUNTER, LINK_SIGNATURE):
            values.setdefault(name, []).append(value)
    if not values:
        return None
    counter, signature = values.get(LINK_COUNTER, []), values.get(LINK_SIGNATURE, [])
    if len(counter) != 1 or len(signature) != 1:
        raise Problem(400, "incomplete_tag_code", f"a tag's link carries one "
                      f"{LINK_COUNTER} and one {LINK_SIGNATURE}")
    text, sig = counter[0], signature[0]
    if not (text.isascii() and text.isdigit() and len(text) <= 16
            and int(text) <= TAG_COUNTER_MAX):
        raise Problem(400, "bad_tag_code", f"{LINK_COUNTER} must be a decimal counter "
                                           f"of at most {TAG_COUNTER_MAX}")
    if not (len(sig) == 128 and sig.isascii() and all(
            c in "0123456789abcdefABCDEF" for c in sig)):
        raise Problem(400, "bad_tag_code", f"{LINK_SIGNATURE} must be 128 hex digits")
    return TagCode(int(text), bytes.fromhex(sig))


def _item_summary(item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if item is None:
        return None
    return {**{k: item[k] for k in ("state", "brand_owner", "scans", "last_country")
               if k in item},
            "tagged": "tag_key" in item, "anomalies": item.get("anomalies", 0)}


def _warnings(item: Mapping[str, Any] | None, judgement: ScanJudgement, scan: Scan,
              now: int) -> list[dict[str, str]]:
    """What the consumer should know beside the verdict: weak signals, never verdicts."""
    out: list[dict[str, str]] = []

    def warn(code: str, message: str) -> None:
        out.append({"code": code, "message": message})

    if judgement.anomaly is not None:
        if judgement.evidence == EVIDENCE_ANONYMOUS:
            why = "unproven scans, which anyone can send, so no verdict"
        else:  # a tag's code or a reader after decommissioning: told to the brand owner
            why = ("reported to the brand owner, not a verdict (a genuine tag's code "
                   "carries no time: it may have been read before)")
        warn("scan_anomaly", f"{judgement.anomaly}: {why}")
    elif item is not None and item.get("anomaly_at") is not None and \
            now - item["anomaly_at"] < CLONE_WINDOW_MS:
        warn("recent_anomaly", "unproven scans of this serial conflicted within the last "
                               f"{CLONE_WINDOW_MS // 3_600_000} hours: no verdict")
    if judgement.proof == PROOF_REPLAYED:
        warn("replayed_code", "this tag code was presented before: it is a copy of an "
                              "earlier tap (a copied link, not necessarily a copied "
                              "product); tap the tag itself")
    elif judgement.proof == PROOF_INVALID:
        warn("invalid_code", "the tag code does not verify against this item's tag")
    elif scan.code is None and item is not None and "tag_key" in item:
        warn("tag_not_tapped", "this item carries a secure tag: tap it to prove the item "
                               "in your hands carries the genuine tag")
    return out
