"""A deterministic consortium for the simulator, tests and benchmarks.

Keys are derived from labels (``PrivateKey.derive``): never use them for a
real network — ``ecosphere keys new`` makes real ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.genesis import ChainParams, Genesis, GenesisKey, GenesisOrg
from services.ledger.core.validators import Validator, ValidatorSet

GENESIS_TIME = 1_767_225_600_000  # 2026-01-01T00:00:00Z
VALIDATOR_ORGS = (
    ("operator", "Ecosphere Platform Operator", ("platform",)),
    ("trace-center", "Supply-Chain Collaboration Center", ("observer",)),
    ("customs-joint", "Joint Customs Supervision", ("customs_cn", "customs_eu")),
    ("credit-center", "Public Credit Service Center", ("credit_center",)),
)


@dataclass(frozen=True)
class Testnet:
    genesis: Genesis
    validator_keys: tuple[PrivateKey, ...]
    admin_keys: tuple[PrivateKey, ...]
    client_keys: tuple[PrivateKey, ...]
    observer_keys: tuple[PrivateKey, ...]


def make_testnet(*, validators: int = 4, clients: int = 4, observers: int = 0,
                 chain_id: str = "ecosphere-sim", params: ChainParams | None = None,
                 label: str = "sim", composition: int = 1) -> Testnet:
    orgs: list[GenesisOrg] = []
    for i in range(validators):
        org_id, name, roles = VALIDATOR_ORGS[i] if i < len(VALIDATOR_ORGS) else (
            f"validator-{i}", f"Validator {i}", ("observer",))
        orgs.append(GenesisOrg(org_id, name, roles))
    orgs.append(GenesisOrg("merchants", "Sample Merchants", ("merchant",)))
    vkeys = tuple(PrivateKey.derive(f"{label}/validator/{i}") for i in range(validators))
    akeys = tuple(PrivateKey.derive(f"{label}/admin/{i}") for i in range(validators))
    ckeys = tuple(PrivateKey.derive(f"{label}/client/{i}") for i in range(clients))
    okeys = tuple(PrivateKey.derive(f"{label}/observer/{i}") for i in range(observers))
    keys = [GenesisKey(k.public.raw, orgs[i].id, ("admin", "member")) for i, k in
            enumerate(akeys)]
    keys += [GenesisKey(k.public.raw, "merchants", ("member",)) for k in ckeys]
    keys += [GenesisKey(k.public.raw, orgs[0].id, ("node",)) for k in okeys]
    vset = ValidatorSet.of([Validator(k.key_id, k.public.raw, 1, orgs[i].id)
                            for i, k in enumerate(vkeys)])
    genesis = Genesis(chain_id=chain_id, genesis_time=GENESIS_TIME,
                      params=params or ChainParams(), organisations=tuple(orgs),
                      keys=tuple(keys), validators=vset, composition=composition)
    return Testnet(genesis, vkeys, akeys, ckeys, okeys)
