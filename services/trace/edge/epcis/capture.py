"""EPCIS capture: validating a party's signed document, relaying it, following its job.

The capturing party signs its HTTP request with its own key. The gateway validates
the document (:func:`services.trace.epcis.validate_document`; 400 problem with the
EpcisError ``code`` and ``path``, nothing relayed), then relays the *exact* request —
method, the URL the client signed (the one the policies verified,
:func:`services.gateway.policies.signed_target_uri`), the signature fields and every
field the signature covers, and the raw body as text — in a ``trace.capture``
transaction signed by its relay key. The contract verifies the party's signature
over those bytes itself: the gateway can neither forge nor alter a capture.

Before relaying, the transaction goes through the chain's one dry run
(``Chain.dry_run``, judged as the relay's next transaction): a capture the chain
would refuse now is not sent; its job fails at once with the contract's code. A
capture naming an event that a still running capture names too is refused with 409
``capture_in_progress``. What the dry run cannot foresee fails at the proposer and
shows as ``expired`` once the transaction's time-to-live has passed.

**Jobs.** The capture ID is the relay transaction's hash (hex). Jobs live in a
bounded in-memory map (``JOBS_MAX``; the oldest finished ones are forgotten first, 503
``too_many_captures`` when all are running) fed by the gateway's ``CommitWaiters``.
After a restart, or for a job forgotten, a committed capture is answered from the
``transactions`` view (and the block's events from the store); one still in the
mempool answers ``running``. A running job whose transaction can no longer commit (its
time-to-live passed at block time) is failed as ``expired`` and its commit waiter freed
by :class:`CaptureSweeper`, a follower the gateway host runs: on every commit and every
``capture_sweep_interval_ms``, whether or not anybody asks about captures.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from services.gateway.api import Receipt
from services.gateway.follower import FollowerLimits, FollowerLoop
from services.gateway.policies import principal_of, signed_target_uri
from services.gateway.problems import Problem
from services.gateway.views.queries import get_transaction
from services.ledger.core.errors import LedgerError
from services.ledger.core.replica import TxRejected
from services.trace import epcis, epcis_values
from services.trace.edge.epcis.binding import (
    CAPTURE_EVENTS_MAX,
    CAPTURE_KIND,
    CAPTURE_MEDIA_TYPES,
    CAPTURE_OVERHEAD_BYTES,
    HEX32,
    JOBS_MAX,
    JSON,
    RELAYED_HEADER_BYTES_MAX,
    RELAYED_HEADERS_MAX,
    dumps,
    event_hashes,
    json_answer,
    ledger_problem,
    load_json,
    now_ms,
    validation_problem,
)

_HEX32_RE = re.compile(HEX32)
_COVERED_FIELD = re.compile(r'"([a-z0-9!#$%&\'*+.^_`|~-]+)"')
_SIGNATURE_FIELDS = ("Signature", "Signature-Input", "Content-Digest", "Content-Type")
#: how often running capture jobs are checked for expiry without a commit (the
#: settings' ``capture_sweep_interval_ms``)
SWEEP_INTERVAL_S = 1.0


@dataclass
class Job:
    capture_id: str
    created_at: int
    behaviour: str
    principal: str | None = None
    running: bool = True
    success: bool = False
    finished_at: int | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    events_captured: int | None = None
    height: int | None = None
    tx_hash: bytes | None = None
    expires_at: int | None = None  # block time after which the transaction cannot commit
    event_hashes: tuple[str, ...] = ()
    future: asyncio.Future[Receipt | TxRejected] | None = None

    def fail(self, code: str, detail: str, at: int) -> None:
        self.running, self.success, self.finished_at = False, False, at
        self.errors = [capture_error(code, detail, None)]

    def to_json(self) -> dict[str, Any]:
        return {
            "captureID": self.capture_id,
            "createdAt": epcis_values.format_time(self.created_at),
            "finishedAt": None if self.finished_at is None
            else epcis_values.format_time(self.finished_at),
            "running": self.running,
            "success": self.success,
            "captureErrorBehaviour": self.behaviour,
            "errors": self.errors,
            "eventsCaptured": self.events_captured,
            "txHash": None if self.tx_hash is None else self.tx_hash.hex(),
            "height": self.height,
        }


def capture_error(code: str, detail: str, position: int | None) -> dict[str, Any]:
    return {"type": f"/problems/{code}", "code": code, "detail": detail[:512],
            "position": position}


def succeeded(job: Job) -> bool:
    """A relayed capture's transaction always commits (its outcome is in its events):
    the capture succeeded if events were recorded and, all-or-nothing (rollback), none
    was refused."""
    if not job.events_captured:
        return False
    return job.behaviour == "proceed" or not job.errors


def outcome(events: Sequence[Any], tx_index: int) -> tuple[int, list[dict[str, Any]]]:
    """(events captured, per-event errors) of one capture transaction's events."""
    captured = 0
    errors: list[dict[str, Any]] = []
    for event in events:
        if event.tx_index != tx_index:
            continue
        if event.type == "trace.event.captured":
            captured += 1
        elif event.type == "trace.capture.rejected":
            a = event.attributes
            errors.append(capture_error(str(a.get("code", "rejected")), str(a.get("reason", "")),
                                 a.get("position")))
    return captured, errors


class CaptureDesk:
    """The capture endpoints and their jobs (``host``: the gateway's ``GatewayApi``)."""

    def __init__(self, host: Any, *, jobs_max: int = JOBS_MAX,
                 sweep_interval_s: float = SWEEP_INTERVAL_S) -> None:
        self.host = host
        self.jobs_max = jobs_max
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._pending_events: dict[str, str] = {}  # event hash -> running capture id
        self.sweeper = CaptureSweeper(self, interval_s=sweep_interval_s)

    def capture_size_limit(self) -> int:
        """Bytes of a capture body the chain can carry in one transaction."""
        return max(0, int(self.host.chain.tip.params.tx_bytes_max)
                   - CAPTURE_OVERHEAD_BYTES)

    # --- capture ----------------------------------------------------------------------

    async def post_capture(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        text = await self._capture_body(request)
        behaviour = self._behaviour(request)
        document = load_json(text)
        try:
            events = epcis.validate_document(document)
        except epcis_values.EpcisError as exc:
            raise validation_problem(exc) from exc
        if not events:
            raise Problem(400, "empty_capture", "epcisBody.eventList holds no event",
                          epcisException="ValidationException")
        if len(events) > CAPTURE_EVENTS_MAX:
            raise Problem(413, "capture_limit_exceeded",
                          f"at most {CAPTURE_EVENTS_MAX} events per capture "
                          f"(GS1-EPCIS-Capture-Limit)",
                          epcisException="CaptureLimitExceededException")
        hashes = event_hashes(events)
        job = self.relay_capture(self._relayed_request(request, text), behaviour,
                                 event_hashes=hashes, principal=principal)
        return self._accepted(job)

    async def post_event(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        text = await self._capture_body(request)
        behaviour = self._behaviour(request)
        try:
            event = epcis.validate_event(load_json(text))
        except epcis_values.EpcisError as exc:
            raise validation_problem(exc) from exc
        job = self.relay_capture(self._relayed_request(request, text), behaviour,
                                 event_hashes=event_hashes([event]), principal=principal)
        return self._accepted(job)

    async def _capture_body(self, request: web.Request) -> str:
        if request.content_type not in CAPTURE_MEDIA_TYPES:
            raise Problem(415, "unsupported_media_type",
                          "send application/json or application/ld+json")
        raw = await request.read()
        limit = self.capture_size_limit()
        if len(raw) > limit:
            raise Problem(413, "capture_too_large",
                          f"a capture is at most {limit} bytes "
                          f"(GS1-EPCIS-Capture-File-Size-Limit)",
                          epcisException="CaptureLimitExceededException")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Problem(400, "bad_encoding", "the body is not UTF-8") from exc

    def _behaviour(self, request: web.Request) -> str:
        value = request.headers.get("GS1-Capture-Error-Behaviour", "rollback").strip()
        if value.lower() not in ("rollback", "proceed"):
            raise Problem(400, "bad_capture_error_behaviour",
                          "GS1-Capture-Error-Behaviour is rollback or proceed")
        return value.lower()

    def _relayed_request(self, request: web.Request, body: str) -> dict[str, Any]:
        """The request as the party signed it: the signature fields and every field the
        signature covers, with their values combined as RFC 9421 does."""
        names = {n.lower() for n in _SIGNATURE_FIELDS}
        names.update(n for n in _COVERED_FIELD.findall(
            ", ".join(request.headers.getall("Signature-Input", []))) if n[0] != "@")
        headers: dict[str, str] = {}
        for name in sorted(names):
            values = request.headers.getall(name, [])
            if values:
                headers[name] = ", ".join(values)
        if len(headers) > RELAYED_HEADERS_MAX or sum(
                len(k) + len(v) for k, v in headers.items()) > RELAYED_HEADER_BYTES_MAX:
            raise Problem(400, "headers_too_large", "the signature covers too many or too "
                          "long header fields")
        return {"method": request.method, "url": signed_target_uri(request),
                "headers": headers, "body": body}

    def _accepted(self, job: Job) -> web.Response:
        location = f"/epcis/capture/{job.capture_id}"
        body = {"captureID": job.capture_id, "location": location, "running": job.running,
                "success": job.success}
        return web.Response(status=202, body=dumps(body), content_type=JSON,
                            headers={"Location": location})

    def relay_capture(self, request: Mapping[str, Any], behaviour: str, *,
                      event_hashes: Sequence[str] = (), principal: str | None = None) -> Job:
        """Relay a signed capture request to the chain; returns its job.

        The transaction is first executed against the replica's tip: a capture the chain
        would refuse is not sent, its job fails at once with the contract's code.
        """
        relay = self.host.relay
        if relay is None:
            raise Problem(503, "relay_unavailable", "this gateway has no relay key",
                          retry_after_s=60)
        self.sweep()
        busy = next((h for h in event_hashes if h in self._pending_events), None)
        if busy is not None:
            raise Problem(409, "capture_in_progress",
                          f"event {busy} is part of capture {self._pending_events[busy]}, "
                          "which is still running; retry when it has finished")
        self._make_room()
        waiters = self.host.waiters
        if waiters.count >= waiters.limit:
            raise Problem(503, "too_many_waiters", "too many transactions are being "
                          "followed", retry_after_s=1)
        payload = {"request": dict(request), "error_behaviour": behaviour}
        now = now_ms()
        try:
            tx = relay.sign(CAPTURE_KIND, payload)
            # Judged as the relay's next transaction: its predecessors waiting in the
            # mempool are other parties' captures, which this one does not depend on.
            failure = self.host.chain.dry_run(tx, now, assume_next_nonce=True)
            if failure is not None:
                job = Job(tx.hash.hex(), now, behaviour, principal)
                job.fail(failure.code, failure.message, now)
                self.jobs[job.capture_id] = job
                return job
            relay.submit(tx)
        except LedgerError as exc:
            raise ledger_problem(exc) from exc
        job = Job(tx.hash.hex(), now, behaviour, principal, tx_hash=tx.hash,
                  expires_at=tx.created_at + int(self.host.chain.tip.params.tx_ttl_ms),
                  event_hashes=tuple(event_hashes))
        self.jobs[job.capture_id] = job
        for h in job.event_hashes:
            self._pending_events[h] = job.capture_id
        future = waiters.wait(tx.hash)
        job.future = future
        future.add_done_callback(functools.partial(self._finished, job))
        return job

    def _finished(self, job: Job, future: asyncio.Future[Receipt | TxRejected]) -> None:
        self._release(job)
        if future.cancelled() or not job.running:
            return
        result = future.result()
        if isinstance(result, TxRejected):
            job.fail(result.code, result.message, now_ms())
            return
        job.running = False
        job.height, job.finished_at = result.height, int(result.block.header.time)
        events = self.host.chain.store.events(result.height) or []
        job.events_captured, job.errors = outcome(events, result.index)
        job.success = succeeded(job)

    def _release(self, job: Job) -> None:
        for h in job.event_hashes:
            if self._pending_events.get(h) == job.capture_id:
                del self._pending_events[h]

    def sweep(self) -> int:
        """Fail the running jobs whose transaction can no longer commit (its time-to-live
        passed at block time: a proposer dropped it), freeing their commit waiters; how
        many."""
        tip_time = int(self.host.chain.tip.time)
        expired = [j for j in self.jobs.values() if j.running
                   and j.expires_at is not None and tip_time > j.expires_at]
        for job in expired:
            if job.future is not None and job.tx_hash is not None:
                self.host.waiters.forget(job.tx_hash, job.future)
            job.fail("expired", "the transaction was not committed within its "
                     "time-to-live (a proposer refused it)", tip_time)
            self._release(job)
        return len(expired)

    def _make_room(self) -> None:
        if len(self.jobs) < self.jobs_max:
            return
        for capture_id, job in list(self.jobs.items()):
            if not job.running:
                del self.jobs[capture_id]
                if len(self.jobs) < self.jobs_max:
                    return
        raise Problem(503, "too_many_captures", "too many captures are running",
                      retry_after_s=5)

    async def get_capture(self, request: web.Request) -> web.Response:
        principal_of(request)
        capture_id = request.match_info["capture_id"]
        if not _HEX32_RE.match(capture_id):
            raise Problem(400, "bad_capture_id", "a capture ID is 64 lowercase hex digits")
        self.sweep()
        job = self.jobs.get(capture_id)
        if job is None:
            job = await self._job_from_chain(capture_id)
        if job is None:
            raise Problem(404, "capture_not_found", f"no capture {capture_id}")
        return json_answer(job.to_json())

    async def _job_from_chain(self, capture_id: str) -> Job | None:
        """A job this gateway does not remember: waiting in the mempool, or committed."""
        tx_hash = bytes.fromhex(capture_id)
        pending = self.host.chain.pending(tx_hash)
        if pending is not None and pending.kind == CAPTURE_KIND:
            return Job(capture_id, pending.created_at,
                       str(pending.payload.get("error_behaviour", "rollback")),
                       tx_hash=tx_hash)
        db = self.host.views_db()
        record = await self.host.views_call(get_transaction(db, capture_id))
        if record is None or record.get("kind") != CAPTURE_KIND:
            return None
        payload = record.get("payload") or {}
        job = Job(capture_id, int(record["created_at"]),
                  str(payload.get("error_behaviour", "rollback")), tx_hash=tx_hash)
        job.running = False
        job.height, job.finished_at = int(record["height"]), int(record["time"])
        events = self.host.chain.store.events(job.height) or []
        job.events_captured, job.errors = outcome(events, int(record["index"]))
        job.success = succeeded(job)
        return job

    # --- queries ----------------------------------------------------------------------

    async def capture_options(self, request: web.Request) -> web.Response:
        """EPCIS 2.0 discovery: the capture limits (added by the wrapper), the error
        behaviours and the media types this repository accepts."""
        return web.Response(status=204, headers={
            "Allow": "OPTIONS, POST", "GS1-Capture-Error-Behaviour": "rollback, proceed",
            "Accept-Post": ", ".join(sorted(CAPTURE_MEDIA_TYPES))})


class CaptureSweeper:
    """Sweeps a desk's expired jobs (:meth:`CaptureDesk.sweep`) on every commit and every
    ``interval_s``: a follower of the chain, run by the gateway host on the shared
    follower loop (or by :meth:`EpcisApi.start` when the binding is served on its own).
    One run at a time: a second :meth:`run` while one is active returns at once."""

    name = "epcis capture sweep"

    def __init__(self, desk: CaptureDesk, *, interval_s: float) -> None:
        self.desk = desk
        self.loop = FollowerLoop(self, FollowerLimits(poll_interval_s=interval_s))
        self.running = False

    def notify(self) -> None:
        """A block was committed: its time may have expired some jobs."""
        self.loop.notify()

    async def run(self, stop: asyncio.Event) -> None:
        if self.running:
            return
        self.running = True
        try:
            await self.loop.run(stop)
        finally:
            self.running = False

    async def step(self) -> int:
        return self.desk.sweep()

    def on_failure(self, exc: BaseException, failures: int) -> None:
        """Counted and logged by the loop; nothing else to mark."""

    async def close(self) -> None:
        """Nothing held."""


__all__ = ["SWEEP_INTERVAL_S", "CaptureDesk", "CaptureSweeper", "Job", "capture_error",
           "outcome", "succeeded"]
