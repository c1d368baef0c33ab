"""The ``data`` of the privacy domain's partner events (CloudEvents on
``ecosphere.events``), registered for the AsyncAPI document and for validation: exactly
the attributes the privacy contract emits (``services/privacy/*.py``). None of them
carries personal data: ids, hashes, codes and block times only.

Parties are ``org:<org id>``, ``key:<key id>`` or ``vault`` (the gateway's vault
custodian); subjects are key ids (the person's own signing key)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, WithJsonSchema

from services.gateway.event_schemas import BlockTimeMs, EventData, Hex64, KeyId
from services.privacy.vocabulary import CATEGORIES, PURPOSES


def _one_of(allowed: frozenset[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not a known {what}")
        return value

    return check


Party = Annotated[str, Field(pattern=r"^(vault|org:[a-z0-9._-]{1,64}|key:[0-9a-f]{32})$",
                             description="org:<org id>, key:<key id> or vault")]
Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$",
                               description="ISO 3166-1 alpha-2")]
EncryptionKeyId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$",
                                       description="SHA-256 of the X25519 public key, "
                                                   "first 16 bytes, lowercase hex")]
RecordId = Annotated[Hex64, Field(description="the record's creating transaction's hash")]
# Derived from the domain's vocabulary, so the schema cannot drift from the contract.
Category = Annotated[str, AfterValidator(_one_of(CATEGORIES, "record category")),
                     WithJsonSchema({"type": "string", "enum": sorted(CATEGORIES),
                                     "description": "what the record holds"})]
Purpose = Annotated[str, AfterValidator(_one_of(PURPOSES, "purpose")),
                    WithJsonSchema({"type": "string", "enum": sorted(PURPOSES),
                                    "description": "why a party reads"})]
Basis = Literal["grant", "legal_basis", "subject"]


class PrivacyKeyRegistered(EventData):
    """A party registered (or rotated: ``rotated``) its X25519 encryption key."""

    party: Party
    key_id: EncryptionKeyId
    country: Country
    by: KeyId
    rotated: bool


class PrivacyKeyRevoked(EventData):
    """A party's encryption key was revoked: no new record or grant can name it."""

    party: Party
    key_id: EncryptionKeyId
    by: KeyId


class PrivacyRecordCreated(EventData):
    """A subject created a vault record: its commitment and holders, never its value."""

    record_id: RecordId
    subject: KeyId
    category: Category
    jurisdiction: Country
    commitment: Hex64 = Field(description="salted SHA-256 commitment to the value")
    holders: list[Party] = Field(description="parties the data key was wrapped for")


class PrivacyRecordRectified(PrivacyRecordCreated):
    """A subject made a new version of a record; the old one goes to erasure."""

    supersedes: RecordId


class PrivacyGrantCreated(EventData):
    """A subject let a party read a record for a purpose until a block time."""

    record_id: RecordId
    subject: KeyId
    grantee: Party
    purpose: Purpose
    until: BlockTimeMs
    cross_border_consent: bool


class PrivacyGrantRevoked(EventData):
    record_id: RecordId
    subject: KeyId
    grantee: Party
    purpose: Purpose


class PrivacyAccessGranted(EventData):
    """A party's access to a record was judged and granted (the vault releases the
    party's wrapped key against it, for a while)."""

    record_id: RecordId
    subject: KeyId
    party: Party
    purpose: Purpose
    basis: Basis
    by: KeyId = Field(description="the key that asked")


class PrivacyAccessRefused(EventData):
    """A party's access to a record was judged and refused, with a stable reason."""

    record_id: RecordId
    subject: KeyId | None = Field(description="null: no such record")
    party: Party
    purpose: Purpose
    basis: Basis
    by: KeyId
    reason: str = Field(description="no_grant, grant_expired, grant_revoked, "
                                    "not_the_subject, no_legal_basis, "
                                    "category_outside_legal_basis, "
                                    "cross_border_consent_required, record_not_found, "
                                    "record_<status>")


class PrivacyErasureRequested(EventData):
    """A record is being erased: every party in ``pending`` must destroy its copy and
    acknowledge by ``deadline``."""

    record_id: RecordId
    subject: KeyId
    pending: list[Party]
    deadline: BlockTimeMs
    reason: Literal["requested", "rectified"]


class PrivacyErasureAcknowledged(EventData):
    record_id: RecordId
    party: Party
    by: KeyId
    late: bool


class PrivacyErasureCompleted(EventData):
    """Every copy's holder acknowledged: the data key exists nowhere."""

    record_id: RecordId
    subject: KeyId
    late: bool


class PrivacyErasureOverdue(EventData):
    """An erasure's deadline passed with parties still to acknowledge (a block hook)."""

    record_id: RecordId
    subject: KeyId
    missing: list[Party]


class PrivacyMatchAttested(EventData):
    """An entitled party compared two records off chain and attested the verdict."""

    records: list[RecordId] = Field(min_length=2, max_length=2)
    category: Category
    equal: bool
    party: Annotated[str, Field(pattern=r"^org:[a-z0-9._-]{1,64}$")]
    purpose: Purpose
    at: BlockTimeMs
    by: KeyId


#: every event the privacy contract emits: (type, data model, subject attribute)
PRIVACY_EVENTS: tuple[tuple[str, type[EventData], str | None], ...] = (
    ("privacy.key.registered", PrivacyKeyRegistered, "party"),
    ("privacy.key.revoked", PrivacyKeyRevoked, "party"),
    ("privacy.record.created", PrivacyRecordCreated, "record_id"),
    ("privacy.record.rectified", PrivacyRecordRectified, "record_id"),
    ("privacy.grant.created", PrivacyGrantCreated, "record_id"),
    ("privacy.grant.revoked", PrivacyGrantRevoked, "record_id"),
    ("privacy.access.granted", PrivacyAccessGranted, "record_id"),
    ("privacy.access.refused", PrivacyAccessRefused, "record_id"),
    ("privacy.erasure.requested", PrivacyErasureRequested, "record_id"),
    ("privacy.erasure.acknowledged", PrivacyErasureAcknowledged, "record_id"),
    ("privacy.erasure.completed", PrivacyErasureCompleted, "record_id"),
    ("privacy.erasure.overdue", PrivacyErasureOverdue, "record_id"),
    ("privacy.match.attested", PrivacyMatchAttested, "party"),
)

__all__ = ["PRIVACY_EVENTS"]
