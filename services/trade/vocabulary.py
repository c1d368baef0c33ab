"""The trade domain's words: limits, time windows, identifiers and their checks.

Every module of the domain takes its constants from here, so a rule and its test name
the same number. All times are block time in milliseconds; nothing here reads a clock.

This module never does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from services.ledger.core.contract import BlockContext, TxContext

#: what each module of the domain exports, assembled by contract.py:
#: ACTIONS: action -> (handler, required payload fields, optional payload fields)
ActionSpec = tuple[Callable[[TxContext], None], frozenset[str], frozenset[str]]
#: DEADLINES: deadline kind -> handler(ctx, item id "<kind>:<rest>", data)
DeadlineHandler = Callable[[BlockContext, str, Any], None]
#: ON_BLOCK: handlers run at the end of every block (the block's events so far)
BlockHandler = Callable[[BlockContext], None]

DAY_MS: Final = 24 * 3_600_000

# --- roles -------------------------------------------------------------------------------
PAYMENT_ROLES: Final = frozenset({"payment"})  # issue and destroy money
PLATFORM_ROLES: Final = frozenset({"platform"})  # verify merchants, moderate, set fees
MERCHANT_ROLES: Final = frozenset({"merchant"})
CARRIER_ROLES: Final = frozenset({"carrier"})

# --- limits --------------------------------------------------------------------------------
AMOUNT_MAX: Final = 10**15  # minor units of one amount
QUANTITY_MAX: Final = 100_000  # units of one order
STOCK_MAX: Final = 10**9
LISTINGS_PER_MERCHANT_MAX: Final = 10_000
SHIPS_TO_MAX: Final = 64  # destination countries of one listing
SHIPPING_OPTIONS_MAX: Final = 8
CERTIFICATES_PER_LISTING_MAX: Final = 8
LEGS_MAX: Final = 8  # legs of one shipment
EVIDENCE_MAX: Final = 16  # document digests of one dispute
AGREEMENT_RULES_MAX: Final = 16
AGREEMENTS_PER_ORG_MAX: Final = 256  # open (proposed or active) agreements of one org
ACCOUNT_TAGS_MAX: Final = 16  # funding/payout account tags remembered per organisation
FEE_BPS_MAX: Final = 2_000  # the platform's fee: at most 20 %
BPS: Final = 10_000

# --- windows (block time) ----------------------------------------------------------------------
CONFIRM_MS: Final = 7 * DAY_MS  # after delivery, silence confirms receipt
WITHDRAWAL_MS: Final = 14 * DAY_MS  # EU right of withdrawal (Directive 2011/83/EU Art. 9)
REFUND_MS: Final = 14 * DAY_MS  # the trader refunds within 14 days (Art. 13)
LEG_GRACE_MS: Final = 6 * 3_600_000  # a leg is late this long after its planned arrival
AGREEMENT_TERM_MS_MAX: Final = 2 * 365 * DAY_MS  # an agreement runs at most this long
PLAN_HORIZON_MS: Final = 365 * DAY_MS  # a shipment's legs are planned at most this far ahead
DISPATCH_DAYS_MAX: Final = 60
RETURN_DAYS_MAX: Final = 365
JUROR_WINDOW_MS: Final = 365 * DAY_MS  # a buyer with a delivery this recent may sit
COMMIT_MS: Final = 3 * DAY_MS  # panellists commit their votes within this
REVEAL_MS: Final = 2 * DAY_MS  # ...then reveal them within this
PANEL_BUYERS: Final = 3
REDRAWS_MAX: Final = 3
JURORS_MAX: Final = 10_000  # the eligible pool kept in state (the most recent)
QUOTE_MS_MAX: Final = 3_600_000  # a quote is valid for at most an hour
#: an authorised return whose parcel is not delivered back this long after the request
#: lapses (the consumer sends within 14 days, Art. 14; the rest is transit)
RETURN_LAPSE_MS: Final = 60 * DAY_MS
#: why a buyer returns an order (the right of withdrawal needs no reason: ``withdrawal``)
RETURN_REASONS: Final = frozenset({"withdrawal", "defective", "damaged", "not_as_described",
                                   "wrong_item", "other"})

#: EU member states (ISO 3166-1 alpha-2): destinations with the right of withdrawal
EU_COUNTRIES: Final = frozenset({
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
    "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"})
#: transport modes of a leg (China–Europe Railway Express, sea, air, road, last mile)
MODES: Final = frozenset({"rail", "sea", "air", "road", "last_mile"})
#: temperature units of a cold-chain rule and of the readings it judges (UN/ECE Rec 20)
TEMPERATURE_UNITS: Final = frozenset({"CEL", "FAH", "KEL"})
#: transport documents a tracking event may name a waybill as (the last word of its
#: bizTransaction type: CBV ``bol``, or a private type such as ``urn:example:btt:cmr``)
TRANSPORT_DOCUMENTS: Final = frozenset({"bol", "cmr", "awb", "mawb", "hawb", "cim", "smgs",
                                        "cim_smgs", "waybill", "consignment_note"})
#: organisations whose EPCIS ``holding`` events put a shipment on a customs hold
CUSTOMS_ROLES: Final = frozenset({"customs_cn", "customs_eu"})
#: shipping methods a listing offers
SHIPPING_METHODS: Final = frozenset({"rail", "sea", "air", "road", "post"})

ID_RE: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # client-chosen ids (listing...)
ORG_RE: Final = re.compile(r"[a-z0-9._-]{1,64}")
HEX64_RE: Final = re.compile(r"[0-9a-f]{64}")
COUNTRY_RE: Final = re.compile(r"[A-Z]{2}")
LOCODE_RE: Final = re.compile(r"[A-Z]{2}[A-Z2-9]{3}")  # UN/LOCODE, e.g. CNXMN, DEDUI
GTIN_RE: Final = re.compile(r"[0-9]{14}")
WAYBILL_RE: Final = re.compile(r"[A-Za-z0-9._/-]{1,64}")
REFERENCE_RE: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # a provider's payment reference


def text_id(ctx: TxContext, value: object, field: str, pattern: re.Pattern[str] = ID_RE
            ) -> str:
    """An identifier matching ``pattern`` (ASCII only), or a ``bad_payload`` refusal."""
    if not isinstance(value, str) or not value.isascii() or not pattern.fullmatch(value):
        ctx.fail("bad_payload", f"{field} must match {pattern.pattern}")
    return value


def integer(ctx: TxContext, value: object, field: str, lo: int, hi: int) -> int:
    """An integer in [lo, hi] (booleans are not integers here)."""
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        ctx.fail("bad_payload", f"{field} must be an integer in [{lo}, {hi}]")
    return value


def boolean(ctx: TxContext, value: object, field: str) -> bool:
    if not isinstance(value, bool):
        ctx.fail("bad_payload", f"{field} must be true or false")
    return value


def digest(ctx: TxContext, value: object, field: str) -> str:
    """A SHA-256 digest as 64 lowercase hex digits (documents stay off chain)."""
    return text_id(ctx, value, field, HEX64_RE)


def listing_key(merchant: str, listing: str) -> str:
    return f"listing/{merchant}/{listing}"


def order_key(order: str) -> str:
    return f"order/{order}"


def as_list(ctx: TxContext, value: object, field: str, max_items: int) -> list[Any]:
    if not isinstance(value, list) or len(value) > max_items:
        ctx.fail("bad_payload", f"{field} must be an array of at most {max_items} items")
    return value
