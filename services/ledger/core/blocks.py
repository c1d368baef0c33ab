"""Blocks: header, body, and the checks that tie them together.

Header fields (all committed by the block hash
``SHA-256("ecosphere/header/v1" ‖ 0x00 ‖ canonical(header))``):

========================  ==================================================
``chain_id``              the chain
``height``                1 for the first block after genesis
``prev_hash``             parent's block hash (the genesis hash for height 1)
``time``                  BFT time, ms: the genesis time at height 1, then the
                          weighted median of ``last_commit``'s vote times
``proposer``              key id of the validator that built the block
``tx_root`` / ``tx_count`` RFC 6962 root over the transactions' wire bytes
``state_root``            the state tree's root *after* this block
``validators_hash``       the set that validates this height
``next_validators_hash``  the set that validates the next height
``events_root``           RFC 6962 root over the canonical events
``last_commit_hash``      hash of the parent's certificate in the body
========================  ==================================================

:func:`check_block_shape` verifies everything that needs only the parent's
header and the validator set; re-execution (``execution``) verifies the roots
that depend on state.

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from services.ledger.core import merkle
from services.ledger.core.certificate import CommitCertificate
from services.ledger.core.contract import Event
from services.ledger.core.encoding import (
    encode_unchecked,
    from_hex,
    get_int,
    get_list,
    get_str,
    require_keys,
    tagged_hash,
)
from services.ledger.core.errors import InvalidBlock
from services.ledger.core.transactions import Transaction
from services.ledger.core.validators import ValidatorSet

HEADER_TAG = b"ecosphere/header/v1"
ZERO_HASH = bytes(32)
_HEADER_KEYS = frozenset({
    "chain_id", "height", "prev_hash", "time", "proposer", "tx_root", "tx_count",
    "state_root", "validators_hash", "next_validators_hash", "events_root",
    "last_commit_hash",
})
_BLOCK_KEYS = frozenset({"header", "txs", "last_commit"})
BLOCK_TXS_WIRE_MAX = 100_000


@dataclass(frozen=True)
class BlockHeader:
    chain_id: str
    height: int
    prev_hash: bytes
    time: int
    proposer: str
    tx_root: bytes
    tx_count: int
    state_root: bytes
    validators_hash: bytes
    next_validators_hash: bytes
    events_root: bytes
    last_commit_hash: bytes
    hash: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hash", tagged_hash(HEADER_TAG,
                                                     encode_unchecked(self.to_wire())))

    def to_wire(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "height": self.height,
            "prev_hash": self.prev_hash.hex(),
            "time": self.time,
            "proposer": self.proposer,
            "tx_root": self.tx_root.hex(),
            "tx_count": self.tx_count,
            "state_root": self.state_root.hex(),
            "validators_hash": self.validators_hash.hex(),
            "next_validators_hash": self.next_validators_hash.hex(),
            "events_root": self.events_root.hex(),
            "last_commit_hash": self.last_commit_hash.hex(),
        }

    @classmethod
    def from_wire(cls, obj: object) -> BlockHeader:
        d = require_keys(obj, _HEADER_KEYS, "block header")

        def h(name: str) -> bytes:
            return from_hex(d[name], length=32, field=name)

        return cls(
            chain_id=get_str(d, "chain_id", size_max=64),
            height=get_int(d, "height", lo=1),
            prev_hash=h("prev_hash"),
            time=get_int(d, "time"),
            proposer=get_str(d, "proposer", size_max=32),
            tx_root=h("tx_root"),
            tx_count=get_int(d, "tx_count", hi=BLOCK_TXS_WIRE_MAX),
            state_root=h("state_root"),
            validators_hash=h("validators_hash"),
            next_validators_hash=h("next_validators_hash"),
            events_root=h("events_root"),
            last_commit_hash=h("last_commit_hash"),
        )


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    txs: tuple[Transaction, ...]
    last_commit: CommitCertificate | None

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height

    @cached_property
    def wire_bytes(self) -> bytes:
        """Canonical bytes of :meth:`to_wire`, spliced from the transactions' own bytes."""
        last = None if self.last_commit is None else self.last_commit.to_wire()
        return b"".join((b'{"header":', encode_unchecked(self.header.to_wire()),
                         b',"last_commit":', encode_unchecked(last), b',"txs":[',
                         b",".join(tx.wire_bytes for tx in self.txs), b"]}"))

    @cached_property
    def txs_root(self) -> bytes:
        """The Merkle root of the body's transactions (computed once per block object:
        a proposal's body is checked on receipt and again when the block is judged)."""
        return tx_root(self.txs)

    def to_wire(self) -> dict[str, Any]:
        return {
            "header": self.header.to_wire(),
            "txs": [tx.to_wire() for tx in self.txs],
            "last_commit": None if self.last_commit is None else self.last_commit.to_wire(),
        }

    @classmethod
    def from_wire(cls, obj: object, *, checked: bool = False) -> Block:
        """``checked``: ``obj`` came from ``encoding.decode`` (see Transaction.from_wire)."""
        d = require_keys(obj, _BLOCK_KEYS, "block")
        header = BlockHeader.from_wire(d["header"])
        txs = tuple(Transaction.from_wire(t, checked=checked)
                    for t in get_list(d, "txs", size_max=BLOCK_TXS_WIRE_MAX))
        last = d["last_commit"]
        return cls(header, txs, None if last is None else CommitCertificate.from_wire(last))


def tx_leaf_hashes(txs: Sequence[Transaction]) -> list[bytes]:
    return [tx.leaf for tx in txs]


def tx_root(txs: Sequence[Transaction]) -> bytes:
    return merkle.merkle_root_from_hashes(tx_leaf_hashes(txs))


def event_leaf(event: Event) -> bytes:
    return encode_unchecked(event.to_wire())


def events_root(events: Sequence[Event]) -> bytes:
    return merkle.merkle_root([event_leaf(e) for e in events])


def expected_time(height: int, genesis_time: int, last_commit: CommitCertificate | None,
                  prev_validators: ValidatorSet | None) -> int:
    if height == 1:
        return genesis_time
    if last_commit is None or prev_validators is None:
        raise InvalidBlock("a block after height 1 needs its parent's certificate",
                           code="missing_last_commit")
    return last_commit.bft_time(prev_validators)


def check_body(block: Block) -> None:
    """The body is the one the header commits to: its transactions (count and Merkle
    root) and its parent certificate (``last_commit_hash``). A proposer's signature
    covers the header only, so a relaying node could pair a signed header with another
    body: such a pairing is refused as a message, never judged as a block."""
    h = block.header
    if h.tx_count != len(block.txs) or h.tx_root != block.txs_root:
        raise InvalidBlock("tx_root does not match the transactions", code="bad_tx_root")
    last = ZERO_HASH if block.last_commit is None else block.last_commit.hash
    if h.last_commit_hash != last:
        raise InvalidBlock("last_commit_hash does not match", code="bad_last_commit")


def check_block_shape(block: Block, *, chain_id: str, prev_hash: bytes, prev_time: int | None,
                      genesis_time: int, validators: ValidatorSet,
                      prev_validators: ValidatorSet | None) -> None:
    """Checks that need the parent header and validator sets but no execution.

    ``prev_validators`` validated the parent (None at height 1); ``validators``
    validate this block.
    """
    h = block.header
    if h.chain_id != chain_id:
        raise InvalidBlock("block of another chain", code="wrong_chain")
    if h.prev_hash != prev_hash:
        raise InvalidBlock("block does not extend our chain", code="wrong_parent")
    if h.proposer not in validators.by_id:
        raise InvalidBlock("proposer is not a validator", code="bad_proposer")
    if h.validators_hash != validators.hash:
        raise InvalidBlock("validators_hash is not this height's set",
                           code="bad_validators_hash")
    check_body(block)
    if block.height == 1:
        if block.last_commit is not None or h.last_commit_hash != ZERO_HASH:
            raise InvalidBlock("block 1 has no parent certificate", code="bad_last_commit")
    else:
        cert = block.last_commit
        if cert is None or prev_validators is None or prev_time is None:
            raise InvalidBlock("missing parent certificate", code="missing_last_commit")
        if cert.height != h.height - 1 or cert.block_hash != prev_hash:
            raise InvalidBlock("last_commit certifies another block", code="bad_last_commit")
        if h.last_commit_hash != cert.hash:
            raise InvalidBlock("last_commit_hash does not match", code="bad_last_commit")
        cert.verify(chain_id, prev_validators, block_time=prev_time)
    if h.time != expected_time(h.height, genesis_time, block.last_commit, prev_validators):
        raise InvalidBlock("block time is not the BFT time of its parent's votes",
                           code="bad_time")
