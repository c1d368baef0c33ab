"""The trace domain's MongoDB views, projected from the trace contract's events.

=====================  ==============  =============================================
collection             ``_id``         from
=====================  ==============  =============================================
``trace_products``     GTIN            ``trace.product.registered``
``trace_certificates`` Merkle root     ``trace.certificate.issued`` / ``.revoked``
``epcis_events``       CBV event hash  ``trace.event.captured`` (the whole event, plus
                                       the fields the EPCIS query parameters filter)
=====================  ==============  =============================================

``epcis_events.epcs`` lists every identifier an event names (objects, children,
parent, inputs, outputs), which is what ``MATCH_anyEPC`` and provenance walk.
Like every view these are rebuildable from the chain; the chain's own records
(and proofs) stay the truth.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel

from services.gateway.views.schema import (
    BlockContext,
    ViewSpec,
    Write,
    event_id,
    pos_of,
    put_json_value,
)
from services.trace import epcis, identifiers

PRODUCTS = "trace_products"
CERTIFICATES = "trace_certificates"
EPCIS_EVENTS = "epcis_events"


def _events(ctx: BlockContext, kind: str) -> list[Any]:
    return [e for e in ctx.events if e.type == kind]


def project_products(ctx: BlockContext) -> list[Write]:
    return [Write(PRODUCTS, e.attributes["gtin"], {**e.attributes, "height": ctx.height,
                                                     "time": ctx.time})
            for e in _events(ctx, "trace.product.registered")]


def project_certificates(ctx: BlockContext) -> list[Write]:
    out = []
    for e in _events(ctx, "trace.certificate.issued"):
        a = e.attributes
        out.append(Write(CERTIFICATES, a["merkle_root"], {
            **a, "subject": f"{a['subject_kind']}:{a['subject_id']}", "revoked": False,
            "height": ctx.height, "anchored_at": ctx.time, "event": event_id(ctx, e)}))
    for e in _events(ctx, "trace.certificate.revoked"):
        a = e.attributes
        fields: dict[str, Any] = {"last_revocation": ctx.time}
        if a.get("target_hash") is None:
            fields["revoked"] = True
        out.append(Write(CERTIFICATES, a["merkle_root"], fields))
    return out


def _canonical(identifier: str) -> str:
    """The Digital Link form the contract and ``epcs`` use (as submitted if unparseable)."""
    try:
        return identifiers.to_digital_link(identifier)
    except identifiers.IdentifierError:
        return identifier


def _ids(event: dict[str, Any], epc_list: str, quantity_list: str) -> set[str]:
    out = {_canonical(x) for x in event.get(epc_list, []) if isinstance(x, str)}
    out |= {_canonical(q["epcClass"]) for q in event.get(quantity_list, [])
            if isinstance(q, dict) and isinstance(q.get("epcClass"), str)}
    return out


def _biz_transactions(event: dict[str, Any]) -> list[str]:
    return [f"{b.get('type', '')}|{b.get('bizTransaction', '')}"
            for b in event.get("bizTransactionList", []) if isinstance(b, dict)]


def project_epcis_events(ctx: BlockContext) -> list[Write]:
    out = []
    for e in _events(ctx, "trace.event.captured"):
        a = e.attributes
        event = a["event"]
        doc: dict[str, Any] = {
            "pos": pos_of(ctx.height, e.index),
            "height": ctx.height,
            "tx_hash": ctx.tx_hashes[e.tx_index] if e.tx_index is not None else None,
            "event_index": e.index,
            "event_hash": a["event_hash"],
            "eventID": event.get("eventID", a["event_hash"]),
            "type": event["type"],
            "action": event.get("action"),
            "bizStep": a.get("biz_step"),
            "disposition": a.get("disposition"),
            "eventTime": a["time"],
            "recordTime": ctx.time,
            "readPoint": (event.get("readPoint") or {}).get("id"),
            "bizLocation": (event.get("bizLocation") or {}).get("id"),
            "parentID": _canonical(event["parentID"]) if event.get("parentID") else None,
            "epcs": sorted(epcis.epcs_of(event)),
            "outputs": sorted(_ids(event, "outputEPCList", "outputQuantityList")),
            "inputs": sorted(_ids(event, "inputEPCList", "inputQuantityList")),
            "bizTransactions": _biz_transactions(event),
            "org": a["org"],
        }
        put_json_value(doc, "event", event)
        out.append(Write(EPCIS_EVENTS, a["event_hash"], doc))
    return out


PRODUCTS_VIEW = ViewSpec(PRODUCTS, (IndexModel([("brand_owner", ASCENDING)]),), project_products)
CERTIFICATES_VIEW = ViewSpec(CERTIFICATES, (
    IndexModel([("subject", ASCENDING)]), IndexModel([("issuer", ASCENDING)])),
    project_certificates)
EPCIS_EVENTS_VIEW = ViewSpec(EPCIS_EVENTS, (
    IndexModel([("pos", ASCENDING)]),
    IndexModel([("epcs", ASCENDING), ("pos", ASCENDING)]),
    IndexModel([("outputs", ASCENDING), ("pos", ASCENDING)]),
    IndexModel([("bizStep", ASCENDING), ("pos", ASCENDING)]),
    IndexModel([("disposition", ASCENDING), ("pos", ASCENDING)]),
    IndexModel([("eventTime", ASCENDING)]),
    IndexModel([("readPoint", ASCENDING), ("pos", ASCENDING)]),
    IndexModel([("bizLocation", ASCENDING), ("pos", ASCENDING)]),
    IndexModel([("parentID", ASCENDING), ("pos", ASCENDING)]),
    IndexModel([("bizTransactions", ASCENDING), ("pos", ASCENDING)]),
    IndexModel([("eventID", ASCENDING)]),
), project_epcis_events)

#: the trace domain's views, handed to the gateway by the composition
TRACE_VIEWS = (PRODUCTS_VIEW, CERTIFICATES_VIEW, EPCIS_EVENTS_VIEW)
