"""The data directory of a local consortium, and its genesis.

Layout (created when absent)::

    genesis.json              the consortium's genesis (canonical JSON)
    <service>/node.key        the service's node key (PKCS#8 PEM, 0600)
    <service>/admin.key       a validator organisation's admin key
    <service>/chain.db        the replica's store (SQLite, WAL, fsync on commit)
    <service>/service.log     the service's JSON log (``ecosphere up``)
    gateway/relay.key         the gateway's relay key (operator member): signed captures
                              and consumer scans go on the chain as its transactions
    client/demo.key           a demo merchant key, for ``--load``
    up.lock                   held by the ``ecosphere up`` running this network (its pid)
    up.json                   that ``up``'s children: pids, restarts, last exit codes

The validators are the four organisations of the consortium; the gateway's
node key belongs to the platform operator, with the ``node`` permission only
(it relays and follows, it never votes or signs transactions).
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.encoding import decode, encode_unchecked
from services.ledger.core.genesis import ChainParams, Genesis, GenesisKey, GenesisOrg
from services.ledger.core.validators import Validator, ValidatorSet
from services.ledger.node import keys

VALIDATOR_SERVICES = (
    ("ledger", "operator", "Ecosphere Platform Operator", ("platform",)),
    ("trace", "trace-center", "Supply-Chain Collaboration Center", ("observer",)),
    ("customs", "customs-joint", "Joint Customs Supervision", ("customs_cn", "customs_eu")),
    ("credit", "credit-center", "Public Credit Service Center", ("credit_center",)),
)
SERVICES = (*(s for s, *_ in VALIDATOR_SERVICES), "gateway")
CHAIN_ID = "ecosphere-local"


@dataclass(frozen=True)
class DataDir:
    root: Path

    @property
    def genesis_path(self) -> Path:
        return self.root / "genesis.json"

    def node_key(self, service: str) -> Path:
        return self.root / service / "node.key"

    def admin_key(self, service: str) -> Path:
        return self.root / service / "admin.key"

    def store(self, service: str) -> Path:
        return self.root / service / "chain.db"

    def log(self, service: str) -> Path:
        return self.root / service / "service.log"

    @property
    def relay_key(self) -> Path:
        return self.root / "gateway" / "relay.key"

    @property
    def demo_key(self) -> Path:
        return self.root / "client" / "demo.key"


class NetworkInUse(RuntimeError):
    """Another ``ecosphere up`` runs this data directory's network (or its lock cannot be
    taken at all: an unwritable directory, a file system without locks)."""


def lock_network(data: DataDir) -> TextIO:
    """Hold ``<data>/up.lock`` for as long as the returned file stays open: one ``up`` per
    data directory. Raises :class:`NetworkInUse` naming the running one's pid."""
    path = data.root / "up.lock"
    try:
        data.root.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+")
    except OSError as exc:
        raise NetworkInUse(f"cannot use {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if not isinstance(exc, BlockingIOError):
            handle.close()
            raise NetworkInUse(f"cannot lock {path}: {exc.strerror or exc}") from None
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise NetworkInUse(f"another 'ecosphere up' (pid {holder}) runs the network in "
                           f"{data.root}; stop it first (Ctrl-C or kill {holder}), or use "
                           f"another --data") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def network_prefix(genesis: Genesis) -> str:
    """The AMQP topology prefix of a network: its own, from its genesis, so networks
    sharing a broker never share queues or exchanges."""
    return f"ecosphere-{genesis.hash.hex()[:12]}"


def load_genesis(data: DataDir) -> Genesis:
    return Genesis.from_wire(decode(data.genesis_path.read_bytes()))


def bench_client_key(index: int) -> PrivateKey:
    """Deterministic member keys for benchmarks (never for a real network)."""
    return PrivateKey.derive(f"bench/client/{index}")


def ensure_genesis(data: DataDir, *, chain_id: str = CHAIN_ID,
                   genesis_time: int | None = None, bench_clients: int = 0,
                   composition: int | None = None) -> Genesis:
    """Load the data directory's genesis, creating keys and genesis when absent (a new
    chain runs the latest composition this code knows, unless ``composition`` says)."""
    if data.genesis_path.exists():
        return load_genesis(data)
    from services.composition import LATEST

    orgs, gkeys, validators = [], [], []
    for service, org_id, name, roles in VALIDATOR_SERVICES:
        node = keys.load_or_create(data.node_key(service))
        admin = keys.load_or_create(data.admin_key(service))
        orgs.append(GenesisOrg(org_id, name, roles))
        gkeys.append(GenesisKey(admin.public.raw, org_id, ("admin", "member")))
        validators.append(Validator(node.key_id, node.public.raw, 1, org_id))
    gateway = keys.load_or_create(data.node_key("gateway"))
    gkeys.append(GenesisKey(gateway.public.raw, "operator", ("node",)))
    # The gateway's relay key: it relays captures signed by their parties (RFC 9421)
    # and records consumers' scans, as transactions of the platform operator.
    relay = keys.load_or_create(data.relay_key)
    gkeys.append(GenesisKey(relay.public.raw, "operator", ("member",)))
    orgs.append(GenesisOrg("demo-merchants", "Demo Merchants", ("merchant",)))
    demo = keys.load_or_create(data.demo_key)
    gkeys.append(GenesisKey(demo.public.raw, "demo-merchants", ("member",)))
    for index in range(bench_clients):
        gkeys.append(GenesisKey(bench_client_key(index).public.raw, "demo-merchants",
                                ("member",)))
    genesis = Genesis(chain_id=chain_id,
                      genesis_time=genesis_time if genesis_time is not None
                      else time.time_ns() // 1_000_000,
                      params=ChainParams(), organisations=tuple(orgs), keys=tuple(gkeys),
                      validators=ValidatorSet.of(validators),
                      composition=LATEST if composition is None else composition)
    tmp = data.genesis_path.with_suffix(".tmp")
    tmp.write_bytes(encode_unchecked(genesis.to_wire()))
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, data.genesis_path)
    return genesis
