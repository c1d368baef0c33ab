"""Pydantic models at the HTTP boundary: what the API accepts and returns.

The OpenAPI document is generated from these models (``services.gateway.openapi``),
so a model is the single statement of a payload's shape. Chain objects are
carried in their canonical wire form (hex strings for bytes, integers for time
in milliseconds and money in minor units).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeAliasType

HEX32 = r"^[0-9a-f]{64}$"
KEY_ID = r"^[0-9a-f]{32}$"
ORG_ID = r"^[a-z0-9._-]{1,64}$"
HEIGHT_OR_LATEST = r"^(latest|[0-9]{1,15})$"
#: a state key: ASCII (``services.ledger.core.state.state_key``); "/" in it is sent as
#: is or as %2F, the same key either way
STATE_KEY = r"^[\x00-\x7f]{1,512}$"
#: the views' opaque cursors: URL-safe base64 (``services.gateway.views.queries``)
CURSOR = r"^[A-Za-z0-9_-]{1,256}$"
#: where /v1/events/replay continues: ``<height>/<event id>`` or ``<height>/end`` (after
#: every event of that height) as a page's next_cursor gives it, or a bare event id
#: (``services.gateway.events.replay``)
REPLAY_CURSOR = (r"^(((0|[1-9][0-9]{0,18})/)?[0-9a-f]{64}:(0|[1-9][0-9]{0,9})"
                 r"|(0|[1-9][0-9]{0,18})/end)$")
#: Idempotency-Key: printable ASCII, no space at either end (the header's own
#: whitespace is not part of it)
IDEMPOTENCY_KEY = r"^[!-~]([ -~]{0,126}[!-~])?$"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """A model that tolerates fields added later (responses evolve additively)."""

    model_config = ConfigDict(extra="allow")


# --- problems --------------------------------------------------------------------------

class ProblemDetails(Open):
    """RFC 9457 problem details with the ecosphere's stable ``code``."""

    type: str = Field(examples=["/problems/bad_nonce"])
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    code: str = Field(pattern=r"^[a-z0-9_]{1,64}$",
                      description="Stable machine-readable error code")
    instance: str = ""


# --- transactions ------------------------------------------------------------------------

#: the integers canonical JSON carries exactly (``services.ledger.core.encoding``)
CANONICAL_INT_MAX = 2**53 - 1
if TYPE_CHECKING:  # mypy cannot follow the recursive alias pydantic needs
    CanonicalObject = dict[str, Any]
else:
    _AsciiKey = Annotated[str, Field(pattern=r"^[\x00-\x7f]*$")]
    _NoOtherKeys = Field(json_schema_extra={"additionalProperties": False})
    #: a value of canonical JSON: no floating-point numbers, integers within
    #: ±(2**53 - 1), ASCII object keys (and nesting bounded: tx_payload_depth_max)
    _CanonicalInt = Annotated[int, Field(ge=-CANONICAL_INT_MAX, le=CANONICAL_INT_MAX)]
    CanonicalValue = TypeAliasType(
        "CanonicalValue", bool | _CanonicalInt | str | list["CanonicalValue"]
        | Annotated[dict[_AsciiKey, "CanonicalValue"], _NoOtherKeys] | None)
    CanonicalObject = Annotated[dict[_AsciiKey, CanonicalValue], _NoOtherKeys]


class TxBody(Model):
    chain_id: str = Field(max_length=64)
    kind: str = Field(max_length=97, examples=["notary.anchor"])
    sender: str = Field(pattern=KEY_ID)
    nonce: int = Field(ge=0, le=CANONICAL_INT_MAX)
    payload: CanonicalObject
    created_at: int = Field(ge=0, le=CANONICAL_INT_MAX, description="ms since the Unix epoch")


class SignedTransaction(Model):
    """A transaction as the client signed it: the signature covers
    SHA-256("ecosphere/tx/v1" ‖ 0x00 ‖ canonical JSON of ``body``)."""

    body: TxBody
    public_key: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str = Field(pattern=r"^[0-9a-f]{128}$")


class TransactionBatch(Model):
    transactions: list[SignedTransaction] = Field(min_length=1, max_length=1000)


class InclusionProofModel(Model):
    index: int
    tree_size: int
    path: list[str]


class CommitSigModel(Model):
    validator: str
    time: int
    signature: str


class CommitCertificateModel(Model):
    height: int
    round: int
    block_hash: str
    votes: list[CommitSigModel]


class BlockHeaderModel(Model):
    chain_id: str
    height: int
    prev_hash: str
    time: int
    proposer: str
    tx_root: str
    tx_count: int
    state_root: str
    validators_hash: str
    next_validators_hash: str
    events_root: str
    last_commit_hash: str


class TxResult(Open):
    """Outcome of one submitted transaction."""

    tx_hash: str | None = Field(None, pattern=HEX32,
                                description="absent when the item did not decode")
    status: Literal["pending", "committed", "rejected"]
    code: str | None = None
    detail: str | None = None
    height: int | None = Field(None, ge=1)
    index: int | None = Field(None, ge=0)
    block_hash: str | None = Field(None, pattern=HEX32)
    header: BlockHeaderModel | None = None
    proof: InclusionProofModel | None = None
    certificate: CommitCertificateModel | None = None


class TxResults(Model):
    transactions: list[TxResult]


class BatchRejected(ProblemDetails):
    """A refused submission. A batch whose every transaction was refused is the problem
    ``batch_rejected`` and carries each one's result in ``transactions``, as a batch
    answer would."""

    transactions: list[TxResult] | None = Field(
        None, description="batch_rejected: the result of each transaction, in order")


class SubmitQuery(Model):
    wait: Literal["commit"] | None = Field(
        None, description="'commit': answer once committed, with height and inclusion proof")


class TransactionRecord(Open):
    tx_hash: str
    height: int
    index: int
    sender: str
    kind: str
    nonce: int
    created_at: int
    time: int
    payload: dict[str, Any]


class TransactionWithProof(Open):
    """A committed transaction with everything to check it offline: the transaction,
    its inclusion proof against the header's tx_root, and the commit certificate."""

    transaction: SignedTransaction
    tx_hash: str
    height: int
    index: int
    block_hash: str
    header: BlockHeaderModel
    proof: InclusionProofModel
    certificate: CommitCertificateModel


# --- pages ------------------------------------------------------------------------------

def _cursor(of: str) -> Any:
    """An opaque cursor of the ``of`` list: only a ``next_cursor`` of that list is one
    (any other, even of the right shape, is a 400 ``bad_cursor``). ``format`` names
    which list's, for tools that generate requests."""
    return Field(None, pattern=CURSOR, description=f"Opaque cursor: the next_cursor of "
                 f"the previous page of {of}", json_schema_extra={
                     "format": f"ecosphere-cursor-{of}"})


class PageQuery(Model):
    cursor: str | None = Field(None, pattern=CURSOR,
                               description="Opaque cursor: the next_cursor of a page")
    limit: int = Field(50, ge=1, le=200)


class BlocksQuery(PageQuery):
    cursor: str | None = _cursor("blocks")


class TransactionsQuery(PageQuery):
    cursor: str | None = _cursor("transactions")
    sender: str | None = Field(None, pattern=KEY_ID)
    kind: str | None = Field(None, max_length=97)
    contract: str | None = Field(None, max_length=32)
    height: int | None = Field(None, ge=1)


class EventsQuery(PageQuery):
    cursor: str | None = _cursor("events")
    type: str | None = Field(None, max_length=97)
    domain: str | None = Field(None, max_length=32)
    tx_hash: str | None = Field(None, pattern=HEX32)
    from_height: int | None = Field(None, ge=1)


class ReplayQuery(Model):
    from_height: int = Field(1, ge=1)
    after: str | None = Field(
        None, pattern=REPLAY_CURSOR, json_schema_extra={"format": "ecosphere-replay-cursor"},
        description="Where to continue: the next_cursor of the previous page "
                    "(<height>/<event id>), or an event id (looked for from from_height "
                    "on). One that names no event of this chain is a 400 bad_cursor.")
    limit: int = Field(100, ge=1, le=1000)


class TransactionPage(Model):
    items: list[TransactionRecord]
    next_cursor: str | None


class BlockSummary(Open):
    height: int
    hash: str
    time: int
    proposer: str
    tx_count: int


class BlockPage(Model):
    items: list[BlockSummary]
    next_cursor: str | None


class EventRecord(Open):
    id: str
    type: str
    height: int
    attributes: dict[str, Any]


class EventPage(Model):
    items: list[EventRecord]
    next_cursor: str | None


class CloudEventsPage(Model):
    items: list[dict[str, Any]]
    next_cursor: str | None


# --- blocks, state, validators ----------------------------------------------------------

class TxWire(Model):
    body: TxBody
    public_key: str
    signature: str


class RedactedTx(Model):
    """A transaction of a restricted kind (a domain's read policy) the caller may not
    read: only its Merkle leaf hash, so the header's tx_root still checks out."""

    redacted: Literal[True]
    leaf: str = Field(pattern=HEX32, description="the RFC 6962 leaf hash of the "
                      "transaction's wire form (its place in tx_root)")


class BlockModel(Model):
    header: BlockHeaderModel
    txs: list[TxWire | RedactedTx]
    last_commit: CommitCertificateModel | None


class CertifiedBlock(Model):
    block: BlockModel
    certificate: CommitCertificateModel


class StateProofModel(Model):
    key: str
    siblings: list[str]
    leaf_key_hash: str | None
    leaf_value_hash: str | None


class StateValue(Model):
    """A state value (or its absence, ``value`` null) proven against the state root of
    the certified block ``header``."""

    key: str
    value: Any
    height: int
    header: BlockHeaderModel
    certificate: CommitCertificateModel
    proof: StateProofModel


class ValidatorModel(Model):
    key_id: str
    public_key: str
    power: int
    org: str


class ValidatorHealth(Open):
    key_id: str
    org: str
    power: int
    last_seen_ms: int | None = Field(description="When the gateway last heard from it")
    healthy: bool


class ValidatorsResponse(Model):
    height: int
    validators_hash: str
    quorum_power: int
    validators: list[ValidatorHealth]


class ValidatorSetRecord(Model):
    validators_hash: str
    first_height: int = Field(description="The first block this set certified; block "
                                          "first_height-1, certified by the set before, "
                                          "names it as next_validators_hash")
    validators: list[ValidatorModel]


class Status(Open):
    chain_id: str
    genesis_hash: str
    height: int
    block_hash: str
    time: int
    validators: list[ValidatorModel]
    mempool_txs: int
    peers_seen: int
    server_time: int


class KeyInfo(Open):
    key_id: str
    public_key: str
    org: str
    permissions: list[str]
    status: str
    next_nonce: int
    next_usable_nonce: int
    pending: int
    height: int


class Organisation(Open):
    id: str
    name: str
    roles: list[str]
    status: str


class Me(Open):
    key: KeyInfo
    organisation: Organisation


class Health(Open):
    status: str


class Readiness(Open):
    ready: bool
    reasons: list[str]


class BlockPathHeight(Model):
    height: str = Field(pattern=r"^(latest|[0-9]{1,15})$")
