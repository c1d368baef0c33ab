"""A replica: consensus, the state machine, the mempool and catch-up, as one pure
object driven by events.

The host (``services.ledger.node.host``) feeds it bytes from the network,
timer expiries and client transactions, each with the host's current time,
and performs the actions it returns, in order:

=================  ===============================================================
``PersistWal``     write the consensus record durably (fsync) before going on
``Commit``         store block, certificate and state writes atomically (fsync)
``Send``           bytes to one peer; ``Broadcast``: bytes to every peer
``SetTimer``       call ``on_timer(payload)`` after ``delay_ms``
``ServeSync``      read certified blocks from the store and answer a peer
``TxRejected``     tell whoever waits on a transaction that it will not commit
``Halt``           the chain needs code this replica lacks: stop (always last)
=================  ===============================================================

Flow of one proposal: bytes → envelope check (shape, chain, sender is an active
``node`` key, signature) → ``Proposal`` parsed → consensus verifies the
proposer's signature → when consensus asks, the block is checked against the
tip (shape, certificate of the parent, BFT time), its transactions statically
(signatures skipped only for the very bytes the mempool already verified),
then executed, and every root compared → votes → ``Decide`` → ``Commit`` →
next height.

Catch-up: a replica that sees a peer ahead (a ``status`` or a consensus
message of a later height) asks it for certified blocks; each is accepted only
if its commit certificate verifies against the validator set the replica
computed itself, its shape and BFT time check out, and re-executing it gives
the header's state, events and validator roots. Certified blocks skip the
transactions' signature checks: more than two thirds of the voting power
already verified them, which is the assumption the chain rests on anyway.

Every message that is refused is counted by reason in ``rejections``; no input
raises out of :meth:`Replica.on_message`.

This module never does I/O. It is longer than 800 lines because the replica is one
state machine whose handlers share its state (tip, mempool, sync and future-message
buffers): split across modules they would reach into each other's privates.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from services.ledger.core import consortium, crypto
from services.ledger.core.blocks import (
    BLOCK_TXS_WIRE_MAX,
    ZERO_HASH,
    Block,
    BlockHeader,
    check_block_shape,
    check_body,
    events_root,
    expected_time,
    tx_root,
)
from services.ledger.core.certificate import ROUND_MAX, CommitCertificate, Vote
from services.ledger.core.consensus.messages import (
    Broadcast as ConsensusBroadcast,
)
from services.ledger.core.consensus.messages import (
    ConsensusAction,
    Decide,
    Misbehaviour,
    PersistWal,
    Proposal,
    ScheduleTimeout,
    Timeout,
    WalRecord,
)
from services.ledger.core.consensus.tendermint import Tendermint, TimeoutParams
from services.ledger.core.encoding import (
    encode_unchecked,
    from_hex,
    get_int,
    get_list,
    get_str,
    require_keys,
)
from services.ledger.core.errors import (
    InvalidBlock,
    InvalidMessage,
    InvalidSignature,
    InvariantViolation,
    MempoolRejected,
    Rejected,
    UpgradeRequired,
)
from services.ledger.core.execution import Application, BlockExecution, Rejection
from services.ledger.core.genesis import ChainParams, Genesis
from services.ledger.core.mempool import Mempool, MempoolLimits
from services.ledger.core.regossip import Regossip, RegossipLimits
from services.ledger.core.state import StateView
from services.ledger.core.statetree import StateTree
from services.ledger.core.transactions import KEY_ID_RE, Transaction
from services.ledger.core.validators import ValidatorSet
from services.ledger.core.wire import Envelope, open_envelope, seal, seal_bytes

# --- configuration -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    timeouts: TimeoutParams = field(default_factory=TimeoutParams)
    mempool: MempoolLimits = field(default_factory=MempoolLimits)
    gossip_interval_ms: int = 500  # status and re-sending when consensus stalls
    tx_batch_txs_max: int = 1_000  # transactions per gossip message
    tx_batch_wait_ms: int = 5  # how long a partial batch waits before it is sent
    sync_batch_blocks_max: int = 64  # certified blocks per sync response
    sync_timeout_ms: int = 2_000  # an unanswered sync request is retried
    message_bytes_max: int = 32 * 1024 * 1024
    future_messages_max: int = 4_096  # buffered messages for the next height
    future_bytes_max: int = 64 * 1024 * 1024  # ... and their bytes in all
    future_per_sender_max: int = 256  # ... from one sender (junk cannot crowd out peers)
    regossip: RegossipLimits = field(default_factory=RegossipLimits)


# --- chain tip -----------------------------------------------------------------------


@dataclass(frozen=True)
class ChainTip:
    """The last committed block and the state after it (height 0: genesis)."""

    height: int
    block_hash: bytes
    time: int
    state: StateTree
    validators: ValidatorSet | None  # validated ``height`` (None at genesis)
    next_validators: ValidatorSet  # validates ``height + 1``
    certificate: CommitCertificate | None  # certifies ``height``
    params: ChainParams

    @classmethod
    def genesis(cls, genesis: Genesis, app: Application) -> ChainTip:
        state = app.genesis_state(genesis)
        return cls(0, genesis.hash, genesis.genesis_time, state, None, genesis.validators,
                   None, genesis.params)

    @classmethod
    def after(cls, block: Block, certificate: CommitCertificate, validators: ValidatorSet,
              execution: BlockExecution) -> ChainTip:
        return cls(block.height, block.hash, block.header.time, execution.state, validators,
                   execution.validators_next, certificate, execution.params)


# --- actions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    peer: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Broadcast:
    data: bytes
    kind: str  # message type, for the transport's routing and metrics


@dataclass(frozen=True, slots=True)
class Commit:
    block: Block
    certificate: CommitCertificate
    execution: BlockExecution
    validators: ValidatorSet  # the set that certified the block


@dataclass(frozen=True, slots=True)
class SetTimer:
    delay_ms: int
    payload: Any


@dataclass(frozen=True, slots=True)
class ServeSync:
    peer: str
    from_height: int
    to_height: int


@dataclass(frozen=True, slots=True)
class TxRejected:
    tx_hash: bytes
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Halt:
    """The chain reached a composition this code lacks: perform the actions before this
    one (a decided block above all), then stop (always the last action of a call)."""

    error: UpgradeRequired


Action = PersistWal | Commit | Send | Broadcast | SetTimer | ServeSync | TxRejected | Halt

_COMPACT_KEYS = frozenset({"chain_id", "height", "round", "pol_round", "proposer",
                          "signature", "header", "last_commit", "tx_leaves"})
GOSSIP = "gossip"
FLUSH_TXS = "flush_txs"
SYNC_RETRY = "sync_retry"


class Replica:
    def __init__(self, *, genesis: Genesis, app: Application, key: crypto.PrivateKey | None,
                 tip: ChainTip, config: ReplicaConfig | None = None) -> None:
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.app = app
        self.key = key
        self.config = config or ReplicaConfig()
        self.tip = tip
        self.mempool = Mempool(self.config.mempool)
        self.regossip = Regossip(self.config.regossip)
        self.consensus = Tendermint(chain_id=self.chain_id, key=key, app=self,
                                    timeouts=self.config.timeouts)
        self.rejections: Counter[str] = Counter()
        self.misbehaviour: Counter[str] = Counter()
        self._executions: dict[bytes, BlockExecution] = {}
        self._future: list[Envelope] = []
        self._future_bytes = 0
        self._future_senders: Counter[str] = Counter()
        self._gossip_out: list[Transaction] = []
        self._flush_pending = False
        self._sync_outstanding: str | None = None
        self._sync_seq = 0
        self._peers_ahead: dict[str, int] = {}
        #: peers whose last sync answer (or silence) brought nothing since our last
        #: progress: asked only when no other peer is ahead (authenticated node keys)
        self._sync_snubbed: set[str] = set()
        self._node_keys: dict[str, bytes] = {}
        self._last_progress: tuple[int, int, int] = (0, 0, 0)
        self.peers_seen: set[str] = set()
        self._pending_rejections: list[Rejection] = []
        self.last_rejection: str | None = None
        self._blocks_requested: set[bytes] = set()
        self.peer_last_seen: dict[str, int] = {}
        self._now = 0
        self.compact_misses = 0

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, now: int, wal: WalRecord | None = None) -> list[Action]:
        out: list[Action] = []
        with _halting(out):
            # a chain already past an upgrade this code lacks: halt before anything else
            self.app.composition(StateView(self.tip.state), self.height)
            self._from_consensus(
                self.consensus.start_height(self.height, self.tip.next_validators, now, wal),
                now, out)
            out.append(SetTimer(self.config.gossip_interval_ms, GOSSIP))
        return out

    @property
    def height(self) -> int:
        """The height being decided."""
        return self.tip.height + 1

    # --- ConsensusApp ------------------------------------------------------------------

    def has_pending_txs(self) -> bool:
        return len(self.mempool) > 0

    def build_proposal_block(self, height: int, round_: int, now: int) -> Block:
        tip = self.tip
        params = tip.params
        time = expected_time(height, self.genesis.genesis_time, tip.certificate,
                             tip.validators)
        view = StateView(tip.state)
        candidates = self.mempool.reap(lambda s: self.app.next_nonce(view, s),
                                       params.block_txs_max, params.block_bytes_max)
        ex = self.app.execute(tip.state, height=height, time=time, txs=candidates,
                              skip_failed=True)
        if ex.rejected:
            self.mempool.remove(r.tx for r in ex.rejected)
            self._pending_rejections.extend(ex.rejected)
        if self.key is None:
            raise InvalidBlock("an observer does not propose")
        header = BlockHeader(
            chain_id=self.chain_id, height=height, prev_hash=tip.block_hash, time=time,
            proposer=self.key.key_id, tx_root=tx_root(ex.included), tx_count=len(ex.included),
            state_root=ex.state.root, validators_hash=tip.next_validators.hash,
            next_validators_hash=ex.validators_next.hash, events_root=events_root(ex.events),
            last_commit_hash=ZERO_HASH if tip.certificate is None or height == 1
            else tip.certificate.hash,
        )
        block = Block(header, ex.included, tip.certificate if height > 1 else None)
        self._executions[block.hash] = ex
        return block

    def block_is_valid(self, block: Block) -> bool:
        try:
            self._executions[block.hash] = self.execute_block(block, certified=False)
        except Rejected as exc:
            self.rejections[f"block_{exc.code}"] += 1
            return False
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            # Contract code that trips over a block is a deterministic bug: every
            # honest replica refuses the block alike instead of stopping.
            self.rejections["block_malformed"] += 1
            return False
        return True

    def execute_block(self, block: Block, *, certified: bool) -> BlockExecution:
        """Check ``block`` as the child of the tip and execute it; raise InvalidBlock."""
        known = self._executions.get(block.hash)
        if known is not None:
            return known
        tip = self.tip
        check_block_shape(block, chain_id=self.chain_id, prev_hash=tip.block_hash,
                          prev_time=tip.time if tip.height > 0 else None,
                          genesis_time=self.genesis.genesis_time,
                          validators=tip.next_validators, prev_validators=tip.validators)
        composition = self.app.composition(StateView(tip.state), block.height)
        for tx in block.txs:
            try:
                self.app.check_static(tx, chain_id=self.chain_id, params=tip.params,
                                      composition=composition,
                                      verify_signature=not certified
                                      and not self.mempool.verified(tx))
            except Rejected as exc:
                raise InvalidBlock(f"transaction {tx.hash.hex()}: {exc}",
                                   code="bad_tx") from exc
        ex = self.app.execute(tip.state, height=block.height, time=block.header.time,
                              txs=block.txs, skip_failed=False)
        h = block.header
        if ex.state.root != h.state_root:
            raise InvalidBlock("state root differs from execution", code="bad_state_root")
        if events_root(ex.events) != h.events_root:
            raise InvalidBlock("events root differs from execution", code="bad_events_root")
        if ex.validators_next.hash != h.next_validators_hash:
            raise InvalidBlock("next validators differ from execution",
                               code="bad_validators_hash")
        return ex

    # --- client transactions -------------------------------------------------------------
    #
    # Internal handlers append to an ``out`` list as they go rather than return
    # lists: if input turns out bad half-way, what was already done (a Commit
    # above all) is still handed to the host.

    def submit(self, tx: Transaction, now: int) -> list[Action]:
        """A transaction from a client: admit it (raises :class:`Rejected`) and gossip it."""
        out: list[Action] = []
        with _halting(out):
            self._admit(tx, now)
            self.regossip.track(tx.hash, now)
            self._gossip_out.append(tx)
            if len(self._gossip_out) >= self.config.tx_batch_txs_max:
                self._flush_txs(out)
            elif not self._flush_pending:
                self._flush_pending = True
                out.append(SetTimer(self.config.tx_batch_wait_ms, FLUSH_TXS))
            self._from_consensus(self.consensus.on_txs_available(now), now, out)
        return out

    def dry_run(self, tx: Transaction, now: int, *,
                assume_next_nonce: bool = False) -> Rejection | None:
        """Execute ``tx`` alone on the committed state, as the next block would at ``now``.

        Without ``assume_next_nonce`` only the sender's next nonce is judged (a
        transaction waiting for predecessors could depend on them): None otherwise. A
        transaction that fails here would be dropped by the proposer without a word to
        its client, so the gateway tells the client at once instead of letting it wait
        for a commit that never comes.
        """
        tip = self.tip
        if not assume_next_nonce and (
                tx.nonce != self.app.next_nonce(StateView(tip.state), tx.sender)
                or tx.hash in self.mempool):
            return None
        return self.app.dry_run(tip.state, tx, height=self.height, time=max(now, tip.time + 1),
                                assume_next_nonce=assume_next_nonce)

    def _admit(self, tx: Transaction, now: int) -> None:
        """Cheapest checks first: the signature (the costly one) is checked last,
        so duplicates and replays of committed transactions cost no verification.

        ``created_at`` must lie in the window a block could accept it in, judged by
        this replica's clock (or the tip's time, if later): a transaction from far in
        the future could wait in every mempool for ever."""
        if tx.hash in self.mempool:
            raise MempoolRejected("transaction already waiting", code="duplicate")
        params = self.tip.params
        reference = max(now, self.tip.time)
        if tx.created_at > reference + params.tx_future_ms:
            raise MempoolRejected("transaction created too far in the future",
                                  code="too_early")
        if tx.created_at < reference - params.tx_ttl_ms:
            raise MempoolRejected("transaction expired", code="expired")
        tip = self.tip
        self.app.check_static(tx, chain_id=self.chain_id, params=tip.params,
                              composition=self.app.composition(StateView(tip.state),
                                                               tip.height + 1),
                              verify_signature=False)
        next_nonce = self.app.precheck(tip.state, tx)
        self.mempool.check_room(tx, next_nonce)
        if not crypto.verify(tx.public_key, tx.signature, tx.hash):
            raise InvalidSignature("transaction signature does not verify")
        self.mempool.add(tx, next_nonce)

    def _flush_txs(self, out: list[Action]) -> None:
        self._flush_pending = False
        batch, self._gossip_out = self._gossip_out, []
        self._broadcast_txs(batch, out)

    def _broadcast_txs(self, txs: list[Transaction], out: list[Action]) -> None:
        if self.key is None:
            return
        # Batches stay well inside a receiver's message limit (the envelope's hex and
        # escaping overhead), by count and by bytes; one transaction always goes.
        count_max = self.config.tx_batch_txs_max
        bytes_max = self.config.message_bytes_max // 2
        batch: list[bytes] = []
        size = 0
        for tx in txs:
            raw = tx.wire_bytes
            if batch and (len(batch) >= count_max or size + len(raw) + 1 > bytes_max):
                self._broadcast_batch(batch, out)
                batch, size = [], 0
            batch.append(raw)
            size += len(raw) + 1
        if batch:
            self._broadcast_batch(batch, out)

    def _broadcast_batch(self, batch: list[bytes], out: list[Action]) -> None:
        assert self.key is not None
        body = b'{"txs":[' + b",".join(batch) + b"]}"
        out.append(Broadcast(seal_bytes(self.key, self.chain_id, "txs", body), "txs"))

    def publish_failed(self, kind: str) -> None:
        """The transport could not publish a message of ``kind``. Consensus messages are
        re-sent by consensus itself when it stalls; transactions this replica accepted
        from its clients are its responsibility: all pending ones go out again."""
        if kind == "txs":
            self.regossip.publish_failed()

    def transport_connected(self, connected: bool) -> None:
        """The transport lost (False) or regained (True) the broker: re-gossip waits
        while it is away, and sends everything pending once it is back."""
        self.regossip.connection(connected)

    # --- network -------------------------------------------------------------------------

    def on_message(self, data: bytes, now: int) -> list[Action]:
        """Bytes from the untrusted network. Never raises; refusals are counted, and
        ``last_rejection`` names the reason this message was refused (None: accepted)."""
        out: list[Action] = []
        self.last_rejection = None
        self._now = now
        try:
            env = open_envelope(data, chain_id=self.chain_id,
                                size_max=self.config.message_bytes_max)
            self._authenticate(env)
        except Rejected as exc:
            self._reject(exc.code)
            return out
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            self._reject("malformed")
            return out
        with _halting(out):
            self._safe_dispatch(env, now, out)
        return out

    def _reject(self, code: str) -> None:
        self.rejections[code] += 1
        self.last_rejection = code

    def _safe_dispatch(self, env: Envelope, now: int, out: list[Action]) -> None:
        try:
            self._dispatch(env, now, out)
        except Rejected as exc:
            self._reject(exc.code)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            self._reject("malformed")

    def _authenticate(self, env: Envelope) -> None:
        public_key = self._node_key(env.sender)
        if public_key is None:
            raise InvalidMessage("sender is not an active node key", code="unknown_sender")
        if not crypto.verify(public_key, env.signature, env.digest):
            raise InvalidMessage("message signature does not verify", code="bad_signature")
        if self.key is None or env.sender != self.key.key_id:
            self.peers_seen.add(env.sender)
            self.peer_last_seen[env.sender] = self._now

    def _node_key(self, key_id: str) -> bytes | None:
        """The active node key ``key_id``, from the committed state. Only hits are
        cached (registered keys are few; an unauthenticated sender name must not
        grow memory), and the cache is dropped whenever a block writes keys."""
        known = self._node_keys.get(key_id)
        if known is not None:
            return known
        if not isinstance(key_id, str) or not KEY_ID_RE.match(key_id):
            return None
        view = StateView(self.tip.state)
        record = consortium.key_record(view, key_id)
        if record is None or record["status"] != "active" \
                or "node" not in record["permissions"]:
            return None
        org = consortium.org_record(view, record["org"])
        if org is None or org["status"] != "active":
            return None  # a suspended organisation's nodes are not heard
        public_key = bytes.fromhex(record["public_key"])
        self._node_keys[key_id] = public_key
        return public_key

    def _dispatch(self, env: Envelope, now: int, out: list[Action]) -> None:
        if self.key is not None and env.sender == self.key.key_id:
            return  # our own broadcast coming back
        if env.type == "vote":
            self._on_consensus_message(env, Vote.from_wire(env.body), now, out)
        elif env.type == "proposal":
            self._on_consensus_message(env, Proposal.from_wire(env.body, checked=True), now, out)
        elif env.type == "compact_proposal":
            proposal = self._expand(env, out)
            if proposal is not None:
                self._on_consensus_message(env, proposal, now, out)
        elif env.type == "block_request":
            self._on_block_request(env, out)
        elif env.type == "txs":
            self._on_txs(env, now, out)
        elif env.type == "status":
            body = require_keys(env.body, frozenset({"height", "round"}), "status")
            self._note_ahead(env.sender, get_int(body, "height"), out)
        elif env.type == "sync_request":
            self._on_sync_request(env, out)
        else:
            self._on_sync_response(env, now, out)

    def _on_consensus_message(self, env: Envelope, msg: Vote | Proposal, now: int,
                              out: list[Action]) -> None:
        if msg.chain_id != self.chain_id:
            raise InvalidMessage("message for another chain", code="wrong_chain")
        if isinstance(msg, Proposal):
            try:
                check_body(msg.block)
            except InvalidBlock as exc:  # refused as a message: never cached as a verdict
                raise InvalidMessage(f"proposal body does not match its header: {exc}",
                                     code="body_mismatch") from exc
        if msg.height < self.height:
            return  # late: harmless
        if msg.height > self.height:
            if msg.height == self.height + 1:
                self._buffer_future(env)
            self._note_ahead(env.sender, msg.height - 1, out)
            return
        if isinstance(msg, Vote):
            self._from_consensus(self.consensus.on_vote(msg, now), now, out)
        else:
            self._from_consensus(self.consensus.on_proposal(msg, now), now, out)

    def _expand(self, env: Envelope, out: list[Action]) -> Proposal | None:
        """Rebuild a compact proposal's block from transactions this replica holds.

        Missing any, ask the sender for the whole proposal (once per block) and
        drop this one: the answer is an ordinary ``proposal`` message.
        """
        body = require_keys(env.body, _COMPACT_KEYS, "compact proposal")
        header = BlockHeader.from_wire(body["header"])
        leaves = get_list(body, "tx_leaves", size_max=BLOCK_TXS_WIRE_MAX)
        known = self.consensus.blocks.get(header.hash)
        if known is not None:
            block = known
        else:
            txs = []
            for leaf_hex in leaves:
                tx = self.mempool.by_leaf(from_hex(leaf_hex, length=32, field="tx_leaves"))
                if tx is None:
                    self._request_block(env, header, out)
                    return None
                txs.append(tx)
            last = body["last_commit"]
            block = Block(header, tuple(txs),
                          None if last is None else CommitCertificate.from_wire(last))
        pol_round = body["pol_round"]
        if not isinstance(pol_round, int) or isinstance(pol_round, bool):
            raise InvalidMessage("pol_round must be an integer", code="malformed")
        return Proposal(get_str(body, "chain_id", size_max=64), get_int(body, "height", lo=1),
                        get_int(body, "round", hi=ROUND_MAX), pol_round, block,
                        get_str(body, "proposer", size_max=32),
                        from_hex(body["signature"], length=64, field="signature"))

    def _request_block(self, env: Envelope, header: BlockHeader, out: list[Action]) -> None:
        if self.key is None or header.hash in self._blocks_requested:
            return
        if len(self._blocks_requested) >= 64:
            self._blocks_requested.clear()
        self._blocks_requested.add(header.hash)
        self.compact_misses += 1
        out.append(Send(env.sender, seal(self.key, self.chain_id, "block_request",
                                         {"block_hash": header.hash.hex(),
                                          "height": header.height})))

    def _on_block_request(self, env: Envelope, out: list[Action]) -> None:
        body = require_keys(env.body, frozenset({"block_hash", "height"}), "block_request")
        block_hash = from_hex(body["block_hash"], length=32, field="block_hash")
        if self.key is None or get_int(body, "height", lo=1) != self.height:
            return
        for proposal in self.consensus.proposals.values():
            if proposal.block.hash == block_hash:
                out.append(Send(env.sender, seal_bytes(self.key, self.chain_id, "proposal",
                                                       proposal.wire_bytes())))
                return

    def _on_txs(self, env: Envelope, now: int, out: list[Action]) -> None:
        body = require_keys(env.body, frozenset({"txs"}), "txs")
        items = get_list(body, "txs", size_max=self.config.tx_batch_txs_max)
        admitted = 0
        for item in items:
            try:
                self._admit(Transaction.from_wire(item, checked=True), now)
                admitted += 1
            except Rejected as exc:
                if exc.code != "duplicate":
                    self.rejections[f"tx_{exc.code}"] += 1
        if admitted:
            self._from_consensus(self.consensus.on_txs_available(now), now, out)

    def _note_ahead(self, peer: str, peer_height: int, out: list[Action]) -> None:
        """``peer`` has committed ``peer_height``: fetch what we lack from it.

        One height behind is the normal state of a replica whose last precommits
        are still on the way, so then the request waits for the next gossip tick
        (``_gossip_tick``) in case consensus catches up by itself.
        """
        if peer_height <= self.tip.height:
            return
        self._peers_ahead[peer] = max(self._peers_ahead.get(peer, 0), peer_height)
        if peer_height - self.tip.height >= 2:
            self._continue_sync(peer, out)

    def _request_sync(self, peer: str, out: list[Action]) -> None:
        if self.key is None:
            raise InvariantViolation("a keyless observer was asked to sign")
        self._sync_outstanding = peer
        self._sync_seq += 1
        body = {"from_height": self.tip.height + 1,
                "to_height": self.tip.height + self.config.sync_batch_blocks_max}
        out.append(Send(peer, seal(self.key, self.chain_id, "sync_request", body)))
        out.append(SetTimer(self.config.sync_timeout_ms, (SYNC_RETRY, peer, self._sync_seq)))

    def _on_sync_request(self, env: Envelope, out: list[Action]) -> None:
        body = require_keys(env.body, frozenset({"from_height", "to_height"}), "sync_request")
        first = get_int(body, "from_height", lo=1)
        last = min(get_int(body, "to_height", lo=first), self.tip.height,
                   first + self.config.sync_batch_blocks_max - 1)
        if first <= last:
            out.append(ServeSync(env.sender, first, last))

    def sync_response(self, blocks: list[tuple[Block, CommitCertificate]]) -> bytes:
        """The bytes answering a sync request (the host reads the blocks from its store)."""
        if self.key is None:
            raise InvariantViolation("a keyless observer was asked to sign")
        body = b'{"blocks":[' + b",".join(
            b'{"block":' + b.wire_bytes + b',"certificate":' + encode_unchecked(c.to_wire())
            + b"}" for b, c in blocks) + b"]}"
        return seal_bytes(self.key, self.chain_id, "sync_response", body)

    def _on_sync_response(self, env: Envelope, now: int, out: list[Action]) -> None:
        if self._sync_outstanding == env.sender:
            self._sync_outstanding = None
        applied = False
        try:
            body = require_keys(env.body, frozenset({"blocks"}), "sync_response")
            items = get_list(body, "blocks", size_max=self.config.sync_batch_blocks_max)
            for item in items:
                pair = require_keys(item, frozenset({"block", "certificate"}), "synced block")
                block = Block.from_wire(pair["block"], checked=True)
                if block.height <= self.tip.height:
                    continue
                if block.height != self.tip.height + 1:
                    break
                certificate = CommitCertificate.from_wire(pair["certificate"])
                self._apply_certified(block, certificate, out)
                applied = True
        finally:
            if applied:
                self._sync_snubbed.clear()
                self._restart_consensus(now, out)
            else:
                # It claimed to be ahead and gave nothing we could use: ask others
                # first (a Byzantine peer must not keep a lagging replica behind by
                # answering every request at once, and emptily).
                self._peers_ahead.pop(env.sender, None)
                self._sync_snubbed.add(env.sender)
            self._continue_sync(env.sender, out)

    def _continue_sync(self, last_peer: str, out: list[Action]) -> None:
        if self._sync_outstanding is not None or self.key is None:
            return
        ahead = {p: h for p, h in self._peers_ahead.items() if h > self.tip.height}
        self._peers_ahead = ahead
        helpful = {p: h for p, h in ahead.items() if p not in self._sync_snubbed} or ahead
        if helpful:
            peer = last_peer if last_peer in helpful else max(helpful,
                                                               key=helpful.__getitem__)
            self._request_sync(peer, out)

    def apply_certified(self, block: Block, certificate: CommitCertificate,
                        now: int) -> list[Action]:
        """Adopt a block certified by a quorum (catch-up, tools). Raises InvalidBlock."""
        out: list[Action] = []
        with _halting(out):
            self._apply_certified(block, certificate, out)
            self._restart_consensus(now, out)
        return out

    def _apply_certified(self, block: Block, certificate: CommitCertificate,
                         out: list[Action]) -> None:
        if certificate.height != block.height or certificate.block_hash != block.hash:
            raise InvalidBlock("certificate is for another block", code="bad_certificate")
        certificate.verify(self.chain_id, self.tip.next_validators,
                           block_time=block.header.time)
        ex = self.execute_block(block, certified=True)
        self._commit(block, certificate, ex, out)

    # --- timers --------------------------------------------------------------------------

    def on_timer(self, payload: Any, now: int) -> list[Action]:
        out: list[Action] = []
        with _halting(out):
            self._on_timer(payload, now, out)
        return out

    def _on_timer(self, payload: Any, now: int, out: list[Action]) -> None:
        if isinstance(payload, Timeout):
            self._from_consensus(self.consensus.on_timeout(payload, now), now, out)
        elif payload == GOSSIP:
            self._gossip_tick(now, out)
        elif payload == FLUSH_TXS:
            self._flush_txs(out)
        elif isinstance(payload, tuple) and payload[0] == SYNC_RETRY:
            _, peer, seq = payload
            if self._sync_outstanding == peer and self._sync_seq == seq:
                self._sync_outstanding = None
                self._peers_ahead.pop(peer, None)  # it did not answer: try another
                self._sync_snubbed.add(peer)
                self._continue_sync(peer, out)

    def _gossip_tick(self, now: int, out: list[Action]) -> None:
        out.append(SetTimer(self.config.gossip_interval_ms, GOSSIP))
        if self.key is None:
            return
        self._broadcast_txs(self.regossip.due(now, self.mempool.get), out)
        c = self.consensus
        status = {"height": self.tip.height, "round": c.round}
        out.append(Broadcast(seal(self.key, self.chain_id, "status", status), "status"))
        progress = (c.height, c.round, c.step)
        self._continue_sync("", out)
        if progress == self._last_progress:
            for msg in c.resend():
                out.append(self._broadcast_consensus(msg))
        self._last_progress = progress

    # --- consensus outcomes ------------------------------------------------------------

    def _from_consensus(self, actions: list[ConsensusAction], now: int,
                        out: list[Action]) -> None:
        for action in actions:
            if isinstance(action, ConsensusBroadcast):
                msg = action.message
                if self.key is None:
                    raise InvariantViolation("consensus asked a keyless observer to sign")
                out.append(self._broadcast_consensus(msg))
            elif isinstance(action, ScheduleTimeout):
                out.append(SetTimer(action.delay_ms, action.timeout))
            elif isinstance(action, PersistWal):
                out.append(action)
            elif isinstance(action, Misbehaviour):
                self.misbehaviour[action.kind] += 1
            elif isinstance(action, Decide):
                ex = self._executions.get(action.block.hash)
                if ex is None:
                    raise InvariantViolation("decided a block that was never executed")
                self._commit(action.block, action.certificate, ex, out)
                self._restart_consensus(now, out)
        for rejection in self._pending_rejections:
            out.append(TxRejected(rejection.tx.hash, rejection.code, rejection.message))
        self._pending_rejections = []

    def _broadcast_consensus(self, msg: Proposal | Vote) -> Broadcast:
        if self.key is None:
            raise InvariantViolation("a keyless observer was asked to sign")
        if isinstance(msg, Vote):
            return Broadcast(seal(self.key, self.chain_id, "vote", msg.to_wire()), "vote")
        return Broadcast(seal(self.key, self.chain_id, "compact_proposal", msg.compact_wire()),
                         "proposal")

    def _commit(self, block: Block, certificate: CommitCertificate, ex: BlockExecution,
                out: list[Action]) -> None:
        if block.height != self.tip.height + 1 or block.header.prev_hash != self.tip.block_hash:
            raise InvariantViolation(f"commit of height {block.height} on tip "
                                     f"{self.tip.height}")
        validators = self.tip.next_validators
        self.tip = ChainTip.after(block, certificate, validators, ex)
        self._executions.clear()
        if any(k.startswith((b"consortium/key/", b"consortium/org/")) for k in ex.writes):
            self._node_keys.clear()
        view = StateView(self.tip.state)
        params = self.tip.params
        self.mempool.after_block(block.txs, lambda s: self.app.next_nonce(view, s),
                                 block.header.time - params.tx_ttl_ms,
                                 block.header.time + params.tx_future_ms + params.tx_ttl_ms)
        out.append(Commit(block, certificate, ex, validators))

    def _buffer_future(self, env: Envelope) -> None:
        """Keep a next-height message until this replica gets there, within limits by
        count, bytes and sender; beyond them it is dropped (and counted): the
        consensus' resends bring it again."""
        c = self.config
        if (len(self._future) >= c.future_messages_max
                or self._future_bytes + env.size > c.future_bytes_max
                or self._future_senders[env.sender] >= c.future_per_sender_max):
            self.rejections["future_buffer_full"] += 1
            return
        self._future.append(env)
        self._future_bytes += env.size
        self._future_senders[env.sender] += 1

    def _restart_consensus(self, now: int, out: list[Action]) -> None:
        # the next height runs a composition this code lacks: halt now, proposer or not
        self.app.composition(StateView(self.tip.state), self.height)
        self._from_consensus(
            self.consensus.start_height(self.height, self.tip.next_validators, now), now, out)
        future, self._future = self._future, []
        self._future_bytes = 0
        self._future_senders.clear()
        for env in future:
            self._safe_dispatch(env, now, out)


def replay_chain(genesis: Genesis, app: Application,
                 blocks: Callable[[int], tuple[Block, CommitCertificate] | None]) -> ChainTip:
    """Rebuild the tip from stored certified blocks (used by tests and tools)."""
    replica = Replica(genesis=genesis, app=app, key=None, tip=ChainTip.genesis(genesis, app))
    height = 1
    while (pair := blocks(height)) is not None:
        replica._apply_certified(pair[0], pair[1], [])
        height += 1
    return replica.tip


@contextlib.contextmanager
def _halting(out: list[Action]) -> Iterator[None]:
    """Entry points run under this: a composition this code lacks, met half-way through
    (say, right after deciding a block), ends the call with :class:`Halt` after the
    actions already produced instead of dropping them."""
    try:
        yield
    except UpgradeRequired as exc:
        out.append(Halt(exc))
