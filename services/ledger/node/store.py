"""A replica's durable store: blocks, certificates, state and the consensus
write-ahead record.

Two implementations with one interface: :class:`SqliteStore` (the embedded
default: SQLite in WAL journal mode with ``synchronous=FULL``, so every
commit is fsynced before it returns) and :class:`MemoryStore` (the
simulator's "disk": it survives a simulated crash because the simulator keeps
the object while discarding the replica).

Durability contract, relied on by the replica's safety:

* ``save_wal`` returns only once the record is durable; the host calls it
  before sending any vote or proposal the record contains.
* ``commit_block`` stores the block, its certificate, the state writes, the
  validator set that certified it and the new tip in **one** transaction; after
  a crash the store holds either all of it or none of it.
* Reads are checked after reading: :func:`load_tip` recomputes the state root
  from the stored state and refuses to start on a mismatch.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from services.ledger.core import consortium
from services.ledger.core.blocks import Block, event_leaf
from services.ledger.core.certificate import CommitCertificate
from services.ledger.core.consensus.messages import WalRecord
from services.ledger.core.contract import Event
from services.ledger.core.encoding import decode, encode_unchecked
from services.ledger.core.errors import InvariantViolation
from services.ledger.core.execution import Application
from services.ledger.core.genesis import Genesis
from services.ledger.core.replica import ChainTip
from services.ledger.core.state import StateView
from services.ledger.core.statetree import StateTree
from services.ledger.core.validators import ValidatorSet


@dataclass(frozen=True, slots=True)
class StoredBlock:
    block: Block
    certificate: CommitCertificate


class Store(Protocol):
    def height(self) -> int: ...

    def block(self, height: int) -> StoredBlock | None: ...

    def block_bytes(self, height: int) -> tuple[bytes, bytes] | None: ...

    def events(self, height: int) -> list[Event] | None: ...

    def tip_validators(self) -> ValidatorSet | None: ...

    def validator_set(self, validators_hash: bytes) -> tuple[int, ValidatorSet] | None:
        """A validator set that certified a stored block, with the first height it
        certified (the block before it names it as ``next_validators_hash``)."""
        ...

    def genesis_hash(self) -> bytes | None: ...

    def initialise(self, genesis_hash: bytes, items: Iterable[tuple[bytes, bytes]]) -> None: ...

    def state_items(self) -> Iterator[tuple[bytes, bytes]]: ...

    def wal(self) -> WalRecord | None: ...

    def save_wal(self, record: WalRecord) -> None: ...

    def commit_block(self, block: Block, certificate: CommitCertificate,
                     writes: Mapping[bytes, bytes | None], validators: ValidatorSet,
                     events: Sequence[Event] = ()) -> None: ...

    def close(self) -> None: ...


def load_tip(store: Store, genesis: Genesis, app: Application) -> ChainTip:
    """The tip stored on disk, verified: the state must hash to the tip's state root."""
    known = store.genesis_hash()
    if known is None:
        tip = ChainTip.genesis(genesis, app)
        store.initialise(genesis.hash, tip.state.items())
        return tip
    if known != genesis.hash:
        raise InvariantViolation("the store belongs to another genesis "
                                 f"({known.hex()[:16]}, not {genesis.hash.hex()[:16]})")
    height = store.height()
    if height == 0:
        return ChainTip.genesis(genesis, app)
    stored = store.block(height)
    validators = store.tip_validators()
    if stored is None or validators is None:
        raise InvariantViolation(f"store claims height {height} but lacks its block")
    state = StateTree.from_items(store.state_items())
    header = stored.block.header
    if state.root != header.state_root:
        raise InvariantViolation(
            f"stored state root {state.root.hex()} differs from block {height}'s "
            f"{header.state_root.hex()}: the store is corrupt")
    view = StateView(state)
    next_validators = consortium.validator_set(view)
    if next_validators.hash != header.next_validators_hash:
        raise InvariantViolation("stored validator set differs from the tip's header")
    return ChainTip(height, header.hash, header.time, state, validators, next_validators,
                    stored.certificate, consortium.chain_params(view))


def _events_bytes(events: Sequence[Event]) -> bytes:
    return b"[" + b",".join(event_leaf(e) for e in events) + b"]"


def _events_from(raw: bytes) -> list[Event]:
    return [Event.from_wire(e) for e in json.loads(raw)]


def _block_from(raw_block: bytes, raw_cert: bytes) -> StoredBlock:
    return StoredBlock(Block.from_wire(json.loads(raw_block)),
                       CommitCertificate.from_wire(json.loads(raw_cert)))


class MemoryStore:
    """The simulator's disk: survives the replica object, loses nothing on 'crash'."""

    def __init__(self) -> None:
        self._blocks: dict[int, tuple[bytes, bytes]] = {}
        self._events: dict[int, bytes] = {}
        self._state: dict[bytes, bytes] = {}
        self._wal: bytes | None = None
        self._validators: bytes | None = None
        self._sets: dict[bytes, tuple[int, bytes]] = {}
        self._height = 0
        self._genesis: bytes | None = None

    def genesis_hash(self) -> bytes | None:
        return self._genesis

    def initialise(self, genesis_hash: bytes, items: Iterable[tuple[bytes, bytes]]) -> None:
        self._state = dict(items)
        self._genesis = genesis_hash

    def height(self) -> int:
        return self._height

    def block(self, height: int) -> StoredBlock | None:
        raw = self._blocks.get(height)
        return None if raw is None else _block_from(*raw)

    def block_bytes(self, height: int) -> tuple[bytes, bytes] | None:
        return self._blocks.get(height)

    def events(self, height: int) -> list[Event] | None:
        raw = self._events.get(height)
        return None if raw is None else _events_from(raw)

    def tip_validators(self) -> ValidatorSet | None:
        return None if self._validators is None else \
            ValidatorSet.from_wire(json.loads(self._validators))

    def validator_set(self, validators_hash: bytes) -> tuple[int, ValidatorSet] | None:
        found = self._sets.get(validators_hash)
        return None if found is None else (found[0],
                                           ValidatorSet.from_wire(json.loads(found[1])))

    def state_items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self._state.items()))

    def wal(self) -> WalRecord | None:
        return None if self._wal is None else WalRecord.from_wire(json.loads(self._wal))

    def save_wal(self, record: WalRecord) -> None:
        self._wal = encode_unchecked(record.to_wire())

    def commit_block(self, block: Block, certificate: CommitCertificate,
                     writes: Mapping[bytes, bytes | None], validators: ValidatorSet,
                     events: Sequence[Event] = ()) -> None:
        if block.height != self._height + 1:
            raise InvariantViolation(f"commit of {block.height} on stored {self._height}")
        self._events[block.height] = _events_bytes(events)
        self._blocks[block.height] = (block.wire_bytes,
                                      encode_unchecked(certificate.to_wire()))
        for key, value in writes.items():
            if value is None:
                self._state.pop(key, None)
            else:
                self._state[key] = value
        self._validators = encode_unchecked(validators.to_wire())
        self._sets.setdefault(validators.hash, (block.height, self._validators))
        self._height = block.height

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    block BLOB NOT NULL,
    certificate BLOB NOT NULL,
    events BLOB NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS state (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS validator_sets (
    hash BLOB PRIMARY KEY,
    first_height INTEGER NOT NULL,
    validators BLOB NOT NULL
);
"""


class StoreInUse(RuntimeError):
    """Another process holds this replica's store (a second ``ecosphere up`` or ``run``
    on the same data directory): two writers would corrupt one chain."""


class SqliteStore:
    """SQLite in WAL mode with synchronous=FULL: a returned commit is on disk.

    One process at a time: an exclusive ``flock`` on ``<db>.lock`` is taken before the
    database is opened and held until :meth:`close` (the kernel drops it if the
    process dies), so a second writer fails at once with :class:`StoreInUse`.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = _lock_exclusively(self.path.with_name(self.path.name + ".lock"))
        self._lock: int | None = lock
        try:
            self._open()
        except BaseException:
            os.close(lock)  # a store that failed to open holds no lock
            self._lock = None
            raise

    def _open(self) -> None:
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        _fsync_dir(self.path.parent)

    def _meta(self, name: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def height(self) -> int:
        raw = self._meta("height")
        return 0 if raw is None else int(raw)

    def genesis_hash(self) -> bytes | None:
        return self._meta("genesis_hash")

    def initialise(self, genesis_hash: bytes, items: Iterable[tuple[bytes, bytes]]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM state")
            db.executemany("INSERT INTO state (key, value) VALUES (?, ?)", items)
            db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('genesis_hash', ?)",
                       (genesis_hash,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def block_bytes(self, height: int) -> tuple[bytes, bytes] | None:
        row = self._db.execute("SELECT block, certificate FROM blocks WHERE height = ?",
                               (height,)).fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]))

    def block(self, height: int) -> StoredBlock | None:
        raw = self.block_bytes(height)
        return None if raw is None else _block_from(*raw)

    def events(self, height: int) -> list[Event] | None:
        row = self._db.execute("SELECT events FROM blocks WHERE height = ?",
                               (height,)).fetchone()
        return None if row is None else _events_from(bytes(row[0]))

    def block_height_of(self, block_hash: bytes) -> int | None:
        row = self._db.execute("SELECT height FROM blocks WHERE hash = ?",
                               (block_hash,)).fetchone()
        return None if row is None else int(row[0])

    def tip_validators(self) -> ValidatorSet | None:
        raw = self._meta("tip_validators")
        return None if raw is None else ValidatorSet.from_wire(decode(raw))

    def validator_set(self, validators_hash: bytes) -> tuple[int, ValidatorSet] | None:
        row = self._db.execute("SELECT first_height, validators FROM validator_sets "
                               "WHERE hash = ?", (validators_hash,)).fetchone()
        return None if row is None else (int(row[0]),
                                         ValidatorSet.from_wire(decode(bytes(row[1]))))

    def state_items(self) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.execute("SELECT key, value FROM state"):
            yield bytes(key), bytes(value)

    def wal(self) -> WalRecord | None:
        raw = self._meta("wal")
        return None if raw is None else WalRecord.from_wire(json.loads(raw))

    def save_wal(self, record: WalRecord) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('wal', ?)",
                         (encode_unchecked(record.to_wire()),))

    def commit_block(self, block: Block, certificate: CommitCertificate,
                     writes: Mapping[bytes, bytes | None], validators: ValidatorSet,
                     events: Sequence[Event] = ()) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            stored = self.height()
            if block.height != stored + 1:
                raise InvariantViolation(f"commit of {block.height} on stored {stored}")
            db.execute("INSERT INTO blocks (height, hash, block, certificate, events) "
                       "VALUES (?,?,?,?,?)",
                       (block.height, block.hash, block.wire_bytes,
                        encode_unchecked(certificate.to_wire()), _events_bytes(events)))
            deletes = [(k,) for k, v in writes.items() if v is None]
            upserts = [(k, v) for k, v in writes.items() if v is not None]
            if deletes:
                db.executemany("DELETE FROM state WHERE key = ?", deletes)
            if upserts:
                db.executemany("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                               upserts)
            wire = encode_unchecked(validators.to_wire())
            db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('tip_validators', ?)",
                       (wire,))
            db.execute("INSERT OR IGNORE INTO validator_sets (hash, first_height, validators) "
                       "VALUES (?, ?, ?)", (validators.hash, block.height, wire))
            db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('height', ?)",
                       (str(block.height).encode(),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None


def _lock_exclusively(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if not isinstance(exc, BlockingIOError):
            raise
        raise StoreInUse(f"{path.parent} is in use by another process (is another "
                         "'ecosphere up' or 'ecosphere run' using this data directory?)"
                         ) from None
    return fd


def _fsync_dir(path: Path) -> None:
    """Make the directory entry of a newly created database durable too."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
