"""Consensus data: proposals, timeouts, the write-ahead record and the actions
the state machine asks its host to perform.

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.ledger.core import crypto
from services.ledger.core.blocks import Block
from services.ledger.core.certificate import ROUND_MAX, CommitCertificate, Vote
from services.ledger.core.encoding import (
    encode_unchecked,
    from_hex,
    get_int,
    get_str,
    require_keys,
    tagged_hash,
)
from services.ledger.core.errors import EncodingError
from services.ledger.core.validators import ValidatorSet

PROPOSAL_TAG = b"ecosphere/proposal/v1"
_PROPOSAL_KEYS = frozenset({"chain_id", "height", "round", "pol_round", "block", "proposer",
                            "signature"})

# Steps of a round, in order.
PROPOSE = 0
PREVOTE = 1
PRECOMMIT = 2
STEP_NAMES = ("propose", "prevote", "precommit")


def proposal_digest(chain_id: str, height: int, round_: int, pol_round: int,
                    block_hash: bytes, proposer: str) -> bytes:
    body = {"chain_id": chain_id, "height": height, "round": round_, "pol_round": pol_round,
            "block_hash": block_hash.hex(), "proposer": proposer}
    return tagged_hash(PROPOSAL_TAG, encode_unchecked(body))


@dataclass(frozen=True)
class Proposal:
    """The round's proposer offers ``block``; ``pol_round`` is the round whose
    2f+1 prevotes justify re-proposing it (``-1``: a fresh block)."""

    chain_id: str
    height: int
    round: int
    pol_round: int
    block: Block
    proposer: str
    signature: bytes

    @property
    def digest(self) -> bytes:
        return proposal_digest(self.chain_id, self.height, self.round, self.pol_round,
                               self.block.hash, self.proposer)

    @classmethod
    def sign(cls, key: crypto.PrivateKey, chain_id: str, height: int, round_: int,
             pol_round: int, block: Block) -> Proposal:
        digest = proposal_digest(chain_id, height, round_, pol_round, block.hash, key.key_id)
        return cls(chain_id, height, round_, pol_round, block, key.key_id, key.sign(digest))

    def verify(self, validators: ValidatorSet) -> bool:
        expected = validators.proposer(self.height, self.round)
        return (
            self.proposer == expected.key_id
            and self.block.height == self.height
            and -1 <= self.pol_round < self.round
            and crypto.verify(expected.public_key, self.signature, self.digest)
        )

    def wire_bytes(self) -> bytes:
        """Canonical bytes of :meth:`to_wire` ("block" sorts first: splice its bytes)."""
        rest = encode_unchecked({k: v for k, v in self.to_wire(with_block=False).items()})
        return b'{"block":' + self.block.wire_bytes + b"," + rest[1:]

    def compact_wire(self) -> dict[str, Any]:
        """The proposal with its block's transactions named by RFC 6962 leaf hash."""
        block = self.block
        return {**self.to_wire(with_block=False), "header": block.header.to_wire(),
                "last_commit": None if block.last_commit is None
                else block.last_commit.to_wire(),
                "tx_leaves": [tx.leaf.hex() for tx in block.txs]}

    def to_wire(self, *, with_block: bool = True) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "chain_id": self.chain_id,
            "height": self.height,
            "round": self.round,
            "pol_round": self.pol_round,
            "proposer": self.proposer,
            "signature": self.signature.hex(),
        }
        if with_block:
            wire["block"] = self.block.to_wire()
        return wire

    @classmethod
    def from_wire(cls, obj: object, *, checked: bool = False) -> Proposal:
        d = require_keys(obj, _PROPOSAL_KEYS, "proposal")
        pol_round = d["pol_round"]
        if not isinstance(pol_round, int) or isinstance(pol_round, bool) or not (
            -1 <= pol_round < ROUND_MAX
        ):
            raise EncodingError("pol_round must be an integer >= -1")
        return cls(
            get_str(d, "chain_id", size_max=64),
            get_int(d, "height", lo=1),
            get_int(d, "round", hi=ROUND_MAX),
            pol_round,
            Block.from_wire(d["block"], checked=checked),
            get_str(d, "proposer", size_max=32),
            from_hex(d["signature"], length=crypto.SIGNATURE_BYTES, field="signature"),
        )


@dataclass(frozen=True, slots=True)
class Timeout:
    height: int
    round: int
    step: int  # PROPOSE / PREVOTE / PRECOMMIT, or PROPOSE_READY for an idle proposer


PROPOSE_READY = 3  # the proposer waited for transactions long enough: propose anyway


# --- write-ahead record ----------------------------------------------------------

@dataclass(frozen=True)
class WalRecord:
    """What a validator must remember across a crash for the height it is deciding.

    Persisted (fsync) before any message it signed is sent, so after a restart
    it re-sends what it signed instead of signing something else.
    """

    height: int
    round: int
    step: int
    locked_round: int
    locked_block: Block | None
    valid_round: int
    valid_block: Block | None
    votes: tuple[Vote, ...]  # every vote we signed at this height
    proposals: tuple[Proposal, ...]  # every proposal we signed at this height
    polka: tuple[Vote, ...] = ()  # the 2f+1 prevotes that justify the locked/valid blocks

    def to_wire(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "round": self.round,
            "step": self.step,
            "locked_round": self.locked_round,
            "locked_block": None if self.locked_block is None else self.locked_block.to_wire(),
            "valid_round": self.valid_round,
            "valid_block": None if self.valid_block is None else self.valid_block.to_wire(),
            "votes": [v.to_wire() for v in self.votes],
            "proposals": [p.to_wire() for p in self.proposals],
            "polka": [v.to_wire() for v in self.polka],
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> WalRecord:
        def block(obj: object) -> Block | None:
            return None if obj is None else Block.from_wire(obj)

        return cls(
            d["height"], d["round"], d["step"], d["locked_round"], block(d["locked_block"]),
            d["valid_round"], block(d["valid_block"]),
            tuple(Vote.from_wire(v) for v in d["votes"]),
            tuple(Proposal.from_wire(p) for p in d["proposals"]),
            tuple(Vote.from_wire(v) for v in d.get("polka", ())),
        )


# --- actions --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Broadcast:
    message: Proposal | Vote


@dataclass(frozen=True, slots=True)
class PersistWal:
    record: WalRecord


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    timeout: Timeout
    delay_ms: int


@dataclass(frozen=True, slots=True)
class Decide:
    block: Block
    certificate: CommitCertificate


@dataclass(frozen=True, slots=True)
class Misbehaviour:
    """Evidence of a Byzantine validator: two signed, conflicting messages."""

    kind: str
    validator: str
    height: int
    round: int
    first: Proposal | Vote
    second: Proposal | Vote


ConsensusAction = Broadcast | PersistWal | ScheduleTimeout | Decide | Misbehaviour
