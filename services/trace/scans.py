"""The trace contract's secure tags, consumer scans and clone verdicts
(docs/adr/0005-clone-verdicts.md), and the pure judgement of a scan the gateway's verify
endpoint answers with at once (:func:`judge_scan`).

A brand owner registers the public key of an item's secure tag, once; a tag signs each
tap with a strictly increasing counter. A clone verdict rests only on evidence that a
second physical copy exists and that no stranger can make out of genuine material:
two registered retailers offering the item in two countries within a day, or two
different codes of its tag for the same tap (its key signs outside the genuine chip).
A tag code carries no time, so a fresh one after decommissioning may have been tapped
long before (a shopper's NFC app, a shared link, a batch the ledger dropped): like
anything else after decommissioning, it is an anomaly for the brand owner, never a
verdict. Anonymous scans, which the gateway relays for anyone, are counted and may raise
a weak anomaly signal; they never decide (docs/adr/0005-clone-verdicts.md, amended).

State: the scan and tag facts of ``item/<epc>`` (see :mod:`services.trace.contract`).
Runs in every replica: it must never do I/O, read the clock (block time is
``ctx.time``), draw randomness or use floats, and any change of behaviour forks the
chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nacl.bindings import crypto_core_ed25519_is_valid_point

from services.ledger.core import crypto
from services.ledger.core.contract import TxContext
from services.ledger.core.errors import TransactionFailed
from services.trace.items import TERMINAL_STATES, item_key

__all__ = [
    "ANOMALY_AFTER_DECOMMISSIONING",
    "ANOMALY_COUNTRY_CONFLICT",
    "CLONE_CLONED_TAG",
    "CLONE_SHELF_CONFLICT",
    "CLONE_WINDOW_MS",
    "EPC_CHARS_MAX",
    "EVIDENCE_ANONYMOUS",
    "EVIDENCE_POSSESSION",
    "EVIDENCE_READER",
    "PROOF_ABSENT",
    "PROOF_INVALID",
    "PROOF_REPLAYED",
    "PROOF_VALID",
    "READER_ROLES",
    "SCANNER_ROLES",
    "SCANS_PER_BATCH_MAX",
    "SHELF_ROLES",
    "TAGS_PER_REGISTRATION_MAX",
    "TAG_CODES_KEPT",
    "TAG_CODE_PREFIX",
    "TAG_COUNTER_MAX",
    "Scan",
    "ScanJudgement",
    "TagCode",
    "anomaly_reason",
    "clone_reason",
    "is_tag_key",
    "judge_code",
    "judge_scan",
    "parse_scan",
    "parse_scans",
    "parse_tag_code",
    "parse_tags",
    "record_scan",
    "record_scans",
    "register_tags",
    "scanned",
    "tag_code",
    "tag_message",
]

CLONE_WINDOW_MS = 24 * 3_600_000  # two countries within a day: physically implausible
TAGS_PER_REGISTRATION_MAX = 1_000
SCANS_PER_BATCH_MAX = 500  # a trace.record_scans of the gateway's anonymous scans
EPC_CHARS_MAX = 200
#: what a secure tag signs: this prefix, the item's Digital Link (UTF-8), a zero byte
#: and its tap counter (8 bytes, big-endian), strictly increasing tap by tap
TAG_CODE_PREFIX = b"ecosphere-tag/v1\x00"
TAG_COUNTER_MAX = 2**53 - 1  # the chain's JSON integers
#: the last accepted codes an item keeps (counter, signature): a different signature for
#: one of these counters shows the tag's key signing outside the genuine chip
TAG_CODES_KEPT = 4
#: who relays scans for anyone: the platform operator's organisation, whose member key
#: is the gateway's relay key (genesis: ``operator``, role ``platform``). Such scans
#: are anonymous; they are budgeted by the gateway, so no other organisation (not an
#: ``observer``, which any member may be) sends them
SCANNER_ROLES = ("platform",)
#: who scans with its own key as a registered, accountable reader: evidence of place
READER_ROLES = ("carrier", "warehouse", "retailer", "customs_cn", "customs_eu", "certifier")
#: readers at a point of sale: a genuine item sits on one shelf at a time, so two shelves
#: in two countries within the window show a copy. Custody readers (carriers, warehouses,
#: customs, certifiers) follow goods across borders within hours: their scans are
#: evidence of custody, never of a country conflict (a China-Europe train crosses four
#: borders in a day).
SHELF_ROLES = ("retailer",)
PROOF_VALID = "valid"  # the tag signed it, with a counter above the last accepted
PROOF_REPLAYED = "replayed"  # the tag signed it, but it is an earlier tap's code again
PROOF_INVALID = "invalid"  # no tag signed it (or the item has no tag)
PROOF_ABSENT = "absent"
EVIDENCE_READER = "reader"  # a registered reader's own signed scan: evidence of place
EVIDENCE_POSSESSION = "possession"  # a fresh tag code: the genuine tag was tapped
EVIDENCE_ANONYMOUS = "anonymous"  # anything anyone could have sent
#: why an item is a suspected clone (``trace.clone.suspected``'s ``code``)
CLONE_SHELF_CONFLICT = "shelf_conflict"  # two retailers, two countries, one day
CLONE_CLONED_TAG = "cloned_tag"  # two different codes of its tag for one tap
#: why a scan raised an anomaly (``trace.anomaly.raised``'s ``code``)
ANOMALY_AFTER_DECOMMISSIONING = "after_decommissioning"
ANOMALY_COUNTRY_CONFLICT = "country_conflict"


def _fail(code: str, message: str) -> TransactionFailed:
    return TransactionFailed(message, code=code)


@dataclass(frozen=True, slots=True)
class TagCode:
    """One tap's code: the tag's counter and its signature over (item, counter)."""

    counter: int
    signature: bytes

    def to_payload(self) -> dict[str, Any]:
        return {"counter": self.counter, "signature": self.signature.hex()}


@dataclass(frozen=True, slots=True)
class Scan:
    """A scan as sent and recorded: the item, the country claimed, the tag's code if any."""

    epc: str  # the item's canonical Digital Link
    country: str  # as claimed by whoever sends the scan
    code: TagCode | None = None

    def to_payload(self) -> dict[str, Any]:
        return {"epc": self.epc, "country": self.country,
                **({} if self.code is None else {"proof": self.code.to_payload()})}


@dataclass(frozen=True, slots=True)
class ScanJudgement:
    """What one scan shows (:func:`judge_scan`)."""

    proof: str  # PROOF_*
    evidence: str  # EVIDENCE_*
    clone_reason: str | None  # set: this scan makes the item a suspected clone
    anomaly: str | None  # set: a signal for the brand owner, never a verdict
    clone_code: str | None = None  # CLONE_* with clone_reason
    anomaly_code: str | None = None  # ANOMALY_* with anomaly


# --- the contract's actions -------------------------------------------------------------


def register_tags(ctx: TxContext) -> None:
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


def record_scan(ctx: TxContext) -> None:
    """One scan: a registered reader's own (evidence of place), or one the platform's
    relay records for anyone (anonymous, unless its tag code proves possession)."""
    if not ctx.org_roles.intersection(SCANNER_ROLES + READER_ROLES):
        ctx.fail("forbidden", f"{ctx.tx.kind} needs a reader organisation (role "
                 f"{' or '.join(READER_ROLES)}) or the platform's relay")
    # The relay's organisation never vouches for a place, whatever else it is.
    reader = None if ctx.org_roles.intersection(SCANNER_ROLES) else ctx.sender_org
    shelf = reader is not None and bool(ctx.org_roles.intersection(SHELF_ROLES))
    _scan(ctx, parse_scan(ctx.payload), reader, shelf=shelf)


def record_scans(ctx: TxContext) -> None:
    """A batch of the scans the gateway relayed for anyone (all anonymous but for
    their tag codes), at most one transaction per interval (docs/adr/0005). Only the
    platform's relay sends them: the gateway's budget is what bounds anonymous scans,
    so an organisation that could send them itself would bypass it."""
    ctx.require_org_role(*SCANNER_ROLES)
    for scan in parse_scans(ctx.payload):
        _scan(ctx, scan, None)


def _scan(ctx: TxContext, scan: Scan, reader: str | None, *, shelf: bool = False) -> None:
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
                                        "code": judgement.anomaly_code,
                                        "evidence": judgement.evidence,
                                        "reason": judgement.anomaly})
    if judgement.clone_reason is not None:
        ctx.emit("trace.clone.suspected", {"epc": scan.epc, "brand_owner": owner,
                                           "country": scan.country,
                                           "code": judgement.clone_code,
                                           "reason": judgement.clone_reason})
    ctx.emit("trace.scan.recorded", {"epc": scan.epc, "country": scan.country,
                                     "scans": item["scans"],
                                     "evidence": judgement.evidence,
                                     "proof": judgement.proof, "reader": reader})


# --- judging a scan (pure: the gateway judges with these too) ---------------------------


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


def clone_reason(item: Mapping[str, Any], scan: Scan, at: int, *, proof: str,
                 reader: str | None = None, shelf: bool = False
                 ) -> tuple[str, str] | None:
    """``(CLONE_*, why)`` when a scan of ``item`` at ``at`` shows that a second physical
    copy of it exists (None: it does not). Only evidence no stranger can make out of
    genuine material decides:

    * **a cloned tag**: the scan's code verifies under the item's tag key, for a tap
      counter the chain accepted before, with another signature. A genuine tag signs
      each counter once (its counter strictly increases; Ed25519 is deterministic, so
      even a repeat would be the same bytes), and no one else can make a second valid
      signature (strict verification: strongly unforgeable). So the key signs outside
      the genuine chip. (A copy signing as RFC 8032 does makes the genuine chip's very
      codes: only readers' shelves expose it.) A code merely below the last counter is
      not evidence: a genuine tap nobody sent (a shopper's NFC app) is just that;
    * **two shelves**: two registered readers at points of sale (``SHELF_ROLES``,
      different organisations) in two countries within ``CLONE_WINDOW_MS``: one item
      is on one shelf. Custody readers (carriers, customs) follow goods across borders
      within hours and never take part in a country conflict.

    Decommissioning decides nothing (:func:`anomaly_reason`): a tag code carries no
    time, so a fresh one may come from a tap before decommissioning; and genuine goods
    outlive their record (a recall of goods in consumers' hands). A possession proof
    says the genuine tag was tapped, not where, so it never takes part in a country
    conflict. An anonymous scan never decides anything."""
    if proof == PROOF_REPLAYED and scan.code is not None:
        signature = scan.code.signature.hex()
        for counter, accepted in item.get("tag_codes", ()):
            if counter == scan.code.counter and accepted != signature:
                return CLONE_CLONED_TAG, (
                    f"two different codes of its tag for tap {counter}: its key signs "
                    "outside the genuine chip")
    last = item.get("last_shelf")
    if reader is None or not shelf or last is None or last == reader:
        return None
    if item.get("last_shelf_country") != scan.country and \
            at - item.get("last_shelf_time", 0) < CLONE_WINDOW_MS:
        return CLONE_SHELF_CONFLICT, (
            f"on sale with registered retailers {last} in {item['last_shelf_country']} "
            f"and {reader} in {scan.country} within {CLONE_WINDOW_MS // 3_600_000} hours")
    return None


def anomaly_reason(item: Mapping[str, Any], country: str, at: int, *, evidence: str,
                   reader: str | None = None) -> tuple[str, str] | None:
    """``(ANOMALY_*, why)``: a signal for the brand owner, never a verdict.

    * **after decommissioning**: any scan of a decommissioned item. From a registered
      reader or with a fresh code of its tag it says the genuine item or its tag is
      still about (goods recalled in consumers' hands, diverted instead of destroyed,
      a tag moved onto other goods) or that a code tapped before was sent late; from an
      anonymous scan, only that someone named the serial;
    * **country conflict**: a scan that is no evidence of place (anonymous, or a tag
      code with a claimed country) in another country than the last scan, within
      ``CLONE_WINDOW_MS``. Registered readers' scans never conflict this way: shelves
      decide as :func:`clone_reason` says, custody follows goods across borders.

    At most one per item per window, so a flood of made-up scans raises one signal, not
    thousands; but evidence after decommissioning is not held back by an anomaly that
    was not (made-up scans cannot hide it)."""
    proven_after = item["state"] in TERMINAL_STATES and evidence != EVIDENCE_ANONYMOUS
    since = item.get("anomaly_at")
    if since is not None and at - since < CLONE_WINDOW_MS and \
            (item.get("anomaly_proven", False) or not proven_after):
        return None
    if item["state"] in TERMINAL_STATES:
        who = f"registered reader {reader}" if reader is not None else \
            "its own tag (a fresh code)" if evidence == EVIDENCE_POSSESSION else \
            "an unproven scan"
        return ANOMALY_AFTER_DECOMMISSIONING, (
            f"scanned in {country} by {who} after it was decommissioned")
    if reader is not None:
        return None
    last = item.get("last_scan_country")
    if last not in (None, country) and at - item.get("last_scan_time", 0) < CLONE_WINDOW_MS:
        return ANOMALY_COUNTRY_CONFLICT, (
            f"unproven scans in {last} and {country} within "
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
    clone = clone_reason(item, scan, at, proof=proof, reader=reader, shelf=shelf)
    anomaly = None if clone is not None else \
        anomaly_reason(item, scan.country, at, evidence=evidence, reader=reader)
    return ScanJudgement(proof, evidence,
                         None if clone is None else clone[1],
                         None if anomaly is None else anomaly[1],
                         clone_code=None if clone is None else clone[0],
                         anomaly_code=None if anomaly is None else anomaly[0])


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
        kept = [*record.get("tag_codes", ()),
                [scan.code.counter, scan.code.signature.hex()]]
        record["tag_codes"] = kept[-TAG_CODES_KEPT:]
    elif judgement.proof == PROOF_REPLAYED:
        record["replays"] = record.get("replays", 0) + 1
    if judgement.anomaly is not None:
        record["anomalies"] = record.get("anomalies", 0) + 1
        record["anomaly_at"] = at
        record["anomaly_proven"] = \
            judgement.anomaly_code == ANOMALY_AFTER_DECOMMISSIONING and \
            judgement.evidence != EVIDENCE_ANONYMOUS
    if judgement.clone_reason is not None:
        record["clone_suspected"] = True
    return record


# --- parsing what a scan or a tag registration sends ------------------------------------


def _country(value: object) -> str:
    # ASCII A-Z spelt out: str.isalpha/isupper follow the Python version's Unicode tables
    if not isinstance(value, str) or len(value) != 2 or \
            not all("A" <= c <= "Z" for c in value):
        raise _fail("bad_payload", "country must be an ISO 3166-1 alpha-2 code (A-Z)")
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
