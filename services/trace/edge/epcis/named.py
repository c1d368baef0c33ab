"""EPCIS 2.0 named queries and their webhook subscriptions: the HTTP side.

Named queries and subscriptions are *gateway state, not chain state*: they live in the
MongoDB collections ``epcis_queries`` and ``epcis_subscriptions`` of the views
database (not registered views, so a views rebuild keeps them) and survive a gateway
restart. A query belongs to the organisation of the key that created it; only that
organisation's keys subscribe to it or delete it; an organisation has at most
``subscriptions_per_org_max`` subscriptions (the gateway serves at most
``subscriptions_max`` in all). A subscription's cursor starts at
the chain tip when it is created: it receives events committed afterwards
(:mod:`services.trace.edge.epcis.webhooks` delivers them).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pymongo.errors import DuplicateKeyError

from services.gateway.policies import principal_of
from services.gateway.problems import Problem, parse_json_body
from services.gateway.views.schema import pos_of
from services.ledger.core import consortium
from services.trace import epcis_values
from services.trace.edge.epcis.binding import (
    JSON,
    NAMED_QUERIES_PER_ORG_MAX,
    QUERIES,
    QUERY_NAME,
    SUBSCRIPTION_ID,
    SUBSCRIPTIONS,
    SUBSCRIPTIONS_PER_QUERY_MAX,
    json_answer,
    now_ms,
)
from services.trace.edge.epcis.models import NamedQueryBody, SubscriptionBody
from services.trace.edge.epcis.query import parse_event_query, query_problem
from services.trace.edge.epcis.resolver import check_dest

_QUERY_NAME_RE = re.compile(QUERY_NAME)
_SUBSCRIPTION_RE = re.compile(SUBSCRIPTION_ID)

Page = Callable[..., Awaitable[web.Response]]


class NamedQueries:
    """The named-query and subscription endpoints (``host``: the gateway's GatewayApi;
    ``page``: answers one page of a query, as GET /epcis/events does; ``subscribed``:
    tells the webhook dispatcher to look now)."""

    def __init__(self, host: Any, page: Page, *, loopback_allowed: bool,
                 subscriptions_max: int, subscriptions_per_org_max: int,
                 subscribed: Callable[[], None]) -> None:
        self.host = host
        self._page = page
        self.loopback_allowed = loopback_allowed
        self.subscriptions_max = subscriptions_max
        self.subscriptions_per_org_max = subscriptions_per_org_max
        self.subscribed = subscribed
        self._indexes_ready = False

    async def _json_body(self, request: web.Request, model: type[BaseModel]) -> Any:
        if request.content_type != JSON:
            raise Problem(415, "unsupported_media_type", "send application/json")
        body = parse_json_body(await request.read())
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise Problem(422, "bad_body", f"{where}: {first['msg']}") from exc

    def _org_of(self, key_id: str) -> str:
        record = consortium.key_record(self.host.chain.view(), key_id)
        if record is None:
            raise Problem(401, "unknown_key", "the signing key is not registered")
        return str(record["org"])

    async def _ensure_indexes(self, db: Any) -> None:
        if not self._indexes_ready:
            await db[QUERIES].create_index("owner")
            await db[SUBSCRIPTIONS].create_index("query")
            await db[SUBSCRIPTIONS].create_index("owner")
            await db[SUBSCRIPTIONS].create_index("next_attempt_ms")
            self._indexes_ready = True

    async def post_query(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        body: NamedQueryBody = await self._json_body(request, NamedQueryBody)
        pairs = query_pairs(body.query)
        parse_event_query(pairs)  # refuses unknown parameters and bad values now
        org = self._org_of(principal)
        db = self.host.views_db()
        doc = {"_id": body.name, "owner": org, "owner_key": principal,
               "query": [list(p) for p in pairs], "created": now_ms()}
        await self.host.views_call(self._insert_query(db, doc))
        return json_answer(query_out(doc), status=201,
                     headers={"Location": f"/epcis/queries/{body.name}"})

    async def _insert_query(self, db: Any, doc: dict[str, Any]) -> None:
        await self._ensure_indexes(db)
        if await db[QUERIES].count_documents({"owner": doc["owner"]}) \
                >= NAMED_QUERIES_PER_ORG_MAX:
            raise Problem(409, "too_many_queries",
                          f"at most {NAMED_QUERIES_PER_ORG_MAX} named queries per "
                          "organisation")
        if await db[QUERIES].find_one({"_id": doc["_id"]}, {"_id": 1}) is not None:
            raise Problem(409, "query_exists", f"a query named {doc['_id']} exists",
                          epcisException="DuplicateNameException")
        try:
            await db[QUERIES].insert_one(doc)
        except DuplicateKeyError as exc:
            raise Problem(409, "query_exists", f"a query named {doc['_id']} exists",
                          epcisException="DuplicateNameException") from exc

    async def _named(self, request: web.Request) -> tuple[Any, dict[str, Any]]:
        name = request.match_info["name"]
        if not _QUERY_NAME_RE.match(name):
            raise Problem(400, "bad_query_name", "a query name is 1..64 of [A-Za-z0-9_.-]")
        db = self.host.views_db()
        doc = await self.host.views_call(db[QUERIES].find_one({"_id": name}))
        if doc is None:
            raise Problem(404, "query_not_found", f"no named query {name}",
                          epcisException="NoSuchNameException")
        return db, doc

    def _require_owner(self, request: web.Request, doc: Mapping[str, Any]) -> str:
        org = self._org_of(principal_of(request))
        if org != doc["owner"]:
            raise Problem(403, "forbidden", f"the query belongs to {doc['owner']}")
        return org

    async def list_queries(self, request: web.Request) -> web.Response:
        org = self._org_of(principal_of(request))
        db = self.host.views_db()
        docs = await self.host.views_call(
            db[QUERIES].find({"owner": org}).sort("_id", 1).to_list(NAMED_QUERIES_PER_ORG_MAX))
        return json_answer({"queries": [query_out(d) for d in docs]})

    async def list_subscriptions(self, request: web.Request) -> web.Response:
        principal_of(request)
        db, doc = await self._named(request)
        self._require_owner(request, doc)
        subs = await self.host.views_call(
            db[SUBSCRIPTIONS].find({"query": doc["_id"]}).sort("_id", 1)
            .to_list(SUBSCRIPTIONS_PER_QUERY_MAX))
        return json_answer({"subscriptions": [{
            "subscriptionID": sub["_id"], "queryName": doc["_id"], "dest": sub["dest"],
            "stream": True, "reportIfEmpty": bool(sub.get("report_if_empty")),
            "createdAt": epcis_values.format_time(int(sub["created"])),
            "status": str(sub.get("status", "active"))} for sub in subs]})

    async def get_query(self, request: web.Request) -> web.Response:
        principal_of(request)
        _, doc = await self._named(request)
        return json_answer(query_out(doc))

    async def delete_query(self, request: web.Request) -> web.Response:
        principal_of(request)
        db, doc = await self._named(request)
        self._require_owner(request, doc)

        async def delete() -> None:
            await db[SUBSCRIPTIONS].delete_many({"query": doc["_id"]})
            await db[QUERIES].delete_one({"_id": doc["_id"]})

        await self.host.views_call(delete())
        return web.Response(status=204)

    async def run_named_query(self, request: web.Request) -> web.Response:
        principal_of(request)
        _, doc = await self._named(request)
        flt, _, _ = parse_event_query([tuple(p) for p in doc["query"]])
        paging = [(k, v) for k, v in request.query.items()]
        unknown = [k for k, _ in paging if k not in ("perPage", "nextPageToken")]
        if unknown:
            raise query_problem(f"unknown query parameter {unknown[0][:64]!r} (a named "
                                 "query takes perPage and nextPageToken only)", unknown[0])
        _, per_page, token = parse_event_query(paging, paging=True)
        return await self._page(request, flt, per_page, token, str(doc["_id"]))

    # --- subscriptions ----------------------------------------------------------------

    async def post_subscription(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        db, doc = await self._named(request)
        self._require_owner(request, doc)
        body: SubscriptionBody = await self._json_body(request, SubscriptionBody)
        if body.schedule is not None or body.initialRecordTime is not None:
            raise Problem(501, "subscription_controls_unsupported", "this gateway streams "
                          "new events (stream: true); schedules and initialRecordTime are "
                          "not supported", epcisException="SubscriptionControlsException")
        if body.stream is not True:
            raise Problem(400, "subscription_controls", "a subscription sets stream: true "
                          "(EPCIS 2.0: stream or schedule)",
                          epcisException="SubscriptionControlsException")
        check_dest(body.dest, loopback_allowed=self.loopback_allowed)
        subscription_id = secrets.token_hex(16)
        now = now_ms()
        sub = {"_id": subscription_id, "query": doc["_id"], "owner": doc["owner"],
               "owner_key": principal, "dest": body.dest, "secret": body.signatureToken,
               "report_if_empty": body.reportIfEmpty, "created": now,
               "cursor": pos_of(int(self.host.chain.tip.height) + 1, 0) - 1,
               "status": "active", "failures": 0, "next_attempt_ms": 0,
               "last_report_ms": now, "delivered_events": 0, "last_error": None}
        await self.host.views_call(self._insert_subscription(db, sub))
        self.subscribed()
        location = f"/epcis/queries/{doc['_id']}/subscriptions/{subscription_id}"
        return json_answer({"subscriptionID": subscription_id, "queryName": doc["_id"],
                      "dest": body.dest, "reportIfEmpty": body.reportIfEmpty,
                      "createdAt": epcis_values.format_time(now)}, status=201,
                     headers={"Location": location})

    async def _insert_subscription(self, db: Any, sub: dict[str, Any]) -> None:
        await self._ensure_indexes(db)
        if await db[SUBSCRIPTIONS].count_documents({"query": sub["query"]}) \
                >= SUBSCRIPTIONS_PER_QUERY_MAX:
            raise Problem(409, "too_many_subscriptions",
                          f"at most {SUBSCRIPTIONS_PER_QUERY_MAX} subscriptions per query")
        if await db[SUBSCRIPTIONS].count_documents({"owner": sub["owner"]}) \
                >= self.subscriptions_per_org_max:
            raise Problem(409, "too_many_subscriptions",
                          f"at most {self.subscriptions_per_org_max} subscriptions per "
                          "organisation")
        if await db[SUBSCRIPTIONS].count_documents({}) >= self.subscriptions_max:
            raise Problem(409, "too_many_subscriptions", "the gateway serves no more "
                          "subscriptions")
        await db[SUBSCRIPTIONS].insert_one(sub)

    async def delete_subscription(self, request: web.Request) -> web.Response:
        principal_of(request)
        db, doc = await self._named(request)
        subscription_id = request.match_info["subscription_id"]
        if not _SUBSCRIPTION_RE.match(subscription_id):
            raise Problem(400, "bad_subscription_id", "a subscription ID is 32 hex digits")
        self._require_owner(request, doc)
        result = await self.host.views_call(db[SUBSCRIPTIONS].delete_one(
            {"_id": subscription_id, "query": doc["_id"]}))
        if result.deleted_count == 0:
            raise Problem(404, "subscription_not_found",
                          f"no subscription {subscription_id} to {doc['_id']}",
                          epcisException="NoSuchSubscriptionException")
        return web.Response(status=204)

    # --- the webhook dispatcher -------------------------------------------------------


def query_pairs(query: Mapping[str, str | list[str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, value in query.items():
        for item in [value] if isinstance(value, str) else value:
            out.append((name, item))
    return out


def query_out(doc: Mapping[str, Any]) -> dict[str, Any]:
    grouped: dict[str, list[str]] = {}
    for name, value in doc["query"]:
        grouped.setdefault(name, []).append(value)
    return {"name": doc["_id"], "owner": doc["owner"], "query": grouped,
            "createdAt": epcis_values.format_time(int(doc["created"]))}


__all__ = ["NamedQueries", "query_out", "query_pairs"]
