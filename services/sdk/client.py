"""The ecosphere Python SDK: the one library tests, the CLI and benchmarks use to talk
to a gateway.

:class:`Client` is synchronous (standard library HTTP only) and
:class:`AsyncClient` asynchronous (aiohttp); both build requests and read
answers with the same functions, so they cannot drift. A client holds an
optional signing key (for transactions and signed reads) and an optional
pinned genesis (to verify proofs offline with :mod:`services.sdk.proofs`).

Errors from the gateway are raised as :class:`ApiError` carrying the
problem's ``status``, stable ``code`` and ``detail``.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.genesis import Genesis
from services.ledger.core.transactions import Transaction, sign_transaction
from services.ledger.core.validators import ValidatorSet
from services.sdk import proofs
from services.sdk.httpsig import sign_request

JSON = "application/json"
TIMEOUT_S = 60.0


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None


def _decode(status: int, content_type: str, raw: bytes) -> Any:
    body: Any = raw.decode(errors="replace")
    if "json" in content_type:
        body = json.loads(raw) if raw else None
    if status >= 400:
        if isinstance(body, dict):
            raise ApiError(status, str(body.get("code", f"http_{status}")),
                           str(body.get("detail", "")), body)
        raise ApiError(status, f"http_{status}", str(body)[:200], body)
    return body


class _Base:
    def __init__(self, base_url: str, *, key: PrivateKey | None = None,
                 genesis: Genesis | None = None, timeout_s: float = TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.genesis = genesis
        self.timeout_s = timeout_s
        self._nonce: int | None = None
        self._nonce_lock = threading.Lock()
        self.trust = None if genesis is None else proofs.ValidatorTrust(genesis)

    @property
    def trusted(self) -> ValidatorSet:
        """The genesis validator set (see :meth:`Client.trusted_for` for later sets)."""
        if self.genesis is None:
            raise proofs.UntrustedValidators("pin a genesis to verify proofs offline")
        return self.genesis.validators

    def _request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                 body: Any = None, signed: bool = False,
                 headers: Mapping[str, str] | None = None) -> Request:
        url = self.base_url + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urlencode(params)
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        hdrs = {"Accept": "application/json", **(headers or {})}
        if data is not None:
            hdrs["Content-Type"] = JSON
        if signed:
            if self.key is None:
                raise ValueError("this call needs a signing key")
            hdrs.update(sign_request(self.key, method=method, url=url, headers=hdrs,
                                     body=data, now=int(time.time()),
                                     nonce=os.urandom(12).hex()))
        return Request(method, url, hdrs, data)

    def build(self, kind: str, payload: Mapping[str, Any], *, nonce: int,
              chain_id: str, created_at: int | None = None) -> Transaction:
        if self.key is None:
            raise ValueError("building a transaction needs a signing key")
        return sign_transaction(self.key, chain_id=chain_id, kind=kind, nonce=nonce,
                                payload=payload,
                                created_at=created_at or int(time.time() * 1000))


class Client(_Base):
    """Synchronous client (standard library only)."""

    def _send(self, req: Request) -> Any:
        r = urllib.request.Request(req.url, data=req.body, method=req.method,
                                   headers=req.headers)
        try:
            with urllib.request.urlopen(r, timeout=self.timeout_s) as resp:
                return _decode(resp.status, resp.headers.get("Content-Type", ""), resp.read())
        except urllib.error.HTTPError as exc:
            return _decode(exc.code, exc.headers.get("Content-Type", ""), exc.read())

    @property
    def _chain_id(self) -> str | None:
        return None if self.genesis is None else self.genesis.chain_id

    def trusted_for(self, result: Mapping[str, Any]) -> ValidatorSet:
        """The validator set that certified ``result``'s header, trusted after the
        transitions from the genesis set are checked (:class:`proofs.ValidatorTrust`)."""
        if self.trust is None:
            raise proofs.UntrustedValidators("pin a genesis to verify proofs offline")
        return self.trust.follow(proofs.signing_set(result), self._found_set,
                                 self._found_block)

    def _found_set(self, validators_hash: str) -> dict[str, Any] | None:
        try:
            return dict(self.call("GET", f"/v1/validators/sets/{validators_hash}"))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _found_block(self, height: int) -> dict[str, Any] | None:
        try:
            return self.block(height)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def call(self, method: str, path: str, **kw: Any) -> Any:
        return self._send(self._request(method, path, **kw))

    # --- chain -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return dict(self.call("GET", "/v1/status"))

    def block(self, height: int | str = "latest") -> dict[str, Any]:
        return dict(self.call("GET", f"/v1/blocks/{height}"))

    def key_info(self, key_id: str | None = None) -> dict[str, Any]:
        key_id = key_id or (self.key.key_id if self.key else "")
        return dict(self.call("GET", f"/v1/keys/{key_id}"))

    def me(self) -> dict[str, Any]:
        return dict(self.call("GET", "/v1/me", signed=True))

    def validators(self) -> dict[str, Any]:
        return dict(self.call("GET", "/v1/validators"))

    # --- transactions --------------------------------------------------------------------

    def next_nonce(self) -> int:
        """The next nonce for this key (one client object may be shared by threads)."""
        with self._nonce_lock:
            if self._nonce is None:
                self._nonce = int(self.key_info()["next_usable_nonce"])
            nonce = self._nonce
            self._nonce += 1
            return nonce

    def resync_nonce(self) -> None:
        with self._nonce_lock:
            self._nonce = None

    def tx(self, kind: str, payload: Mapping[str, Any],
           nonce: int | None = None) -> Transaction:
        chain_id = self.genesis.chain_id if self.genesis else self.status()["chain_id"]
        return self.build(kind, payload, nonce=self.next_nonce() if nonce is None else nonce,
                          chain_id=chain_id)

    def submit(self, tx: Transaction, *, wait: bool = True,
               idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        try:
            return dict(self.call("POST", "/v1/transactions", body=tx.to_wire(),
                                  query={"wait": "commit" if wait else None},
                                  headers=headers))
        except ApiError:
            # Refused (whatever the reason) or unknown: the nonce was not used, or may
            # not have been; ask the chain again rather than leave a gap that every
            # later transaction of this key would wait behind.
            self.resync_nonce()
            raise

    def submit_batch(self, txs: Sequence[Transaction], *,
                     wait: bool = True) -> list[dict[str, Any]]:
        body = {"transactions": [t.to_wire() for t in txs]}
        try:
            answer = self.call("POST", "/v1/transactions", body=body,
                               query={"wait": "commit" if wait else None})
        except ApiError:
            self.resync_nonce()
            raise
        results = list(answer["transactions"])
        if any(r.get("status") == "rejected" for r in results):
            self.resync_nonce()  # a refused item leaves its nonce unused
        return results

    def send(self, kind: str, payload: Mapping[str, Any], *,
             wait: bool = True, verify: bool = False) -> dict[str, Any]:
        """Build, sign, submit; with ``verify`` check the receipt's proof offline."""
        tx = self.tx(kind, payload)
        result = self.submit(tx, wait=wait)
        if verify and result.get("status") == "committed":
            proofs.verify_transaction(result, self.trusted_for(result), tx,
                                      expected_hash=tx.hash.hex(), chain_id=self._chain_id)
        return result

    def transaction(self, tx_hash: str, *, verify: bool = False,
                    signed: bool = False) -> dict[str, Any]:
        """A committed transaction; ``signed``: read as this client's key (a kind a
        domain restricts, e.g. ``privacy.*``, is shown to its parties only)."""
        result = dict(self.call("GET", f"/v1/transactions/{tx_hash}", signed=signed))
        if verify:
            proofs.verify_transaction(result, self.trusted_for(result), result["transaction"],
                                      expected_hash=tx_hash, chain_id=self._chain_id)
        return result

    def transactions(self, **query: Any) -> dict[str, Any]:
        return dict(self.call("GET", "/v1/transactions", query=query))

    # --- state and events ---------------------------------------------------------------

    def state(self, key: str, *, verify: bool = False, min_height: int | None = None,
              signed: bool = False) -> Any:
        """A state value; with ``verify``, proven against a certified block of the pinned
        chain (at least ``min_height`` when given) for exactly ``key``. ``signed``: read
        as this client's key (a key a domain restricts, e.g. ``privacy/record/...``, is
        answered to its parties only: 404 ``state_restricted`` otherwise)."""
        result = dict(self.call("GET", f"/v1/state/{quote(key, safe='/')}", signed=signed))
        if verify:
            return proofs.verify_state_value(result, self.trusted_for(result),
                                             expected_key=key, chain_id=self._chain_id,
                                             min_height=min_height)
        return result["value"]

    def events(self, *, signed: bool = False, **query: Any) -> dict[str, Any]:
        return dict(self.call("GET", "/v1/events", query=query, signed=signed))

    def replay(self, *, from_height: int = 1, after: str | None = None,
               limit: int = 100, signed: bool = False) -> dict[str, Any]:
        return dict(self.call("GET", "/v1/events/replay",
                              query={"from_height": from_height, "after": after,
                                     "limit": limit}, signed=signed))

    def follow(self, *, from_height: int = 1, poll_s: float = 1.0,
               stop: Any = None) -> Any:
        """Yield CloudEvents from ``from_height`` on, in order, waiting for new ones."""
        after: str | None = None
        limit = 100
        while stop is None or not stop():
            page = self.replay(from_height=from_height, after=after, limit=limit)
            yield from page["items"]
            after = page["next_cursor"] or after
            if len(page["items"]) < limit:  # at the tip: wait for new blocks
                time.sleep(poll_s)


class AsyncClient(_Base):
    """Asynchronous client (aiohttp) for high-rate use: benchmarks and services."""

    def __init__(self, base_url: str, **kw: Any) -> None:
        super().__init__(base_url, **kw)
        import aiohttp

        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            connector=aiohttp.TCPConnector(limit=0))

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call(self, method: str, path: str, *, raw_body: bytes | None = None,
                   **kw: Any) -> Any:
        req = self._request(method, path, **kw)
        body = raw_body if raw_body is not None else req.body
        headers = dict(req.headers)
        if raw_body is not None:
            headers["Content-Type"] = JSON
        async with self._session.request(req.method, req.url, data=body,
                                         headers=headers) as resp:
            return _decode(resp.status, resp.headers.get("Content-Type", ""),
                           await resp.read())

    async def status(self) -> dict[str, Any]:
        return dict(await self.call("GET", "/v1/status"))

    async def submit_wire(self, wire_txs: Sequence[bytes], *,
                          wait: bool = True) -> list[dict[str, Any]]:
        """Submit already-encoded transactions (``Transaction.wire_bytes``) as a batch."""
        body = b'{"transactions":[' + b",".join(wire_txs) + b"]}"
        answer = await self.call("POST", "/v1/transactions", raw_body=body,
                                 query={"wait": "commit" if wait else None})
        return list(answer["transactions"])
