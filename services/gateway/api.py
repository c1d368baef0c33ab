"""The gateway's HTTP API: the ecosphere's entry point for clients.

The gateway is a non-voting replica (an observer): it verifies and follows
the chain like a validator, without signing anything. Writes are
transactions the client signed; the gateway checks them statically (schema,
size, chain, signature) and against the state it holds (sender, nonce), then
gossips them to the validators in batches. It can never forge a transaction.

Routes (this module; later issues add their own):

``POST /v1/transactions``       one transaction, or ``{"transactions": [...]}``;
                                ``?wait=commit`` answers after commit with the
                                block height and an inclusion proof
``GET  /v1/blocks/{height}``    a block with its commit certificate (``latest`` too)
``GET  /v1/status``             chain id, height, validators
``GET  /v1/keys/{key_id}``      a key's registration and nonces
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from services.gateway.problems import Problem, problem_from
from services.ledger.core import consortium, merkle
from services.ledger.core.blocks import Block, tx_leaf_hashes
from services.ledger.core.certificate import CommitCertificate
from services.ledger.core.errors import EncodingError, LedgerError
from services.ledger.core.replica import Commit, TxRejected
from services.ledger.core.state import StateView
from services.ledger.core.transactions import Transaction
from services.ledger.node.runner import NodeRunner
from services.ledger.node.settings import GatewayOptions

JSON = "application/json"


def _reject_float(text: str) -> Any:
    raise Problem(400, "bad_encoding", f"floating-point number {text} is not allowed")


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_hash: bytes
    height: int
    index: int
    block: Block
    certificate: CommitCertificate

    def to_wire(self, proof: tuple[bytes, ...]) -> dict[str, Any]:
        return {
            "tx_hash": self.tx_hash.hex(),
            "status": "committed",
            "height": self.height,
            "index": self.index,
            "block_hash": self.block.hash.hex(),
            "header": self.block.header.to_wire(),
            "proof": merkle.InclusionProof(self.index, len(self.block.txs), proof).to_wire(),
            "certificate": self.certificate.to_wire(),
        }


class CommitWaiters:
    """Clients waiting for their transactions to commit (bounded)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._waiting: dict[bytes, list[asyncio.Future[Receipt | TxRejected]]] = {}
        self.count = 0

    def wait(self, tx_hash: bytes) -> asyncio.Future[Receipt | TxRejected]:
        if self.count >= self.limit:
            raise Problem(503, "too_many_waiters", "too many clients are waiting",
                          retry_after_s=1)
        future: asyncio.Future[Receipt | TxRejected] = (
            asyncio.get_running_loop().create_future())
        self._waiting.setdefault(tx_hash, []).append(future)
        self.count += 1
        return future

    def forget(self, tx_hash: bytes, future: asyncio.Future[Receipt | TxRejected]) -> None:
        futures = self._waiting.get(tx_hash)
        if futures and future in futures:
            futures.remove(future)
            self.count -= 1
            if not futures:
                del self._waiting[tx_hash]

    def on_commit(self, commit: Commit) -> None:
        if not self._waiting:
            return
        block = commit.block
        for index, tx in enumerate(block.txs):
            for future in self._waiting.pop(tx.hash, ()):
                self.count -= 1
                if not future.done():
                    future.set_result(Receipt(tx.hash, block.height, index, block,
                                              commit.certificate))

    def on_rejected(self, rejected: TxRejected) -> None:
        for future in self._waiting.pop(rejected.tx_hash, ()):
            self.count -= 1
            if not future.done():
                future.set_result(rejected)


class GatewayApi:
    def __init__(self, runner: NodeRunner, options: GatewayOptions) -> None:
        self.runner = runner
        self.options = options
        self.waiters = CommitWaiters(options.waiters_max)
        runner.host.listeners.committed.append(self.waiters.on_commit)
        runner.host.listeners.rejected.append(self.waiters.on_rejected)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/transactions", self.post_transactions),
            web.get("/v1/blocks/{height}", self.get_block),
            web.get("/v1/status", self.get_status),
            web.get("/v1/keys/{key_id}", self.get_key),
        ]

    # --- transactions --------------------------------------------------------------------

    async def post_transactions(self, request: web.Request) -> web.Response:
        if request.content_type != JSON:
            raise Problem(415, "unsupported_media_type", "send application/json")
        wait = request.query.get("wait")
        if wait not in (None, "commit"):
            raise Problem(400, "bad_query", "wait must be 'commit'")
        raw = await request.read()
        try:
            body = json.loads(raw, parse_float=_reject_float)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Problem(400, "bad_json", f"body is not JSON: {exc}") from exc
        batch = isinstance(body, dict) and set(body) == {"transactions"}
        items = body["transactions"] if batch else [body]
        if not isinstance(items, list) or not items:
            raise Problem(422, "bad_payload", "transactions must be a non-empty array")
        if len(items) > self.options.batch_txs_max:
            raise Problem(413, "batch_too_large",
                          f"at most {self.options.batch_txs_max} transactions per request")
        results: list[dict[str, Any]] = []
        accepted: list[Transaction] = []
        for item in items:
            try:
                tx = Transaction.from_wire(item)
            except EncodingError as exc:
                if not batch:
                    raise
                results.append({"status": "rejected", **_problem_body(exc)})
                continue
            try:
                self.runner.host.submit(tx)
            except LedgerError as exc:
                if not batch:
                    raise
                results.append({"tx_hash": tx.hash.hex(), "status": "rejected",
                                **_problem_body(exc)})
                continue
            accepted.append(tx)
            results.append({"tx_hash": tx.hash.hex(), "status": "pending"})
        if wait == "commit" and accepted:
            receipts = await self._wait_commit(accepted)
            by_hash = {r["tx_hash"]: r for r in receipts}
            results = [by_hash.get(r.get("tx_hash", ""), r) for r in results]
        status = 200 if all(r["status"] == "committed" for r in results) else 202
        payload = {"transactions": results} if batch else results[0]
        if not batch and results[0]["status"] == "rejected":
            status = results[0].get("http_status", 422)
        return web.json_response(payload, status=status)

    async def _wait_commit(self, txs: Sequence[Transaction]) -> list[dict[str, Any]]:
        futures = [(tx, self.waiters.wait(tx.hash)) for tx in txs]
        timeout = self.options.wait_commit_ms / 1000
        try:
            await asyncio.wait([f for _, f in futures], timeout=timeout)
        finally:
            for tx, future in futures:
                if not future.done():
                    self.waiters.forget(tx.hash, future)
        out: list[dict[str, Any]] = []
        by_block: dict[bytes, list[Receipt]] = {}
        for tx, future in futures:
            if not future.done():
                out.append({"tx_hash": tx.hash.hex(), "status": "pending",
                            "detail": "not committed within the wait; poll the chain"})
                continue
            result = future.result()
            if isinstance(result, TxRejected):
                out.append({"tx_hash": tx.hash.hex(), "status": "rejected",
                            "code": result.code, "detail": result.message})
            else:
                by_block.setdefault(result.block.hash, []).append(result)
        for receipts in by_block.values():
            block = receipts[0].block
            proofs = merkle.inclusion_proofs(tx_leaf_hashes(block.txs),
                                             [r.index for r in receipts])
            out.extend(r.to_wire(p) for r, p in zip(receipts, proofs, strict=True))
        return out

    # --- blocks and status -------------------------------------------------------------

    async def get_block(self, request: web.Request) -> web.Response:
        tip = self.runner.host.replica.tip
        raw_height = request.match_info["height"]
        if raw_height == "latest":
            height = tip.height
        else:
            try:
                height = int(raw_height)
            except ValueError as exc:
                raise Problem(400, "bad_height", "height must be an integer or 'latest'") \
                    from exc
        store = self.runner.host.store
        stored = store.block_bytes(height) if height > 0 else None
        if stored is None:
            raise Problem(404, "block_not_found", f"no block at height {height} "
                          f"(the chain is at {tip.height})")
        block, certificate = stored
        body = b'{"block":' + block + b',"certificate":' + certificate + b"}"
        return web.Response(body=body, content_type=JSON)

    async def get_key(self, request: web.Request) -> web.Response:
        """A key's registration and its nonces: committed, and next usable here."""
        key_id = request.match_info["key_id"]
        replica = self.runner.host.replica
        view = StateView(replica.tip.state)
        record = consortium.key_record(view, key_id)
        if record is None:
            raise Problem(404, "key_not_found", f"no key {key_id} on the chain")
        committed = replica.app.next_nonce(view, key_id)
        waiting = replica.mempool.pending_nonces(key_id)
        usable = committed
        while usable in waiting:
            usable += 1
        return web.json_response({**record, "next_nonce": committed,
                                  "next_usable_nonce": usable, "pending": len(waiting),
                                  "height": replica.tip.height})

    async def get_status(self, request: web.Request) -> web.Response:
        replica = self.runner.host.replica
        tip = replica.tip
        return web.json_response({
            "chain_id": replica.chain_id,
            "genesis_hash": replica.genesis.hash.hex(),
            "height": tip.height,
            "block_hash": tip.block_hash.hex(),
            "time": tip.time,
            "validators": tip.next_validators.to_wire(),
            "mempool_txs": len(replica.mempool),
            "peers_seen": len(replica.peers_seen),
            "server_time": int(time.time() * 1000),
        })


def _problem_body(exc: LedgerError) -> dict[str, Any]:
    problem = problem_from(exc)
    return {"code": problem.code, "detail": problem.detail, "http_status": problem.status}
