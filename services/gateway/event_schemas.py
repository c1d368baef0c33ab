"""The schemas of partner events: the ``data`` of every event type, and the envelope.

Every domain event a block emits (``services.ledger.core.contract.Event``) is
published to partners as a CloudEvent 1.0 (``services.gateway.events``). This
module says what partners receive:

* one pydantic model per event type for the CloudEvent's ``data`` — exactly
  the event's attributes as the contract emits them (``extra="forbid"``: an
  attribute added to a contract is a schema change, caught by the tests, and
  ``docs/asyncapi.yaml`` is regenerated with it);
* :class:`EventCatalogue`, ``event type -> data model`` (and CloudEvent subject),
  which :mod:`services.gateway.asyncapi` turns into the AsyncAPI document:
  :data:`PLATFORM_EVENTS` for the ledger's own events; the composition adds each
  domain's, explicitly;
* :class:`CloudEventEnvelope`, the CloudEvent as we publish it (CloudEvents
  JSON format, which is also the body of every AMQP message: structured
  content mode).

Event types are named ``<contract>.<entity>.<past_verb>``; the AMQP routing
key is exactly the event type and the *domain* is its first segment.

The envelope's extension attributes (CloudEvents extension names are lowercase
letters and digits only):

``height``      the block height (CloudEvents Integer)
``txhash``      the emitting transaction's hash, lowercase hex; absent for
                events of a block hook (deadlines, validator-set changes)
``eventindex``  the event's position among the block's events (CloudEvents Integer)

The event ``id`` is ``<tx hash hex>:<eventindex>`` (``<block hash hex>:<eventindex>``
for block-hook events): stable across re-publication, so partners
de-duplicate by it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
)
from pydantic.json_schema import SkipJsonSchema

from services.ledger.core import consortium

#: ``<contract>.<entity>.<past_verb>``, lowercase
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"
_EVENT_TYPE_RE = re.compile(EVENT_TYPE_PATTERN)
#: CloudEvents 1.0 extension attribute names
EXTENSION_NAME_PATTERN = r"^[a-z0-9]{1,20}$"
#: CloudEvents ``Integer`` is a signed 32-bit integer
CE_INTEGER_MAX = 2**31 - 1
DATA_CONTENT_TYPE = "application/json"
SPEC_VERSION = "1.0"
EVENT_ID_PATTERN = r"^[0-9a-f]{64}:(0|[1-9][0-9]*)$"
SOURCE_PATTERN = r"^/ecosphere/[a-z0-9][a-z0-9-]{0,63}$"


def _one_of(allowed: frozenset[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not a known {what}")
        return value

    return check


Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
KeyId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$",
                             description="a key id: 16 bytes of a tagged SHA-256 "
                                         "of the public key, lowercase hex")]
OrgId = Annotated[str, Field(pattern=r"^[a-z0-9_.-]{1,64}$",
                             description="an organisation id")]
# Derived from the consortium contract, so the schema cannot drift from it.
OrgRole = Annotated[str, AfterValidator(_one_of(consortium.ORG_ROLES, "organisation role")),
                    WithJsonSchema({"type": "string", "enum": sorted(consortium.ORG_ROLES)})]
Permission = Annotated[str, AfterValidator(_one_of(consortium.PERMISSIONS, "key permission")),
                       WithJsonSchema({"type": "string", "enum": sorted(consortium.PERMISSIONS)})]
ProposalType = Annotated[
    str, AfterValidator(_one_of(consortium.PROPOSAL_ACTIONS, "proposal action")),
    WithJsonSchema({"type": "string", "enum": sorted(consortium.PROPOSAL_ACTIONS)})]
BlockTimeMs = Annotated[int, Field(ge=0, description="BFT block time, ms since the Unix epoch")]


class EventData(BaseModel):
    """Base of the ``data`` models: exactly the attributes the contract emits."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- notary ------------------------------------------------------------------------

class NotaryDocumentAnchored(EventData):
    """A document's SHA-256 digest was anchored: the chain proves who and when."""

    digest: Hex64 = Field(description="SHA-256 of the document, lowercase hex")
    by: KeyId = Field(description="the key that anchored it")
    org: OrgId = Field(description="the organisation of that key")
    label: str = Field(max_length=128, description="a short label, possibly empty")


# --- consortium ----------------------------------------------------------------------

class ConsortiumOrganisationRegistered(EventData):
    """The platform operator registered an organisation with ordinary roles."""

    org: OrgId
    name: str = Field(min_length=1, max_length=256)
    roles: list[OrgRole] = Field(min_length=1)
    admin_key: KeyId = Field(description="the id of the organisation's first admin key")
    by: OrgId = Field(description="the registering organisation")


class ConsortiumKeyAdded(EventData):
    """An organisation admin certified a new key for the organisation."""

    key_id: KeyId
    org: OrgId
    permissions: list[Permission] = Field(min_length=1)
    by: KeyId = Field(description="the admin key that added it")


class ConsortiumKeyRotated(EventData):
    """A key replaced itself by a successor (the old key is retired)."""

    key_id: KeyId
    successor: KeyId
    org: OrgId


class ConsortiumKeyRevoked(EventData):
    """A key was revoked by itself or by an admin of its organisation."""

    key_id: KeyId
    org: OrgId
    reason: str = Field(max_length=256)
    by: KeyId = Field(description="the key that revoked it")


class ValidatorSpec(BaseModel):
    """A validator as a ``set_validators`` proposal names it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    public_key: Hex64 = Field(description="Ed25519 public key, lowercase hex")
    power: int = Field(ge=1, le=1_000_000)
    org: OrgId


class ProposalAction(BaseModel):
    """What a governance proposal does once more than two thirds approved it.

    Fields by ``type``: ``set_validators``: ``effective_height``, ``validators``;
    ``grant_roles``/``revoke_roles``: ``org``, ``roles``;
    ``suspend_organisation``/``reinstate_organisation``: ``org``;
    ``schedule_upgrade``: ``version``, ``height``; ``cancel_upgrade``: ``version``. The
    action is recorded as the proposer submitted it (other fields are kept).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    type: ProposalType
    effective_height: Annotated[int, Field(ge=1)] | SkipJsonSchema[None] = None
    validators: Annotated[list[ValidatorSpec], Field(min_length=1)] | SkipJsonSchema[None] = None
    org: OrgId | SkipJsonSchema[None] = None
    roles: Annotated[list[OrgRole], Field(min_length=1)] | SkipJsonSchema[None] = None
    version: Annotated[int, Field(ge=2)] | SkipJsonSchema[None] = None
    height: Annotated[int, Field(ge=1)] | SkipJsonSchema[None] = None


ProposalId = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$",
                                  description="the proposal id: the hash of the proposing "
                                              "transaction, lowercase hex")]


class ConsortiumProposalSubmitted(EventData):
    """A validator organisation submitted a governance proposal (its approval counts)."""

    proposal: ProposalId
    action: ProposalAction
    by: OrgId = Field(description="the proposing organisation")
    expires: BlockTimeMs = Field(description="block time after which it expires, ms")


class ConsortiumProposalApproved(EventData):
    """A validator organisation approved an open proposal."""

    proposal: ProposalId
    by: OrgId = Field(description="the approving organisation")


class ConsortiumProposalExecuted(EventData):
    """A proposal reached more than two thirds of the validator organisations and ran."""

    proposal: ProposalId
    action: ProposalAction


class ConsortiumProposalExpired(EventData):
    """An open proposal's deadline passed on block time (emitted by a block hook)."""

    proposal: ProposalId


class ConsortiumValidatorsChanged(EventData):
    """A scheduled validator set takes effect (emitted by a block hook)."""

    effective_height: int = Field(ge=1)
    validators: list[KeyId] = Field(min_length=1,
                                    description="the key ids of the new validator set")


class ConsortiumCompositionScheduled(EventData):
    """Governance scheduled the next composition of contracts (services.composition) to
    run from a height: replicas whose code lacks it halt before that height."""

    version: int = Field(ge=2, description="the composition version to run")
    height: int = Field(ge=1, description="the first height that runs it")


class ConsortiumCompositionCancelled(EventData):
    """Governance withdrew a scheduled composition upgrade before it took effect."""

    version: int = Field(ge=2, description="the composition version no longer scheduled")
    height: int = Field(ge=1, description="the height it was scheduled for")
    proposal: ProposalId = Field(description="the proposal that cancelled it")


class ConsortiumCompositionUpgraded(EventData):
    """The chain runs a new composition from this block on (emitted by a block hook)."""

    version: int = Field(ge=2)
    height: int = Field(ge=1, description="the first height that ran it")
    proposal: ProposalId


# --- the catalogue -------------------------------------------------------------------

class EventCatalogue:
    """Event type -> the model of its ``data`` (and the attribute that is its CloudEvent
    ``subject``, if any), for the events a chain's contracts emit.

    Built explicitly: :data:`PLATFORM_EVENTS` holds the ledger's own (consortium,
    notary); ``services.composition.event_catalogue()`` adds each domain's (nothing
    registers itself by being imported). :mod:`services.gateway.asyncapi` turns a
    catalogue into the AsyncAPI document.

    ``withheld``: the types never published on the partner exchange, because a
    domain's read policy restricts them to their parties (``services.gateway.
    read_policy``); they are still replayed, signed, to those parties.
    """

    def __init__(self, schemas: Iterable[tuple[str, type[BaseModel], str | None]] = (),
                 *, withheld: Iterable[str] = ()) -> None:
        self._models: dict[str, type[BaseModel]] = {}
        self._subjects: dict[str, str] = {}
        for event_type, model, subject in schemas:
            self._add(event_type, model, subject)
        self._withheld = frozenset(withheld)
        unknown = sorted(self._withheld - set(self._models))
        if unknown:
            raise ValueError(f"withheld event types not in the catalogue: {unknown}")

    def _add(self, event_type: str, model: type[BaseModel], subject: str | None) -> None:
        if not _EVENT_TYPE_RE.match(event_type):
            raise ValueError(f"event type {event_type!r} is not "
                             "<contract>.<entity>.<past_verb>")
        if event_type in self._models:
            raise ValueError(f"event type {event_type!r} is declared twice")
        if subject is not None and subject not in model.model_fields:
            raise ValueError(f"{model.__name__} has no field {subject!r} for the subject")
        if model.__name__ in {m.__name__ for m in self._models.values()}:
            raise ValueError(f"another event type already uses a model named "
                             f"{model.__name__}")
        self._models[event_type] = model
        if subject is not None:
            self._subjects[event_type] = subject

    def extended(self, schemas: Iterable[tuple[str, type[BaseModel], str | None]], *,
                 withheld: Iterable[str] = ()) -> EventCatalogue:
        """This catalogue plus ``schemas``, and ``withheld`` among them (a new one; this
        one is unchanged)."""
        return EventCatalogue([*self.entries(), *schemas],
                              withheld=self._withheld | set(withheld))

    def entries(self) -> list[tuple[str, type[BaseModel], str | None]]:
        return [(t, m, self._subjects.get(t)) for t, m in self._models.items()]

    @property
    def models(self) -> Mapping[str, type[BaseModel]]:
        return self._models

    @property
    def subjects(self) -> Mapping[str, str]:
        return self._subjects

    @property
    def withheld(self) -> frozenset[str]:
        """Types never published on the partner exchange (restricted to their parties)."""
        return self._withheld

    def published_types(self) -> list[str]:
        """The types partners receive on the exchange, sorted."""
        return sorted(set(self._models) - self._withheld)

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._models

    def __len__(self) -> int:
        return len(self._models)

    def types(self) -> list[str]:
        return sorted(self._models)

    def subject_of(self, event_type: str, attributes: Mapping[str, Any]) -> str | None:
        """The CloudEvent ``subject`` of an event, if its type names one."""
        name = self._subjects.get(event_type)
        value = None if name is None else attributes.get(name)
        return value if isinstance(value, str) and value else None

    def validate(self, event_type: str, data: Any) -> BaseModel:
        """Check ``data`` against its type's model; ``KeyError`` for an unknown type."""
        return self._models[event_type].model_validate(data)


#: the ledger's own events (consortium, notary): every chain emits them
PLATFORM_EVENTS = EventCatalogue([
    ("notary.document.anchored", NotaryDocumentAnchored, "digest"),
    ("consortium.organisation.registered", ConsortiumOrganisationRegistered, "org"),
    ("consortium.key.added", ConsortiumKeyAdded, "key_id"),
    ("consortium.key.rotated", ConsortiumKeyRotated, "key_id"),
    ("consortium.key.revoked", ConsortiumKeyRevoked, "key_id"),
    ("consortium.proposal.submitted", ConsortiumProposalSubmitted, "proposal"),
    ("consortium.proposal.approved", ConsortiumProposalApproved, "proposal"),
    ("consortium.proposal.executed", ConsortiumProposalExecuted, "proposal"),
    ("consortium.proposal.expired", ConsortiumProposalExpired, "proposal"),
    ("consortium.validators.changed", ConsortiumValidatorsChanged, None),
    ("consortium.composition.scheduled", ConsortiumCompositionScheduled, None),
    ("consortium.composition.upgraded", ConsortiumCompositionUpgraded, None),
    ("consortium.composition.cancelled", ConsortiumCompositionCancelled, None),
])


# --- the envelope --------------------------------------------------------------------

class CloudEventEnvelope(BaseModel):
    """A partner event: a CloudEvent 1.0 in the CloudEvents JSON format.

    This is the body of every message on the events exchange (structured
    content mode) and every item a replay returns.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = Field(description="CloudEvents specification version")
    id: str = Field(pattern=EVENT_ID_PATTERN,
                    description="`<tx hash>:<eventindex>`, or `<block hash>:<eventindex>` "
                                "for block-hook events; stable: de-duplicate by it")
    source: str = Field(pattern=SOURCE_PATTERN, description="`/ecosphere/<chain id>`")
    type: str = Field(pattern=EVENT_TYPE_PATTERN,
                      description="the event type, `<contract>.<entity>.<past_verb>`; "
                                  "also the AMQP routing key")
    subject: Annotated[str, Field(min_length=1)] | SkipJsonSchema[None] = Field(
        default=None, description="what the event is about (a digest, an organisation, "
                                  "a key, a proposal), when its type names it")
    time: AwareDatetime = Field(description="the block's BFT time, RFC 3339, UTC")
    datacontenttype: Literal["application/json"]
    data: dict[str, Any] = Field(description="the event's attributes")
    height: int = Field(ge=1, le=CE_INTEGER_MAX, description="the block height")
    txhash: Hex64 | SkipJsonSchema[None] = Field(
        default=None, description="the emitting transaction's hash; absent for "
                                  "events of a block hook")
    eventindex: int = Field(ge=0, le=CE_INTEGER_MAX,
                            description="the event's position among the block's events")

    def validated_data(self, catalogue: EventCatalogue | None = None) -> BaseModel:
        """``data`` checked against its type's model in ``catalogue`` (default: the
        platform's events)."""
        return (catalogue or PLATFORM_EVENTS).validate(self.type, self.data)


#: the extension attributes we publish (names checked against the CloudEvents rule)
EXTENSIONS: tuple[str, ...] = ("height", "txhash", "eventindex")
if not all(re.match(EXTENSION_NAME_PATTERN, name) for name in EXTENSIONS):
    raise ValueError("CloudEvents extension names are lowercase letters and digits")
