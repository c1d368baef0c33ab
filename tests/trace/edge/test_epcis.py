"""The EPCIS 2.0 REST binding (services.trace.edge.epcis) end to end, on a live
embedded network with views: captures signed by the capturing party and relayed to the
chain, capture jobs, queries and paging, events by ID or hash, webhooks."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from services.gateway.openapi import openapi_document
from services.gateway.problems import Problem
from services.ledger.core.crypto import PrivateKey
from services.trace import epcis, epcis_values, eventhash, identifiers
from services.trace.edge.epcis.api import EpcisApi
from services.trace.edge.epcis.binding import CAPTURE_EVENTS_MAX
from services.trace.edge.epcis.query import parse_event_query
from services.trace.edge.epcis.webhooks import WebhookLimits
from tests.live import LiveNetwork
from tests.trace.edge.epcis_helpers import (
    Epcis,
    Receiver,
    document,
    encode,
    event,
    find_wired,
    http,
    now_ms,
    serve,
    set_up_chain,
    sgtin,
    sign,
    signed,
    sscc,
    unique,
    wait_until,
)

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def epcis_server(live: LiveNetwork) -> Iterator[Epcis]:
    """The binding as the gateway serves it once wired, else on a port of its own (same
    policies middlewares, same gateway, same loop)."""
    chain = set_up_chain(live)
    node = live.network.nodes["gateway"]
    assert node.gateway is not None
    gateway = node.gateway.api
    wired = find_wired(node)
    if wired is not None and http("GET", live.url + "/epcis/events").status != 404:
        yield Epcis(live.url, wired, chain)
        return
    api = EpcisApi(gateway, webhook_limits=WebhookLimits(loopback_allowed=True))
    served: Any = live.run(serve(api, node.resolve_key))
    runner, port = served
    live.run(api.start())
    try:
        yield Epcis(f"http://127.0.0.1:{port}", api, chain)
    finally:
        live.run(api.stop())
        live.run(runner.cleanup())


@pytest.fixture(scope="module")
def story(epcis_server: Epcis) -> dict[str, Any]:
    """A pallet's story: the maker commissions two items, packs them on a pallet and ships
    it against a purchase order (one capture); the carrier receives it (another)."""
    e = epcis_server
    maker, carrier = e.chain.maker, e.chain.carrier
    s1, s2 = sgtin(unique("s")), sgtin(unique("s"))
    pallet = sscc(str(now_ms() % 10**9))
    po = f"https://erp.example.com/po/{unique('po')}"
    t0 = now_ms() - 60_000
    ids = {k: f"urn:uuid:{unique('ev-')}-{k}" for k in ("commission", "pack", "ship",
                                                          "receive")}
    commission = event(at=t0, location=maker.location, biz_step="commissioning",
                       disposition="active", event_id=ids["commission"], epcList=[s1, s2])
    pack = event("AggregationEvent", at=t0 + 1_000, location=maker.location,
                 biz_step="packing", disposition="in_progress", event_id=ids["pack"],
                 parentID=pallet, childEPCs=[s1, s2])
    ship = event(at=t0 + 2_000, location=maker.location, biz_step="shipping",
                 disposition="in_transit", action="OBSERVE", event_id=ids["ship"],
                 epcList=[pallet], bizTransactionList=[{"type": "po", "bizTransaction": po}])
    receive = event(at=t0 + 3_000, location=carrier.location, biz_step="receiving",
                    disposition="in_progress", action="OBSERVE", event_id=ids["receive"],
                    epcList=[pallet])
    job = e.finished_job(maker.key, e.capture(maker.key, document(commission, pack, ship)))
    assert job["success"], job
    job = e.finished_job(carrier.key, e.capture(carrier.key, document(receive)))
    assert job["success"], job
    e.visible(maker.key, set(ids.values()))
    return {"ids": ids, "s1": s1, "s2": s2, "pallet": pallet, "po": po, "t0": t0,
            "events": {"commission": commission, "pack": pack, "ship": ship,
                       "receive": receive}}


def ours(events: list[dict[str, Any]], story: dict[str, Any]) -> set[str]:
    """The story's events among ``events``, by role."""
    by_id = {v: k for k, v in story["ids"].items()}
    return {by_id[e["eventID"]] for e in events if e.get("eventID") in by_id}


# --- capture -------------------------------------------------------------------------


def test_capture_two_events_signed_by_the_manufacturer(epcis_server: Epcis) -> None:
    e = epcis_server
    maker = e.chain.maker
    serials = [sgtin(unique("c")) for _ in range(2)]
    at = now_ms() - 10_000
    doc = document(*(event(at=at + i, location=maker.location, biz_step="commissioning",
                           disposition="active", epcList=[s]) for i, s in enumerate(serials)))
    answer = e.capture(maker.key, doc)
    assert answer.status == 202, answer.raw[:300]
    assert answer.headers["GS1-EPCIS-Version"] == "2.0"
    assert answer.headers["GS1-CBV-Version"] == "2.0"
    assert answer.headers["GS1-EPCIS-Capture-Limit"] == str(CAPTURE_EVENTS_MAX) == "500"
    size_limit = int(answer.headers["GS1-EPCIS-Capture-File-Size-Limit"])
    assert 100_000 < size_limit < 256 * 1024
    capture_id = answer.json["captureID"]
    assert answer.headers["Location"] == f"/epcis/capture/{capture_id}"
    job = e.finished_job(maker.key, answer)
    assert job["success"] is True and job["running"] is False, job
    assert job["captureID"] == capture_id and job["captureErrorBehaviour"] == "rollback"
    assert job["errors"] == [] and job["eventsCaptured"] == 2
    assert job["finishedAt"] is not None and job["height"] >= 1
    # the capture ID is the relay transaction, on the chain with the party's signed request
    tx: dict[str, Any] = wait_until(lambda: _committed_tx(e, capture_id))
    assert tx["transaction"]["body"]["kind"] == "trace.capture"
    relayed = tx["transaction"]["body"]["payload"]["request"]
    assert relayed["body"] == encode(doc).decode()
    assert relayed["url"] == e.url + "/epcis/capture"
    assert {"signature", "signature-input", "content-digest"} <= set(relayed["headers"])
    # the events are in the view, in full
    for serial in serials:
        query = f"MATCH_epc={quote(serial)}"
        found = wait_until(functools.partial(e.event_list, maker.key, query))
        assert found[0]["epcList"] == [serial]
    # a gateway that forgot the job (a restart) still answers it, from the views
    e.live.run(_forget(e.api, capture_id))
    job = e.job(maker.key, f"/epcis/capture/{capture_id}")
    assert job["success"] is True and job["eventsCaptured"] == 2 and job["errors"] == []


def _committed_tx(e: Epcis, tx_hash: str) -> dict[str, Any] | None:
    answer = http("GET", f"{e.live.url}/v1/transactions/{tx_hash}")
    return answer.json if answer.status == 200 else None


async def _forget(api: EpcisApi, capture_id: str) -> None:
    api.jobs.pop(capture_id, None)


def test_unsigned_capture_is_refused(epcis_server: Epcis) -> None:
    e = epcis_server
    body = encode(document(event(at=now_ms(), location=e.chain.maker.location,
                                 biz_step="commissioning", epcList=[sgtin(unique("u"))])))
    answer = http("POST", e.url + "/epcis/capture", body, {"Content-Type": "application/json"})
    assert answer.status == 401
    assert answer.content_type.startswith("application/problem+json")
    assert answer.json["code"] == "signature_required"
    assert answer.headers["GS1-EPCIS-Version"] == "2.0"
    for path in ("/epcis/events", "/epcis/events/x", f"/epcis/capture/{'0' * 64}"):
        answer = http("GET", e.url + path)
        assert answer.status == 401 and answer.json["code"] == "signature_required", path


def test_invalid_epcis_is_refused_with_its_code(epcis_server: Epcis) -> None:
    e = epcis_server
    maker = e.chain.maker
    good = event(at=now_ms(), location=maker.location, biz_step="commissioning",
                 epcList=[sgtin(unique("i"))])
    missing = {k: v for k, v in good.items() if k != "eventTimeZoneOffset"}
    answer = e.capture(maker.key, document(good, missing))
    assert answer.status == 400, answer.raw[:300]
    problem = answer.json
    assert problem["code"] == "missing_field"
    assert problem["path"] == "epcisBody.eventList[1]"
    assert answer.content_type.startswith("application/problem+json")
    # NaN (decimals are fine: read exactly, never as floats), unknown vocabulary, a
    # wrong document type, another media type
    raw = encode(document(good)).replace(b'"eventTimeZoneOffset"',
                                         b'"example:reading":NaN,"eventTimeZoneOffset"')
    answer = signed(maker.key, "POST", e.url + "/epcis/capture", raw)
    assert answer.status == 400 and answer.json["code"] == "bad_number"
    answer = e.capture(maker.key, document({**good, "bizStep": "teleporting"}))
    assert answer.status == 400 and answer.json["code"] == "unknown_bizstep"
    answer = e.capture(maker.key, {**document(good), "type": "EPCISQueryDocument"})
    assert answer.status == 400 and answer.json["code"] == "bad_document"
    answer = signed(maker.key, "POST", e.url + "/epcis/capture", encode(document(good)),
                    content_type="text/plain")
    assert answer.status == 415
    answer = e.capture(maker.key, document(good), behaviour="sometimes")
    assert answer.status == 400 and answer.json["code"] == "bad_capture_error_behaviour"
    # more than the advertised file size: 413 before anything is parsed
    huge = document(*[good] * 2_000)
    answer = e.capture(maker.key, huge)
    assert answer.status == 413 and answer.json["code"] == "capture_too_large"
    # none of these reached the chain
    assert e.event_list(maker.key, f"MATCH_epc={quote(good['epcList'][0])}") == []


def test_rollback_refuses_all_proceed_captures_the_valid_events(epcis_server: Epcis) -> None:
    e = epcis_server
    maker, carrier = e.chain.maker, e.chain.carrier
    at = now_ms() - 5_000
    good_id, bad_id = f"urn:uuid:{unique('g')}", f"urn:uuid:{unique('b')}"
    good = event(at=at, location=maker.location, biz_step="commissioning",
                 event_id=good_id, epcList=[sgtin(unique("p"))])
    # the maker cannot record an event at the carrier's location: the chain refuses it
    bad = event(at=at + 1, location=carrier.location, biz_step="inspecting",
                action="OBSERVE", event_id=bad_id, epcList=[sgtin(unique("p"))])
    doc = document(good, bad)

    job = e.finished_job(maker.key, e.capture(maker.key, doc))  # rollback by default
    assert job["success"] is False and job["captureErrorBehaviour"] == "rollback", job
    assert [err["code"] for err in job["errors"]] == ["forbidden"]
    assert "event 1" in job["errors"][0]["detail"]
    assert signed(maker.key, "GET", f"{e.url}/epcis/events/{quote(good_id, safe='')}"
                  ).status == 404

    job = e.finished_job(maker.key, e.capture(maker.key, doc, behaviour="proceed"))
    assert job["success"] is True and job["captureErrorBehaviour"] == "proceed", job
    assert job["eventsCaptured"] == 1
    assert [(err["position"], err["code"]) for err in job["errors"]] == [(1, "forbidden")]
    e.visible(maker.key, {good_id})
    assert signed(maker.key, "GET", f"{e.url}/epcis/events/{quote(bad_id, safe='')}"
                  ).status == 404


def test_a_capture_altered_after_signing_is_refused(epcis_server: Epcis) -> None:
    e = epcis_server
    maker = e.chain.maker
    url = e.url + "/epcis/capture"
    serial, forged = sgtin(unique("a")), sgtin(unique("f"))
    body = encode(document(event(at=now_ms(), location=maker.location,
                                 biz_step="commissioning", epcList=[serial])))
    altered = body.replace(serial.encode(), forged.encode())
    assert altered != body
    # over HTTP: the gateway checks the signature first and relays nothing
    answer = http("POST", url, altered, sign(maker.key, "POST", url, body))
    assert answer.status in (400, 401), answer.raw[:300]
    assert answer.content_type.startswith("application/problem+json")
    # a relay that alters the request cannot get it past the contract: the chain verifies
    # the party's signature over the exact bytes (with the digest kept, or recomputed)
    headers = {k.lower(): v for k, v in sign(maker.key, "POST", url, body).items()}
    tampered = {"method": "POST", "url": url, "headers": headers, "body": altered.decode()}
    redigested = {**tampered, "headers": {
        **headers, "content-digest": httpsig_digest(altered)}}
    for request, code in ((tampered, "request_bad_digest"),
                          (redigested, "request_bad_signature")):
        job_id = e.live.run(_relay(e.api, request))
        assert isinstance(job_id, str)
        # the relay's transaction commits; the refusal is its outcome, in the job
        job = wait_until(functools.partial(_finished, e, maker.key, job_id), 20.0)
        assert job["running"] is False and job["success"] is False, job
        assert [err["code"] for err in job["errors"]] == [code]
    for s in (serial, forged):
        assert e.event_list(maker.key, f"MATCH_epc={quote(s)}") == []


def httpsig_digest(body: bytes) -> str:
    from services.sdk import httpsig

    return httpsig.content_digest(body)


def _finished(e: Epcis, key: PrivateKey, job_id: str) -> dict[str, Any] | None:
    job = e.job(key, f"/epcis/capture/{job_id}")
    return None if job["running"] else job


async def _relay(api: EpcisApi, request: dict[str, Any]) -> str:
    return api.captures.relay_capture(request, "rollback").capture_id


def test_capture_job_errors(epcis_server: Epcis) -> None:
    e = epcis_server
    key = e.chain.maker.key
    answer = signed(key, "GET", f"{e.url}/epcis/capture/{'ab' * 32}")
    assert answer.status == 404 and answer.json["code"] == "capture_not_found"
    answer = signed(key, "GET", f"{e.url}/epcis/capture/nothex")
    assert answer.status == 400 and answer.json["code"] == "bad_capture_id"


def test_post_single_event(epcis_server: Epcis) -> None:
    e = epcis_server
    maker = e.chain.maker
    single = event(at=now_ms(), location=maker.location, biz_step="commissioning",
                   epcList=[sgtin(unique("one"))])
    answer = signed(maker.key, "POST", e.url + "/epcis/events", encode(single))
    assert answer.status == 202, answer.raw[:300]
    assert answer.headers["Location"].startswith("/epcis/capture/")
    job = e.finished_job(maker.key, answer)
    assert job["success"] is True, job["errors"]


# --- queries -------------------------------------------------------------------------


def test_query_parameters(epcis_server: Epcis, story: dict[str, Any]) -> None:
    e = epcis_server
    key = e.chain.carrier.key  # any registered key may read
    s1, pallet = story["s1"], story["pallet"]
    maker_dl = identifiers.to_digital_link(e.chain.maker.location)
    carrier_urn = e.chain.carrier.location
    t0 = story["t0"]
    cases: list[tuple[str, set[str]]] = [
        ("EQ_bizStep=shipping", {"ship"}),
        ("EQ_bizStep=urn:epcglobal:cbv:bizstep:shipping", {"ship"}),
        ("EQ_bizStep=https://ref.gs1.org/cbv/BizStep-shipping,receiving", {"ship", "receive"}),
        ("EQ_bizStep=shipping&EQ_bizStep=packing", {"ship", "pack"}),
        # EPCIS 2.0 separates values with | (found in review: it was refused)
        (f"EQ_bizStep={quote('shipping|receiving')}", {"ship", "receive"}),
        (f"MATCH_anyEPC={quote(pallet + '|' + s1)}", {"commission", "pack", "ship",
                                                      "receive"}),
        ("EQ_disposition=in_transit", {"ship"}),
        ("EQ_disposition=urn:epcglobal:cbv:disp:in_progress", {"pack", "receive"}),
        (f"GE_eventTime={epcis_values.format_time(t0 + 1_000)}"
         f"&LT_eventTime={epcis_values.format_time(t0 + 3_000)}", {"pack", "ship"}),
        (f"GE_eventTime={quote('1970-01-01T08:00:00+08:00')}"
         f"&LT_eventTime={epcis_values.format_time(t0 + 1)}", {"commission"}),
        (f"MATCH_epc={s1}", {"commission", "pack"}),  # epcList and childEPCs
        (f"MATCH_epc={identifiers.to_digital_link(s1)}", {"commission", "pack"}),
        (f"MATCH_epc={pallet}", {"ship", "receive"}),  # not the packing: parentID
        (f"MATCH_anyEPC={pallet}", {"pack", "ship", "receive"}),
        (f"MATCH_anyEPC={identifiers.to_digital_link(pallet)},{s1}",
         {"commission", "pack", "ship", "receive"}),
        (f"MATCH_parentID={pallet}", {"pack"}),
        (f"EQ_bizTransaction_po={quote(story['po'])}", {"ship"}),
        (f"EQ_bizTransaction_urn:epcglobal:cbv:btt:po={quote(story['po'])}", {"ship"}),
        ("EQ_bizTransaction_inv=" + quote(story["po"]), set()),
        (f"EQ_readPoint={carrier_urn}", {"receive"}),
        (f"EQ_readPoint={identifiers.to_digital_link(carrier_urn)}", {"receive"}),
        (f"EQ_bizLocation={maker_dl}", {"commission", "pack", "ship"}),
        ("eventType=AggregationEvent", {"pack"}),
        ("EQ_action=OBSERVE", {"ship", "receive"}),
        (f"EQ_eventID={quote(story['ids']['receive'])}", {"receive"}),
        (f"EQ_bizStep=shipping&MATCH_anyEPC={pallet}&EQ_bizLocation={maker_dl}", {"ship"}),
    ]
    for query, expected in cases:
        got = ours(e.event_list(key, query + "&perPage=1000"), story)
        assert got == expected, (query, got)
    # an idpat pattern: every serial of the product
    gtin_class = "urn:epc:idpat:sgtin:6901234.000001.*"
    assert ours(e.event_list(key, f"MATCH_epc={gtin_class}&perPage=1000"), story) == {
        "commission", "pack"}
    # events come back as the chain recorded them (normalised), with their eventID
    shipped = e.event_list(key, f"EQ_eventID={quote(story['ids']['ship'])}")
    assert [without_record_time(x) for x in shipped] == [
        epcis.validate_event(story["events"]["ship"])]
    assert "recordTime" in shipped[0]  # when the chain recorded it


def test_query_document_and_refusals(epcis_server: Epcis, story: dict[str, Any]) -> None:
    e = epcis_server
    key = e.chain.maker.key
    answer = e.events(key, "EQ_bizStep=shipping")
    assert answer.status == 200 and answer.content_type.startswith("application/json")
    assert answer.headers["GS1-EPCIS-Version"] == "2.0"
    doc = answer.json
    assert doc["@context"] == ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"]
    assert doc["type"] == "EPCISQueryDocument" and doc["schemaVersion"] == "2.0"
    assert epcis_values.parse_time(doc["creationDate"]) > 0
    assert doc["epcisBody"]["queryResults"]["queryName"] == "SimpleEventQuery"
    for query, code in (("EQ_color=red", "query_parameter"),
                        ("EQ_bizStep=teleporting", "query_parameter"),
                        ("GE_eventTime=yesterday", "query_parameter"),
                        ("MATCH_epc=not-an-epc", "query_parameter"),
                        ("perPage=0", "query_parameter"),
                        ("perPage=1001", "query_parameter"),
                        ("nextPageToken=garbage", "query_parameter"),
                        ("eventType=PartyEvent", "query_parameter")):
        answer = e.events(key, query)
        assert answer.status == 400, (query, answer.status)
        assert answer.content_type.startswith("application/problem+json")
        assert answer.json["code"] == code
        assert answer.json["epcisException"] == "QueryParameterException"


def test_paging_with_per_page_one_walks_every_event(epcis_server: Epcis,
                                                    story: dict[str, Any]) -> None:
    e = epcis_server
    key = e.chain.maker.key
    query = f"MATCH_anyEPC={story['s1']},{story['pallet']}"
    everything = e.event_list(key, query + "&perPage=1000")
    assert ours(everything, story) == {"commission", "pack", "ship", "receive"}
    url: str | None = f"{e.url}/epcis/events?{query}&perPage=1"
    walked: list[dict[str, Any]] = []
    tokens = []
    while url is not None:
        answer = signed(key, "GET", url)
        assert answer.status == 200, answer.raw[:300]
        page = answer.json["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        assert len(page) == 1
        walked += page
        link = answer.headers.get("Link")
        url = None
        if link is not None:
            target, rel = link.split(";", 1)
            assert rel.strip() == 'rel="next"'
            url = target.strip()[1:-1]
            tokens.append(url.rsplit("nextPageToken=", 1)[1])
    assert walked == everything
    # chain order: the maker's capture, then the carrier's
    assert [story["ids"][k] for k in ("commission", "pack", "ship", "receive")] == [
        x["eventID"] for x in walked if x.get("eventID") in story["ids"].values()]
    # a token belongs to its query
    answer = e.events(key, f"EQ_bizStep=shipping&nextPageToken={tokens[0]}")
    assert answer.status == 400 and answer.json["code"] == "query_parameter"


def without_record_time(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != "recordTime"}


def test_event_by_id_and_by_hash(epcis_server: Epcis, story: dict[str, Any]) -> None:
    e = epcis_server
    key = e.chain.carrier.key
    receive = story["events"]["receive"]
    expected = epcis.validate_event(receive)
    ehash = eventhash.event_hash(expected)
    assert ehash.startswith("ni:///sha-256;") and ehash.endswith("?ver=CBV2.0")
    for ident in (story["ids"]["receive"], ehash, ehash.split("?")[0]):
        answer = signed(key, "GET", f"{e.url}/epcis/events/{quote(ident, safe='')}")
        assert answer.status == 200, (ident, answer.raw[:200])
        events = answer.json["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        assert [without_record_time(x) for x in events] == [expected]
    # an event is found by its hash too; serving it (recordTime, eventID) changes no hash
    commission_hash = eventhash.event_hash(epcis.validate_event(story["events"]["commission"]))
    answer = signed(key, "GET", f"{e.url}/epcis/events/{quote(commission_hash, safe='')}")
    assert answer.status == 200
    served = answer.json["epcisBody"]["queryResults"]["resultsBody"]["eventList"][0]
    assert served["eventID"] and eventhash.event_hash(served) == commission_hash
    answer = signed(key, "GET", f"{e.url}/epcis/events/{quote('urn:uuid:nothing', safe='')}")
    assert answer.status == 404 and answer.json["code"] == "event_not_found"


def test_query_parsing_units() -> None:
    flt, per_page, token = parse_event_query(
        [("MATCH_epc", "urn:epc:id:sgtin:6901234.000001.a,b,urn:epc:id:sgtin:6901234.000001.c"),
         ("perPage", "7"), ("nextPageToken", "t")], paging=True)
    assert per_page == 7 and token == "t"
    assert flt.normalised["MATCH_epc"] == sorted([
        "https://id.gs1.org/01/06901234000016/21/a%2Cb",
        "https://id.gs1.org/01/06901234000016/21/c"])
    with pytest.raises(Problem):
        parse_event_query([("perPage", "5")])  # paging is not part of a named query
    with pytest.raises(Problem):
        parse_event_query([("EQ_bizTransaction_", "x:y")])


# --- named queries and webhooks ------------------------------------------------------


def test_webhook_subscription_delivers_signed_callbacks(epcis_server: Epcis) -> None:
    e = epcis_server
    maker, carrier = e.chain.maker, e.chain.carrier
    receiver = Receiver(fail_first=1)  # the first callback fails: it is retried
    e.live.run(receiver.start())
    try:
        _webhook(e, receiver, maker, carrier)
    finally:
        e.live.run(receiver.stop())


def _webhook(e: Epcis, receiver: Receiver, maker: Any, carrier: Any) -> None:
    serials = [sgtin(unique("w")) for _ in range(4)]
    name = unique("shipments-")
    at = now_ms() - 20_000

    def commission(i: int) -> dict[str, Any]:
        return event(at=at + i, location=maker.location, biz_step="commissioning",
                     event_id=f"urn:uuid:{name}-{i}", epcList=[serials[i]])

    before = e.finished_job(maker.key, e.capture(maker.key, document(commission(0))))
    assert before["success"], before
    query = {"MATCH_epc": serials, "EQ_bizStep": "commissioning"}
    created = signed(maker.key, "POST", e.url + "/epcis/queries",
                     encode({"name": name, "query": query}))
    assert created.status == 201, created.raw[:300]
    assert created.json["owner"] == maker.id and created.headers["Location"].endswith(name)
    again = signed(carrier.key, "POST", e.url + "/epcis/queries",
                   encode({"name": name, "query": {}}))
    assert again.status == 409 and again.json["code"] == "query_exists"
    bad = signed(maker.key, "POST", e.url + "/epcis/queries",
                 encode({"name": unique("q"), "query": {"EQ_colour": "red"}}))
    assert bad.status == 400 and bad.json["code"] == "query_parameter"
    subs = e.url + f"/epcis/queries/{name}/subscriptions"
    token = "s3cret-" + unique("token-")
    for dest in ("http://example.com/hook", "ftp://127.0.0.1/x"):
        answer = signed(maker.key, "POST", subs,
                        encode({"dest": dest, "signatureToken": token, "stream": True}))
        assert answer.status == 422 and answer.json["code"] == "bad_dest", dest
    answer = signed(carrier.key, "POST", subs,
                    encode({"dest": receiver.url, "signatureToken": token, "stream": True}))
    assert answer.status == 403  # only the query's owner subscribes
    answer = signed(maker.key, "POST", subs,
                    encode({"dest": receiver.url, "signatureToken": token, "stream": True}))
    assert answer.status == 201, answer.raw[:300]
    subscription_id = answer.json["subscriptionID"]

    after = [commission(1), commission(2)]
    for ev in after:  # two captures: two blocks
        job = e.finished_job(maker.key, e.capture(maker.key, document(ev)))
        assert job["success"], job

    def delivered() -> list[str]:
        return [x["eventID"] for h, body, status in receiver.calls if status == 204
                for x in json.loads(body)["epcisBody"]["queryResults"]["resultsBody"][
                    "eventList"]]

    wait_until(lambda: len(delivered()) >= 2, timeout=30)
    assert delivered() == [f"urn:uuid:{name}-1", f"urn:uuid:{name}-2"]  # in order, not -0
    # subscriptions and cursors live in MongoDB: what is captured while the dispatcher is
    # down reaches the dest once a fresh instance (a restarted gateway) runs
    e.live.run(e.api.stop())
    try:
        job = e.finished_job(maker.key, e.capture(maker.key, document(commission(3))))
        assert job["success"], job
        fresh = EpcisApi(e.api.host, webhook_limits=WebhookLimits(loopback_allowed=True))
        e.live.run(fresh.start())
        try:
            wait_until(lambda: len(delivered()) >= 3, timeout=30)
        finally:
            e.live.run(fresh.stop())
    finally:
        e.live.run(e.api.start())
    assert delivered() == [f"urn:uuid:{name}-{i}" for i in (1, 2, 3)]
    assert receiver.calls[0][2] == 500  # the first attempt failed and was retried
    for headers, body, _ in receiver.calls:
        expected = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["GS1-Signature"], expected)
        assert headers["GS1-Query-Name"] == name
        doc = json.loads(body)
        assert doc["type"] == "EPCISQueryDocument"
        assert doc["epcisBody"]["queryResults"]["queryName"] == name
        assert doc["epcisBody"]["queryResults"]["subscriptionID"] == subscription_id
    # the named query runs on demand too, over everything
    answer = signed(maker.key, "GET", f"{e.url}/epcis/queries/{name}/events?perPage=2")
    assert answer.status == 200
    page = answer.json["epcisBody"]["queryResults"]
    assert page["queryName"] == name
    assert [x["eventID"] for x in page["resultsBody"]["eventList"]] == [
        f"urn:uuid:{name}-0", f"urn:uuid:{name}-1"]
    assert "nextPageToken=" in answer.headers["Link"]
    answer = signed(maker.key, "GET", f"{e.url}/epcis/queries/{name}/events?EQ_action=ADD")
    assert answer.status == 400
    # unsubscribing: the owner only, once
    one = f"{subs}/{subscription_id}"
    assert signed(carrier.key, "DELETE", one).status == 403
    assert signed(maker.key, "DELETE", one).status == 204
    assert signed(maker.key, "DELETE", one).status == 404
    assert signed(maker.key, "GET", f"{e.url}/epcis/queries/{name}").json["query"] == {
        "MATCH_epc": serials, "EQ_bizStep": ["commissioning"]}
    assert signed(maker.key, "DELETE", f"{e.url}/epcis/queries/{name}").status == 204
    assert signed(maker.key, "GET", f"{e.url}/epcis/queries/{name}").status == 404


def test_report_if_empty(epcis_server: Epcis) -> None:
    e = epcis_server
    maker = e.chain.maker
    receiver = Receiver()
    e.live.run(receiver.start())
    name = unique("quiet-")
    token = unique("a-long-shared-secret-")
    created = signed(maker.key, "POST", e.url + "/epcis/queries",
                     encode({"name": name, "query": {"MATCH_epc": sgtin(unique("none"))}}))
    assert created.status == 201
    answer = signed(maker.key, "POST", f"{e.url}/epcis/queries/{name}/subscriptions",
                    encode({"dest": receiver.url, "signatureToken": token, "stream": True,
                            "reportIfEmpty": True}))
    assert answer.status == 201
    quick = EpcisApi(e.api.host, webhook_limits=WebhookLimits(
        poll_interval_s=0.1, report_if_empty_interval_s=0.3, loopback_allowed=True))
    e.live.run(quick.start())
    try:
        wait_until(lambda: receiver.calls, timeout=15)
    finally:
        e.live.run(quick.stop())
        e.live.run(receiver.stop())
        signed(maker.key, "DELETE", f"{e.url}/epcis/queries/{name}")
    headers, body, _ = receiver.calls[0]
    assert headers["GS1-Signature"] == hmac.new(token.encode(), body,
                                                hashlib.sha256).hexdigest()
    results = json.loads(body)["epcisBody"]["queryResults"]
    assert results["resultsBody"]["eventList"] == []
    assert results["subscriptionID"] == answer.json["subscriptionID"]


def test_openapi_documents_the_binding(epcis_server: Epcis) -> None:
    from openapi_spec_validator import validate

    doc = openapi_document(epcis_server.api.endpoints(), title="t", version="1")
    validate(doc)
    paths = doc["paths"]
    for path, method in (("/epcis/capture", "post"), ("/epcis/capture/{capture_id}", "get"),
                         ("/epcis/events", "post"), ("/epcis/events", "get"),
                         ("/epcis/events/{event_id}", "get"), ("/epcis/queries", "post"),
                         ("/epcis/queries/{name}/events", "get"),
                         ("/epcis/queries/{name}/subscriptions", "post"),
                         ("/epcis/queries/{name}/subscriptions/{subscription_id}", "delete")):
        assert method in paths[path], (path, method)
        assert paths[path][method]["security"] == [{"httpMessageSignature": []}]
    names = {p["name"] for p in paths["/epcis/events"]["get"]["parameters"]}
    assert {"EQ_bizStep", "GE_eventTime", "MATCH_anyEPC", "perPage", "nextPageToken"} <= names


@pytest.mark.parametrize("dest", [
    "https://169.254.169.254/latest/meta-data/", "https://10.0.0.5:6379/",
    "https://[::1]:8080/admin", "https://100.64.0.1/", "https://224.0.0.1/",
    "https://[::ffff:127.0.0.1]/", "http://127.0.0.1:15672/api/definitions",
    "https://127.0.0.1:9100/metrics"])
def test_webhooks_may_not_target_internal_addresses(dest: str) -> None:
    """Found in review (SSRF): a subscriber could make the gateway POST to the cloud
    metadata service, the broker's management API or the node's admin port."""
    from services.gateway.problems import Problem
    from services.trace.edge.epcis.resolver import check_dest as _check_dest

    with pytest.raises(Problem) as refused:
        _check_dest(dest)
    assert refused.value.code == "bad_dest"


def test_the_delivery_resolver_refuses_names_of_internal_addresses() -> None:
    import asyncio

    from services.trace.edge.epcis.resolver import PublicResolver, address_allowed
    from services.trace.edge.epcis.resolver import check_dest as _check_dest

    async def resolve(host: str, loopback: bool) -> object:
        resolver = PublicResolver(loopback_allowed=loopback)
        try:
            return await resolver.resolve(host, 443)
        except OSError as exc:
            return exc
        finally:
            await resolver.close()

    assert isinstance(asyncio.run(resolve("localhost", False)), OSError)
    assert isinstance(asyncio.run(resolve("0x7f000001", False)), OSError)
    assert isinstance(asyncio.run(resolve("localhost", True)), list)
    assert address_allowed("8.8.8.8", loopback_allowed=False)
    _check_dest("https://partner.example.com/hooks/epcis")  # names are resolved later
    _check_dest("http://127.0.0.1:8999/hook", loopback_allowed=True)


def test_deliveries_pause_when_the_owner_key_is_revoked() -> None:
    """Found in review: an off-boarded party kept receiving every matching event."""
    import types

    from services.ledger.core import consortium
    from services.ledger.core.state import StateView
    from services.ledger.sim.testnet import make_testnet
    from tests.ledger.core.conftest import Chain

    net = make_testnet()
    chain = Chain(net.genesis)
    key = net.client_keys[0]
    org = consortium.key_record(chain.view(), key.key_id)["org"]  # type: ignore[index]
    state = [chain.state]
    gateway = types.SimpleNamespace(chain=types.SimpleNamespace(
        view=lambda: StateView(state[0])))
    api = EpcisApi(gateway)
    sub = {"owner_key": key.key_id, "owner": org}
    assert api.webhooks.owner_inactive(sub) is None
    assert str(api.webhooks.owner_inactive({**sub, "owner": "someone-else"})).startswith(
        "owner_key_inactive")
    chain.block([chain.tx(key, "consortium.revoke_key", {"key_id": key.key_id})])
    state[0] = chain.state
    assert str(api.webhooks.owner_inactive(sub)).startswith("owner_key_inactive")


def test_errors_name_their_epcis_exception(epcis_server: Epcis) -> None:
    answer = signed(epcis_server.chain.carrier.key, "GET",
                    f"{epcis_server.url}/epcis/events?EQ_colour=red")
    assert answer.status == 400
    assert answer.json["type"] == "epcisException:QueryParameterException"
    assert answer.json["code"] and answer.json["title"]
    missing = signed(epcis_server.chain.maker.key, "GET",
                     f"{epcis_server.url}/epcis/queries/no-such-query")
    assert missing.status == 404
    assert missing.json["type"] == "epcisException:NoSuchNameException"


def test_served_events_carry_the_chains_record_time_and_an_event_id() -> None:
    from services.trace.edge.epcis.query import stored_event

    doc = {"event": {"type": "ObjectEvent", "recordTime": "2001-01-01T00:00:00Z"},
           "recordTime": 1_767_225_600_000, "event_hash": "ni:///sha-256;ab?ver=CBV2.0"}
    served = stored_event(doc)
    assert served["recordTime"] == epcis_values.format_time(1_767_225_600_000)
    assert served["eventID"] == "ni:///sha-256;ab?ver=CBV2.0"


def test_subscriptions_follow_the_standards_stream_or_schedule(epcis_server: Epcis) -> None:
    e = epcis_server
    maker = e.chain.maker
    name = unique("q-controls")
    assert signed(maker.key, "POST", e.url + "/epcis/queries",
                  encode({"name": name, "query": {}})).status == 201
    subs = f"{e.url}/epcis/queries/{name}/subscriptions"
    base = {"dest": "https://partner.example.com/hook", "signatureToken": "s3cret-" + "x" * 32}
    neither = signed(maker.key, "POST", subs, encode(base))
    assert neither.status == 400
    assert neither.json["type"] == "epcisException:SubscriptionControlsException"
    scheduled = signed(maker.key, "POST", subs, encode({**base, "schedule": {"hour": "1"}}))
    assert scheduled.status == 501
    assert signed(maker.key, "POST", subs, encode({**base, "stream": True})).status == 201


def test_transformation_inputs_and_outputs_are_queryable(epcis_server: Epcis) -> None:
    e = epcis_server
    maker = e.chain.maker
    raw, made = sgtin(unique("in")), sgtin(unique("out"))
    event_id = f"urn:uuid:{unique('ev-')}-transform"
    transform = event("TransformationEvent", at=now_ms() - 10_000, location=maker.location,
                      biz_step="commissioning", disposition="active", action=None,
                      event_id=event_id, inputEPCList=[raw], outputEPCList=[made])
    job = e.finished_job(maker.key, e.capture(maker.key, document(transform)))
    assert job["success"], job
    e.visible(maker.key, {event_id})

    def found(query: str) -> list[str]:
        return [x["eventID"] for x in e.event_list(maker.key, query)]

    assert found(f"MATCH_inputEPC={raw}") == [event_id]
    assert found(f"MATCH_outputEPC={made}") == [event_id]
    assert found(f"MATCH_inputEPC={made}") == []
    unsupported = signed(maker.key, "GET", f"{e.url}/epcis/events?orderBy=eventTime")
    assert unsupported.status == 501
    assert unsupported.json["type"] == "epcisException:ImplementationException"


def test_discovery_and_listing_endpoints(epcis_server: Epcis) -> None:
    """EPCIS 2.0 discovery (found in review: answered 405/404)."""
    e = epcis_server
    maker = e.chain.maker
    options = http("OPTIONS", e.url + "/epcis/capture")
    assert options.status == 204
    assert options.headers["GS1-Capture-Error-Behaviour"] == "rollback, proceed"
    assert int(options.headers["GS1-EPCIS-Capture-Limit"]) > 0
    types = http("GET", e.url + "/epcis/eventTypes")
    assert types.status == 200 and "TransformationEvent" in types.json["names"]
    name = unique("q-list")
    assert signed(maker.key, "POST", e.url + "/epcis/queries",
                  encode({"name": name, "query": {"EQ_bizStep": ["shipping"]}})).status == 201
    mine = signed(maker.key, "GET", e.url + "/epcis/queries")
    assert mine.status == 200 and name in [q["name"] for q in mine.json["queries"]]
    theirs = signed(e.chain.carrier.key, "GET", e.url + "/epcis/queries")
    assert name not in [q["name"] for q in theirs.json["queries"]]
    subs = f"{e.url}/epcis/queries/{name}/subscriptions"
    assert signed(maker.key, "POST", subs, encode({
        "dest": "https://partner.example.com/hook", "signatureToken": "s" * 20,
        "stream": True})).status == 201
    listed = signed(maker.key, "GET", subs)
    assert listed.status == 200 and len(listed.json["subscriptions"]) == 1
    assert signed(e.chain.carrier.key, "GET", subs).status == 403


def test_sensor_values_as_json_numbers_are_exact(epcis_server: Epcis) -> None:
    """EPCIS 2.0 clients send "value": 26.1 (found in review: refused as a float). It is
    read as exact decimal text, hashed like the number, and served back as a number."""
    e = epcis_server
    maker = e.chain.maker
    event_id = f"urn:uuid:{unique('ev-')}-reading"
    reading = event(at=now_ms() - 5_000, location=maker.location, biz_step="inspecting",
                    action="OBSERVE", event_id=event_id, epcList=[sgtin(unique("r"))],
                    sensorElementList=[{"sensorReport": [
                        {"type": "Temperature", "value": 0, "uom": "CEL"}]}])
    raw = encode(document(reading)).replace(b'"value":0', b'"value":26.10')
    job = e.finished_job(maker.key, signed(maker.key, "POST", e.url + "/epcis/capture", raw))
    assert job["success"], job
    e.visible(maker.key, {event_id})
    answer = signed(maker.key, "GET", f"{e.url}/epcis/events/{quote(event_id, safe='')}")
    assert b'"value":26.1,' in answer.raw or b'"value":26.1}' in answer.raw \
        or b'"value":26.10' in answer.raw
    served = answer.json["epcisBody"]["queryResults"]["resultsBody"]["eventList"][0]
    assert served["sensorElementList"][0]["sensorReport"][0]["value"] == 26.1


def test_no_captured_string_can_pose_as_a_served_number() -> None:
    from services.trace.edge.epcis.binding import dumps as _dumps
    from services.trace.edge.epcis.binding import numbers_as_numbers

    crafted = 'a"\x00\x01n:5\x01\x00'
    event = numbers_as_numbers({"ex:note": crafted, "quantityList": [
        {"epcClass": "urn:epc:class:lgtin:4012345.012345.lot1", "quantity": "2.5"}]})
    out = json.loads(_dumps({"eventList": [event]}))
    assert out["eventList"][0]["ex:note"] == crafted
    assert out["eventList"][0]["quantityList"][0]["quantity"] == 2.5


@pytest.mark.parametrize("dest", ["https://[64:ff9b::a9fe:a9fe]/", "https://[2002:a9fe:a9fe::]/",
                                  "https://[::127.0.0.1]/"])
def test_ipv6_forms_embedding_ipv4_are_not_public(dest: str) -> None:
    from services.gateway.problems import Problem
    from services.trace.edge.epcis.resolver import check_dest as _check_dest

    with pytest.raises(Problem):
        _check_dest(dest)
