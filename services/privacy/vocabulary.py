"""The privacy domain's words and limits: parties, categories, purposes, legal bases.

A *party* is who can hold a wrapped data key and ask for access: an organisation
(``org:<org id>``), a person acting with their own key (``key:<key id>``), or the
gateway's vault custodian (``vault``, the platform operator's role).

This module never does I/O.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "ACCESS_BASES",
    "CATEGORIES",
    "COUNTRY_RE",
    "CROSS_BORDER_REGIONS",
    "ERASURE_ACK_MS",
    "GRANTEES_PER_RECORD_MAX",
    "GRANT_MS_MAX",
    "HEX64_RE",
    "HOLDERS_MAX",
    "LEGAL_BASES",
    "MATCH_WINDOW_MS",
    "PURPOSES",
    "RECORDS_PER_SUBJECT_MAX",
    "VAULT",
    "VAULT_ROLES",
    "LegalBasis",
    "org_party",
    "parse_party",
    "self_party",
]

#: what a vault record holds (one value each: a name, an address, ...)
CATEGORIES: Final = frozenset({"name", "address", "phone", "email", "id_document",
                               "payment_account", "date_of_birth", "tax_id",
                               "trade_register", "self_certification"})
#: why a party may read a record (a grant names one)
PURPOSES: Final = frozenset({"delivery", "customs_clearance", "credit_inquiry", "dispute",
                             "payment", "merchant_verification", "returns"})
#: on what ground an access is asked: the subject's grant, a role's legal basis, or the
#: subject reading their own record
ACCESS_BASES: Final = frozenset({"grant", "legal_basis", "subject"})


class LegalBasis:
    """A purpose some roles may read records for without the subject's grant (the law
    obliges the subject to let them), limited to some categories."""

    __slots__ = ("categories", "roles")

    def __init__(self, roles: frozenset[str], categories: frozenset[str]) -> None:
        self.roles, self.categories = roles, categories


#: purpose -> who holds a legal basis for it, and for which categories
LEGAL_BASES: Final = {
    # Customs declarations name consignor and consignee (EU ICS2/H7, China's lists):
    "customs_clearance": LegalBasis(frozenset({"customs_cn", "customs_eu"}),
                                    frozenset({"name", "address", "phone", "id_document",
                                               "tax_id"})),
}
#: roles whose keys act for the gateway's vault custodian (``vault``)
VAULT_ROLES: Final = frozenset({"platform"})
VAULT: Final = "vault"

#: PIPL (China): a record of a subject in these jurisdictions goes to a party outside
#: them only with the subject's recorded consent
CROSS_BORDER_REGIONS: Final = frozenset({"CN"})

HOLDERS_MAX: Final = 8  # parties a record's data key is wrapped for at creation
#: distinct parties one record version is ever granted to (revoked grants included:
#: each grantee may hold a copy and must acknowledge the erasure), so a record's state
#: and its erasure's pending list stay bounded; rectifying starts a version with none
GRANTEES_PER_RECORD_MAX: Final = 64
RECORDS_PER_SUBJECT_MAX: Final = 1_000
GRANT_MS_MAX: Final = 366 * 24 * 3_600_000  # a grant lasts at most a year (renewable)
ERASURE_ACK_MS: Final = 14 * 24 * 3_600_000  # holders acknowledge deletion within 14 days
MATCH_WINDOW_MS: Final = 24 * 3_600_000  # a match is attested within a day of the accesses

HEX64_RE: Final = re.compile(r"[0-9a-f]{64}")
COUNTRY_RE: Final = re.compile(r"[A-Z]{2}")
_KEY_ID_RE: Final = re.compile(r"[0-9a-f]{32}")
_ORG_ID_RE: Final = re.compile(r"[a-z0-9._-]{1,64}")


def org_party(org: str) -> str:
    return f"org:{org}"


def self_party(key_id: str) -> str:
    return f"key:{key_id}"


def parse_party(value: object) -> str | None:
    """``value`` if it names a party (``org:<id>``, ``key:<key id>`` or ``vault``)."""
    if not isinstance(value, str):
        return None
    if value == VAULT:
        return value
    kind, _, ident = value.partition(":")
    if kind == "org" and _ORG_ID_RE.fullmatch(ident):
        return value
    if kind == "key" and _KEY_ID_RE.fullmatch(ident):
        return value
    return None
