"""Matching without disclosure: do two records name the same person or address?

Customs' three-document check must know that the payer is the buyer; a return must
reach the address the goods went to. Neither value may be on the chain, and two
commitments to the same value never match (each has its own random salt: that is
what makes them hiding). So an *entitled party* compares: it asks on chain to access
both records for the purpose (each access judged and logged like any other),
decrypts both off chain, compares their :func:`normalize` d values, and attests the
verdict on chain (``privacy.attest_match``). The contract accepts an attestation only
of two live records of one category, from a party whose granted accesses to both,
for that purpose, are recorded within ``MATCH_WINDOW_MS``.

An attestation is the attesting party's statement for its purpose, kept under
``match/<a>/<b>/<party>/<purpose>`` (``a < b``): another entitled party attests its
own, never overwrites it. A reader names whose statement it trusts —
:func:`verdict` takes the party and the purpose — and gets nothing once either
record is no longer active (rectified, being erased, erased): the verdict dies with
the records it compared.

:func:`normalize` is **not on the consensus path**: no contract code calls it (a test
keeps it so). It runs in the comparing party's client (``services.sdk.privacy``), and
its answer depends on the Python's Unicode tables (NFKC, case folding, ``isdigit``,
``isalnum``, the regex space class), which change between Python versions: good
enough for one party's comparison, which it then attests; never for a rule every
replica must judge alike. The contract only records the resulting boolean.

Why not keyed match tokens (a blind index under a shared per-subject key)? The key
would have to be handed to every party that ever needs to compare — a payment
provider, a carrier, customs — and a token, once on chain, links every statement
about the subject for as long as the chain lives, erasure or not. An attestation
by a party that is already entitled to read both discloses nothing new, names who
compared and why, and dies with the records. docs/adr/0008-personal-data-vault.md.

This module never does I/O.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from services.ledger.core.contract import TxContext
from services.privacy.records import live_record, record_of
from services.privacy.vocabulary import HEX64_RE, MATCH_WINDOW_MS, PURPOSES, org_party

__all__ = ["attest_match", "normalize", "verdict"]

_SPACES = re.compile(r"\s+")
_PUNCTUATION = re.compile(r"[.,;:'\"()\[\]/\\#-]+")


def normalize(category: str, value: str) -> str:
    """The form two statements of one fact share: Unicode NFKC, case-folded, punctuation
    and runs of spaces collapsed; phone numbers and ID documents to their digits and
    letters only. Off chain only (the module's docstring): it depends on Unicode tables."""
    text = unicodedata.normalize("NFKC", value).casefold()
    if category in ("phone",):
        return "".join(c for c in text if c.isdigit() or c == "+")
    if category in ("id_document", "tax_id", "payment_account", "trade_register"):
        return "".join(c for c in text if c.isalnum())
    text = _PUNCTUATION.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def _key(a: str, b: str, party: str, purpose: str) -> str:
    return f"match/{min(a, b)}/{max(a, b)}/{party}/{purpose}"


def verdict(read: Any, record_a: str, record_b: str, party: str,
            purpose: str) -> dict[str, Any] | None:
    """What ``party`` attested, for ``purpose``, of two records (either order) — the
    party and purpose are the ones the caller trusts — or None: never attested, or
    either record is no longer active (``read``: a state reader taking full keys)."""
    if not all(live_record(record_of(read, r)) for r in (record_a, record_b)):
        return None
    value = read(f"privacy/{_key(record_a, record_b, party, purpose)}")
    return value if isinstance(value, dict) else None


def _live_records(ctx: TxContext, a: str, b: str) -> str:
    """The category of records ``a`` and ``b``, both live and of one category."""
    categories = []
    for record_id in (a, b):
        record = ctx.get(f"record/{record_id}")
        if not isinstance(record, dict):
            ctx.fail("record_not_found", f"no record {record_id}")
        if not live_record(record):
            ctx.fail("record_not_active", f"record {record_id} is {record['status']}: "
                     "only active records are compared")
        categories.append(record["category"])
    if categories[0] != categories[1]:
        ctx.fail("bad_payload", "only records of one category are compared")
    return str(categories[0])


def attest_match(ctx: TxContext) -> None:
    records = [ctx.payload.get("record_a"), ctx.payload.get("record_b")]
    if not all(isinstance(r, str) and HEX64_RE.fullmatch(r) for r in records) \
            or records[0] == records[1]:
        ctx.fail("bad_payload", "record_a and record_b are two record ids")
    a, b = str(records[0]), str(records[1])
    purpose = ctx.payload.get("purpose")
    if not isinstance(purpose, str) or purpose not in PURPOSES:
        ctx.fail("bad_payload", f"purpose is one of {sorted(PURPOSES)}")
    equal = ctx.payload.get("equal")
    if not isinstance(equal, bool):
        ctx.fail("bad_payload", "equal is true or false")
    category = _live_records(ctx, a, b)
    party = org_party(ctx.sender_org)
    for record_id in (a, b):
        accessed = ctx.get(f"accessed/{record_id}/{party}/{purpose}")
        if not isinstance(accessed, int) or ctx.time - accessed > MATCH_WINDOW_MS:
            ctx.fail("no_recorded_access", f"{party} has no granted access to {record_id} "
                     f"for {purpose} within the last day: compare only what you may read")
    attestation = {"records": sorted((a, b)), "category": category, "equal": equal,
                   "party": party, "purpose": purpose, "at": ctx.time, "by": ctx.sender}
    ctx.put(_key(a, b, party, str(purpose)), attestation)
    ctx.emit("privacy.match.attested", attestation)
