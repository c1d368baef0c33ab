"""The EPCIS 2.0 binding's request and response models (the OpenAPI document is generated
from these; the chain validates captures in full with services.trace.epcis)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.gateway.models import Model, Open
from services.trace import epcis
from services.trace.edge.epcis.binding import (
    DEST_CHARS_MAX,
    EPCIS_CONTEXT,
    PAGE_TOKEN,
    PER_PAGE_MAX,
    QUERY_NAME,
    TOKEN_CHARS_MAX,
    TOKEN_CHARS_MIN,
)


class EPCISDocument(BaseModel):
    """An EPCIS 2.0 document (JSON-LD), validated in full by the gateway and the chain."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    context: Any = Field(alias="@context", examples=[[EPCIS_CONTEXT]])
    type: Literal["EPCISDocument"]
    schemaVersion: Literal["2.0"]
    creationDate: str
    epcisBody: dict[str, Any] = Field(description="{eventList: [EPCIS events]}")


class EPCISEvent(BaseModel):
    """One EPCIS 2.0 event (JSON-LD form)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["ObjectEvent"])
    eventTime: str
    eventTimeZoneOffset: str


class CaptureAccepted(Open):
    captureID: str = Field(description="The relay transaction's hash; poll Location")
    location: str
    running: bool
    success: bool


class CaptureError(Open):
    type: str
    code: str
    detail: str = ""
    position: int | None = Field(None, description="The event's index in the capture")


class CaptureJob(Open):
    """A capture job, in the EPCIS 2.0 shape plus the chain's coordinates."""

    captureID: str
    createdAt: str
    finishedAt: str | None = None
    running: bool
    success: bool
    captureErrorBehaviour: Literal["rollback", "proceed"]
    errors: list[CaptureError]
    eventsCaptured: int | None = None
    txHash: str | None = None
    height: int | None = None


class EPCISQueryDocument(BaseModel):
    """An EPCIS 2.0 query document: epcisBody.queryResults {queryName, subscriptionID?,
    resultsBody.eventList}."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    context: Any = Field(alias="@context")
    type: Literal["EPCISQueryDocument"]
    schemaVersion: str
    creationDate: str
    epcisBody: dict[str, Any]


def _one_or_more(words: Sequence[str]) -> str:
    """The pattern of a parameter holding some of ``words``, separated by | or ,."""
    word = "(" + "|".join(words) + ")"
    return rf"^{word}([|,]{word})*$"


class EventsQuery(BaseModel):
    """The standard query parameters understood (``EQ_bizTransaction_<type>`` too)."""

    model_config = ConfigDict(extra="allow")

    eventType: str | None = Field(None, pattern=_one_or_more(epcis.EVENT_TYPES),
                                  description="ObjectEvent, AggregationEvent, ... (several "
                                              "separated by | or ,)")
    EQ_action: str | None = Field(None, pattern=_one_or_more(epcis.ACTIONS),
                                  description="ADD, OBSERVE or DELETE (several separated "
                                              "by | or ,)")
    EQ_bizStep: str | None = Field(None, description="CBV word, URN or Web URI")
    EQ_disposition: str | None = Field(None, description="CBV word, URN or Web URI")
    GE_eventTime: str | None = Field(None, description="RFC 3339, inclusive",
                                     json_schema_extra={"format": "date-time"})
    LT_eventTime: str | None = Field(None, description="RFC 3339, exclusive",
                                     json_schema_extra={"format": "date-time"})
    GE_recordTime: str | None = Field(None, description="RFC 3339, inclusive",
                                      json_schema_extra={"format": "date-time"})
    LT_recordTime: str | None = Field(None, description="RFC 3339, exclusive",
                                      json_schema_extra={"format": "date-time"})
    EQ_readPoint: str | None = Field(None, description="SGLN (URN or Digital Link)")
    EQ_bizLocation: str | None = Field(None, description="SGLN (URN or Digital Link)")
    MATCH_epc: str | None = Field(None, description="EPC URN, pattern or Digital Link")
    MATCH_anyEPC: str | None = Field(None, description="EPC URN, pattern or Digital Link")
    MATCH_parentID: str | None = Field(None, description="EPC URN or Digital Link")
    MATCH_inputEPC: str | None = Field(None, description="a transformation's input")
    MATCH_outputEPC: str | None = Field(None, description="a transformation's output")
    EQ_eventID: str | None = None
    perPage: int | None = Field(None, ge=1, le=PER_PAGE_MAX)
    nextPageToken: str | None = Field(None, pattern=PAGE_TOKEN, description="The "
                                      "nextPageToken of the previous page of this query")


class PageQuery(Model):
    perPage: int | None = Field(None, ge=1, le=PER_PAGE_MAX)
    nextPageToken: str | None = Field(None, pattern=PAGE_TOKEN, description="The "
                                      "nextPageToken of the previous page of this query")


class NamedQueryBody(Model):
    name: str = Field(pattern=QUERY_NAME)
    query: dict[str, str | list[str]] = Field(
        description="Query parameters as for GET /epcis/events (no paging)")


class NamedQuery(Open):
    name: str
    owner: str = Field(description="The organisation that created it")
    query: dict[str, list[str]]
    createdAt: str


class NamedQueryList(Model):
    queries: list[NamedQuery]


class NameList(Model):
    names: list[str]


class SubscriptionInfo(Open):
    subscriptionID: str
    queryName: str
    dest: str
    stream: bool
    reportIfEmpty: bool
    createdAt: str
    status: str


class SubscriptionList(Model):
    subscriptions: list[SubscriptionInfo]


class SubscriptionBody(Model):
    dest: str = Field(min_length=8, max_length=DEST_CHARS_MAX,
                      description="https:// URL (http:// for loopback hosts only)")
    signatureToken: str = Field(min_length=TOKEN_CHARS_MIN, max_length=TOKEN_CHARS_MAX,
                                description="Shared secret: callbacks carry GS1-Signature, "
                                            "the hex HMAC-SHA256 of the body with it")
    reportIfEmpty: bool = False
    stream: bool | None = Field(None, description="EPCIS 2.0: true: deliver new events "
                                                  "as they are recorded (required: this "
                                                  "gateway streams; schedules are not "
                                                  "supported)")
    schedule: dict[str, Any] | None = Field(None, description="Not supported (501)")
    initialRecordTime: str | None = Field(None, description="Not supported (501): "
                                                            "deliveries start at the tip")


class SubscriptionCreated(Open):
    subscriptionID: str
    queryName: str
    dest: str
    reportIfEmpty: bool
    createdAt: str
