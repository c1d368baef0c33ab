"""The privacy domain's HTTP endpoints: encryption keys, the vault, and your own data.

``GET  /v1/privacy/keys/{party}``                         public: a party's encryption key
``PUT  /v1/privacy/records/{record_id}/ciphertext``       subject: store the sealed value
``PUT  /v1/privacy/records/{record_id}/wraps/{party}``    subject: a grantee's wrapped key
``GET  /v1/privacy/records/{record_id}/envelope?access=`` reader: ciphertext + own wrap,
                                                          against a granted access on chain
``GET  /v1/privacy/records/{record_id}``                  subject or entitled party: metadata
``GET  /v1/privacy/me/records``                           your records' metadata
``GET  /v1/privacy/me/access-log``                        who accessed your records
``GET  /v1/privacy/me/export``                            everything about you

Every route but the first is signed (RFC 9421). The gateway never sees plaintext: the
client seals a record's value and wraps its data key per party before sending; the
vault (:mod:`.vault`) keeps the bytes, and releases a party's wrap only against that
party's own committed, granted ``privacy.access`` of the last ``access_valid_ms`` of
block time *that the contract's rule* (:func:`services.privacy.grants.judge_access`)
*still grants at the tip*: a grant revoked or expired since, a key or organisation no
longer active, a party without an active encryption key close the vault at once.
Decisions are read from the chain's committed state (the contract's own rules:
``services.privacy``); the access log from the views. A write that raced an erasure
is undone: after storing, the record's status is read again and, if it is no longer
active, the document is shredded (the custodian's tombstone refuses the write when the
erasure got there first). Answers holding ciphertexts or wraps are ``Cache-Control:
no-store``. Errors are problem+json with stable codes; MongoDB away is a 503
``vault_unavailable`` with Retry-After.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from pydantic import BaseModel, ValidationError

from services.gateway.models import HEX32
from services.gateway.openapi import Endpoint
from services.gateway.policies import principal_of
from services.gateway.problems import Problem, parse_json_body
from services.ledger.core import consortium
from services.ledger.core.state import StateView
from services.privacy.edge import reads
from services.privacy.edge.models import (
    PARTY,
    AccessLogPage,
    AccessLogQuery,
    CiphertextBody,
    CiphertextStored,
    EncryptionKeyAnswer,
    Envelope,
    EnvelopeQuery,
    Export,
    ExportQuery,
    RecordList,
    RecordMetadata,
    WrapBody,
    WrapStored,
    b64url,
    from_b64url,
)
from services.privacy.edge.vault import Tombstone, Vault, VaultEntry, VaultUnavailable
from services.privacy.grants import grant_of, judge_access
from services.privacy.keys import encryption_key
from services.privacy.records import record_of
from services.privacy.vocabulary import HEX64_RE, VAULT, org_party, parse_party, self_party

__all__ = ["PrivacyApi", "PrivacyLimits"]

JSON = "application/json"
RETRY_AFTER_S = 5
#: the largest sealed value the SDK makes (services.sdk.vault.CIPHERTEXT_BYTES_MAX):
#: nonce 12 + plaintext + tag 16, the plaintext canonical JSON of a value of at most
#: 4,096 characters and a category of at most 64, at most 6 bytes each (a \u00xx escape;
#: UTF-8 takes 4), plus 256 for the fixed fields (106 used) = 12 + 25,216 + 16
CIPHERTEXT_BYTES_MAX: Final = 25_244
#: a body this large is serialised on a worker thread, not on the event loop
INLINE_JSON_BYTES_MAX: Final = 256 * 1024
NO_STORE: Final = {"Cache-Control": "no-store"}
_RECORD = {"record_id": {"type": "string", "pattern": HEX32}}
_PARTY = {"party": {"type": "string", "pattern": PARTY}}


@dataclass
class PrivacyLimits:
    ciphertext_bytes_max: int = CIPHERTEXT_BYTES_MAX
    wrap_bytes_max: int = 256
    access_valid_ms: int = 600_000
    access_lookup_blocks_max: int = 64
    export_records_max: int = 1_000  # records in one page of the export
    export_access_log_max: int = 10_000
    #: one page of the export: records' ciphertexts and wraps (base64url) and metadata
    export_bytes_max: int = 4 * 1024 * 1024


def vault_unavailable(detail: str) -> Problem:
    return Problem(503, "vault_unavailable", f"the vault is not available now: {detail}",
                   retry_after_s=RETRY_AFTER_S)


def record_erased(record_id: str) -> Problem:
    return Problem(409, "record_erased", f"record {record_id} was erased: the vault never "
                   "stores it again")


async def private_json(payload: Any, *, large: bool = False) -> web.Response:
    """A 200 answer holding ciphertexts or wraps: never cached. ``large``: serialised on a
    worker thread (a multi-megabyte ``json.dumps`` would stall every other request)."""
    if large:
        body = await asyncio.to_thread(_dumps, payload)
    else:
        body = _dumps(payload)
    return web.Response(body=body, content_type=JSON, headers=NO_STORE)


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


class PrivacyApi:
    def __init__(self, gateway: Any, vault: Vault, limits: PrivacyLimits | None = None
                 ) -> None:
        self.gateway = gateway
        self.vault = vault
        self.limits = limits or PrivacyLimits()

    def endpoints(self) -> list[Endpoint]:
        E, tag = Endpoint, "privacy"  # noqa: N806
        signed_errors = (400, 401, 403, 404, 429)
        return [
            E("GET", "/v1/privacy/keys/{party}", self.get_key,
              "A party's active encryption key (X25519)", tag, {200: EncryptionKeyAnswer},
              path_params=_PARTY, errors=(400, 404, 429)),
            E("PUT", "/v1/privacy/records/{record_id}/ciphertext", self.put_ciphertext,
              "Store a record's sealed value and its holders' wrapped keys (the subject)",
              tag, {200: CiphertextStored, 201: CiphertextStored}, body=CiphertextBody,
              signed=True, path_params=_RECORD,
              errors=(*signed_errors, 409, 413, 415, 422, 503),
              description="201: stored now; 200: these bytes were stored already (wraps "
                          "given are added or replaced). The SHA-256 of the ciphertext "
                          "must be the record's ciphertext_hash on chain; each wrap's "
                          "party one of its holders, and its SHA-256 the one the record "
                          "binds for it (wrap_hashes; 422 wrap_mismatch). 409 "
                          "record_not_active / "
                          "record_erased: the record is (or was meanwhile) being erased: "
                          "nothing is kept."),
            E("PUT", "/v1/privacy/records/{record_id}/wraps/{party}", self.put_wrap,
              "Store the data key wrapped for a grantee (the subject)", tag,
              {200: WrapStored, 201: WrapStored}, body=WrapBody, signed=True,
              path_params={**_RECORD, **_PARTY},
              errors=(*signed_errors, 409, 413, 415, 422, 503),
              description="An active grant to the party must bind this wrap: its "
                          "wrap_hash is the SHA-256 of the wrapped key."),
            E("GET", "/v1/privacy/records/{record_id}/envelope", self.get_envelope,
              "The ciphertext and your wrapped key, against your granted access", tag,
              {200: Envelope}, query=EnvelopeQuery, signed=True, path_params=_RECORD,
              errors=(*signed_errors, 410, 503),
              description="access: the hash of your committed privacy.access "
                          "transaction for this record; it must have been granted to "
                          "the key signing this request, within access_valid_ms of "
                          "block time, and be granted still at the tip (403 "
                          "access_no_longer_granted with the contract's reason: a "
                          "grant revoked or expired since; 403 no_encryption_key: "
                          "your party's key was revoked)."),
            E("GET", "/v1/privacy/records/{record_id}", self.get_record,
              "A record's metadata (its subject, holders and active grantees)", tag,
              {200: RecordMetadata}, signed=True, path_params=_RECORD,
              errors=signed_errors,
              description="The subject sees every holder and grantee; another party "
                          "only its own entries."),
            E("GET", "/v1/privacy/me/records", self.my_records,
              "Your records' metadata", tag, {200: RecordList}, signed=True,
              errors=(400, 401, 429)),
            E("GET", "/v1/privacy/me/access-log", self.my_access_log,
              "Every access to your records, granted or refused, newest first", tag,
              {200: AccessLogPage}, query=AccessLogQuery, signed=True,
              errors=(400, 401, 429, 503)),
            E("GET", "/v1/privacy/me/export", self.my_export,
              "Everything the platform holds about you (decrypt locally)", tag,
              {200: Export}, query=ExportQuery, signed=True, errors=(400, 401, 429, 503),
              description="Paged by records (at most export_records_max and about "
                          "export_bytes_max a page, in record id order): follow "
                          "next_cursor. The access log and your key come with the first "
                          "page."),
        ]

    # --- helpers ------------------------------------------------------------------------

    def _view(self) -> StateView:
        view: StateView = self.gateway.chain.view()
        return view

    def _db(self) -> Any:
        db = self.gateway.views.current()
        if db is None:
            raise vault_unavailable("MongoDB is not reachable")
        return db

    def _record(self, view: StateView, record_id: str) -> dict[str, Any]:
        if not HEX64_RE.fullmatch(record_id):
            raise Problem(400, "bad_record_id", "a record id is 64 lowercase hex digits")
        record = record_of(view.get, record_id)
        if record is None:
            raise Problem(404, "record_not_found", f"no record {record_id} on the chain")
        return record

    def _subjects(self, request: web.Request, record: Mapping[str, Any]) -> str:
        principal = principal_of(request)
        if record["subject"] != principal:
            raise Problem(403, "not_the_subject", "only the record's subject does this")
        return principal

    async def _body(self, request: web.Request, model: type[BaseModel]) -> Any:
        if request.content_type != JSON:
            raise Problem(415, "unsupported_media_type", "send application/json")
        try:
            return model.model_validate(parse_json_body(await request.read()))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise Problem(422, "bad_payload", f"{where}: {first['msg']}") from exc

    def _bytes(self, text: str, what: str, limit: int, code: str) -> bytes:
        if len(text) > (limit * 4 + 2) // 3:
            raise Problem(413, code, f"{what} is at most {limit} bytes")
        raw = from_b64url(text, what)
        if len(raw) > limit:
            raise Problem(413, code, f"{what} is at most {limit} bytes")
        return raw

    # --- keys ---------------------------------------------------------------------------

    async def get_key(self, request: web.Request) -> web.Response:
        from services.gateway.api import json_response

        party = parse_party(request.match_info["party"])
        if party is None:
            raise Problem(400, "bad_party", "a party is org:<org id>, key:<key id> or vault")
        key = encryption_key(self._view().get, party)
        if key is None:
            raise Problem(404, "no_encryption_key", f"{party} has no active encryption key")
        return json_response({f: key[f] for f in ("party", "key_id", "public_key",
                                                  "country", "since")})

    # --- the vault: writes ----------------------------------------------------------------

    async def put_ciphertext(self, request: web.Request) -> web.Response:
        from services.gateway.api import json_response

        view = self._view()
        record = self._record(view, request.match_info["record_id"])
        subject = self._subjects(request, record)
        if record["status"] != "active":
            raise Problem(409, "record_not_active",
                          f"record {record['record_id']} is {record['status']}")
        body: CiphertextBody = await self._body(request, CiphertextBody)
        limits = self.limits
        ciphertext = self._bytes(body.ciphertext, "ciphertext", limits.ciphertext_bytes_max,
                                 "ciphertext_too_large")
        if hashlib.sha256(ciphertext).hexdigest() != record["ciphertext_hash"]:
            raise Problem(422, "ciphertext_mismatch", "the SHA-256 of the ciphertext is "
                          "not the record's ciphertext_hash on the chain")
        wraps = self._holders_wraps(record, body.wraps)
        self._db()
        try:
            created = await self.vault.insert(VaultEntry(
                record["record_id"], subject, ciphertext, wraps, self.vault.now_ms()))
            stored = wraps if created else await self._merge(record["record_id"],
                                                             ciphertext, wraps)
            await self._still_active(record["record_id"])
        except VaultUnavailable as exc:
            raise vault_unavailable(str(exc)) from exc
        return json_response({"record_id": record["record_id"], "stored": True,
                              "wraps": sorted(stored)}, 201 if created else 200)

    def _holders_wraps(self, record: Mapping[str, Any],
                       texts: Mapping[str, str]) -> dict[str, bytes]:
        """The holders' wraps of an upload, each the one whose SHA-256 the record binds
        on chain for its holder (``wrap_hashes``; a record made before the chain bound
        them has none to check)."""
        bound = record.get("wrap_hashes")
        wraps: dict[str, bytes] = {}
        for party, text in texts.items():
            if party not in record["holders"]:
                raise Problem(422, "not_a_holder", f"{party[:80]!r} is not a holder of the "
                              "record (grantees' wraps go to .../wraps/{party})")
            wrapped = self._bytes(text, f"the wrap for {party}", self.limits.wrap_bytes_max,
                                  "wrap_too_large")
            if isinstance(bound, dict) and bound.get(party) != \
                    hashlib.sha256(wrapped).hexdigest():
                raise Problem(422, "wrap_mismatch", f"the wrap for {party} is not the one "
                              "the record binds on chain (its wrap_hashes entry is another "
                              "SHA-256)")
            wraps[party] = wrapped
        return wraps

    async def _still_active(self, record_id: str) -> None:
        """After a write: undo it if the record stopped being active meanwhile (the
        erasure committed between the status check and the write, and the custodian
        may already have shredded and acknowledged: nobody would delete these bytes)."""
        record = record_of(self._view().get, record_id)
        if record is not None and record["status"] == "active":
            return
        await self.vault.shred(record_id)
        status = "gone" if record is None else record["status"]
        raise Problem(409, "record_not_active", f"record {record_id} became {status} while "
                      "it was stored: the vault kept nothing")

    async def _merge(self, record_id: str, ciphertext: bytes | None,
                     wraps: Mapping[str, bytes]) -> Mapping[str, bytes]:
        """Add (or replace) ``wraps`` in a stored record's document; the wraps it holds
        after. ``ciphertext``: what the stored one must be (None: any)."""
        for _ in range(8):  # compare-and-set: retried while other writers race us
            entry = await self.vault.lookup(record_id)
            if isinstance(entry, Tombstone):
                raise record_erased(record_id)
            if entry is None:
                raise Problem(404, "ciphertext_not_found", f"the vault holds no ciphertext "
                              f"of {record_id}: upload it first")
            if ciphertext is not None and entry.ciphertext != ciphertext:
                raise Problem(409, "ciphertext_exists", "the vault holds other bytes for "
                              "this record (a new value is a new record: rectify)")
            merged = {**entry.wraps, **wraps}
            if merged == dict(entry.wraps) or await self.vault.replace_wraps(entry, merged):
                return merged
        raise vault_unavailable("too many concurrent writers")

    async def put_wrap(self, request: web.Request) -> web.Response:
        from services.gateway.api import json_response

        view = self._view()
        record = self._record(view, request.match_info["record_id"])
        self._subjects(request, record)
        party = parse_party(request.match_info["party"])
        if party is None:
            raise Problem(400, "bad_party", "a party is org:<org id> or key:<key id>")
        if record["status"] != "active":
            raise Problem(409, "record_not_active",
                          f"record {record['record_id']} is {record['status']}")
        body: WrapBody = await self._body(request, WrapBody)
        wrapped = self._bytes(body.wrapped_key, "wrapped_key", self.limits.wrap_bytes_max,
                              "wrap_too_large")
        digest = hashlib.sha256(wrapped).hexdigest()
        now = self.gateway.chain.tip.time
        grants = [g for g in (grant_of(view.get, record["record_id"], party, p)
                              for p in record.get("grantees", {}).get(party, []))
                  if g is not None and g["status"] == "active" and now < g["until"]]
        if not grants:
            raise Problem(404, "grant_not_found", f"{party} holds no active grant to "
                          f"record {record['record_id']}")
        if not any(g["wrap_hash"] == digest for g in grants):
            raise Problem(422, "wrap_mismatch", "no active grant to the party binds this "
                          "wrapped key (its wrap_hash is another SHA-256)")
        self._db()
        try:
            before = await self.vault.get(record["record_id"])
            await self._merge(record["record_id"], None, {party: wrapped})
            await self._still_active(record["record_id"])
        except VaultUnavailable as exc:
            raise vault_unavailable(str(exc)) from exc
        same = before is not None and before.wraps.get(party) == wrapped
        return json_response({"record_id": record["record_id"], "party": party,
                              "stored": True}, 200 if same else 201)

    # --- the vault: reads -----------------------------------------------------------------

    async def get_envelope(self, request: web.Request) -> web.Response:
        from services.gateway.api import parse_query

        principal = principal_of(request)
        record_id = request.match_info["record_id"]
        if not HEX64_RE.fullmatch(record_id):
            raise Problem(400, "bad_record_id", "a record id is 64 lowercase hex digits")
        q: EnvelopeQuery = parse_query(request, EnvelopeQuery)
        db = self._db()
        try:
            access = await reads.find_access(self.gateway.chain, db, q.access, record_id,
                                             self.limits.access_lookup_blocks_max)
        except reads.ViewsError as exc:
            raise vault_unavailable(str(exc)) from exc
        if access is None:
            raise Problem(404, "access_not_found", f"no committed transaction {q.access}")
        if access.event is None or access.event.type != "privacy.access.granted":
            reason = None if access.event is None else access.event.attributes.get("reason")
            raise Problem(403, "access_not_granted", f"transaction {q.access} granted no "
                          f"access to record {record_id}" + (f" ({reason})" if reason else ""))
        attributes = access.event.attributes
        if attributes["by"] != principal:
            raise Problem(403, "access_not_granted", "that access was granted to another "
                          "key: ask with your own")
        view = self._view()
        record = self._record(view, record_id)
        if record["status"] != "active":
            raise Problem(410, "record_erased", f"record {record_id} is {record['status']}: "
                          "it can no longer be read")
        now = self.gateway.chain.tip.time
        age = now - access.time
        if age > self.limits.access_valid_ms:
            raise Problem(403, "access_expired", f"that access was granted {age} ms ago "
                          f"(block time); it opens the vault for "
                          f"{self.limits.access_valid_ms} ms: ask again")
        party = str(attributes["party"])
        self._granted_still(view, record, attributes, principal, now)
        try:
            entry = await self.vault.lookup(record_id)
        except VaultUnavailable as exc:
            raise vault_unavailable(str(exc)) from exc
        if isinstance(entry, Tombstone):  # a gateway ahead of this one saw the erasure
            raise Problem(410, "record_erased", f"record {record_id} was erased: it can no "
                          "longer be read")
        wrapped = None if entry is None else entry.wraps.get(party)
        if entry is None or wrapped is None:
            raise Problem(404, "no_wrap_for_party", f"the vault holds no wrapped key of "
                          f"record {record_id} for {party}")
        return await private_json({"record_id": record_id, "category": record["category"],
                                   "commitment": record["commitment"],
                                   "ciphertext": b64url(entry.ciphertext),
                                   "wrapped_key": b64url(wrapped), "party": party})

    def _granted_still(self, view: StateView, record: dict[str, Any],
                       attributes: Mapping[str, Any], principal: str, now: int) -> None:
        """The access judged again at the tip (block time ``now``) by the contract's own
        rule, with its purpose and basis: what was granted when it committed may have
        been revoked, may have expired, or the asking key or its organisation may no
        longer be active since; and the party must still hold an active encryption key."""
        party, purpose = str(attributes["party"]), str(attributes["purpose"])
        roles, inactive = self._sender_roles(view, principal, party)
        if inactive is not None:
            raise Problem(403, "access_no_longer_granted", f"that access no longer opens "
                          f"the vault: {inactive}", reason=inactive)
        judgement = judge_access(view.get, record, party, purpose, str(attributes["basis"]),
                                 roles, now)
        if not judgement.granted:
            raise Problem(403, "access_no_longer_granted", f"the chain would refuse that "
                          f"access now ({judgement.reason}): it no longer opens the vault",
                          reason=judgement.reason)
        if encryption_key(view.get, party) is None:
            raise Problem(403, "no_encryption_key", f"{party} has no active encryption key "
                          "any more: its wrap is not handed out")

    @staticmethod
    def _sender_roles(view: StateView, principal: str,
                      party: str) -> tuple[frozenset[str], str | None]:
        """The roles the contract would judge ``principal``'s access for ``party`` with
        now (its organisation's for an ``org:`` party, none for the key itself), or why
        the key could send no access now (as the ledger's sender checks say)."""
        key = consortium.key_record(view, principal)
        if key is None or key.get("status") != "active":
            return frozenset(), "key_inactive"
        org = consortium.org_record(view, key["org"])
        if org is None or org.get("status") != "active":
            return frozenset(), "org_suspended"
        if party == org_party(key["org"]):
            return frozenset(org["roles"]), None
        return frozenset(), None

    async def get_record(self, request: web.Request) -> web.Response:
        from services.gateway.api import json_response

        principal = principal_of(request)
        view = self._view()
        record = self._record(view, request.match_info["record_id"])
        if not self._entitled(view, record, principal):
            raise Problem(403, "not_entitled", "only the record's subject, its holders and "
                          "its active grantees read its metadata")
        if record["subject"] == principal:
            return json_response(record)
        return json_response(self._own_entries(record, self._parties(view, principal)))

    @staticmethod
    def _parties(view: StateView, principal: str) -> set[str]:
        """The parties a key acts as: itself, and its organisation."""
        key = consortium.key_record(view, principal)
        return {self_party(principal)} | ({org_party(key["org"])} if key is not None else set())

    @staticmethod
    def _own_entries(record: Mapping[str, Any], parties: set[str]) -> dict[str, Any]:
        """``record`` as a party other than its subject sees it: of the holders (and their
        wrap hashes), grantees and erasure's parties, only its own (and the subject and
        the vault)."""
        seen = parties | {self_party(record["subject"]), VAULT}
        out = {**record, **{f: {p: v for p, v in record[f].items() if p in parties}
                            for f in ("holders", "wrap_hashes", "grantees") if f in record}}
        erasure = record.get("erasure")
        if isinstance(erasure, dict):
            out["erasure"] = {**erasure, **{f: [p for p in erasure.get(f, []) if p in seen]
                                            for f in ("pending", "acknowledged")}}
        return out

    def _entitled(self, view: StateView, record: Mapping[str, Any], principal: str) -> bool:
        if record["subject"] == principal:
            return True
        parties = self._parties(view, principal)
        if parties & set(record["holders"]):
            return True
        now = self.gateway.chain.tip.time
        for party in parties:
            for purpose in record.get("grantees", {}).get(party, []):
                found = grant_of(view.get, record["record_id"], party, purpose)
                if found is not None and found["status"] == "active" and now < found["until"]:
                    return True
        return False

    # --- yours ------------------------------------------------------------------------------

    async def my_records(self, request: web.Request) -> web.Response:
        from services.gateway.api import json_response

        principal = principal_of(request)
        view = self._view()
        items = [r for r in (record_of(view.get, i)
                             for i in view.get(f"privacy/subject/{principal}") or [])
                 if r is not None]
        return json_response({"subject": principal, "items": items})

    async def my_access_log(self, request: web.Request) -> web.Response:
        from services.gateway.api import json_response, parse_query

        principal = principal_of(request)
        q: AccessLogQuery = parse_query(request, AccessLogQuery)
        db = self._db()
        try:
            page = await reads.access_log(db, principal, cursor=q.cursor, limit=q.limit)
        except ValueError as exc:
            raise Problem(400, "bad_cursor", str(exc)) from exc
        except reads.ViewsError as exc:
            raise vault_unavailable(str(exc)) from exc
        return json_response(page)

    async def my_export(self, request: web.Request) -> web.Response:
        from services.gateway.api import parse_query

        principal = principal_of(request)
        q: ExportQuery = parse_query(request, ExportQuery)
        db = self._db()
        limits = self.limits
        try:
            export = await reads.export(self.gateway.chain, db, self.vault, principal,
                                        after=q.cursor, records_max=limits.export_records_max,
                                        accesses_max=limits.export_access_log_max,
                                        bytes_max=limits.export_bytes_max)
        except (VaultUnavailable, reads.ViewsError) as exc:
            raise vault_unavailable(str(exc)) from exc
        return await private_json(export.body, large=export.size > INLINE_JSON_BYTES_MAX)
