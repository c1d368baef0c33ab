"""Encryption keys on chain: the X25519 public keys parties wrap data keys for.

An organisation's admin registers its organisation's key (``scope: org``); a person
registers their own with their signing key (``scope: self``). Registering again
rotates (the previous key is kept in ``previous``: data keys wrapped for it stay
readable by its holder until re-wrapped); revoking leaves the party with no key, so
no new record or grant can name it. The country a party declares is what cross-border
rules (PIPL) are judged on — at every access, on the country declared *now*
(:func:`declared_country`): a rotation may move a party abroad, and what it was
granted inside the country does not follow it out without consent.

This module never does I/O.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from services.ledger.core.contract import TxContext
from services.privacy.vocabulary import COUNTRY_RE, HEX64_RE, org_party, self_party

__all__ = ["PREVIOUS_KEYS_MAX", "declared_country", "encryption_key", "is_exchange_key",
           "register_key", "revoke_key"]

PREVIOUS_KEYS_MAX: Final = 8

#: X25519 points of small order (RFC 7748; libsodium's list): a key among them makes
#: every shared secret predictable. Compared with the top bit of the last byte cleared.
_SMALL_ORDER: Final = frozenset(bytes.fromhex(h) for h in (
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
))


def is_exchange_key(public_key: bytes) -> bool:
    """A usable X25519 public key: 32 bytes, not of small order."""
    if len(public_key) != 32:
        return False
    masked = public_key[:31] + bytes([public_key[31] & 0x7F])
    return masked not in _SMALL_ORDER


def encryption_key(read: Any, party: str) -> dict[str, Any] | None:
    """The active encryption key record of ``party`` (``read``: a state reader taking
    the full key, e.g. ``ctx.read`` or ``StateView.get``), or None."""
    record = read(f"privacy/enckey/{party}")
    if not isinstance(record, dict) or record.get("status") != "active":
        return None
    return record


def declared_country(read: Any, party: str) -> str | None:
    """The country ``party`` last declared with a key (a revoked key's stands: revoking
    moves no one), or None if it never registered one."""
    record = read(f"privacy/enckey/{party}")
    if not isinstance(record, dict) or not isinstance(record.get("country"), str):
        return None
    return str(record["country"])


def _party_of(ctx: TxContext) -> str:
    scope = ctx.payload.get("scope")
    if scope == "org":
        ctx.require_admin()
        return org_party(ctx.sender_org)
    if scope == "self":
        return self_party(ctx.sender)
    ctx.fail("bad_payload", "scope is org (an admin, for its organisation) or self")


def register_key(ctx: TxContext) -> None:
    party = _party_of(ctx)
    public_hex = ctx.payload.get("public_key")
    if not isinstance(public_hex, str) or not HEX64_RE.fullmatch(public_hex):
        ctx.fail("bad_payload", "public_key is 64 lowercase hex digits (X25519)")
    public_key = bytes.fromhex(public_hex)
    if not is_exchange_key(public_key):
        ctx.fail("bad_encryption_key", "public_key is of small order: no secret would be")
    country = ctx.payload.get("country")
    if not isinstance(country, str) or not COUNTRY_RE.fullmatch(country):
        ctx.fail("bad_payload", "country is an ISO 3166-1 alpha-2 code")
    key_id = hashlib.sha256(public_key).hexdigest()[:32]
    old = ctx.get(f"enckey/{party}")
    previous: list[dict[str, Any]] = []
    if isinstance(old, dict):
        if old.get("public_key") == public_hex and old.get("status") == "active":
            ctx.fail("conflict", f"{party} already uses this key")
        previous = list(old.get("previous", []))
        if old.get("status") == "active":
            previous.append({"key_id": old["key_id"], "public_key": old["public_key"],
                             "since": old["since"], "until": ctx.time})
    record = {"party": party, "key_id": key_id, "public_key": public_hex,
              "country": country, "since": ctx.time, "status": "active",
              "previous": previous[-PREVIOUS_KEYS_MAX:], "by": ctx.sender}
    ctx.put(f"enckey/{party}", record)
    ctx.emit("privacy.key.registered", {"party": party, "key_id": key_id,
                                        "country": country, "by": ctx.sender,
                                        "rotated": bool(previous)})


def revoke_key(ctx: TxContext) -> None:
    party = _party_of(ctx)
    record = ctx.get(f"enckey/{party}")
    if not isinstance(record, dict) or record.get("status") != "active":
        ctx.fail("not_found", f"{party} has no active encryption key")
    previous = [*record.get("previous", []),
                {"key_id": record["key_id"], "public_key": record["public_key"],
                 "since": record["since"], "until": ctx.time}]
    record.update(status="revoked", previous=previous[-PREVIOUS_KEYS_MAX:])
    ctx.put(f"enckey/{party}", record)
    ctx.emit("privacy.key.revoked", {"party": party, "key_id": record["key_id"],
                                     "by": ctx.sender})
