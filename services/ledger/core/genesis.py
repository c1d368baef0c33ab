"""The consortium's genesis: chain id, start time, chain parameters, organisations,
member keys and the first validator set.

The genesis document is canonical JSON; its hash is the ``prev_hash`` of block
1, so two replicas with different genesis documents can never agree on a
block. :func:`genesis_state` turns it into the state at height 0 through the
consortium contract's own code paths.

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from services.ledger.core import crypto
from services.ledger.core.encoding import (
    encode_unchecked,
    from_hex,
    get_int,
    get_list,
    get_map,
    get_str,
    require_keys,
    tagged_hash,
)
from services.ledger.core.errors import EncodingError
from services.ledger.core.transactions import CHAIN_ID_RE, TxLimits
from services.ledger.core.validators import Validator, ValidatorSet

ORGS_MAX = 10_000
_GENESIS_KEYS = frozenset({"chain_id", "genesis_time", "params", "organisations", "keys",
                           "validators"})
_ORG_KEYS = frozenset({"id", "name", "roles"})
COMPOSITION_MAX = 1_000_000
_KEY_KEYS = frozenset({"public_key", "org", "permissions"})
_VALIDATOR_KEYS = frozenset({"public_key", "power", "org"})
KEYS_MAX = 100_000


@dataclass(frozen=True, slots=True)
class ChainParams:
    """Parameters every replica must share (they shape block validity)."""

    block_txs_max: int = 2_000
    block_bytes_max: int = 4 * 1024 * 1024
    tx_bytes_max: int = 256 * 1024  # an EPCIS capture of ~200 events fits
    tx_payload_depth_max: int = 16
    tx_ttl_ms: int = 3_600_000  # a transaction older than this (block time) is refused
    tx_future_ms: int = 600_000  # created this far ahead of block time is refused
    validator_change_delay: int = 2  # a new set takes effect at least this many heights on
    #: a composition upgrade takes effect at least this many heights after it is approved
    #: (time for every operator to learn of it and deploy the code)
    upgrade_delay: int = 50
    proposal_ttl_ms: int = 7 * 24 * 3_600_000

    @property
    def tx_limits(self) -> TxLimits:
        return TxLimits(self.tx_bytes_max, self.tx_payload_depth_max)

    def to_wire(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> ChainParams:
        defaults = cls()
        values = {}
        for f in fields(cls):
            name = f.name
            values[name] = get_int(obj, name, lo=1) if name in obj else getattr(defaults, name)
        unknown = set(obj) - set(values)
        if unknown:
            raise EncodingError(f"unknown chain parameters {sorted(unknown)}")
        return cls(**values)


@dataclass(frozen=True, slots=True)
class GenesisOrg:
    id: str
    name: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GenesisKey:
    public_key: bytes
    org: str
    permissions: tuple[str, ...]

    @property
    def key_id(self) -> str:
        return crypto.key_id_of(self.public_key)


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    genesis_time: int
    params: ChainParams
    organisations: tuple[GenesisOrg, ...]
    keys: tuple[GenesisKey, ...]
    validators: ValidatorSet
    #: the composition version the chain runs from height 1 (services.composition); 1 is
    #: left out of the wire form, so genesis documents from before versions keep their hash
    composition: int = 1
    hash: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not CHAIN_ID_RE.match(self.chain_id):
            raise EncodingError(f"chain id {self.chain_id!r} is not valid")
        if not isinstance(self.composition, int) or isinstance(self.composition, bool) \
                or not 1 <= self.composition <= COMPOSITION_MAX:
            raise EncodingError(f"composition must be 1..{COMPOSITION_MAX}")
        org_ids = {o.id for o in self.organisations}
        if len(org_ids) != len(self.organisations):
            raise EncodingError("organisation ids must be unique")
        by_id: dict[str, GenesisKey] = {}
        for k in self.keys:
            if k.org not in org_ids:
                raise EncodingError(f"key {k.key_id} names unknown organisation {k.org!r}")
            if k.key_id in by_id:
                raise EncodingError(f"key {k.key_id} is listed twice")
            by_id[k.key_id] = k
        for v in self.validators.validators:
            if v.org not in org_ids:
                raise EncodingError(f"validator {v.key_id} names unknown organisation {v.org!r}")
            listed = by_id.get(v.key_id)
            if listed is not None and (listed.org != v.org or "node" not in listed.permissions):
                raise EncodingError(f"validator {v.key_id} is also listed as a key of "
                                    f"{listed.org} without the node permission")
        object.__setattr__(self, "hash", tagged_hash(b"ecosphere/genesis/v1",
                                                     encode_unchecked(self.to_wire())))

    def to_wire(self) -> dict[str, Any]:
        wire = self._wire()
        if self.composition != 1:
            wire["composition"] = self.composition
        return wire

    def _wire(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "genesis_time": self.genesis_time,
            "params": self.params.to_wire(),
            "organisations": [
                {"id": o.id, "name": o.name, "roles": list(o.roles)} for o in self.organisations
            ],
            "keys": [
                {"public_key": k.public_key.hex(), "org": k.org,
                 "permissions": list(k.permissions)}
                for k in self.keys
            ],
            "validators": [
                {"public_key": v.public_key.hex(), "power": v.power, "org": v.org}
                for v in self.validators.validators
            ],
        }

    @classmethod
    def from_wire(cls, obj: object) -> Genesis:
        """Strict: unknown or missing fields are refused, so that two documents that
        differ in any byte can never share a genesis hash."""
        if isinstance(obj, dict) and "composition" in obj:
            d = require_keys(obj, _GENESIS_KEYS | {"composition"}, "genesis")
        else:
            d = require_keys(obj, _GENESIS_KEYS, "genesis")
        orgs = []
        for item in get_list(d, "organisations", size_max=ORGS_MAX):
            o = require_keys(item, _ORG_KEYS, "genesis organisation")
            orgs.append(GenesisOrg(get_str(o, "id", size_max=64), get_str(o, "name"),
                                   tuple(_str_list(o, "roles"))))
        keys = []
        for item in get_list(d, "keys", size_max=KEYS_MAX):
            k = require_keys(item, _KEY_KEYS, "genesis key")
            keys.append(GenesisKey(from_hex(k["public_key"], length=32, field="public_key"),
                                   get_str(k, "org", size_max=64),
                                   tuple(_str_list(k, "permissions"))))
        validators = []
        for item in get_list(d, "validators", size_max=128):
            v = require_keys(item, _VALIDATOR_KEYS, "genesis validator")
            pub = from_hex(v["public_key"], length=32, field="public_key")
            validators.append(Validator(crypto.key_id_of(pub), pub,
                                        get_int(v, "power", lo=1, hi=1_000_000),
                                        get_str(v, "org", size_max=64)))
        genesis = cls(
            chain_id=get_str(d, "chain_id", size_max=64),
            genesis_time=get_int(d, "genesis_time"),
            params=ChainParams.from_wire(get_map(d, "params")),
            organisations=tuple(orgs),
            keys=tuple(keys),
            validators=ValidatorSet.of(validators),
            composition=get_int(d, "composition", lo=1) if "composition" in d else 1,
        )
        if genesis.to_wire() != d:
            raise EncodingError("genesis is not in canonical form (order of validators, "
                                "duplicate roles or defaulted parameters)")
        return genesis


def _str_list(obj: Mapping[str, Any], name: str) -> list[str]:
    items = get_list(obj, name, size_max=32)
    if not all(isinstance(i, str) for i in items):
        raise EncodingError(f"{name} must be an array of strings")
    return list(items)
