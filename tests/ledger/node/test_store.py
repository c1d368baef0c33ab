"""The durable store: atomic commits, genesis binding, and checks after reading."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.composition import build_application
from services.ledger.core.errors import InvariantViolation
from services.ledger.core.replica import ChainTip, Commit
from services.ledger.node.store import MemoryStore, SqliteStore, Store, load_tip
from services.ledger.sim.simulator import SimConfig, Simulation
from services.ledger.sim.testnet import make_testnet


@pytest.fixture(scope="module")
def chain() -> Simulation:
    """A short committed chain from a fault-free simulation (blocks with transactions)."""
    sim = Simulation(3, SimConfig(faults=False, byzantine=0, txs=30))
    result = sim.run()
    assert result.violation is None
    return sim


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store = SqliteStore(tmp_path / "chain.db") if request.param == "sqlite" else MemoryStore()
    yield s
    s.close()


def copy_chain(sim: Simulation, store: Store, upto: int) -> None:
    app = sim.app
    tip = load_tip(store, sim.testnet.genesis, app)
    source = sim.honest[0].store
    from services.ledger.core.replica import Replica

    replica = Replica(genesis=sim.testnet.genesis, app=app, key=None, tip=tip)
    for height in range(tip.height + 1, upto + 1):
        stored = source.block(height)
        assert stored is not None
        validators = replica.tip.next_validators
        out = replica.apply_certified(stored.block, stored.certificate, 0)
        commit = next(a for a in out if isinstance(a, Commit))
        store.commit_block(stored.block, stored.certificate, commit.execution.writes,
                           validators)


def test_fresh_store_starts_at_genesis(store: Store, chain: Simulation) -> None:
    tip = load_tip(store, chain.testnet.genesis, chain.app)
    assert tip.height == 0
    assert tip.block_hash == chain.testnet.genesis.hash
    assert store.genesis_hash() == chain.testnet.genesis.hash


def test_reload_gives_the_same_tip(store: Store, chain: Simulation) -> None:
    height = chain.honest[0].store.height()
    copy_chain(chain, store, height)
    tip = load_tip(store, chain.testnet.genesis, chain.app)
    expected = chain.honest[0].store.block(height)
    assert expected is not None
    assert tip.height == height
    assert tip.block_hash == expected.block.hash
    assert tip.state.root == expected.block.header.state_root
    assert tip.certificate == expected.certificate


def test_another_genesis_is_refused(store: Store, chain: Simulation) -> None:
    load_tip(store, chain.testnet.genesis, chain.app)
    other = make_testnet(chain_id="another-chain").genesis
    with pytest.raises(InvariantViolation, match="another genesis"):
        load_tip(store, other, build_application())


def test_commit_must_extend_the_tip(store: Store, chain: Simulation) -> None:
    copy_chain(chain, store, 2)
    stored = chain.honest[0].store.block(4)
    assert stored is not None
    with pytest.raises(InvariantViolation):
        store.commit_block(stored.block, stored.certificate, {}, chain.testnet.genesis.validators)
    assert store.height() == 2


def test_wal_round_trip(store: Store, chain: Simulation) -> None:
    from services.ledger.core.consensus.messages import WalRecord

    assert store.wal() is None
    record = WalRecord(height=5, round=2, step=1, locked_round=-1, locked_block=None,
                       valid_round=-1, valid_block=None, votes=(), proposals=())
    store.save_wal(record)
    assert store.wal() == record


def test_corrupt_state_stops_the_replica(tmp_path: Path, chain: Simulation) -> None:
    store = SqliteStore(tmp_path / "chain.db")
    copy_chain(chain, store, 3)
    store.close()
    db = sqlite3.connect(tmp_path / "chain.db")
    db.execute("UPDATE state SET value = CAST('{\"tampered\":1}' AS BLOB) "
               "WHERE key = (SELECT key FROM state LIMIT 1)")
    db.commit()
    db.close()
    with pytest.raises(InvariantViolation, match="state root"):
        load_tip(SqliteStore(tmp_path / "chain.db"), chain.testnet.genesis, chain.app)


def test_sqlite_commit_is_atomic(tmp_path: Path, chain: Simulation,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure half-way through a commit leaves nothing of it behind."""
    source = chain.honest[0].store
    busy = next(h for h in range(2, source.height() + 1)
                if source.block(h).block.txs)  # type: ignore[union-attr]
    store = SqliteStore(tmp_path / "chain.db")
    copy_chain(chain, store, busy - 1)
    before = sorted(store.state_items())
    stored = source.block(busy)
    assert stored is not None
    tip = load_tip(store, chain.testnet.genesis, chain.app)
    from services.ledger.core.replica import Replica

    replica = Replica(genesis=chain.testnet.genesis, app=chain.app, key=None, tip=tip)
    ex = replica.execute_block(stored.block, certified=True)
    assert ex.writes

    real_execute = store._db.execute

    class Boom(Exception):
        pass

    def failing(sql: str, *args: Any) -> sqlite3.Cursor:
        if "tip_validators" in sql:
            raise Boom
        return real_execute(sql, *args)

    monkeypatch.setattr(store, "_db", _Proxy(store._db, failing))
    with pytest.raises(Boom):
        store.commit_block(stored.block, stored.certificate, ex.writes,
                           replica.tip.next_validators)
    monkeypatch.undo()
    assert store.height() == busy - 1
    assert store.block(busy) is None
    assert sorted(store.state_items()) == before
    assert isinstance(load_tip(store, chain.testnet.genesis, chain.app), ChainTip)


class _Proxy:
    def __init__(self, db: sqlite3.Connection, execute: object) -> None:
        self._db = db
        self.execute = execute

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)


def test_sqlite_is_durable_mode(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "chain.db")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_validator_sets_are_kept_with_the_first_height_they_certified(
        store: Store, chain: Simulation) -> None:
    genesis_set = chain.testnet.genesis.validators
    assert store.validator_set(genesis_set.hash) is None
    copy_chain(chain, store, 3)
    found = store.validator_set(genesis_set.hash)
    assert found == (1, genesis_set)  # the second commit by the same set changes nothing
    assert store.validator_set(b"\x00" * 32) is None


def test_a_store_has_one_writer(tmp_path: Path) -> None:
    """Found in review: a second 'ecosphere up' on the same data directory wrote into
    the running replicas' stores and froze their chain."""
    from services.ledger.node.store import StoreInUse

    first = SqliteStore(tmp_path / "chain.db")
    with pytest.raises(StoreInUse, match="in use by another process"):
        SqliteStore(tmp_path / "chain.db")
    first.close()
    SqliteStore(tmp_path / "chain.db").close()  # released on close


def test_a_store_that_fails_to_open_holds_no_lock(tmp_path: Path) -> None:
    (tmp_path / "chain.db").write_bytes(b"this is not a SQLite database" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        SqliteStore(tmp_path / "chain.db")
    with pytest.raises(sqlite3.DatabaseError):  # not StoreInUse: the lock was released
        SqliteStore(tmp_path / "chain.db")
