"""The trace contract's registry: accreditations of certification bodies, GS1 company
prefixes licensed to organisations, and the products (GTIN) and locations (GLN) their
licensees register.

State: ``accreditation/<org>``, ``prefix/<digits>``, ``prefixes/<first 6>``,
``product/<gtin>``, ``location/<gln>`` (see :mod:`services.trace.contract`). Runs in
every replica: it must never do I/O, read the clock (block time is ``ctx.time``), draw
randomness or use floats, and any change of behaviour forks the chain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.ledger.core.contract import TxContext, payload_int, payload_str
from services.trace import identifiers
from services.trace.certificates import CERT_TYPES

__all__ = [
    "ACCREDITOR_ROLES",
    "BRAND_ROLES",
    "PREFIXES_PER_INDEX_MAX",
    "PREFIX_AUTHORITY_ROLES",
    "PREFIX_DIGITS_MAX",
    "PREFIX_DIGITS_MIN",
    "accredit",
    "assign_prefix",
    "product_of",
    "register_location",
    "register_product",
    "revoke_accreditation",
]

PREFIX_DIGITS_MIN = 6  # GS1 company prefixes in use for GTIN-13/14 and GLN: 6..12 digits
PREFIX_DIGITS_MAX = 12
PREFIXES_PER_INDEX_MAX = 1_000  # prefixes sharing their first six digits
BRAND_ROLES = ("manufacturer", "merchant", "supplier", "retailer", "marketplace")
ACCREDITOR_ROLES = ("accreditor", "platform")
#: who licenses GS1 company prefixes to members (the platform, as the GS1 member
#: organisation's registry would): a GTIN or GLN can only be registered by its licensee
PREFIX_AUTHORITY_ROLES = ("platform",)


def product_of(read: Callable[[str], Any], gtin: str) -> dict[str, Any] | None:
    """The registered product ``gtin`` (14 digits; ``read`` takes full keys, e.g. another
    domain's ``ctx.read``), or None."""
    value = read(f"trace/product/{gtin}")
    return value if isinstance(value, dict) else None


# --- accreditation ----------------------------------------------------------------------


def accredit(ctx: TxContext) -> None:
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


def revoke_accreditation(ctx: TxContext) -> None:
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


# --- prefixes, products and locations ---------------------------------------------------


def assign_prefix(ctx: TxContext) -> None:
    """License a GS1 company prefix to an organisation (without it, anyone could
    register a brand's GTIN first and commission "genuine" serials of it)."""
    ctx.require_org_role(*PREFIX_AUTHORITY_ROLES)
    ctx.require_admin()
    org_id = payload_str(ctx, "org", size_max=64)
    if ctx.read(f"consortium/org/{org_id}") is None:
        ctx.fail("not_found", f"organisation {org_id!r} does not exist")
    prefix = payload_str(ctx, "prefix", size_max=32)
    if not (all("0" <= c <= "9" for c in prefix)
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


def _require_prefix(ctx: TxContext, digits: str, what: str) -> int:
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


def register_product(ctx: TxContext) -> None:
    ctx.require_org_role(*BRAND_ROLES)
    try:
        gtin = identifiers.normalize_gtin(payload_str(ctx, "gtin", size_max=14))
    except identifiers.IdentifierError as exc:
        ctx.fail(exc.code, str(exc))
    if ctx.has(f"product/{gtin}"):
        ctx.fail("conflict", f"product {gtin} is already registered")
    cpl = payload_int(ctx, "company_prefix_length", lo=6, hi=12)
    licensed = _require_prefix(ctx, gtin[1:], f"GTIN {gtin}")
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


def register_location(ctx: TxContext) -> None:
    gln = payload_str(ctx, "gln", size_max=13)
    if not identifiers.is_valid_gln(gln):
        ctx.fail("bad_gln", f"{gln!r} is not a GLN (13 digits with a check digit)")
    if ctx.has(f"location/{gln}"):
        ctx.fail("conflict", f"location {gln} is already registered")
    _require_prefix(ctx, gln, f"GLN {gln}")
    country = payload_str(ctx, "country", size_max=2)
    # ASCII A-Z spelt out: str.isalpha/isupper follow the Python version's Unicode
    # tables ("ÄÖ" passes them), and every replica must agree on what is valid
    if len(country) != 2 or not all("A" <= c <= "Z" for c in country):
        ctx.fail("bad_payload", "country must be an ISO 3166-1 alpha-2 code (A-Z)")
    record = {"gln": gln, "org": ctx.sender_org, "name": payload_str(ctx, "name"),
              "country": country, "registered": ctx.time}
    ctx.put(f"location/{gln}", record)
    ctx.emit("trace.location.registered", {**record})
