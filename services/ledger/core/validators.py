"""The validator set: who votes, with what power, and who proposes when.

Quorum is *more than two thirds* of the total voting power
(``2 * total // 3 + 1``), so two quorums always share more than one third of
the power, hence at least one honest validator when at most ``f`` (less than a
third) is Byzantine. With four validators of power 1 the quorum is 3 (n = 3f+1,
f = 1).

Proposers rotate: round 0 of height ``h`` goes to the validator whose
cumulative-power interval contains ``h mod total`` (so validators open heights
in proportion to their power), and each further round moves to the next
validator in key-id order (so a new round always has a new proposer when there
is more than one validator, however the power is spread). The choice is a pure
function of (set, height, round).

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from services.ledger.core.errors import EncodingError

VALIDATORS_MAX = 128
POWER_MAX = 1_000_000
_VALIDATOR_KEYS = frozenset({"key_id", "public_key", "power", "org"})


@dataclass(frozen=True, slots=True)
class Validator:
    key_id: str
    public_key: bytes
    power: int
    org: str

    def to_wire(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "public_key": self.public_key.hex(),
                "power": self.power, "org": self.org}

    @classmethod
    def from_wire(cls, obj: object) -> Validator:
        d = require_keys(obj, _VALIDATOR_KEYS, "validator")
        public_key = from_hex(d["public_key"], length=crypto.PUBLIC_KEY_BYTES,
                              field="public_key")
        key_id = get_str(d, "key_id", size_max=32)
        if crypto.key_id_of(public_key) != key_id:
            raise EncodingError("validator key_id does not match its public key")
        return cls(key_id, public_key, get_int(d, "power", lo=1, hi=POWER_MAX),
                   get_str(d, "org", size_max=64))


@dataclass(frozen=True)
class ValidatorSet:
    validators: tuple[Validator, ...]
    by_id: Mapping[str, Validator] = field(init=False, repr=False, compare=False)
    total_power: int = field(init=False, repr=False, compare=False)
    hash: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.validators:
            raise EncodingError("a validator set cannot be empty")
        if len(self.validators) > VALIDATORS_MAX:
            raise EncodingError(f"more than {VALIDATORS_MAX} validators")
        ids = [v.key_id for v in self.validators]
        if ids != sorted(ids) or len(set(ids)) != len(ids):
            raise EncodingError("validators must be sorted by key id and unique")
        object.__setattr__(self, "by_id", {v.key_id: v for v in self.validators})
        object.__setattr__(self, "total_power", sum(v.power for v in self.validators))
        object.__setattr__(self, "hash", tagged_hash(b"ecosphere/validators/v1",
                                                     encode_unchecked(self.to_wire())))

    @classmethod
    def of(cls, validators: Sequence[Validator]) -> ValidatorSet:
        return cls(tuple(sorted(validators, key=lambda v: v.key_id)))

    @property
    def quorum_power(self) -> int:
        return 2 * self.total_power // 3 + 1

    @property
    def fault_power(self) -> int:
        """The most Byzantine power the set tolerates (f)."""
        return (self.total_power - 1) // 3

    @property
    def orgs(self) -> frozenset[str]:
        return frozenset(v.org for v in self.validators)

    def power_of(self, key_id: str) -> int:
        v = self.by_id.get(key_id)
        return 0 if v is None else v.power

    def proposer(self, height: int, round_: int) -> Validator:
        slot = height % self.total_power
        first = 0
        for index, v in enumerate(self.validators):
            if slot < v.power:
                first = index
                break
            slot -= v.power
        return self.validators[(first + round_) % len(self.validators)]

    def to_wire(self) -> list[dict[str, Any]]:
        return [v.to_wire() for v in self.validators]

    @classmethod
    def from_wire(cls, obj: object) -> ValidatorSet:
        if not isinstance(obj, list):
            raise EncodingError("validator set must be an array")
        items = get_list({"v": obj}, "v", size_max=VALIDATORS_MAX)
        return cls(tuple(Validator.from_wire(v) for v in items))
