"""The ``data`` of the trace domain's partner events (CloudEvents on ``ecosphere.events``),
registered for the AsyncAPI document and for validation: exactly the attributes the
trace contract emits (``services/trace/contract.py``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from services.gateway.event_schemas import BlockTimeMs, EventData, Hex64, OrgId

Amount = int
Gtin = str


class AccreditationGranted(EventData):
    """A certification body was accredited for certificate types and scopes."""

    org: OrgId
    id: str
    types: list[str]
    scopes: list[str]
    valid_from: BlockTimeMs
    valid_until: int
    revoked_at: int | None
    by: OrgId


class AccreditationWithdrawn(EventData):
    org: OrgId
    id: str
    by: OrgId


class ProductRegistered(EventData):
    """A brand owner registered a product (its GTIN and master data)."""

    gtin: Gtin = Field(pattern=r"^[0-9]{14}$")
    name: str
    brand_owner: OrgId
    company_prefix_length: int
    digital_link: str


class PrefixAssigned(EventData):
    """The platform licensed a GS1 company prefix to an organisation: only it registers
    products (GTIN) and locations (GLN) under it."""

    prefix: str = Field(pattern=r"^[0-9]{6,12}$")
    org: OrgId
    assigned_at: BlockTimeMs
    by: OrgId


class LocationRegistered(EventData):
    gln: str = Field(pattern=r"^[0-9]{13}$")
    org: OrgId
    name: str
    country: str = Field(pattern=r"^[A-Z]{2}$")
    registered: BlockTimeMs


class CertificateIssued(EventData):
    """An accredited body anchored a batch of certificates (its Merkle root)."""

    merkle_root: Hex64
    issuer: OrgId
    type: str
    scope: str
    subject_kind: str
    subject_id: str
    valid_from: int
    valid_until: int


class CertificateRevoked(EventData):
    merkle_root: Hex64
    target_hash: Hex64 | None = Field(description="one certificate; null: the whole batch")
    issuer: OrgId
    reason: str


class EventCaptured(EventData):
    """An EPCIS 2.0 event was recorded (the whole normalised event is in ``event``)."""

    event_hash: str = Field(description="CBV 2.0 event hash, ni:///sha-256;…?ver=CBV2.0")
    type: str
    biz_step: str | None
    disposition: str | None
    org: OrgId
    time: int = Field(description="eventTime, ms since the Unix epoch")
    location: str | None
    epcs: list[str] = Field(description="identifiers named (canonical Digital Links)")
    position: int
    event: dict[str, Any]


class CaptureRejected(EventData):
    """An event of a capture (or a whole relayed capture: position null) was refused."""

    position: int | None
    code: str
    reason: str
    org: OrgId | None


class ScanRecorded(EventData):
    """A scan was recorded with its evidence grade and its tag code's judgement
    (docs/adr/0005-clone-verdicts.md)."""

    epc: str
    country: str = Field(pattern=r"^[A-Z]{2}$", description="as claimed by the sender")
    scans: int
    evidence: Literal["reader", "possession", "anonymous"]
    proof: Literal["valid", "replayed", "invalid", "absent"]
    reader: OrgId | None = Field(description="the registered reader that signed the scan "
                                             "itself; null: relayed by the gateway")


class TagRegistered(EventData):
    """The brand owner registered the public key of an item's secure tag."""

    epc: str
    brand_owner: OrgId
    public_key: Hex64


class ScanReplayed(EventData):
    """A scan presented an earlier tap's code again (e.g. a copied link): it judges the
    scan, never the item."""

    epc: str
    brand_owner: OrgId
    country: str
    counter: int = Field(ge=0)
    tag_counter: int = Field(ge=0, description="the last counter accepted")


class AnomalyRaised(EventData):
    """A signal for the brand owner, never a verdict (docs/adr/0005-clone-verdicts.md):
    a scan after the item was decommissioned, or scans that prove no place in two
    countries within a day. At most one per item per day (evidence after
    decommissioning is not held back by an unproven anomaly)."""

    epc: str
    brand_owner: OrgId
    country: str
    code: Literal["after_decommissioning", "country_conflict"]
    evidence: Literal["reader", "possession", "anonymous"] = Field(
        description="the scan's evidence grade: after decommissioning, a reader's scan or "
                    "a fresh tag code says the genuine item or its tag is still about "
                    "(or a code tapped earlier was sent late); anonymous, only that "
                    "someone named the serial")
    reason: str


class ScanUnknown(EventData):
    epc: str
    country: str


class CloneSuspected(EventData):
    """The chain holds evidence that a second physical copy of the serial exists (for its
    brand owner; the item stays suspected for good)."""

    epc: str
    brand_owner: OrgId
    country: str
    code: Literal["shelf_conflict", "cloned_tag"] = Field(
        description="shelf_conflict: two registered retailers offered it in two "
                    "countries within a day; cloned_tag: two different codes of its tag "
                    "for the same tap (its key signs outside the genuine chip)")
    reason: str


#: every event the trace contract emits: (type, data model, subject attribute)
TRACE_EVENTS: tuple[tuple[str, type[EventData], str | None], ...] = (
    ("trace.accreditation.granted", AccreditationGranted, "org"),
    ("trace.accreditation.withdrawn", AccreditationWithdrawn, "org"),
    ("trace.prefix.assigned", PrefixAssigned, "prefix"),
    ("trace.product.registered", ProductRegistered, "gtin"),
    ("trace.location.registered", LocationRegistered, "gln"),
    ("trace.certificate.issued", CertificateIssued, "merkle_root"),
    ("trace.certificate.revoked", CertificateRevoked, "merkle_root"),
    ("trace.event.captured", EventCaptured, "event_hash"),
    ("trace.capture.rejected", CaptureRejected, "code"),
    ("trace.scan.recorded", ScanRecorded, "epc"),
    ("trace.scan.unknown", ScanUnknown, "epc"),
    ("trace.clone.suspected", CloneSuspected, "epc"),
    ("trace.tag.registered", TagRegistered, "epc"),
    ("trace.scan.replayed", ScanReplayed, "epc"),
    ("trace.anomaly.raised", AnomalyRaised, "epc"),
)
