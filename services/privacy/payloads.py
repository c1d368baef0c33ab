"""The shape of every privacy action's payload, checked statically (no state).

Each field, required or optional, has one declared shape: an id, a hash, a code from
a closed set, a block time or a boolean. A transaction with a field of another shape —
or a field not declared at all — is refused before it can reach a block, so free text
(a name, an address) can never be committed in a payload, whatever field it hides in.
The handlers check the same properties again against state (two places: a contract
bug in one is not a leak).

Shapes are ASCII regular expressions over fixed sets and exact types: no check here
depends on Unicode tables, floats or anything a replica's Python version could change.

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from services.privacy.vocabulary import (
    ACCESS_BASES,
    CATEGORIES,
    COUNTRY_RE,
    HEX64_RE,
    HOLDERS_MAX,
    PURPOSES,
    VAULT,
    parse_party,
)

__all__ = ["ACTIONS", "BLOCK_TIME_MAX", "Field", "problem"]

#: a block time (ms) a payload may name: the largest integer every JSON reader keeps
BLOCK_TIME_MAX: Final = 2**53 - 1


class Field:
    """One payload field: whether it must be there, and what it must look like."""

    __slots__ = ("check", "required", "shape")

    def __init__(self, shape: str, check: Callable[[object], bool], *,
                 required: bool = True) -> None:
        self.shape, self.check, self.required = shape, check, required


def _hex64(value: object) -> bool:
    return isinstance(value, str) and HEX64_RE.fullmatch(value) is not None


def _country(value: object) -> bool:
    return isinstance(value, str) and COUNTRY_RE.fullmatch(value) is not None


def _one_of(allowed: frozenset[str]) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        return isinstance(value, str) and value in allowed

    return check


def _bool(value: object) -> bool:
    return isinstance(value, bool)


def _block_time(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) \
        and 0 < value <= BLOCK_TIME_MAX


def _party(value: object) -> bool:
    return parse_party(value) is not None


def _holders(value: object) -> bool:
    return isinstance(value, list) and 0 < len(value) <= HOLDERS_MAX \
        and all(_party(p) and p != VAULT for p in value) \
        and len(set(value)) == len(value)


def _wrap_hashes(value: object) -> bool:
    return isinstance(value, dict) and 0 < len(value) <= HOLDERS_MAX \
        and all(_party(p) and p != VAULT and _hex64(h) for p, h in value.items())


RECORD_ID: Final = Field("64 lowercase hex digits (a record's id)", _hex64)
HASH: Final = Field("64 lowercase hex digits (a SHA-256)", _hex64)
PURPOSE: Final = Field(f"one of {sorted(PURPOSES)}", _one_of(PURPOSES))
SCOPE: Final = Field("org or self", _one_of(frozenset({"org", "self"})))
CONSENT: Final = Field("true or false (the subject's PIPL cross-border consent)", _bool,
                       required=False)
HOLDERS: Final = Field(f"a list of 1..{HOLDERS_MAX} distinct parties (org:<id> or "
                       "key:<key id>)", _holders)
WRAP_HASHES: Final = Field(f"an object of 1..{HOLDERS_MAX} holders (org:<id> or key:<key "
                           "id>) -> the SHA-256 of the data key wrapped for it (64 "
                           "lowercase hex digits)", _wrap_hashes)

#: action -> field -> shape; nothing else is accepted
ACTIONS: Final[Mapping[str, Mapping[str, Field]]] = {
    "register_key": {"scope": SCOPE,
                     "public_key": Field("64 lowercase hex digits (X25519)", _hex64),
                     "country": Field("an ISO 3166-1 alpha-2 code", _country)},
    "revoke_key": {"scope": SCOPE},
    "create_record": {"category": Field(f"one of {sorted(CATEGORIES)}",
                                        _one_of(CATEGORIES)),
                      "commitment": HASH, "ciphertext_hash": HASH,
                      "jurisdiction": Field("an ISO 3166-1 alpha-2 code", _country),
                      "holders": HOLDERS, "wrap_hashes": WRAP_HASHES,
                      "cross_border_consent": CONSENT},
    "rectify": {"record_id": RECORD_ID, "commitment": HASH, "ciphertext_hash": HASH,
                "holders": HOLDERS, "wrap_hashes": WRAP_HASHES,
                "cross_border_consent": CONSENT},
    "grant": {"record_id": RECORD_ID,
              "grantee": Field("a party (org:<id> or key:<key id>)", _party),
              "purpose": PURPOSE,
              "until": Field(f"a block time in ms, 1..{BLOCK_TIME_MAX}", _block_time),
              "wrap_hash": HASH, "cross_border_consent": CONSENT},
    "revoke_grant": {"record_id": RECORD_ID,
                     "grantee": Field("a party (org:<id> or key:<key id>)", _party),
                     "purpose": PURPOSE},
    "access": {"record_id": RECORD_ID, "purpose": PURPOSE,
               "basis": Field(f"one of {sorted(ACCESS_BASES)}", _one_of(ACCESS_BASES)),
               "as": Field("org or self", _one_of(frozenset({"org", "self"})),
                           required=False)},
    "request_erasure": {"record_id": RECORD_ID},
    "ack_erasure": {"record_id": RECORD_ID,
                    "as": Field("org, self or vault",
                                _one_of(frozenset({"org", "self", VAULT})),
                                required=False)},
    "attest_match": {"record_a": RECORD_ID, "record_b": RECORD_ID, "purpose": PURPOSE,
                     "equal": Field("true or false", _bool)},
}


def _together(action: str, payload: Mapping[str, object]) -> str | None:
    """What the fields of one payload must agree on."""
    if action in ("create_record", "rectify"):
        holders, wraps = payload["holders"], payload["wrap_hashes"]
        if not isinstance(holders, list) or not isinstance(wraps, dict) \
                or set(wraps) != set(holders):
            return "wrap_hashes names exactly the holders"
    if action == "attest_match" and payload["record_a"] == payload["record_b"]:
        return "record_a and record_b are two different records"
    return None


def problem(action: str, payload: Mapping[str, object]) -> str | None:
    """Why ``payload`` is not a shape ``action`` accepts, or None (``action`` is known)."""
    fields = ACTIONS[action]
    unknown = sorted(set(payload) - set(fields))
    if unknown:
        return (f"unknown payload fields {unknown} (personal data never goes on the "
                "chain: it goes to the vault, encrypted)")
    missing = sorted(name for name, f in fields.items() if f.required and name not in payload)
    if missing:
        return f"payload lacks {missing}"
    for name in sorted(payload):
        if not fields[name].check(payload[name]):
            return f"{name} is {fields[name].shape}"
    return _together(action, payload)
