"""Marketplace set-ups on the trade test World (tests/trade/conftest.py), reused by every
trade test module that needs a listing. Each helper is idempotent: it does only what the
chain does not hold yet, so tests call them freely and in any order.

Stable API (other modules depend on it; extend with keywords, never change meanings):

* ``publish_listing(world, listing="tea-1", *, merchant=MERCHANT, gtin=GTIN,
  price=2_500, currency="EUR", stock=100, ships_to=("DE", "FR", "PL"), shipping=None,
  dispatch_days=2, return_days=14, certificates=("CE",), late_shipment_penalty=None)
  -> dict``: sets up everything a listing needs — the trace side (the platform licenses
  GS1 prefix :data:`PREFIX` to ``shenzhen-gadgets``, which registers the product; the
  certification body :data:`CERTIFIER` is registered and accredited; a certificate of
  each required type that does not vouch yet is anchored) and a verified ``merchant``
  (its trader information as privacy records granted to the platform, the application,
  the platform's reads, the verification) — then publishes and returns the listing's
  state (``trade/listing/<merchant>/<listing>``). ``shipping`` defaults to
  :func:`default_shipping` (rail 5.00 in 18 days, air 15.00 in 7, in ``currency``); ``price``
  and ``late_shipment_penalty`` are minor units of ``currency``.
* ``listing_payload(listing, **same keywords) -> dict``: the ``trade.publish_listing``
  payload publish_listing sends (for refusal tests).
* ``verify_merchant(world, org=MERCHANT, *, platform=PLATFORM)``: a verified merchant.
* ``apply_merchant(world, org=MERCHANT, *, platform=PLATFORM) -> {category: record}``:
  trader records made and granted, the application sent (not yet read or verified).
* ``trader_records(world, org=MERCHANT, *, platform=PLATFORM, grant=True)
  -> {category: record id}``: one live privacy record per DSA category, of ``org``'s
  admin key, granted to ``org:<platform>`` for ``merchant_verification`` (unless
  ``grant`` is False).
* ``platform_reads(world, records, *, platform=PLATFORM)``: the platform reads each
  record through privacy (``privacy.access``, basis grant).
* ``register_product(world, gtin=GTIN) -> gtin``; ``gtin(item) -> str`` (a GTIN-14 under
  PREFIX with its check digit).
* ``certify(world, gtin=GTIN, cert_type="CE", *, valid_for_ms=365 days,
  valid_from=None) -> merkle root``: a new certificate anchored by CERTIFIER;
  ``revoke_certificate(world, root) -> BlockExecution``.
* ``add_org(world, org, roles) -> key``: another organisation (admin key in
  ``world.keys``).
* ``privacy_tx(world, org, action, payload)`` / ``trace_tx(...)``: one transaction of
  another domain that must pass.
* ``put_state(world, {full key: value or None})``: a test-only shortcut writing state
  between blocks (what another module's flow would produce, e.g. an order delivered
  before logistics exists); never for what the test is about.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from services.ledger.core.consortium import PRIVILEGED_ROLES
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.execution import BlockExecution
from services.ledger.core.state import StateView
from services.trace.certificates import CERT_TYPES, certificate_root
from services.trace.identifiers import check_digit
from services.trade.merchants import PURPOSE, TRADER_CATEGORIES
from services.trade.vocabulary import DAY_MS
from tests.ledger.core.conftest import rejected_codes
from tests.trade.conftest import World

MERCHANT = "shenzhen-gadgets"
PLATFORM = "operator"
CERTIFIER = "cert-body"
PREFIX = "6971234"  # GS1 company prefix (China) licensed to shenzhen-gadgets


def gtin(item: int) -> str:
    body = f"0{PREFIX}{item:05d}"
    return body + check_digit(body)


GTIN = gtin(1)


def hexdigest(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


# --- plumbing ---------------------------------------------------------------------------------

def _block(world: World, txs: Sequence[Any]) -> BlockExecution:
    result = world.chain.block(txs)
    assert not result.rejected, rejected_codes(result)
    return result


def _tx(world: World, org: str, kind: str, payload: dict[str, Any]) -> Any:
    return world.chain.tx(world.keys[org], kind, payload)


def privacy_tx(world: World, org: str, action: str, payload: dict[str, Any]
               ) -> BlockExecution:
    return _block(world, [_tx(world, org, f"privacy.{action}", payload)])


def trace_tx(world: World, org: str, action: str, payload: dict[str, Any]) -> BlockExecution:
    return _block(world, [_tx(world, org, f"trace.{action}", payload)])


def put_state(world: World, items: dict[str, Any]) -> None:
    view = StateView(world.chain.state)
    for key, value in items.items():
        if value is None:
            view.delete(key)
        else:
            view.put(key, value)
    world.chain.state = view.fold()


def add_org(world: World, org: str, roles: Iterable[str]) -> PrivateKey:
    """Register ``org`` (its admin key in ``world.keys``); roles only governance grants
    (``platform``...) are granted by a proposal the validators' admins approve."""
    if org in world.keys:
        return world.keys[org]
    wanted = frozenset(roles)
    privileged = sorted(wanted & PRIVILEGED_ROLES)
    key = PrivateKey.derive(f"trade-test/{org}")
    _block(world, [world.chain.tx(world.operator, "consortium.register_organisation", {
        "id": org, "name": org, "roles": sorted(wanted - PRIVILEGED_ROLES) or ["observer"],
        "admin_key": key.public.hex()})])
    if privileged:
        admins = [PrivateKey.derive(f"sim/admin/{i}") for i in range(3)]  # make_testnet's
        proposed = _block(world, [world.chain.tx(admins[0], "consortium.propose", {
            "action": {"type": "grant_roles", "org": org, "roles": privileged}})])
        (proposal,) = [e.attributes["proposal"] for e in proposed.events
                       if e.type == "consortium.proposal.submitted"]
        _block(world, [world.chain.tx(admin, "consortium.approve", {"proposal": proposal})
                       for admin in admins[1:]])
    world.keys[org] = key
    return key


# --- trace: product, certification body, certificates -----------------------------------------

def _certifier(world: World) -> None:
    add_org(world, CERTIFIER, ("certifier",))
    if world.chain.get(f"trace/accreditation/{CERTIFIER}") is None:
        trace_tx(world, PLATFORM, "accredit", {
            "org": CERTIFIER, "types": sorted(CERT_TYPES),
            "valid_until": world.chain.next_time + 3 * 365 * DAY_MS})


def register_product(world: World, gtin: str = GTIN) -> str:
    if world.chain.get(f"trace/prefix/{PREFIX}") is None:
        trace_tx(world, PLATFORM, "assign_prefix", {"org": MERCHANT, "prefix": PREFIX})
    if world.chain.get(f"trace/product/{gtin}") is None:
        trace_tx(world, MERCHANT, "register_product", {
            "gtin": gtin, "name": f"product {gtin}", "company_prefix_length": len(PREFIX)})
    return gtin


def certify(world: World, gtin: str = GTIN, cert_type: str = "CE", *,
            valid_for_ms: int = 365 * DAY_MS, valid_from: int | None = None) -> str:
    _certifier(world)
    register_product(world, gtin)
    start = world.chain.next_time - DAY_MS if valid_from is None else valid_from
    root = hexdigest(f"root/{gtin}/{cert_type}/{world.chain.height}/{start}")
    trace_tx(world, CERTIFIER, "anchor_certificate", {
        "merkle_root": root, "type": cert_type, "subject": {"kind": "product", "id": gtin},
        "scope": "*", "valid_from": start, "valid_until": world.chain.next_time
        + valid_for_ms})
    return root


def revoke_certificate(world: World, root: str) -> BlockExecution:
    return trace_tx(world, CERTIFIER, "revoke_certificate", {"merkle_root": root})


# --- privacy and the merchant -----------------------------------------------------------------

def _encryption_key(world: World, org: str, scope: str, country: str) -> None:
    key = world.keys[org]
    party = f"key:{key.key_id}" if scope == "self" else f"org:{org}"
    if world.chain.get(f"privacy/enckey/{party}") is None:
        privacy_tx(world, org, "register_key", {
            "scope": scope, "public_key": hexdigest(f"x25519/{party}"), "country": country})


def trader_records(world: World, org: str = MERCHANT, *, platform: str = PLATFORM,
                   grant: bool = True) -> dict[str, str]:
    _encryption_key(world, org, "self", "CN")
    _encryption_key(world, platform, "org", "DE")
    subject = f"key:{world.keys[org].key_id}"
    creates = {category: _tx(world, org, "privacy.create_record", {
        "category": category, "jurisdiction": "CN", "holders": [subject],
        "commitment": hexdigest(f"c/{org}/{category}/{world.chain.height}"),
        "ciphertext_hash": hexdigest(f"x/{org}/{category}/{world.chain.height}"),
        "wrap_hashes": {subject: hexdigest(f"w/{org}/{category}")}})
        for category in sorted(TRADER_CATEGORIES)}
    _block(world, list(creates.values()))
    records = {category: tx.hash.hex() for category, tx in creates.items()}
    if grant:
        until = world.chain.next_time + 300 * DAY_MS
        _block(world, [_tx(world, org, "privacy.grant", {
            "record_id": record, "grantee": f"org:{platform}", "purpose": PURPOSE,
            "until": until, "wrap_hash": hexdigest(f"g/{record}"),
            "cross_border_consent": True}) for record in records.values()])
    return records


def platform_reads(world: World, records: dict[str, str], *, platform: str = PLATFORM
                   ) -> None:
    result = _block(world, [_tx(world, platform, "privacy.access", {
        "record_id": record, "purpose": PURPOSE, "basis": "grant"})
        for record in records.values()])
    refused = [e for e in result.events if e.type == "privacy.access.refused"]
    assert not refused, [dict(e.attributes) for e in refused]


def apply_merchant(world: World, org: str = MERCHANT, *, platform: str = PLATFORM
                   ) -> dict[str, str]:
    records = trader_records(world, org, platform=platform)
    world.ok(org, "apply_merchant", {"platform": platform, "records": records})
    return records


def verify_merchant(world: World, org: str = MERCHANT, *, platform: str = PLATFORM) -> None:
    merchant = world.get(f"merchant/{org}")
    if merchant is not None and merchant["status"] == "verified":
        return
    records = apply_merchant(world, org, platform=platform)
    platform_reads(world, records, platform=platform)
    world.ok(platform, "verify_merchant", {"org": org, "outcome": "verified"})


# --- listings ---------------------------------------------------------------------------------

def default_shipping(currency: str = "EUR") -> list[dict[str, Any]]:
    return [{"method": "rail", "price": {"amount": 500, "currency": currency}, "days": 18},
            {"method": "air", "price": {"amount": 1_500, "currency": currency}, "days": 7}]


def listing_payload(listing: str = "tea-1", *, gtin: str = GTIN, price: int = 2_500,
                    currency: str = "EUR", stock: int = 100,
                    ships_to: Sequence[str] = ("DE", "FR", "PL"),
                    shipping: list[dict[str, Any]] | None = None, dispatch_days: int = 2,
                    return_days: int = 14, certificates: Sequence[str] = ("CE",),
                    late_shipment_penalty: int | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "listing": listing, "gtin": gtin, "price": {"amount": price, "currency": currency},
        "stock": stock, "ships_to": list(ships_to),
        "shipping": default_shipping(currency) if shipping is None else shipping,
        "dispatch_days": dispatch_days, "return_days": return_days,
        "certificates": list(certificates)}
    if late_shipment_penalty is not None:
        payload["late_shipment_penalty"] = {"amount": late_shipment_penalty,
                                            "currency": currency}
    return payload


def publish_listing(world: World, listing: str = "tea-1", *, merchant: str = MERCHANT,
                    gtin: str = GTIN, price: int = 2_500, currency: str = "EUR",
                    stock: int = 100, ships_to: Sequence[str] = ("DE", "FR", "PL"),
                    shipping: list[dict[str, Any]] | None = None, dispatch_days: int = 2,
                    return_days: int = 14, certificates: Sequence[str] = ("CE",),
                    late_shipment_penalty: int | None = None) -> dict[str, Any]:
    register_product(world, gtin)
    for cert_type in certificates:
        if certificate_root(world.chain.get, gtin, cert_type, world.chain.next_time) is None:
            certify(world, gtin, cert_type)
    verify_merchant(world, merchant)
    world.ok(merchant, "publish_listing", listing_payload(
        listing, gtin=gtin, price=price, currency=currency, stock=stock, ships_to=ships_to,
        shipping=shipping, dispatch_days=dispatch_days, return_days=return_days,
        certificates=certificates, late_shipment_penalty=late_shipment_penalty))
    published: dict[str, Any] = world.get(f"listing/{merchant}/{listing}")
    return published
