"""Votes and commit certificates.

A *vote* is a validator's signed statement ``(type, chain_id, height, round,
block_hash | nil, time)``; ``type`` is ``prevote`` or ``precommit``. The
signature is over ``SHA-256("ecosphere/vote/v1" ‖ 0x00 ‖ canonical(vote))``.

A **commit certificate** for block ``B`` at height ``h`` is a set of precommits
for ``(h, r, hash(B))`` from validators holding more than two thirds of the
power of the set that validates ``h``. Anyone holding that validator set can
check it: no other input is needed. It is stored with every block and the next
block carries one for its parent (``last_commit``), from which that block's
**BFT time** is derived: the power-weighted median of the precommit times.
Because a certificate holds more than 2/3 of the power and at most 1/3 is
Byzantine, the median lies between two honest validators' times; because
every precommit's time must exceed the committed block's time, block times
strictly increase (Tendermint's BFT time, Buchman–Kwon–Milosevic 2018).

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.ledger.core import crypto
from services.ledger.core.encoding import (
    encode_unchecked,
    from_hex,
    get_int,
    get_list,
    get_str,
    require_keys,
    tagged_hash,
)
from services.ledger.core.errors import EncodingError, InvalidBlock, InvalidMessage
from services.ledger.core.validators import VALIDATORS_MAX, ValidatorSet

VOTE_TAG = b"ecosphere/vote/v1"
PREVOTE = "prevote"
PRECOMMIT = "precommit"
VOTE_TYPES = frozenset({PREVOTE, PRECOMMIT})
ROUND_MAX = 1_000_000

_VOTE_KEYS = frozenset({"type", "chain_id", "height", "round", "block_hash", "time",
                        "validator", "signature"})
_CERT_KEYS = frozenset({"height", "round", "block_hash", "votes"})
_CERT_VOTE_KEYS = frozenset({"validator", "time", "signature"})


def vote_digest(vote_type: str, chain_id: str, height: int, round_: int,
                block_hash: bytes | None, time: int, validator: str) -> bytes:
    body = {
        "type": vote_type,
        "chain_id": chain_id,
        "height": height,
        "round": round_,
        "block_hash": None if block_hash is None else block_hash.hex(),
        "time": time,
        "validator": validator,
    }
    return tagged_hash(VOTE_TAG, encode_unchecked(body))


@dataclass(frozen=True, slots=True)
class Vote:
    type: str
    chain_id: str
    height: int
    round: int
    block_hash: bytes | None
    time: int
    validator: str
    signature: bytes

    @property
    def digest(self) -> bytes:
        return vote_digest(self.type, self.chain_id, self.height, self.round,
                           self.block_hash, self.time, self.validator)

    @classmethod
    def sign(cls, key: crypto.PrivateKey, vote_type: str, chain_id: str, height: int,
             round_: int, block_hash: bytes | None, time: int) -> Vote:
        digest = vote_digest(vote_type, chain_id, height, round_, block_hash, time, key.key_id)
        return cls(vote_type, chain_id, height, round_, block_hash, time, key.key_id,
                   key.sign(digest))

    def verify(self, validators: ValidatorSet) -> bool:
        v = validators.by_id.get(self.validator)
        return v is not None and crypto.verify(v.public_key, self.signature, self.digest)

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "chain_id": self.chain_id,
            "height": self.height,
            "round": self.round,
            "block_hash": None if self.block_hash is None else self.block_hash.hex(),
            "time": self.time,
            "validator": self.validator,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_wire(cls, obj: object) -> Vote:
        d = require_keys(obj, _VOTE_KEYS, "vote")
        vote_type = get_str(d, "type", size_max=16)
        if vote_type not in VOTE_TYPES:
            raise EncodingError(f"vote type {vote_type!r} is not prevote or precommit")
        raw_hash = d["block_hash"]
        return cls(
            vote_type,
            get_str(d, "chain_id", size_max=64),
            get_int(d, "height", lo=1),
            get_int(d, "round", hi=ROUND_MAX),
            None if raw_hash is None else from_hex(raw_hash, length=32, field="block_hash"),
            get_int(d, "time"),
            get_str(d, "validator", size_max=32),
            from_hex(d["signature"], length=crypto.SIGNATURE_BYTES, field="signature"),
        )


@dataclass(frozen=True, slots=True)
class CommitSig:
    validator: str
    time: int
    signature: bytes


@dataclass(frozen=True)
class CommitCertificate:
    height: int
    round: int
    block_hash: bytes
    votes: tuple[CommitSig, ...]  # sorted by validator key id
    hash: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hash", tagged_hash(b"ecosphere/commit/v1",
                                                     encode_unchecked(self.to_wire())))

    @classmethod
    def from_votes(cls, votes: Mapping[str, Vote]) -> CommitCertificate:
        first = next(iter(votes.values()))
        sigs = tuple(CommitSig(v.validator, v.time, v.signature)
                     for _, v in sorted(votes.items()))
        return cls(first.height, first.round, first.block_hash or b"", sigs)

    def precommits(self, chain_id: str) -> list[Vote]:
        return [Vote(PRECOMMIT, chain_id, self.height, self.round, self.block_hash, s.time,
                     s.validator, s.signature) for s in self.votes]

    def verify(self, chain_id: str, validators: ValidatorSet, *,
               block_time: int | None = None) -> None:
        """Raise :class:`InvalidBlock` unless this certifies ``block_hash`` at ``height``.

        ``block_time`` (the certified block's time) also checks that every vote
        is later than the block, which keeps BFT time strictly increasing.
        """
        power = 0
        previous = ""
        for vote in self.precommits(chain_id):
            if vote.validator <= previous:
                raise InvalidBlock("certificate votes must be sorted and unique",
                                   code="bad_certificate")
            previous = vote.validator
            if block_time is not None and vote.time <= block_time:
                raise InvalidBlock("a certificate vote is not later than the block",
                                   code="bad_certificate")
            if not vote.verify(validators):
                raise InvalidBlock(f"certificate vote of {vote.validator} does not verify",
                                   code="bad_certificate")
            power += validators.power_of(vote.validator)
        if power < validators.quorum_power:
            raise InvalidBlock(f"certificate holds power {power} below quorum "
                               f"{validators.quorum_power}", code="bad_certificate")

    def bft_time(self, validators: ValidatorSet) -> int:
        """The power-weighted median of the votes' times."""
        timed = sorted((s.time, validators.power_of(s.validator)) for s in self.votes)
        total = sum(p for _, p in timed)
        running = 0
        for time, power in timed:
            running += power
            if 2 * running > total:
                return time
        raise InvalidBlock("empty certificate has no time", code="bad_certificate")

    def to_wire(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "round": self.round,
            "block_hash": self.block_hash.hex(),
            "votes": [{"validator": s.validator, "time": s.time,
                       "signature": s.signature.hex()} for s in self.votes],
        }

    @classmethod
    def from_wire(cls, obj: object) -> CommitCertificate:
        d = require_keys(obj, _CERT_KEYS, "commit certificate")
        votes = []
        for item in get_list(d, "votes", size_max=VALIDATORS_MAX):
            v = require_keys(item, _CERT_VOTE_KEYS, "certificate vote")
            votes.append(CommitSig(get_str(v, "validator", size_max=32), get_int(v, "time"),
                                   from_hex(v["signature"], length=64, field="signature")))
        return cls(get_int(d, "height", lo=1), get_int(d, "round", hi=ROUND_MAX),
                   from_hex(d["block_hash"], length=32, field="block_hash"), tuple(votes))


def check_vote_fields(vote: Vote, chain_id: str) -> None:
    if vote.chain_id != chain_id:
        raise InvalidMessage("vote for another chain", code="wrong_chain")
