"""Matching without disclosure: do two records name the same person or address?

Customs' three-document check must know that the payer is the buyer; a return must
reach the address the goods went to. Neither value may be on the chain, and two
commitments to the same value never match (each has its own random salt: that is
what makes them hiding). So an *entitled party* compares: it asks on chain to access
both records for the purpose (each access judged and logged like any other),
decrypts both off chain, compares their :func:`normalize` d values, and attests the
verdict on chain (``privacy.attest_match``). The contract accepts an attestation only
from a party whose granted accesses to both records, for that purpose, are recorded
within ``MATCH_WINDOW_MS``; other domains read it with :func:`verdict`.

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
from services.privacy.vocabulary import HEX64_RE, MATCH_WINDOW_MS, PURPOSES, org_party

__all__ = ["attest_match", "normalize", "verdict"]

_SPACES = re.compile(r"\s+")
_PUNCTUATION = re.compile(r"[.,;:'\"()\[\]/\\#-]+")


def normalize(category: str, value: str) -> str:
    """The form two statements of one fact share: Unicode NFKC, case-folded, punctuation
    and runs of spaces collapsed; phone numbers and ID documents to their digits and
    letters only."""
    text = unicodedata.normalize("NFKC", value).casefold()
    if category in ("phone",):
        return "".join(c for c in text if c.isdigit() or c == "+")
    if category in ("id_document", "tax_id", "payment_account", "trade_register"):
        return "".join(c for c in text if c.isalnum())
    text = _PUNCTUATION.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def _pair(a: str, b: str) -> str:
    return f"{min(a, b)}/{max(a, b)}"


def verdict(read: Any, record_a: str, record_b: str) -> dict[str, Any] | None:
    """The attested match of two records (either order), or None (``read``: a state
    reader taking full keys)."""
    value = read(f"privacy/match/{_pair(record_a, record_b)}")
    return value if isinstance(value, dict) else None


def attest_match(ctx: TxContext) -> None:
    records = [ctx.payload.get("record_a"), ctx.payload.get("record_b")]
    if not all(isinstance(r, str) and HEX64_RE.fullmatch(r) for r in records) \
            or records[0] == records[1]:
        ctx.fail("bad_payload", "record_a and record_b are two record ids")
    a, b = str(records[0]), str(records[1])
    purpose = ctx.payload.get("purpose")
    if purpose not in PURPOSES:
        ctx.fail("bad_payload", f"purpose is one of {sorted(PURPOSES)}")
    equal = ctx.payload.get("equal")
    if not isinstance(equal, bool):
        ctx.fail("bad_payload", "equal is true or false")
    party = org_party(ctx.sender_org)
    categories = set()
    for record_id in (a, b):
        record = ctx.get(f"record/{record_id}")
        if not isinstance(record, dict):
            ctx.fail("record_not_found", f"no record {record_id}")
        categories.add(record["category"])
        accessed = ctx.get(f"accessed/{record_id}/{party}/{purpose}")
        if not isinstance(accessed, int) or ctx.time - accessed > MATCH_WINDOW_MS:
            ctx.fail("no_recorded_access", f"{party} has no granted access to {record_id} "
                     f"for {purpose} within the last day: compare only what you may read")
    if len(categories) != 1:
        ctx.fail("bad_payload", "only records of one category are compared")
    attestation = {"records": sorted((a, b)), "category": categories.pop(), "equal": equal,
                   "party": party, "purpose": purpose, "at": ctx.time, "by": ctx.sender}
    ctx.put(f"match/{_pair(a, b)}", attestation)
    ctx.emit("privacy.match.attested", attestation)
