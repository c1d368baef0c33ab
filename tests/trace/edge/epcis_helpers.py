"""Helpers for the EPCIS REST binding tests: signed HTTP calls, a small supply chain on
the live network, EPCIS documents, and a webhook receiver."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from services.ledger.core.crypto import PrivateKey
from services.sdk import httpsig
from services.trace import identifiers
from services.trace.edge.epcis.api import EpcisApi
from tests.live import LiveNetwork

CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
GTIN = "06901234000016"  # company prefix 6901234 (7 digits), item reference 00001
CPL = 7
MAKER_CP = "6901234"
CARRIER_CP = "4012345"


def gln(cp: str, ref: str = "00001") -> str:
    body = cp + ref
    return body + identifiers.check_digit(body)


def sgln(cp: str, ref: str = "00001") -> str:
    return f"urn:epc:id:sgln:{cp}.{ref}.0"


def sgtin(serial: str) -> str:
    return f"urn:epc:id:sgtin:{GTIN[1:1 + CPL]}.{GTIN[0]}{GTIN[1 + CPL:13]}.{serial}"


def sscc(ref: str) -> str:
    return f"urn:epc:id:sscc:{MAKER_CP}.{ref:0>10}"


def iso(ms: int) -> str:
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def now_ms() -> int:
    return int(time.time() * 1000)


_unique = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_unique)}x{secrets.token_hex(3)}"


# --- HTTP ----------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


def http(method: str, url: str, body: bytes | None = None,
         headers: Mapping[str, str] | None = None) -> Answer:
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return Answer(resp.status, dict(resp.headers.items()), resp.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, dict(exc.headers.items()), exc.read())


def sign(key: PrivateKey, method: str, url: str, body: bytes | None = None,
         content_type: str | None = "application/json",
         extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers of a request signed as a standard EPCIS client signs it (RFC 9421);
    ``extra`` headers are sent and signed (the SDK covers GS1-Capture-Error-Behaviour)."""
    headers = {"Content-Type": content_type} if body is not None and content_type else {}
    headers.update(extra or {})
    headers.update(httpsig.sign_request(key, method=method, url=url, headers=headers,
                                        body=body, now=int(time.time()),
                                        nonce=secrets.token_urlsafe(16)))
    return headers


def signed(key: PrivateKey, method: str, url: str, body: bytes | None = None,
           headers: Mapping[str, str] | None = None,
           content_type: str | None = "application/json") -> Answer:
    all_headers = sign(key, method, url, body, content_type, headers)
    return http(method, url, body, all_headers)


def wait_until(check: Callable[[], Any], timeout: float = 20.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


# --- the chain -----------------------------------------------------------------------


@dataclass
class Party:
    id: str
    key: PrivateKey
    cp: str

    @property
    def location(self) -> str:
        return sgln(self.cp)


@dataclass
class Chain:
    live: LiveNetwork
    maker: Party
    carrier: Party
    observer: Party


def set_up_chain(live: LiveNetwork) -> Chain:
    """A manufacturer (brand owner of GTIN), a carrier and an observer, onboarded by the
    platform operator; the two traders register their GLN locations."""
    operator = live.client(live.admin_key("ledger"))
    maker = Party("epcis-maker", PrivateKey.derive("epcis-api/maker"), MAKER_CP)
    carrier = Party("epcis-carrier", PrivateKey.derive("epcis-api/carrier"), CARRIER_CP)
    observer = Party("epcis-observer", PrivateKey.derive("epcis-api/observer"), "4000002")
    for party, roles in ((maker, ["manufacturer"]), (carrier, ["carrier"]),
                         (observer, ["observer"])):
        result = operator.send("consortium.register_organisation", {
            "id": party.id, "name": party.id, "roles": roles,
            "admin_key": party.key.public.raw.hex()})
        assert result["status"] == "committed", result
        result = operator.send("trace.assign_prefix", {"org": party.id, "prefix": party.cp})
        assert result["status"] == "committed", result
    for party, country in ((maker, "CN"), (carrier, "PL")):
        result = live.client(party.key).send("trace.register_location", {
            "gln": gln(party.cp), "name": party.id, "country": country})
        assert result["status"] == "committed", result
    result = live.client(maker.key).send("trace.register_product", {
        "gtin": GTIN, "name": "Green tea 100 g", "company_prefix_length": CPL})
    assert result["status"] == "committed", result
    return Chain(live, maker, carrier, observer)


# --- EPCIS documents -----------------------------------------------------------------


def event(kind: str = "ObjectEvent", *, at: int, location: str, biz_step: str,
          disposition: str | None = None, action: str | None = "ADD",
          event_id: str | None = None, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, "eventTime": iso(at), "eventTimeZoneOffset": "+00:00"}
    if event_id is not None:
        out["eventID"] = event_id
    if action is not None:
        out["action"] = action
    out.update(fields)
    out["bizStep"] = biz_step
    if disposition is not None:
        out["disposition"] = disposition
    out["readPoint"] = {"id": location}
    out["bizLocation"] = {"id": location}
    return out


def document(*events: dict[str, Any]) -> dict[str, Any]:
    return {"@context": [CONTEXT], "type": "EPCISDocument", "schemaVersion": "2.0",
            "creationDate": iso(now_ms()), "epcisBody": {"eventList": list(events)}}


def encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# --- the EPCIS server under test -----------------------------------------------------


@dataclass
class Epcis:
    """Where the EPCIS binding is served, and the instance serving it."""

    url: str
    api: EpcisApi
    chain: Chain

    @property
    def live(self) -> LiveNetwork:
        return self.chain.live

    def capture(self, key: PrivateKey, doc: Mapping[str, Any], *,
                behaviour: str | None = None, path: str = "/epcis/capture") -> Answer:
        headers = {} if behaviour is None else {"GS1-Capture-Error-Behaviour": behaviour}
        return signed(key, "POST", self.url + path, encode(doc), headers)

    def job(self, key: PrivateKey, location: str) -> dict[str, Any]:
        answer = signed(key, "GET", self.url + location)
        assert answer.status == 200, (answer.status, answer.raw[:300])
        body: dict[str, Any] = answer.json
        return body

    def finished_job(self, key: PrivateKey, answer: Answer,
                     timeout: float = 20.0) -> dict[str, Any]:
        """Poll the job of an accepted capture until it is no longer running."""
        assert answer.status == 202, (answer.status, answer.raw[:400])
        location = answer.headers["Location"]
        assert location.startswith("/epcis/capture/")

        def done() -> dict[str, Any] | None:
            job = self.job(key, location)
            return None if job["running"] else job

        result: dict[str, Any] = wait_until(done, timeout)
        return result

    def events(self, key: PrivateKey, query: str = "") -> Answer:
        return signed(key, "GET", f"{self.url}/epcis/events{'?' + query if query else ''}")

    def event_list(self, key: PrivateKey, query: str) -> list[dict[str, Any]]:
        answer = self.events(key, query)
        assert answer.status == 200, (answer.status, answer.raw[:300])
        doc = answer.json
        assert doc["type"] == "EPCISQueryDocument"
        events: list[dict[str, Any]] = doc["epcisBody"]["queryResults"]["resultsBody"][
            "eventList"]
        return events

    def visible(self, key: PrivateKey, event_ids: set[str], timeout: float = 20.0) -> None:
        """Wait until the views serve every one of ``event_ids``."""
        def all_there() -> bool:
            query = "EQ_eventID=" + ",".join(sorted(event_ids)) + "&perPage=1000"
            return {e.get("eventID") for e in self.event_list(key, query)} >= event_ids
        wait_until(all_there, timeout)


def find_wired(node: Any) -> EpcisApi | None:
    """The EpcisApi the gateway serves itself (its trace plugin's)."""
    host = getattr(node, "gateway", None)
    plugin = None if host is None else host.plugins.get("trace")
    return None if plugin is None else plugin.epcis


async def serve(api: EpcisApi, resolve_key: Callable[[str], bytes | None]
                ) -> tuple[web.AppRunner, int]:
    """Serve ``api``'s routes on their own port, behind the gateway's policies."""
    from services.gateway.policies import Policies, PolicyLimits

    policies = Policies(PolicyLimits(), resolve_key=resolve_key)
    app = web.Application(middlewares=policies.middlewares(),
                          client_max_size=4 * 1024 * 1024)
    app.add_routes([web.route(e.method, e.path, e.handler) for e in api.endpoints()])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    return runner, int(server.sockets[0].getsockname()[1])


@dataclass
class Receiver:
    """A webhook endpoint: records every callback; the first ``fail_first`` get a 500."""

    fail_first: int = 0
    calls: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            status = 500 if len(self.calls) < self.fail_first else 204
            self.calls.append((dict(request.headers.items()), body, status))
            return web.Response(status=status)

        app = web.Application()
        app.router.add_post("/hook", hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        self.port = int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
