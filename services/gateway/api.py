"""The gateway's HTTP API: the ecosphere's entry point for clients.

The gateway is a non-voting replica (an observer): it verifies and follows
the chain like a validator, without signing anything. Writes are
transactions the client signed; the gateway checks them statically (schema,
size, chain, signature) and against the state it holds (sender, nonce), then
gossips them to the validators in batches. It can never forge a transaction.

Reads come from three places, and degrade independently:

* the replica itself (status, state values with proofs, validators, keys) —
  always available;
* the replica's store (blocks, transactions with proofs, event replay) —
  always available;
* the MongoDB views (lists and searches) — 503 ``views_unavailable`` while
  MongoDB is down; the projector catches up when it returns.

What a domain restricts (its read policy: ``services.gateway.read_policy``, e.g. a
privacy subject's records, grants and access log) every route here serves only to the
caller its policy names, by the key that signed the request (RFC 9421; optional on
these routes): a single item to anyone else is a 404 as if it did not exist
(``state_restricted``, ``tx_not_found``), lists and replays leave it out, a block's
body carries only its Merkle leaf hash. Such an answer is ``Cache-Control: private,
no-store``.

Handlers parse and map; chain logic stays in the ledger, queries in
``services.gateway.views``. Every route is declared once as an
:class:`~services.gateway.openapi.Endpoint`; ``/openapi.json`` is generated
from the same declarations.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from services.gateway import models as m
from services.gateway.chain import Chain
from services.gateway.event_schemas import EventCatalogue
from services.gateway.openapi import Endpoint
from services.gateway.policies import PRINCIPAL, expect_handler, principal_of
from services.gateway.problems import Problem, parse_json_body
from services.gateway.read_policy import (
    EventItem,
    Reader,
    ReadGuard,
    StateItem,
    TransactionItem,
)
from services.gateway.relay import Relay
from services.gateway.settings import GatewayOptions
from services.gateway.views.access import ViewsAccess
from services.ledger.core import consortium, merkle
from services.ledger.core.blocks import Block, tx_leaf_hashes
from services.ledger.core.certificate import CommitCertificate
from services.ledger.core.contract import Event
from services.ledger.core.errors import EncodingError, LedgerError, TransactionFailed
from services.ledger.core.replica import Commit, TxRejected
from services.ledger.core.state import state_key
from services.ledger.core.transactions import Transaction

JSON = "application/json"
VALIDATOR_HEALTHY_MS = 10_000
#: an answer shaped by who signed the request is for that caller only
PRIVATE = {"Cache-Control": "private, no-store"}
_LISTED = ("Items of a kind or type a domain restricts (its read policy) are listed only "
           "to their parties, by the key that signed the request (RFC 9421): a page may "
           "then be shorter than limit, even empty, with a next_cursor to follow.")
#: query parameters that are cursors: a malformed one is a ``bad_cursor`` like an unknown
_CURSOR_PARAMS = frozenset({"cursor", "after"})


def _reject_float(text: str) -> Any:
    raise Problem(400, "bad_encoding", f"floating-point number {text} is not allowed")


def parse_query(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        code = "bad_cursor" if where in _CURSOR_PARAMS else "bad_query"
        raise Problem(400, code, f"{where}: {first['msg']}") from exc


def json_response(payload: Any, status: int = 200, *,
                  headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=json.dumps(payload, separators=(",", ":")).encode(),
                        status=status, content_type=JSON, headers=headers)


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
    """The platform's own routes, and what domain plugins use of the gateway (the chain,
    the relay, the views, the commit waiters)."""

    def __init__(self, chain: Chain, options: GatewayOptions, *, catalogue: EventCatalogue,
                 relay: Relay | None = None, views: ViewsAccess | None = None,
                 reads: ReadGuard | None = None) -> None:
        self.chain = chain
        self.options = options
        #: the domains' read policies (empty: everything is public)
        self.reads = reads or ReadGuard()
        self.relay = relay  # None: this gateway has no relay key
        self.views = views or ViewsAccess()
        self.waiters = CommitWaiters(options.waiters_max)
        #: every partner event type (the composition's), for replayed CloudEvents
        self.catalogue = catalogue
        chain.on_commit(self.waiters.on_commit)
        chain.on_rejected(self.waiters.on_rejected)

    def endpoints(self) -> list[Endpoint]:
        E = Endpoint  # noqa: N806 - a short alias keeps the table readable
        page = (400, 422, 429, 503)
        return [
            E("GET", "/v1/status", self.get_status, "Chain status", "chain",
              {200: m.Status}),
            E("POST", "/v1/transactions", self.post_transactions,
              "Submit signed transactions (one, or a batch)", "transactions",
              {200: (m.TxResult, m.TxResults), 202: (m.TxResult, m.TxResults)},
              query=m.SubmitQuery, body=(m.SignedTransaction, m.TransactionBatch),
              errors=(400, 401, 403, 409, 413, 415, 422, 429, 503),
              problems={422: (m.BatchRejected, "Refused: the transaction (its code says "
                              "why), or every transaction of a batch (batch_rejected, "
                              "each one's result in transactions)")},
              description="A single transaction answers a single TxResult object; a batch "
                          "answers {transactions: [...]}, one result per item in order. "
                          "200: every transaction is committed (wait=commit); 202: some "
                          "were taken and are pending or committed, some maybe refused "
                          "(each item's status says which, a refused one with its code). "
                          "A batch with every item refused answers 422 "
                          "problem batch_rejected, whose transactions member carries the "
                          "same per-item results. A single refused transaction answers "
                          "the problem of its own code. With wait=commit the answer "
                          "comes after commit, with height, inclusion proof and the "
                          "block's commit certificate."),
            E("GET", "/v1/transactions", self.list_transactions, "Search transactions",
              "transactions", {200: m.TransactionPage}, query=m.TransactionsQuery,
              errors=page, signed_optional=True, description=_LISTED),
            E("GET", "/v1/transactions/{tx_hash}", self.get_transaction,
              "A committed transaction with its inclusion proof and certificate",
              "transactions", {200: m.TransactionWithProof},
              path_params={"tx_hash": {"type": "string", "pattern": m.HEX32}},
              errors=(400, 404, 429, 503), signed_optional=True,
              problems={404: (m.ProblemDetails, "tx_not_found: no committed transaction "
                              "with this hash, or one of a restricted kind the caller "
                              "is not a party of (the same answer)")}),
            E("GET", "/v1/blocks", self.list_blocks, "Recent blocks", "explorer",
              {200: m.BlockPage}, query=m.BlocksQuery, errors=page),
            E("GET", "/v1/blocks/{height}", self.get_block,
              "A block with its commit certificate", "explorer", {200: m.CertifiedBlock},
              path_params={"height": {"type": "string", "pattern": m.HEIGHT_OR_LATEST,
                                      "description": "a height, or latest"}},
              errors=(400, 404, 429), signed_optional=True,
              description="A transaction of a kind a domain restricts (its read policy) "
                          "that the caller is not a party of — or any, unsigned — is "
                          "shown as {redacted: true, leaf}: its Merkle leaf hash, so the "
                          "header's tx_root and tx_count still check out. Its parties "
                          "read the whole block signed (RFC 9421)."),
            E("GET", "/v1/events", self.list_events, "Search events", "events",
              {200: m.EventPage}, query=m.EventsQuery, errors=page, signed_optional=True,
              description=_LISTED),
            E("GET", "/v1/events/replay", self.replay_events,
              "Replay partner events (CloudEvents) from any height, from the chain",
              "events", {200: m.CloudEventsPage}, query=m.ReplayQuery,
              errors=(400, 422, 429), signed_optional=True,
              description=_LISTED + " A replay page then looks at a bounded number of "
                          "events and may be short, even empty, before the tip; its "
                          "next_cursor (<height>/<event id>, or <height>/end after a "
                          "height whose last events were not yours) continues after "
                          "them."),
            E("GET", "/v1/state/{key}", self.get_state,
              "A state value (or its absence) with a proof against a certified block",
              "explorer", {200: m.StateValue},
              path_params={"key": {"type": "string", "pattern": m.STATE_KEY,
                                   "description": "1..512 ASCII characters; a / in the "
                                                  "key may be sent as is or as %2F"}},
              errors=(400, 404, 429, 503), signed_optional=True,
              problems={404: (m.ProblemDetails, "No such route: an empty key "
                              "(/v1/state/). An absent value is a 200 with value null. "
                              "state_restricted: a key a domain restricts (its read "
                              "policy) asked by a caller it does not name, present or "
                              "not: sign the request (RFC 9421) with a key of its "
                              "parties")}),
            E("GET", "/v1/validators", self.get_validators,
              "Validators and their health as the gateway sees them", "explorer",
              {200: m.ValidatorsResponse}, errors=(429,)),
            E("GET", "/v1/validators/sets/{validators_hash}", self.get_validator_set,
              "A validator set that certified blocks, and the first block it certified "
              "(how a client follows validator-set changes from its genesis)", "explorer",
              {200: m.ValidatorSetRecord},
              path_params={"validators_hash": {"type": "string", "pattern": m.HEX32}},
              errors=(400, 404, 429)),
            E("GET", "/v1/keys/{key_id}", self.get_key,
              "A key's registration and nonces", "identity", {200: m.KeyInfo},
              path_params={"key_id": {"type": "string", "pattern": m.KEY_ID}},
              errors=(400, 404, 429)),
            E("GET", "/v1/orgs/{org_id}", self.get_org, "An organisation", "identity",
              {200: m.Organisation},
              path_params={"org_id": {"type": "string", "pattern": m.ORG_ID}},
              errors=(400, 404, 429)),
            E("GET", "/v1/me", self.get_me, "Who the signed caller is (private)",
              "identity", {200: m.Me}, signed=True, errors=(400, 401, 429)),
        ]

    def routes(self, endpoints: Sequence[Endpoint] | None = None) -> list[web.RouteDef]:
        """aiohttp routes of ``endpoints`` (default: the platform's own)."""
        expect = expect_handler(self.options.body_bytes_max, self.options.content_codings_max)
        out = []
        for e in self.endpoints() if endpoints is None else endpoints:
            path = e.path.replace("{key}", "{key:.+}")
            out.append(web.route(e.method, path, e.handler, expect_handler=expect))
        return out

    # --- transactions --------------------------------------------------------------------

    async def post_transactions(self, request: web.Request) -> web.Response:
        if request.content_type != JSON:
            raise Problem(415, "unsupported_media_type", "send application/json")
        query = parse_query(request, m.SubmitQuery)
        body = parse_json_body(await request.read(), parse_float=_reject_float)
        batch = isinstance(body, dict) and set(body) == {"transactions"}
        items = body["transactions"] if batch else [body]
        if not isinstance(items, list) or not items:
            raise Problem(422, "bad_payload", "transactions must be a non-empty array")
        if len(items) > self.options.batch_txs_max:
            raise Problem(413, "batch_too_large",
                          f"at most {self.options.batch_txs_max} transactions per request")
        if query.wait == "commit" and self.waiters.count + len(items) > self.waiters.limit:
            # Refuse before submitting anything: a 503 must mean "nothing was taken".
            raise Problem(503, "too_many_waiters", "too many clients are waiting",
                          retry_after_s=1)
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
                failure = self.chain.dry_run(tx, int(time.time() * 1000))
                if failure is not None:
                    raise TransactionFailed(failure.message, code=failure.code)
                self.chain.submit(tx)
            except LedgerError as exc:
                if not batch:
                    raise
                results.append({"tx_hash": tx.hash.hex(), "status": "rejected",
                                **_problem_body(exc)})
                continue
            accepted.append(tx)
            results.append({"tx_hash": tx.hash.hex(), "status": "pending"})
        if query.wait == "commit" and accepted:
            receipts = await self._wait_commit(accepted)
            by_hash = {r["tx_hash"]: r for r in receipts}
            results = [by_hash.get(r["tx_hash"], r) if r["status"] == "pending" else r
                       for r in results]
        if all(r["status"] == "rejected" for r in results):
            if not batch:
                raise Problem(422, str(results[0]["code"]), str(results[0]["detail"]))
            # Nothing was taken: "Accepted" would be a lie (the per-item codes say why).
            raise Problem(422, "batch_rejected", f"all {len(results)} transactions of the "
                          "batch were refused", transactions=results)
        status = 200 if all(r["status"] == "committed" for r in results) else 202
        return json_response({"transactions": results} if batch else results[0], status)

    async def _wait_commit(self, txs: Sequence[Transaction]) -> list[dict[str, Any]]:
        futures: list[tuple[Transaction, asyncio.Future[Receipt | TxRejected]]] = []
        timeout = self.options.wait_commit_ms / 1000
        try:
            for tx in txs:
                futures.append((tx, self.waiters.wait(tx.hash)))
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

    async def list_transactions(self, request: web.Request) -> web.Response:
        q = parse_query(request, m.TransactionsQuery)
        from services.gateway.views import queries

        reader = self._reader(request)
        visible = None if not self.reads else (
            lambda doc: reader.may_read(TransactionItem(
                str(doc["kind"]), str(doc["sender"]), doc.get("payload") or {},
                str(doc["hash"]))))
        page = await self._views(queries.list_transactions(
            self._db(), sender=q.sender, kind=q.kind, contract=q.contract, height=q.height,
            cursor=q.cursor, limit=q.limit, visible=visible,
            scan_max=self.options.read_scan_items_max))
        items = [{"tx_hash": item.pop("hash"), **item} for item in page["items"]]
        return json_response({"items": items, "next_cursor": page["next_cursor"]},
                             headers=_private(reader))

    async def get_transaction(self, request: web.Request) -> web.Response:
        tx_hash = request.match_info["tx_hash"]
        if not _is_hex32(tx_hash):
            raise Problem(400, "bad_tx_hash", "a transaction hash is 64 lowercase hex digits")
        from services.gateway.views import queries

        record = await self._views(queries.get_transaction(self._db(), tx_hash))
        if record is None:
            raise _tx_not_found(tx_hash)
        stored = self.chain.store.block(int(record["height"]))
        if stored is None:
            raise Problem(503, "views_ahead", "the views know a block this replica lacks")
        block, index = stored.block, int(record["index"])
        tx = block.txs[index]
        if tx.hash.hex() != tx_hash:
            raise Problem(503, "views_inconsistent", "the views disagree with the chain")
        reader = self._reader(request)
        if not reader.may_read(_tx_item(tx)):
            raise _tx_not_found(tx_hash)  # the answer for a hash never committed
        proof = merkle.inclusion_proof(tx_leaf_hashes(block.txs), index)
        return json_response({
            "transaction": tx.to_wire(), "tx_hash": tx_hash, "height": block.height,
            "index": index, "block_hash": block.hash.hex(), "header": block.header.to_wire(),
            "proof": merkle.InclusionProof(index, len(block.txs), proof).to_wire(),
            "certificate": stored.certificate.to_wire(),
        }, headers=_private(reader))

    # --- blocks and events -----------------------------------------------------------------

    async def list_blocks(self, request: web.Request) -> web.Response:
        q = parse_query(request, m.BlocksQuery)
        from services.gateway.views import queries

        return json_response(await self._views(queries.list_blocks(
            self._db(), cursor=q.cursor, limit=q.limit)))

    async def get_block(self, request: web.Request) -> web.Response:
        tip = self.chain.tip
        raw_height = request.match_info["height"]
        if raw_height == "latest":
            height = tip.height
        elif raw_height.isascii() and raw_height.isdigit() and len(raw_height) <= 15:
            height = int(raw_height)
        else:
            raise Problem(400, "bad_height", "height must be a positive integer or 'latest'")
        stored = self.chain.store.block_bytes(height) if height > 0 else None
        if stored is None:
            raise Problem(404, "block_not_found", f"no block at height {height} "
                          f"(the chain is at {tip.height})")
        block, certificate = stored
        reader = self._reader(request)
        block = self._block_as_seen(block, reader)
        body = b'{"block":' + block + b',"certificate":' + certificate + b"}"
        return web.Response(body=body, content_type=JSON, headers=_private(reader))

    def _block_as_seen(self, raw: bytes, reader: Reader) -> bytes:
        """The block's JSON with every transaction ``reader`` may not read replaced by
        ``{"redacted": true, "leaf": ...}`` (``raw`` itself when none is)."""
        if not self.reads or not any(b'"' + prefix.encode() in raw
                                     for prefix in self.reads.kind_prefixes()):
            return raw  # no JSON string of it starts like a restricted kind
        wire = json.loads(raw)
        txs = wire.get("txs") or []
        if not any(self.reads.restricts_kind(str(t["body"]["kind"])) for t in txs):
            return raw
        shown = []
        for t in txs:
            if self.reads.restricts_kind(str(t["body"]["kind"])):
                tx = Transaction.from_wire(t)
                if not reader.may_read(_tx_item(tx)):
                    shown.append({"redacted": True, "leaf": tx.leaf.hex()})
                    continue
            shown.append(t)
        return json.dumps({**wire, "txs": shown}, separators=(",", ":")).encode()

    async def list_events(self, request: web.Request) -> web.Response:
        q = parse_query(request, m.EventsQuery)
        from services.gateway.views import queries

        reader = self._reader(request)
        visible = None if not self.reads else (
            lambda doc: reader.may_read(EventItem(str(doc["type"]),
                                                  doc.get("attributes") or {})))
        return json_response(await self._views(queries.list_events(
            self._db(), type=q.type, domain=q.domain, tx_hash=q.tx_hash,
            from_height=q.from_height, cursor=q.cursor, limit=q.limit, visible=visible,
            scan_max=self.options.read_scan_items_max)), headers=_private(reader))

    async def replay_events(self, request: web.Request) -> web.Response:
        q = parse_query(request, m.ReplayQuery)
        from services.gateway.events import replay

        reader = self._reader(request)

        def visible(event: Event) -> bool:
            return reader.may_read(EventItem(event.type, event.attributes))

        try:
            items, cursor = replay(self.chain.store, from_height=q.from_height,
                                   after=q.after, limit=q.limit,
                                   chain_id=self.chain.chain_id, catalogue=self.catalogue,
                                   visible=visible if self.reads else None,
                                   scan_max=self.options.read_scan_items_max)
        except ValueError as exc:
            raise Problem(400, "bad_cursor", str(exc)) from exc
        return json_response({"items": items, "next_cursor": cursor},
                             headers=_private(reader))

    # --- state, validators, identities --------------------------------------------------

    async def get_state(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        try:
            raw_key = state_key(key)
        except ValueError as exc:
            raise Problem(400, "bad_state_key", str(exc)) from exc
        tip = self.chain.tip
        if tip.height == 0 or tip.certificate is None:
            raise Problem(503, "no_blocks_yet", "no block has been committed yet")
        raw = tip.state.get(raw_key)
        value = None if raw is None else json.loads(raw)
        reader = self._reader(request)
        if not reader.may_read(StateItem(key, value)):
            # Present or absent alike: the answer must not tell which.
            raise Problem(404, "state_restricted", f"{key} is restricted to its parties: "
                          "sign the request (RFC 9421) with a key it names")
        stored = self.chain.store.block(tip.height)
        if stored is None:
            raise Problem(503, "store_behind", "the store has not caught up with the tip")
        return json_response({
            "key": key, "value": value,
            "height": tip.height, "header": stored.block.header.to_wire(),
            "certificate": tip.certificate.to_wire(),
            "proof": tip.state.prove(raw_key).to_wire(),
        }, headers=_private(reader))

    async def get_validator_set(self, request: web.Request) -> web.Response:
        raw = request.match_info["validators_hash"]
        if not _is_hex32(raw):
            raise Problem(400, "bad_hash", "validators_hash must be 64 lowercase hex digits")
        found = self.chain.store.validator_set(bytes.fromhex(raw))
        if found is None:
            raise Problem(404, "validator_set_not_found",
                          f"no stored block was certified by validator set {raw[:16]}…")
        first_height, vset = found
        return json_response({"validators_hash": raw, "first_height": first_height,
                              "validators": vset.to_wire()})

    async def get_validators(self, request: web.Request) -> web.Response:
        vset = self.chain.tip.next_validators
        health = self.chain.health()
        now = int(time.time() * 1000)
        items = []
        for v in vset.validators:
            last = health.peer_last_seen_ms.get(v.key_id)
            items.append({"key_id": v.key_id, "org": v.org, "power": v.power,
                          "last_seen_ms": last,
                          "healthy": last is not None and now - last <= VALIDATOR_HEALTHY_MS})
        return json_response({"height": health.deciding_height,
                              "validators_hash": vset.hash.hex(),
                              "quorum_power": vset.quorum_power, "validators": items})

    def _key_info(self, key_id: str) -> dict[str, Any]:
        record = consortium.key_record(self.chain.view(), key_id)
        if record is None:
            raise Problem(404, "key_not_found", f"no key {key_id} on the chain")
        nonces = self.chain.nonces(key_id)
        return {**record, "next_nonce": nonces.committed, "next_usable_nonce": nonces.usable,
                "pending": nonces.pending, "height": self.chain.tip.height}

    async def get_key(self, request: web.Request) -> web.Response:
        key_id = request.match_info["key_id"]
        if len(key_id) != 32 or not _is_hex(key_id):
            raise Problem(400, "bad_key_id", "a key id is 32 lowercase hex digits")
        return json_response(self._key_info(key_id))

    async def get_org(self, request: web.Request) -> web.Response:
        org_id = request.match_info["org_id"]
        if not 0 < len(org_id) <= 64 or not consortium.ORG_ID_CHARS.issuperset(org_id):
            raise Problem(400, "bad_org_id", "an organisation id is 1..64 of [a-z0-9-_.]")
        record = consortium.org_record(self.chain.view(), org_id)
        if record is None:
            raise Problem(404, "org_not_found", f"no organisation {org_id!r}")
        return json_response(record)

    async def get_me(self, request: web.Request) -> web.Response:
        key = self._key_info(principal_of(request))
        org = consortium.org_record(self.chain.view(), key["org"])
        return json_response({"key": key, "organisation": org})

    async def get_status(self, request: web.Request) -> web.Response:
        chain = self.chain
        tip = chain.tip
        health = chain.health()
        return json_response({
            "chain_id": chain.chain_id,
            "genesis_hash": chain.genesis.hash.hex(),
            "height": tip.height,
            "block_hash": tip.block_hash.hex(),
            "time": tip.time,
            "validators": tip.next_validators.to_wire(),
            "mempool_txs": health.mempool_txs,
            "peers_seen": health.peers_seen,
            "server_time": int(time.time() * 1000),
        })

    # --- who reads ----------------------------------------------------------------------

    def _reader(self, request: web.Request) -> Reader:
        """The caller (the key of a verified signature, or None) as the domains' read
        policies see it, at the tip."""
        tip = self.chain.tip
        return self.reads.reader(request.get(PRINCIPAL), self.chain.view(), tip.time)

    # --- views ------------------------------------------------------------------------

    def views_db(self) -> Any:
        """The views database, or a 503 problem while it is unavailable (for domains)."""
        return self._db()

    async def views_call(self, call: Any) -> Any:
        return await self._views(call)

    def _db(self) -> Any:
        db = self.views.current()
        if db is None:
            raise Problem(503, "views_unavailable", "the indexed views are not available "
                          "now; blocks, proofs and state are", retry_after_s=5)
        return db

    async def _views(self, call: Any) -> Any:
        try:
            return await call
        except ValueError as exc:
            raise Problem(400, "bad_cursor", str(exc)) from exc
        except Exception as exc:
            if type(exc).__module__.startswith("pymongo"):
                raise Problem(503, "views_unavailable", f"MongoDB: {type(exc).__name__}",
                              retry_after_s=5) from exc
            raise


def _tx_item(tx: Transaction) -> TransactionItem:
    return TransactionItem(tx.kind, tx.sender, tx.payload, tx.hash.hex())


def _tx_not_found(tx_hash: str) -> Problem:
    return Problem(404, "tx_not_found", f"no committed transaction {tx_hash} you may read "
                   "(one of a restricted kind is shown to its parties only: sign the "
                   "request)")


def _private(reader: Reader) -> dict[str, str] | None:
    """Cache headers of an answer: private when it holds what only this caller reads."""
    return PRIVATE if reader.showed_restricted else None


def _problem_body(exc: LedgerError) -> dict[str, Any]:
    from services.gateway.problems import problem_from

    problem = problem_from(exc)
    return {"code": problem.code, "detail": problem.detail}


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _is_hex32(text: str) -> bool:
    return len(text) == 64 and _is_hex(text)
