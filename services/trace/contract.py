"""The trace contract: products, locations, certificates, EPCIS events and consumer
scans — run by every replica.

:class:`TraceContract` is the one contract of the trace domain: its actions, their
static checks, and the dispatch of each action to a plain function of the module of its
concern — :mod:`~services.trace.registry` (accreditations, GS1 prefixes, products,
locations), :mod:`~services.trace.certificates`, :mod:`~services.trace.capture` (EPCIS
events, incl. the relayed RFC 9421-signed request) and :mod:`~services.trace.scans`
(secure tags, scans, clone verdicts). The state layout of the whole domain is here.
Agreements, deposits and penalties moved to the trade domain, where money exists
(docs/adr/0009-trade.md): it reads this contract's ``trace.event.captured`` events.

State (namespace ``trace``)::

    accreditation/<org>      {org, accreditations: [{id, types[], scopes[], valid_from,
                              valid_until, revoked_at, by}]} (documents.IssuerRecord)
    product/<gtin>           {gtin, name, brand_owner, company_prefix_length, category,
                              hs_code, registered}
    location/<gln>           {gln, org, name, country, registered}
    prefix/<digits>          {prefix, org, assigned_at, by}: a GS1 company prefix licensed
                             to an organisation; products (GTIN) and locations (GLN) are
                             registered only by the licensee of their prefix. Prefixes
                             never nest (one owner for any key)
    prefixes/<first 6>       [assigned prefixes starting with these digits] (index)
    anchor/<root>            an anchored batch of certificates, documents.AnchorRecord's
                             shape {merkle_root, issuer, anchored_at, valid_from,
                             valid_until, revoked_at (whole batch), revoked_targets
                             {target hash: ms}} plus type, scope, subject
    cert_subject/<subject>   [certificate roots] bound to a product GTIN, lot or org
    event/<hash>             {hash, height, tx, index, type, biz_step, time, org}
    eventid/<sha256(eventID)> the event hash recorded under that EPCIS eventID (unique)
    item/<epc>               {epc, gtin, state, brand_owner, custodian, commissioned,
                              last_country, last_time, last_org, biz_step, disposition,
                              parent, clone_suspected} plus custody_to while its
                             custodian hands it over (capture.custodian_of); once
                             scanned: scans, anonymous_scans, replays, anomalies,
                             anomaly_at, anomaly_proven, last_scan_country,
                             last_scan_time, last_reader, last_reader_country,
                             last_reader_time, last_shelf, last_shelf_country,
                             last_shelf_time; once tagged: tag_key, tag_counter,
                             tag_registered, tag_codes [[counter, signature], ...]

Decisions (see docs/adr/0004-trace-on-chain.md):

* **Events are recorded on the chain in full**: the EPCIS event is part of the
  capture transaction (hence of the block, provable by an inclusion proof),
  and state keeps its CBV 2.0 hash (duplicates refused) plus the per-item
  facts the rules need. Nothing else has to be trusted for provenance.
* **Captures are signed by the capturing party**, not by the gateway: a
  standard EPCIS client signs its HTTP request (RFC 9421, its key registered
  on the chain); the gateway relays the signed request inside a
  ``trace.capture`` transaction and the contract verifies the party's signature
  over the exact bytes. The relay cannot forge or alter a capture. SDK clients
  may also sign ``trace.capture`` transactions themselves.
* **Time** is block time: events from the future beyond ``EVENT_FUTURE_MS``
  are refused (clock-skewed).
* **Clone verdicts rest on evidence a stranger cannot forge**
  (docs/adr/0005-clone-verdicts.md, amended): two registered retailers offering the
  item in two countries within a day, or two different codes of its secure tag for
  one tap. Anything after decommissioning, and anonymous scans, which the gateway
  relays for anyone, raise anomaly signals for the brand owner; they never decide.
* **Custody moves with its holder's consent**: the custodian names the next holder in
  an event's destinationList, who takes over with its next event; only an item's
  brand owner or custodian decommissions it.

This module never does I/O, reads the clock (block time is ``ctx.time``), draws
randomness or uses floats: every replica runs it, so any change of behaviour forks the
chain.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from services.ledger.core.contract import Contract, TxContext, static_fail
from services.ledger.core.errors import InvalidTransaction, TransactionFailed
from services.ledger.core.transactions import Transaction
from services.trace import capture, certificates, identifiers, registry, scans
from services.trace.capture import EVENTS_PER_CAPTURE_MAX

__all__ = ["NAME", "TraceContract"]

NAME = "trace"

#: the function that applies each action (the keys are TraceContract.actions')
_APPLY: Mapping[str, Callable[[TxContext], None]] = {
    "accredit": registry.accredit,
    "revoke_accreditation": registry.revoke_accreditation,
    "assign_prefix": registry.assign_prefix,
    "register_product": registry.register_product,
    "register_location": registry.register_location,
    "anchor_certificate": certificates.anchor_certificate,
    "revoke_certificate": certificates.revoke_certificate,
    "capture": capture.capture,
    "register_tags": scans.register_tags,
    "record_scan": scans.record_scan,
    "record_scans": scans.record_scans,
}


class TraceContract(Contract):
    name = NAME
    actions: Mapping[str, frozenset[str] | None] = {
        "accredit": frozenset({"org", "types", "valid_until"}),
        "revoke_accreditation": frozenset({"org", "id"}),
        "assign_prefix": frozenset({"org", "prefix"}),
        "register_product": frozenset({"gtin", "name", "company_prefix_length"}),
        "register_location": frozenset({"gln", "name", "country"}),
        "anchor_certificate": frozenset({"merkle_root", "type", "subject", "valid_from",
                                         "valid_until"}),
        "revoke_certificate": frozenset({"merkle_root"}),
        "capture": None,
        "register_tags": frozenset({"tags"}),
        "record_scan": frozenset({"epc", "country"}),
        "record_scans": frozenset({"scans"}),
    }

    def check_static(self, tx: Transaction) -> None:
        super().check_static(tx)
        p = tx.payload
        if tx.action == "capture":
            if ("events" in p) == ("request" in p):
                static_fail("capture takes either events (signed by the sender) or a "
                            "signed HTTP request")
            events = p.get("events")
            if events is not None and (not isinstance(events, list)
                                       or not 0 < len(events) <= EVENTS_PER_CAPTURE_MAX):
                static_fail(f"events must be 1..{EVENTS_PER_CAPTURE_MAX} EPCIS events")
            behaviour = p.get("error_behaviour", "rollback")
            if behaviour not in ("rollback", "proceed"):
                static_fail("error_behaviour must be rollback or proceed")
        if tx.action == "register_product":
            try:
                identifiers.normalize_gtin(str(p["gtin"]))
            except identifiers.IdentifierError as exc:
                static_fail(str(exc))
        parse = {"register_tags": scans.parse_tags, "record_scan": scans.parse_scan,
                 "record_scans": scans.parse_scans}.get(tx.action)
        if parse is not None:
            try:
                parse(p)
            except TransactionFailed as exc:
                raise InvalidTransaction(exc.message, code=exc.code) from None

    def apply(self, ctx: TxContext) -> None:
        _APPLY[ctx.tx.action](ctx)

