"""The trace contract: products, locations, certificates, EPCIS events, agreements
with automatic penalties, and consumer scans — run by every replica.

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
    item/<epc>               {epc, state, brand_owner, last_location, last_country,
                              last_time, biz_step, disposition, parent, clone_suspected}
                             plus, once scanned: scans, anonymous_scans, replays,
                             anomalies, anomaly_at, last_scan_country, last_scan_time,
                             last_reader, last_reader_country, last_reader_time,
                             last_shelf, last_shelf_country, last_shelf_time;
                             once tagged: tag_key, tag_counter, tag_registered
    agreement/<id>           {id, proposer, counterparty, responsible, epcs[], gtins[],
                              rules[], deposit, remaining, status, deadlines}
    penalty/<id>             {agreement, responsible, amount, currency, rule, reason, time}

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
* **Money** is integer minor units with a currency; deposits and penalties
  are records against the responsible party (later feeding credit), not
  token transfers.
* **Time** is block time: events from the future beyond ``EVENT_FUTURE_MS``
  are refused (clock-skewed), deadlines fire on BFT time.
* **Clone verdicts rest on evidence a stranger cannot forge**
  (docs/adr/0005-clone-verdicts.md): a registered reader's own signed scan, or a
  secure tag's fresh code (possession). Anonymous scans, which the gateway relays
  for anyone, are counted and may raise a weak anomaly signal; they never decide.

This module never does I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from nacl.bindings import crypto_core_ed25519_is_valid_point

from services.ledger.core import crypto, deadlines, httpsig
from services.ledger.core.contract import (
    BlockContext,
    Contract,
    TxContext,
    payload_int,
    payload_str,
    static_fail,
)
from services.ledger.core.errors import InvalidTransaction, TransactionFailed
from services.ledger.core.transactions import Transaction
from services.trace import documents, epcis, eventhash, identifiers

NAME = "trace"
EVENT_FUTURE_MS = 5 * 60_000  # an event time this far past block time is clock skew
EVENTS_PER_CAPTURE_MAX = 500
PREFIX_DIGITS_MIN = 6  # GS1 company prefixes in use for GTIN-13/14 and GLN: 6..12 digits
PREFIX_DIGITS_MAX = 12
PREFIXES_PER_INDEX_MAX = 1_000  # prefixes sharing their first six digits
#: a relayed capture body is parsed only if it nests at most this deep (a parser's
#: recursion limit depends on the replica's stack: it must never be what decides)
CAPTURE_NESTING_MAX = 64
EPCS_PER_AGREEMENT_MAX = 1_000
RULES_MAX = 16
CLONE_WINDOW_MS = 24 * 3_600_000  # two countries within a day: physically implausible
TAGS_PER_REGISTRATION_MAX = 1_000
SCANS_PER_BATCH_MAX = 500  # a trace.record_scans of the gateway's anonymous scans
EPC_CHARS_MAX = 200
#: what a secure tag signs: this prefix, the item's Digital Link (UTF-8), a zero byte
#: and its tap counter (8 bytes, big-endian), strictly increasing tap by tap
TAG_CODE_PREFIX = b"ecosphere-tag/v1\x00"
TAG_COUNTER_MAX = 2**53 - 1  # the chain's JSON integers
CERT_TYPES = frozenset(documents.CERTIFICATE_TYPES)
BRAND_ROLES = ("manufacturer", "merchant", "supplier", "retailer", "marketplace")
CAPTURE_ROLES = ("manufacturer", "supplier", "carrier", "warehouse", "retailer", "merchant",
                 "marketplace", "customs_cn", "customs_eu", "certifier")
ACCREDITOR_ROLES = ("accreditor", "platform")
#: who relays scans for anyone (the gateway's relay key): such scans are anonymous
SCANNER_ROLES = ("platform", "observer")
#: who scans with its own key as a registered, accountable reader: evidence of place
READER_ROLES = ("carrier", "warehouse", "retailer", "customs_cn", "customs_eu", "certifier")
#: readers at a point of sale: a genuine item sits on one shelf at a time, so two shelves
#: in two countries within the window show a copy. Custody readers (carriers, warehouses,
#: customs, certifiers) follow goods across borders within hours: their scans are
#: evidence of custody, never of a country conflict (a China-Europe train crosses four
#: borders in a day).
SHELF_ROLES = ("retailer",)
#: who licenses GS1 company prefixes to members (the platform, as the GS1 member
#: organisation's registry would): a GTIN or GLN can only be registered by its licensee
PREFIX_AUTHORITY_ROLES = ("platform",)
CURRENCIES = frozenset({"EUR", "CNY", "USD", "GBP", "PLN", "CZK", "HUF"})

# Item states along the supply chain (CBV bizSteps move items between them).
STATE_BY_BIZSTEP = {
    "commissioning": "commissioned", "encoding": "commissioned",
    "packing": "packed", "unpacking": "commissioned", "loading": "in_transit",
    "shipping": "in_transit", "departing": "in_transit", "arriving": "in_transit",
    "unloading": "in_transit", "receiving": "received", "storing": "received",
    "accepting": "received", "inspecting": None, "sampling": None,
    "retail_selling": "sold", "decommissioning": "decommissioned",
    "destroying": "decommissioned", "disposing": "decommissioned",
}
TERMINAL_STATES = frozenset({"decommissioned"})


def _fail(code: str, message: str) -> TransactionFailed:
    return TransactionFailed(message, code=code)


def _money(ctx: TxContext, value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        ctx.fail("bad_payload", f"{field} must be {{amount, currency}}")
    amount, currency = value.get("amount"), value.get("currency")
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount <= 10**15:
        ctx.fail("bad_payload", f"{field}.amount must be integer minor units")
    if currency not in CURRENCIES:
        ctx.fail("bad_payload", f"{field}.currency must be one of {sorted(CURRENCIES)}")
    return {"amount": amount, "currency": currency}


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
        "propose_agreement": frozenset({"id", "counterparty", "responsible", "rules",
                                        "deposit"}),
        "accept_agreement": frozenset({"id"}),
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
        parse = {"register_tags": parse_tags, "record_scan": parse_scan,
                 "record_scans": parse_scans}.get(tx.action)
        if parse is not None:
            try:
                parse(p)
            except TransactionFailed as exc:
                raise InvalidTransaction(exc.message, code=exc.code) from None

    def apply(self, ctx: TxContext) -> None:
        getattr(self, "_" + ctx.tx.action)(ctx)

    # --- accreditation ------------------------------------------------------------------

    def _accredit(self, ctx: TxContext) -> None:
        """An accreditation authority (or the platform) accredits a certification body
        for certificate types and scope codes (documents.Accreditation's shape)."""
        ctx.require_org_role(*ACCREDITOR_ROLES)
        ctx.require_admin()
        org_id = payload_str(ctx, "org", size_max=64)
        org = ctx.read(f"consortium/org/{org_id}")
        if org is None:
            ctx.fail("not_found", f"organisation {org_id!r} does not exist")
        if "certifier" not in org["roles"]:
            ctx.fail("forbidden", f"{org_id} is not a certification body (role certifier)")
        types = ctx.payload.get("types")
        if not isinstance(types, list) or not types or not set(types) <= CERT_TYPES:
            ctx.fail("bad_payload", f"types must be a non-empty subset of {sorted(CERT_TYPES)}")
        scopes = ctx.payload.get("scopes", ["*"])
        if not isinstance(scopes, list) or not scopes or not all(
                isinstance(x, str) and 0 < len(x) <= 64 for x in scopes):
            ctx.fail("bad_payload", "scopes must be scope codes (or '*')")
        valid_until = payload_int(ctx, "valid_until")
        if valid_until <= ctx.time:
            ctx.fail("bad_payload", "valid_until is in the past")
        record = ctx.get(f"accreditation/{org_id}") or {"org": org_id, "accreditations": []}
        accreditation_id = f"{ctx.tx.hash.hex()[:16]}"
        entry = {"id": accreditation_id, "types": sorted(set(types)),
                 "scopes": sorted(set(scopes)), "valid_from": ctx.time,
                 "valid_until": valid_until, "revoked_at": None, "by": ctx.sender_org}
        record["accreditations"] = [*record["accreditations"], entry][-16:]
        ctx.put(f"accreditation/{org_id}", record)
        ctx.emit("trace.accreditation.granted", {"org": org_id, **entry})

    def _revoke_accreditation(self, ctx: TxContext) -> None:
        ctx.require_org_role(*ACCREDITOR_ROLES)
        ctx.require_admin()
        org_id = payload_str(ctx, "org", size_max=64)
        accreditation_id = payload_str(ctx, "id", size_max=64)
        record = ctx.get(f"accreditation/{org_id}")
        entry = next((a for a in (record or {}).get("accreditations", [])
                      if a["id"] == accreditation_id), None)
        if record is None or entry is None or entry["revoked_at"] is not None:
            ctx.fail("not_found", f"{org_id} holds no active accreditation {accreditation_id}")
        entry["revoked_at"] = ctx.time
        ctx.put(f"accreditation/{org_id}", record)
        ctx.emit("trace.accreditation.withdrawn", {"org": org_id, "id": accreditation_id,
                                                   "by": ctx.sender_org})

    # --- master data --------------------------------------------------------------------

    def _assign_prefix(self, ctx: TxContext) -> None:
        """License a GS1 company prefix to an organisation (without it, anyone could
        register a brand's GTIN first and commission "genuine" serials of it)."""
        ctx.require_org_role(*PREFIX_AUTHORITY_ROLES)
        ctx.require_admin()
        org_id = payload_str(ctx, "org", size_max=64)
        if ctx.read(f"consortium/org/{org_id}") is None:
            ctx.fail("not_found", f"organisation {org_id!r} does not exist")
        prefix = payload_str(ctx, "prefix", size_max=32)
        if not (prefix.isascii() and prefix.isdigit()
                and PREFIX_DIGITS_MIN <= len(prefix) <= PREFIX_DIGITS_MAX):
            ctx.fail("bad_prefix", f"a GS1 company prefix is {PREFIX_DIGITS_MIN}.."
                                   f"{PREFIX_DIGITS_MAX} digits")
        index_key = f"prefixes/{prefix[:PREFIX_DIGITS_MIN]}"
        index: list[str] = ctx.get(index_key) or []
        for other in index:
            if other.startswith(prefix) or prefix.startswith(other):
                owner = (ctx.get(f"prefix/{other}") or {}).get("org")
                if other == prefix and owner == org_id:
                    ctx.fail("conflict", f"{prefix} is already {org_id}'s")
                ctx.fail("conflict", f"{prefix} overlaps {other}, licensed to {owner}")
        if len(index) >= PREFIXES_PER_INDEX_MAX:
            ctx.fail("bad_prefix", "too many prefixes under these first digits")
        record = {"prefix": prefix, "org": org_id, "assigned_at": ctx.time,
                  "by": ctx.sender_org}
        ctx.put(f"prefix/{prefix}", record)
        ctx.put(index_key, sorted([*index, prefix]))
        ctx.emit("trace.prefix.assigned", record)

    def _require_prefix(self, ctx: TxContext, digits: str, what: str) -> int:
        """The length of the sender's company prefix that ``digits`` start with; fails if
        that prefix is unassigned or licensed to another organisation."""
        for length in range(PREFIX_DIGITS_MIN, min(PREFIX_DIGITS_MAX, len(digits)) + 1):
            record = ctx.get(f"prefix/{digits[:length]}")
            if record is None:
                continue
            if record["org"] != ctx.sender_org:
                ctx.fail("prefix_not_yours", f"{what} falls under GS1 company prefix "
                         f"{record['prefix']}, licensed to {record['org']}")
            return length
        ctx.fail("unassigned_prefix", f"{what}: no GS1 company prefix of it is licensed to "
                 f"{ctx.sender_org} (the platform assigns them: trace.assign_prefix)")

    def _register_product(self, ctx: TxContext) -> None:
        ctx.require_org_role(*BRAND_ROLES)
        try:
            gtin = identifiers.normalize_gtin(payload_str(ctx, "gtin", size_max=14))
        except identifiers.IdentifierError as exc:
            ctx.fail(exc.code, str(exc))
        if ctx.has(f"product/{gtin}"):
            ctx.fail("conflict", f"product {gtin} is already registered")
        cpl = payload_int(ctx, "company_prefix_length", lo=6, hi=12)
        licensed = self._require_prefix(ctx, gtin[1:], f"GTIN {gtin}")
        if licensed != cpl:
            ctx.fail("bad_payload", f"company_prefix_length is {cpl}, but the licensed "
                                    f"prefix of {gtin} has {licensed} digits")
        name = payload_str(ctx, "name", size_max=256)
        extra = {k: ctx.payload[k] for k in ("category", "hs_code", "origin_country",
                                               "description") if k in ctx.payload}
        for key, value in extra.items():
            if not isinstance(value, str) or len(value) > 512:
                ctx.fail("bad_payload", f"{key} must be a string of at most 512 characters")
        record = {"gtin": gtin, "name": name, "brand_owner": ctx.sender_org,
                  "company_prefix_length": cpl, "registered": ctx.time, **extra}
        ctx.put(f"product/{gtin}", record)
        ctx.emit("trace.product.registered", {"gtin": gtin, "name": name,
                                              "brand_owner": ctx.sender_org,
                                              "company_prefix_length": cpl,
                                              "digital_link":
                                                  f"{identifiers.DIGITAL_LINK_HOST}/01/{gtin}"})

    def _register_location(self, ctx: TxContext) -> None:
        gln = payload_str(ctx, "gln", size_max=13)
        if not identifiers.is_valid_gln(gln):
            ctx.fail("bad_gln", f"{gln!r} is not a GLN (13 digits with a check digit)")
        if ctx.has(f"location/{gln}"):
            ctx.fail("conflict", f"location {gln} is already registered")
        self._require_prefix(ctx, gln, f"GLN {gln}")
        country = payload_str(ctx, "country", size_max=2)
        if len(country) != 2 or not country.isalpha() or not country.isupper():
            ctx.fail("bad_payload", "country must be an ISO 3166-1 alpha-2 code")
        record = {"gln": gln, "org": ctx.sender_org, "name": payload_str(ctx, "name"),
                  "country": country, "registered": ctx.time}
        ctx.put(f"location/{gln}", record)
        ctx.emit("trace.location.registered", {**record})

    # --- certificates -------------------------------------------------------------------

    def _anchor_certificate(self, ctx: TxContext) -> None:
        """Anchor the Merkle root of a batch of certificates (services.trace.documents).

        The state record has documents.AnchorRecord's shape (root, org, time,
        valid_from, valid_until, revoked_at, revoked) plus what the chain checks."""
        ctx.require_org_role("certifier")
        cert_type = payload_str(ctx, "type", size_max=32)
        scope = ctx.payload.get("scope", "*")
        if not isinstance(scope, str) or not 0 < len(scope) <= 64:
            ctx.fail("bad_payload", "scope must be a scope code")
        accreditation = _accreditation(ctx.get(f"accreditation/{ctx.sender_org}"),
                                       cert_type, scope, ctx.time)
        if accreditation is None:
            ctx.fail("not_accredited", f"{ctx.sender_org} holds no accreditation in force "
                     f"for {cert_type} ({scope})")
        root = payload_str(ctx, "merkle_root", size_max=64)
        if len(root) != 64 or not all(c in "0123456789abcdef" for c in root):
            ctx.fail("bad_payload", "merkle_root must be 64 lowercase hex digits")
        if ctx.has(f"anchor/{root}"):
            ctx.fail("conflict", "these certificates are already anchored")
        subject = ctx.payload["subject"]
        if not isinstance(subject, dict) or subject.get("kind") not in (
                "product", "batch", "organisation") or not isinstance(subject.get("id"), str) \
                or not 0 < len(subject["id"]) <= 128:
            ctx.fail("bad_payload", "subject must be {kind: product|batch|organisation, id}")
        subject_id = subject["id"]
        if subject["kind"] == "product":
            try:
                subject_id = identifiers.normalize_gtin(subject_id)
            except identifiers.IdentifierError as exc:
                ctx.fail(exc.code, str(exc))
            if not ctx.has(f"product/{subject_id}"):
                ctx.fail("not_found", f"product {subject_id} is not registered")
        valid_from = payload_int(ctx, "valid_from")
        valid_until = payload_int(ctx, "valid_until")
        if valid_until <= valid_from:
            ctx.fail("bad_payload", "valid_until must be after valid_from")
        if valid_until > accreditation["valid_until"]:
            ctx.fail("beyond_accreditation", "a certificate may not outlast the "
                     "accreditation it is issued under (valid_until after "
                     f"{accreditation['valid_until']})")
        record = {"merkle_root": root, "issuer": ctx.sender_org, "anchored_at": ctx.time,
                  "valid_from": valid_from, "valid_until": valid_until, "revoked_at": None,
                  "revoked_targets": {}, "type": cert_type, "scope": scope,
                  "subject": {"kind": subject["kind"], "id": subject_id},
                  "height": ctx.height, "by": ctx.sender}
        ctx.put(f"anchor/{root}", record)
        subject_key = f"cert_subject/{subject['kind']}:{subject_id}"
        ctx.put(subject_key, [*(ctx.get(subject_key) or []), root][-64:])
        ctx.emit("trace.certificate.issued", {
            "merkle_root": root, "issuer": ctx.sender_org, "type": cert_type, "scope": scope,
            "subject_kind": subject["kind"], "subject_id": subject_id,
            "valid_from": valid_from, "valid_until": valid_until})

    def _revoke_certificate(self, ctx: TxContext) -> None:
        root = payload_str(ctx, "merkle_root", size_max=64)
        record = ctx.get(f"anchor/{root}")
        if record is None:
            ctx.fail("not_found", "no such anchored certificate")
        if record["issuer"] != ctx.sender_org:
            ctx.fail("forbidden", "only the issuer revokes its certificates")
        target = ctx.payload.get("target_hash")
        reason = ctx.payload.get("reason", "")
        if not isinstance(reason, str) or len(reason) > 256:
            ctx.fail("bad_payload", "reason must be at most 256 characters")
        if target is None:
            if record["revoked_at"] is not None:
                ctx.fail("conflict", "already revoked")
            record["revoked_at"] = ctx.time
        else:
            if not isinstance(target, str) or len(target) != 64 or not all(
                    c in "0123456789abcdef" for c in target):
                ctx.fail("bad_payload", "target_hash must be 64 lowercase hex digits")
            if target in record["revoked_targets"]:
                ctx.fail("conflict", "already revoked")
            record["revoked_targets"] = {**record["revoked_targets"], target: ctx.time}
        ctx.put(f"anchor/{root}", record)
        ctx.emit("trace.certificate.revoked", {"merkle_root": root, "target_hash": target,
                                               "issuer": ctx.sender_org, "reason": reason})

    # --- EPCIS capture ------------------------------------------------------------------

    def _capture(self, ctx: TxContext) -> None:
        if "request" not in ctx.payload:
            self._capture_events(ctx, ctx.sender_org, ctx.org_roles, ctx.payload["events"])
            return
        # A relayed, party-signed request: the relay's transaction always commits and
        # carries the outcome as events. Were it refused, its nonce would stay unused
        # and hold back every later relayed transaction (the relay cannot see that a
        # proposer dropped it).
        checkpoint = ctx.checkpoint()
        try:
            org, roles, raw_events = self._signed_request(ctx)
            self._capture_events(ctx, org, roles, raw_events)
        except TransactionFailed as exc:
            ctx.rollback(checkpoint)
            ctx.emit("trace.capture.rejected", {"position": None, "code": exc.code,
                                                "reason": exc.message[:256],
                                                "org": None})

    def _capture_events(self, ctx: TxContext, org: str, roles: frozenset[str],
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
                self._capture_one(ctx, org, raw, position)
                accepted += 1
            except TransactionFailed as exc:
                if not proceed:
                    raise TransactionFailed(f"event {position}: {exc.message}",
                                            code=exc.code) from exc
                ctx.rollback(checkpoint)
                ctx.emit("trace.capture.rejected", {"position": position, "code": exc.code,
                                                    "reason": exc.message[:256], "org": org})
        if accepted == 0:
            ctx.fail("nothing_captured", "no event of this capture was valid")

    def _signed_request(self, ctx: TxContext) -> tuple[str, frozenset[str], list[Any]]:
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
        named = {str(k).lower(): str(v) for k, v in headers.items()}
        behaviour = named.get(httpsig.ERROR_BEHAVIOUR_HEADER, "rollback").strip().lower()
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
            document = epcis.parse_json(body)  # JSON numbers as exact decimal text
            # POST /capture sends an EPCISDocument; POST /events one event
            is_document = isinstance(document, dict) and document.get("type") == \
                "EPCISDocument"
            events = epcis.validate_document(document) if is_document else [document]
        except epcis.EpcisError as exc:
            ctx.fail(exc.code, str(exc))
        except ValueError as exc:
            ctx.fail("bad_payload", f"the capture body is not JSON: {exc}")
        return key["org"], frozenset(org["roles"]), events

    def _capture_one(self, ctx: TxContext, org: str, raw: object, position: int) -> None:
        try:
            event = epcis.validate_event(raw)
            ehash = eventhash.event_hash(event)
        except epcis.EpcisError as exc:
            raise _fail(exc.code, str(exc)) from exc
        except identifiers.IdentifierError as exc:
            raise _fail(exc.code, str(exc)) from exc
        event_time = epcis.parse_time(event["eventTime"])
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
            self._track_item(ctx, org, epc, event, biz_step, country, event_time)
        record = {"hash": ehash, "height": ctx.height, "tx": ctx.tx.hash.hex(),
                  "position": position, "type": event["type"], "biz_step": biz_step,
                  "time": event_time, "org": org}
        ctx.put(hash_key, record)
        ctx.emit("trace.event.captured", {
            "event_hash": ehash, "type": event["type"], "biz_step": biz_step,
            "disposition": event.get("disposition"), "org": org, "time": event_time,
            "location": location, "epcs": sorted(epcis.epcs_of(event))[:100],
            "position": position, "event": event})
        self._check_rules(ctx, event, event_time, org)

    def _track_item(self, ctx: TxContext, org: str, epc: str, event: dict[str, Any],
                    biz_step: str | None, country: str | None, event_time: int) -> None:
        """Per-serialised-item facts: who commissioned it, where it is, what it is."""
        sgtin = _sgtin(epc)
        if sgtin is None:
            return  # lots, cases and pallets are tracked through their events only
        key = f"item/{sgtin.to_digital_link()}"
        item = ctx.get(key)
        action = event.get("action")
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
                    "brand_owner": org, "commissioned": event_time, "scans": 0,
                    "clone_suspected": False}
        elif item["state"] in TERMINAL_STATES:
            raise _fail("decommissioned", f"{epc} was decommissioned")
        elif event_time < item.get("last_time", event_time):
            # A late-arriving earlier event is history (recorded, provable), not news:
            # it must not rewind where the item is now (a sold item back in transit).
            return
        state = STATE_BY_BIZSTEP.get(biz_step or "")
        if state is not None:
            item["state"] = state
        if event["type"] == "AggregationEvent":
            item["parent"] = event.get("parentID") if action != "DELETE" else None
        item.update(biz_step=biz_step, disposition=event.get("disposition"),
                    last_time=event_time, last_org=org)
        if country is not None:
            item["last_country"] = country
        ctx.put(key, item)

    # --- agreements and penalties --------------------------------------------------------

    def _propose_agreement(self, ctx: TxContext) -> None:
        agreement_id = payload_str(ctx, "id", size_max=64)
        if ctx.has(f"agreement/{agreement_id}"):
            ctx.fail("conflict", f"agreement {agreement_id} exists")
        counterparty = payload_str(ctx, "counterparty", size_max=64)
        responsible = payload_str(ctx, "responsible", size_max=64)
        if counterparty == ctx.sender_org:
            ctx.fail("bad_payload", "an agreement needs two organisations")
        if ctx.read(f"consortium/org/{counterparty}") is None:
            ctx.fail("not_found", f"organisation {counterparty!r} does not exist")
        if responsible not in (ctx.sender_org, counterparty):
            ctx.fail("bad_payload", "the responsible party must be one of the two")
        rules = ctx.payload["rules"]
        if not isinstance(rules, list) or not 0 < len(rules) <= RULES_MAX:
            ctx.fail("bad_payload", f"rules must be 1..{RULES_MAX} rules")
        checked = [_check_rule(ctx, rule) for rule in rules]
        epcs = ctx.payload.get("epcs", [])
        gtins = ctx.payload.get("gtins", [])
        if not isinstance(epcs, list) or not isinstance(gtins, list) \
                or len(epcs) + len(gtins) == 0 or len(epcs) > EPCS_PER_AGREEMENT_MAX:
            ctx.fail("bad_payload", "name the goods: epcs and/or gtins")
        canonical = []
        for epc in epcs:
            try:
                canonical.append(identifiers.parse_identifier(str(epc)).to_digital_link())
            except identifiers.IdentifierError as exc:
                ctx.fail(exc.code, f"agreement epcs: {exc}")
        epcs = canonical
        try:
            gtins = [identifiers.normalize_gtin(str(g)) for g in gtins]
        except identifiers.IdentifierError as exc:
            ctx.fail(exc.code, f"agreement gtins: {exc}")
        deposit = _money(ctx, ctx.payload["deposit"], "deposit")
        if any(rule["penalty"]["currency"] != deposit["currency"] for rule in checked):
            ctx.fail("bad_rule", "penalties are paid from the deposit: give them in the "
                                 "deposit's currency")
        record = {"id": agreement_id, "proposer": ctx.sender_org, "counterparty": counterparty,
                  "responsible": responsible, "epcs": sorted(set(map(str, epcs))),
                  "gtins": sorted(set(map(str, gtins))), "rules": checked,
                  "deposit": deposit, "remaining": deposit["amount"], "status": "proposed",
                  "proposed_at": ctx.time, "penalties": 0}
        ctx.put(f"agreement/{agreement_id}", record)
        ctx.emit("trace.agreement.proposed", {"id": agreement_id, "proposer": ctx.sender_org,
                                              "counterparty": counterparty,
                                              "responsible": responsible,
                                              "deposit": deposit})

    def _accept_agreement(self, ctx: TxContext) -> None:
        agreement_id = payload_str(ctx, "id", size_max=64)
        record = ctx.get(f"agreement/{agreement_id}")
        if record is None:
            ctx.fail("not_found", f"no agreement {agreement_id}")
        if record["status"] != "proposed":
            ctx.fail("conflict", f"agreement {agreement_id} is {record['status']}")
        if ctx.sender_org != record["counterparty"]:
            ctx.fail("forbidden", "only the counterparty accepts")
        record.update(status="active", accepted_at=ctx.time)
        for index, rule in enumerate(record["rules"]):
            if rule["type"] == "deadline":
                due = ctx.time + rule["within_ms"]
                rule["due"] = due
                rule["bucket"] = deadlines.schedule(ctx, due, f"{agreement_id}#{index}")
        ctx.put(f"agreement/{agreement_id}", record)
        for epc in record["epcs"]:
            self._index_agreement(ctx, f"epc:{epc}", agreement_id)
        for gtin in record["gtins"]:
            self._index_agreement(ctx, f"gtin:{gtin}", agreement_id)
        ctx.emit("trace.agreement.accepted", {"id": agreement_id, "by": ctx.sender_org,
                                              "deposit": record["deposit"]})

    def _index_agreement(self, ctx: TxContext, subject: str, agreement_id: str) -> None:
        key = f"agreements_of/{subject}"
        ids = ctx.get(key) or []
        if agreement_id not in ids:
            ctx.put(key, [*ids, agreement_id][-32:])

    def _agreements_for(self, ctx: TxContext, event: dict[str, Any]) -> list[str]:
        ids: list[str] = []
        for epc in sorted(epcis.epcs_of(event)):
            sgtin = _sgtin(epc)
            for subject in (f"epc:{epc}", *((f"gtin:{sgtin.gtin}",) if sgtin else ())):
                for agreement_id in ctx.get(f"agreements_of/{subject}") or []:
                    if agreement_id not in ids:
                        ids.append(agreement_id)
        return ids

    def _check_rules(self, ctx: TxContext, event: dict[str, Any], event_time: int,
                     org: str) -> None:
        """Rules on every relevant event: temperature ranges, required certificates, and
        deadlines met (a deadline rule is satisfied by its bizStep in time, whoever
        records it). A breach counts only on an event the responsible party captured
        itself (its own sensors, its own shipping): the other party, who would gain
        the penalty, cannot cause one with readings of its own."""
        for agreement_id in self._agreements_for(ctx, event):
            record = ctx.get(f"agreement/{agreement_id}")
            if record is None or record["status"] != "active":
                continue
            changed = False
            for index, rule in enumerate(record["rules"]):
                if rule.get("settled"):
                    continue
                breach = _breach(ctx, rule, event) if org == record["responsible"] else None
                if breach is not None:
                    _penalise(ctx, record, index, rule, breach, event_time)
                    changed = True
                elif rule["type"] == "deadline" and event.get("bizStep") == rule["biz_step"]:
                    deadlines.cancel(ctx, rule["bucket"], f"{agreement_id}#{index}")
                    rule["settled"] = "met"
                    changed = True
            if changed:
                ctx.put(f"agreement/{agreement_id}", record)

    def begin_block(self, ctx: BlockContext) -> None:
        """Deadlines that fell due by this block's BFT time."""
        for due, item_id, _ in deadlines.due(ctx, ctx.time):
            agreement_id, _, index_text = item_id.rpartition("#")
            record = ctx.get(f"agreement/{agreement_id}")
            if record is None or record["status"] != "active":
                continue
            index = int(index_text)
            rule = record["rules"][index]
            if rule.get("settled"):
                continue
            _penalise(ctx, record, index, rule,
                      f"no {rule['biz_step']} event before the deadline", due)
            ctx.put(f"agreement/{agreement_id}", record)

    # --- secure tags, scans and clones ----------------------------------------------------

    def _register_tags(self, ctx: TxContext) -> None:
        """The brand owner registers the public keys of its items' secure tags (one tag
        per item, for good: a tag whose key could be replaced would vouch for nothing)."""
        # parsed at admission (check_static) and again here: a block is only as
        # well-formed as its proposer made it
        for link, public_key in parse_tags(ctx.payload):
            key = f"item/{link}"
            item = ctx.get(key)
            if item is None:
                ctx.fail("unknown_item", f"{link} was never commissioned")
            if item["brand_owner"] != ctx.sender_org:
                ctx.fail("forbidden", f"only {item['brand_owner']}, the brand owner, "
                                      f"registers the tag of {link}")
            if item["state"] in TERMINAL_STATES:
                ctx.fail("decommissioned", f"{link} was decommissioned")
            if "tag_key" in item:
                ctx.fail("tag_registered", f"{link} already has a tag")
            item.update(tag_key=public_key, tag_counter=0, tag_registered=ctx.time)
            ctx.put(key, item)
            ctx.emit("trace.tag.registered", {"epc": link, "brand_owner": ctx.sender_org,
                                              "public_key": public_key})

    def _record_scan(self, ctx: TxContext) -> None:
        """One scan: a registered reader's own (evidence of place), or one the platform's
        relay records for anyone (anonymous, unless its tag code proves possession)."""
        if not ctx.org_roles.intersection(SCANNER_ROLES + READER_ROLES):
            ctx.fail("forbidden", f"{ctx.tx.kind} needs a reader organisation (role "
                     f"{' or '.join(READER_ROLES)}) or the platform's relay")
        # The relay's organisation never vouches for a place, whatever else it is.
        reader = None if ctx.org_roles.intersection(SCANNER_ROLES) else ctx.sender_org
        shelf = reader is not None and bool(ctx.org_roles.intersection(SHELF_ROLES))
        self._scan(ctx, parse_scan(ctx.payload), reader, shelf=shelf)

    def _record_scans(self, ctx: TxContext) -> None:
        """A batch of the scans the gateway relayed for anyone (all anonymous but for
        their tag codes), at most one transaction per interval (docs/adr/0005)."""
        ctx.require_org_role(*SCANNER_ROLES)
        for scan in parse_scans(ctx.payload):
            self._scan(ctx, scan, None)

    def _scan(self, ctx: TxContext, scan: Scan, reader: str | None, *,
              shelf: bool = False) -> None:
        key = f"item/{scan.epc}"
        item = ctx.get(key)
        if item is None:
            ctx.emit("trace.scan.unknown", {"epc": scan.epc, "country": scan.country})
            return
        judgement = judge_scan(item, scan, ctx.time, reader=reader, shelf=shelf)
        item = scanned(item, scan, judgement, ctx.time, reader=reader, shelf=shelf)
        ctx.put(key, item)
        owner = item["brand_owner"]
        if judgement.proof == PROOF_REPLAYED and scan.code is not None:
            ctx.emit("trace.scan.replayed", {"epc": scan.epc, "brand_owner": owner,
                                             "country": scan.country,
                                             "counter": scan.code.counter,
                                             "tag_counter": item["tag_counter"]})
        if judgement.anomaly is not None:
            ctx.emit("trace.anomaly.raised", {"epc": scan.epc, "brand_owner": owner,
                                            "country": scan.country,
                                            "reason": judgement.anomaly})
        if judgement.clone_reason is not None:
            ctx.emit("trace.clone.suspected", {"epc": scan.epc, "brand_owner": owner,
                                               "country": scan.country,
                                               "reason": judgement.clone_reason})
        ctx.emit("trace.scan.recorded", {"epc": scan.epc, "country": scan.country,
                                         "scans": item["scans"],
                                         "evidence": judgement.evidence,
                                         "proof": judgement.proof, "reader": reader})


# --- secure tags, scans and clone verdicts (pure: the gateway judges with these too) -----

PROOF_VALID = "valid"  # the tag signed it, with a counter above the last accepted
PROOF_REPLAYED = "replayed"  # the tag signed it, but it is an earlier tap's code again
PROOF_INVALID = "invalid"  # no tag signed it (or the item has no tag)
PROOF_ABSENT = "absent"
EVIDENCE_READER = "reader"  # a registered reader's own signed scan: evidence of place
EVIDENCE_POSSESSION = "possession"  # a fresh tag code: the genuine tag was tapped
EVIDENCE_ANONYMOUS = "anonymous"  # anything anyone could have sent


@dataclass(frozen=True, slots=True)
class TagCode:
    """One tap's code: the tag's counter and its signature over (item, counter)."""

    counter: int
    signature: bytes

    def to_payload(self) -> dict[str, Any]:
        return {"counter": self.counter, "signature": self.signature.hex()}


@dataclass(frozen=True, slots=True)
class Scan:
    epc: str  # the item's canonical Digital Link
    country: str  # as claimed by whoever sends the scan
    code: TagCode | None = None

    def to_payload(self) -> dict[str, Any]:
        return {"epc": self.epc, "country": self.country,
                **({} if self.code is None else {"proof": self.code.to_payload()})}


@dataclass(frozen=True, slots=True)
class ScanJudgement:
    proof: str  # PROOF_*
    evidence: str  # EVIDENCE_*
    clone_reason: str | None  # set: this scan makes the item a suspected clone
    anomaly: str | None  # set: a weak signal for the brand owner, never a verdict


def tag_message(link: str, counter: int) -> bytes:
    """The bytes a secure tag signs on a tap (``link``: the item's canonical Digital
    Link)."""
    return TAG_CODE_PREFIX + link.encode() + b"\x00" + counter.to_bytes(8, "big")


def tag_code(key: crypto.PrivateKey, link: str, counter: int) -> TagCode:
    """What a tag holding ``key`` answers on its ``counter``-th tap (tag provisioning
    tools, tests and the demo; a real tag computes it on the chip)."""
    return TagCode(counter, key.sign(tag_message(link, counter)))


def is_tag_key(raw: bytes) -> bool:
    """A strict Ed25519 public key: canonical, on the curve, of prime order (libsodium
    refuses every other key when it verifies, so a tag with one could never prove
    anything)."""
    return len(raw) == crypto.PUBLIC_KEY_BYTES and bool(
        crypto_core_ed25519_is_valid_point(raw))


def judge_code(item: Mapping[str, Any], code: TagCode | None) -> str:
    """PROOF_* of a scan's tag code against the item's tag and last accepted counter.
    A replayed code is what anyone can present (every accepted code is public on
    the chain): it judges the scan, never the item."""
    if code is None:
        return PROOF_ABSENT
    key = item.get("tag_key")
    if not isinstance(key, str) or not crypto.verify(
            bytes.fromhex(key), code.signature, tag_message(item["epc"], code.counter)):
        return PROOF_INVALID
    if code.counter <= item.get("tag_counter", 0):
        return PROOF_REPLAYED
    return PROOF_VALID


def clone_reason(item: Mapping[str, Any], country: str, at: int, *, evidence: str,
                 reader: str | None = None, shelf: bool = False) -> str | None:
    """Why a scan of ``item`` in ``country`` at ``at`` shows a copy exists (None: it
    does not). Only evidence decides:

    * any evidence scan after the item was decommissioned: a registered reader saw
      it, or its genuine tag answered (the tag was reused on other goods);
    * two registered readers at points of sale (``SHELF_ROLES``, different
      organisations) in two countries within ``CLONE_WINDOW_MS``: one item is on
      one shelf. Custody readers (carriers, customs) follow goods across borders
      within hours and never take part in a country conflict.

    A possession proof says the genuine tag was tapped, not where: its country is
    whatever the person tapping claims, so it never takes part in a country
    conflict. An anonymous scan never decides anything."""
    if evidence == EVIDENCE_ANONYMOUS:
        return None
    if item["state"] in TERMINAL_STATES:
        who = f"registered reader {reader}" if reader is not None else \
            "its own tag (a fresh code)"
        return f"scanned in {country} by {who} after it was decommissioned"
    last = item.get("last_shelf")
    if reader is None or not shelf or last is None or last == reader:
        return None
    if item.get("last_shelf_country") != country and \
            at - item.get("last_shelf_time", 0) < CLONE_WINDOW_MS:
        return (f"on sale with registered retailers {last} in {item['last_shelf_country']} "
                f"and {reader} in {country} within {CLONE_WINDOW_MS // 3_600_000} hours")
    return None


def anomaly_reason(item: Mapping[str, Any], country: str, at: int) -> str | None:
    """A weak signal from a scan that is no evidence of place (anonymous, or a tag code
    with a claimed country): the item was scanned in another country within
    ``CLONE_WINDOW_MS``, or after it was decommissioned. At most one per item per
    window, so a flood of made-up scans raises one signal, not thousands."""
    since = item.get("anomaly_at")
    if since is not None and at - since < CLONE_WINDOW_MS:
        return None
    if item["state"] in TERMINAL_STATES:
        return f"an unproven scan in {country} after it was decommissioned"
    last = item.get("last_scan_country")
    if last not in (None, country) and at - item.get("last_scan_time", 0) < CLONE_WINDOW_MS:
        return (f"unproven scans in {last} and {country} within "
                f"{CLONE_WINDOW_MS // 3_600_000} hours")
    return None


def judge_scan(item: Mapping[str, Any], scan: Scan, at: int, *,
               reader: str | None, shelf: bool = False) -> ScanJudgement:
    """The one judgement of a scan: the contract records it, the gateway's verify
    endpoint answers the scanning consumer with it at once (``reader``: the registered
    reader organisation that signed the scan itself; None for relayed scans)."""
    proof = judge_code(item, scan.code)
    evidence = EVIDENCE_READER if reader is not None else \
        EVIDENCE_POSSESSION if proof == PROOF_VALID else EVIDENCE_ANONYMOUS
    reason = clone_reason(item, scan.country, at, evidence=evidence, reader=reader,
                          shelf=shelf)
    anomaly = None if reason is not None or reader is not None else \
        anomaly_reason(item, scan.country, at)
    return ScanJudgement(proof, evidence, reason, anomaly)


def scanned(item: Mapping[str, Any], scan: Scan, judgement: ScanJudgement, at: int, *,
            reader: str | None, shelf: bool = False) -> dict[str, Any]:
    """The item record after a judged scan."""
    record = dict(item)
    record["scans"] = record.get("scans", 0) + 1
    record.update(last_scan_country=scan.country, last_scan_time=at)
    if judgement.evidence == EVIDENCE_ANONYMOUS:
        record["anonymous_scans"] = record.get("anonymous_scans", 0) + 1
    if reader is not None:
        record.update(last_reader=reader, last_reader_country=scan.country,
                      last_reader_time=at)
        if shelf:
            record.update(last_shelf=reader, last_shelf_country=scan.country,
                          last_shelf_time=at)
    if judgement.proof == PROOF_VALID and scan.code is not None:
        record["tag_counter"] = scan.code.counter
    elif judgement.proof == PROOF_REPLAYED:
        record["replays"] = record.get("replays", 0) + 1
    if judgement.anomaly is not None:
        record["anomalies"] = record.get("anomalies", 0) + 1
        record["anomaly_at"] = at
    if judgement.clone_reason is not None:
        record["clone_suspected"] = True
    return record


def _country(value: object) -> str:
    if not isinstance(value, str) or len(value) != 2 or not value.isascii() \
            or not value.isalpha() or not value.isupper():
        raise _fail("bad_payload", "country must be an ISO 3166-1 alpha-2 code")
    return value


def _item_link(value: object) -> str:
    """The canonical Digital Link of a serialised item named by ``value``."""
    if not isinstance(value, str) or not 0 < len(value) <= EPC_CHARS_MAX:
        raise _fail("bad_payload", f"epc must be a string of 1..{EPC_CHARS_MAX} characters")
    key = item_key(value)
    if key is None:
        raise _fail("bad_identifier", f"{value!r} is not a serialised GTIN (SGTIN)")
    return key.removeprefix("item/")


def _lower_hex(value: object, length: int) -> bytes | None:
    if not isinstance(value, str) or len(value) != length or not all(
            c in "0123456789abcdef" for c in value):
        return None
    return bytes.fromhex(value)


def parse_tag_code(value: object) -> TagCode:
    if not isinstance(value, Mapping) or set(value) != {"counter", "signature"}:
        raise _fail("bad_proof", "proof must be {counter, signature}")
    counter = value["counter"]
    if not isinstance(counter, int) or isinstance(counter, bool) or \
            not 0 <= counter <= TAG_COUNTER_MAX:
        raise _fail("bad_proof", f"proof.counter must be an integer in [0, {TAG_COUNTER_MAX}]")
    signature = _lower_hex(value["signature"], 2 * crypto.SIGNATURE_BYTES)
    if signature is None:
        raise _fail("bad_proof", "proof.signature must be 128 lowercase hex digits")
    return TagCode(counter, signature)


def parse_scan(value: object) -> Scan:
    """A scan as sent (``{epc, country, proof?}``); raises TransactionFailed."""
    if not isinstance(value, Mapping) or not set(value) <= {"epc", "country", "proof"}:
        raise _fail("bad_payload", "a scan is {epc, country, proof?}")
    return Scan(_item_link(value.get("epc")), _country(value.get("country")),
                parse_tag_code(value["proof"]) if "proof" in value else None)


def parse_scans(payload: Mapping[str, Any]) -> list[Scan]:
    scans = payload.get("scans")
    if set(payload) != {"scans"} or not isinstance(scans, list) or not scans:
        raise _fail("bad_payload", "record_scans takes {scans: [scan, ...]}")
    if len(scans) > SCANS_PER_BATCH_MAX:
        raise _fail("too_many_scans", f"at most {SCANS_PER_BATCH_MAX} scans per batch")
    return [parse_scan(scan) for scan in scans]


def parse_tags(payload: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(item link, public key hex) of ``{tags: [{epc, public_key}, ...]}``."""
    tags = payload.get("tags")
    if set(payload) != {"tags"} or not isinstance(tags, list) or not tags:
        raise _fail("bad_payload", "register_tags takes {tags: [{epc, public_key}, ...]}")
    if len(tags) > TAGS_PER_REGISTRATION_MAX:
        raise _fail("too_many_tags", f"at most {TAGS_PER_REGISTRATION_MAX} tags at once")
    parsed: dict[str, str] = {}
    for tag in tags:
        if not isinstance(tag, Mapping) or set(tag) != {"epc", "public_key"}:
            raise _fail("bad_payload", "a tag is {epc, public_key}")
        link = _item_link(tag["epc"])
        raw = _lower_hex(tag["public_key"], 2 * crypto.PUBLIC_KEY_BYTES)
        if raw is None or not is_tag_key(raw):
            raise _fail("bad_tag_key", f"the tag key of {link} is not a strict Ed25519 "
                                       "public key (64 lowercase hex digits)")
        if link in parsed:
            raise _fail("duplicate_tag", f"{link} is named twice")
        parsed[link] = raw.hex()
    return list(parsed.items())



def _sgtin(identifier: str) -> identifiers.Sgtin | None:
    try:
        parsed = identifiers.parse_identifier(identifier)
    except identifiers.IdentifierError:
        return None
    return parsed if isinstance(parsed, identifiers.Sgtin) else None


def _gln_of(location: str) -> str | None:
    try:
        parsed = identifiers.parse_identifier(location)
    except identifiers.IdentifierError:
        return None
    return parsed.gln if isinstance(parsed, (identifiers.Sgln, identifiers.Pgln)) else None


def item_key(identifier: str, *, company_prefix_length: int | None = None) -> str | None:
    """The state key of a serialised item, from an EPC URN or a Digital Link."""
    sgtin = _sgtin(identifier)
    return None if sgtin is None else f"item/{sgtin.to_digital_link()}"


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


def _check_rule(ctx: TxContext, rule: object) -> dict[str, Any]:
    if not isinstance(rule, dict):
        ctx.fail("bad_rule", "each rule is an object")
    kind = rule.get("type")
    penalty = _money(ctx, rule.get("penalty"), "rule.penalty")
    if kind == "temperature_range":
        try:
            bounds = [epcis.decimal_string(rule[k], f"rule.{k}", code="bad_rule")
                      for k in ("min", "max")]
        except KeyError:
            ctx.fail("bad_rule", "temperature_range needs min and max as decimal strings")
        except epcis.EpcisError as exc:
            ctx.fail("bad_rule", f"temperature_range min and max: {exc}")
        low, high = (Decimal(b) for b in bounds)
        if low > high:
            ctx.fail("bad_rule", "temperature_range needs min <= max, as decimal strings")
        uom = rule.get("uom", "CEL")
        if uom not in TEMPERATURE_UNITS:
            ctx.fail("bad_rule", f"uom must be one of {sorted(TEMPERATURE_UNITS)} "
                                 "(UN/ECE Rec 20: CEL, FAH, KEL)")
        return {"type": kind, "min": str(bounds[0]), "max": str(bounds[1]), "uom": uom,
                "penalty": penalty}
    if kind == "deadline":
        biz_step = rule.get("biz_step")
        within = rule.get("within_ms")
        if biz_step not in epcis.BIZ_STEPS:
            ctx.fail("bad_rule", "deadline needs a CBV biz_step")
        if not isinstance(within, int) or isinstance(within, bool) or not 0 < within <= \
                365 * 24 * 3_600_000:
            ctx.fail("bad_rule", "within_ms must be a positive integer (ms), at most a year")
        return {"type": kind, "biz_step": biz_step, "within_ms": within, "penalty": penalty}
    if kind == "required_certificate":
        cert_type = rule.get("cert_type")
        if cert_type not in CERT_TYPES:
            ctx.fail("bad_rule", f"cert_type must be one of {sorted(CERT_TYPES)}")
        at_step = rule.get("at_biz_step", "shipping")
        if at_step not in epcis.BIZ_STEPS:
            ctx.fail("bad_rule", "at_biz_step must be a CBV biz_step (a typo would make the "
                                 "rule never apply)")
        return {"type": kind, "cert_type": cert_type, "at_biz_step": at_step,
                "penalty": penalty}
    ctx.fail("bad_rule", "rule type must be temperature_range, deadline or "
             "required_certificate")


#: temperature units a rule and a reading may use (UN/ECE Recommendation 20 codes)
TEMPERATURE_UNITS = frozenset({"CEL", "FAH", "KEL"})
# Exact arithmetic, independent of the thread's decimal context (inputs are at most
# 64 characters, so 200 digits never round).
_EXACT = Context(prec=200)


def _ninefold_kelvin(value: str, uom: str) -> Decimal | None:
    """9 x the temperature in kelvin, exactly: the one scale where Celsius, Fahrenheit
    and kelvin readings compare without rounding (K = C + 273.15 = (F + 459.67) x 5/9)."""
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    if uom == "KEL":
        return _EXACT.multiply(number, Decimal(9))
    if uom == "CEL":
        return _EXACT.multiply(_EXACT.add(number, Decimal("273.15")), Decimal(9))
    if uom == "FAH":
        return _EXACT.multiply(_EXACT.add(number, Decimal("459.67")), Decimal(5))
    return None


def _breach(ctx: TxContext, rule: Mapping[str, Any], event: dict[str, Any]) -> str | None:
    if rule["type"] == "temperature_range":
        low = _ninefold_kelvin(rule["min"], rule["uom"])
        high = _ninefold_kelvin(rule["max"], rule["uom"])
        if low is None or high is None:
            return None  # a rule of a unit this version cannot compare (none accepted)
        for kind, value, uom, _ in epcis.sensor_readings(event):
            if kind != "Temperature":
                continue
            # A reading without a temperature unit proves nothing about the range: it
            # counts as a breach, or a unit chosen to evade the rule would do so.
            reading = None if uom is None else _ninefold_kelvin(value, uom)
            if reading is None:
                return f"temperature {value} in unit {uom!r}, not comparable with the rule"
            if not low <= reading <= high:
                return (f"temperature {value} {uom} outside "
                        f"{rule['min']}..{rule['max']} {rule['uom']}")
        return None
    if rule["type"] == "required_certificate" and event.get("bizStep") == rule["at_biz_step"]:
        for epc in sorted(epcis.epcs_of(event)):
            sgtin = _sgtin(epc)
            if sgtin is None:
                continue
            gtin = sgtin.gtin
            if not _has_valid_certificate(ctx, gtin, rule["cert_type"]):
                return f"{gtin} shipped without a valid {rule['cert_type']} certificate"
    return None


def _accreditation(record: Mapping[str, Any] | None, cert_type: str, scope: str,
                   at: int) -> Mapping[str, Any] | None:
    """The accreditation in force at ``at`` covering ``cert_type`` and ``scope`` (the one
    lasting longest, if several), or None."""
    found: Mapping[str, Any] | None = None
    for a in (record or {}).get("accreditations", []):
        in_force = a["valid_from"] <= at < a["valid_until"] and (
            a["revoked_at"] is None or at < a["revoked_at"])
        covers = any(s in ("*", scope) or scope.startswith(s + "/") for s in a["scopes"])
        if in_force and covers and cert_type in a["types"] and (
                found is None or a["valid_until"] > found["valid_until"]):
            found = a
    return found


def _accredited(record: Mapping[str, Any] | None, cert_type: str, scope: str,
                at: int) -> bool:
    return _accreditation(record, cert_type, scope, at) is not None


def certificate_in_force(record: Mapping[str, Any], accreditations: Mapping[str, Any] | None,
                         at: int) -> bool:
    """Whether an anchored certificate batch vouches at ``at``: in its validity, with no
    certificate of it revoked (a batch has one subject, so the chain cannot tell which
    leaf still vouches), from a body accredited for its type and scope when it issued.
    The one rule for the contract's checks and the gateway's product pages."""
    return (record["revoked_at"] is None and not record.get("revoked_targets")
            and record["valid_from"] <= at < record["valid_until"]
            and _accredited(accreditations, record["type"], record["scope"],
                            record["anchored_at"]))


def _has_valid_certificate(ctx: TxContext, gtin: str, cert_type: str) -> bool:
    for root in ctx.get(f"cert_subject/product:{gtin}") or []:
        record = ctx.get(f"anchor/{root}")
        if record is not None and record["type"] == cert_type and certificate_in_force(
                record, ctx.get(f"accreditation/{record['issuer']}"), ctx.time):
            return True
    return False


def _penalise(ctx: TxContext | BlockContext, record: dict[str, Any], index: int,
              rule: dict[str, Any], reason: str, at: int) -> None:
    amount = min(rule["penalty"]["amount"], record["remaining"])
    record["remaining"] -= amount
    record["penalties"] = record.get("penalties", 0) + 1
    rule["settled"] = "breached"
    penalty_id = f"{record['id']}#{index}"
    penalty = {"id": penalty_id, "agreement": record["id"], "responsible": record["responsible"],
               "beneficiary": record["proposer"] if record["responsible"] != record[
                   "proposer"] else record["counterparty"],
               "amount": amount, "currency": rule["penalty"]["currency"],
               "rule": rule["type"], "reason": reason[:256], "time": at}
    ctx.put(f"penalty/{penalty_id}", penalty)
    ctx.emit("trace.penalty.applied", penalty)


def rules_of(record: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    return list(record.get("rules", ()))
