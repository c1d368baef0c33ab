"""The trace domain through the gateway: the demo scenario end to end, and the public
endpoints' answers and errors."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from services.ledger.core.crypto import PrivateKey
from services.runtime.bench_trace import History
from services.runtime.datadir import DataDir, ensure_genesis
from services.runtime.demo import Demo, run_demo
from services.sdk.client import ApiError
from services.trace import identifiers
from services.trace.edge.scans import ScanLimits, ScanRecorder
from services.trace.items import item_key
from services.trace.scans import tag_code
from tests.live import LiveNetwork

pytestmark = pytest.mark.functional


def test_the_demo_scenario_proves_every_step(live: LiveNetwork) -> None:
    lines: list[str] = []
    assert Demo(live.url, live.data, out=lines.append).run() == 0
    assert lines[-1].startswith("demo: all 18 steps proved")
    assert any("suspected_clone" in line for line in lines)
    assert any("'replayed'" in line for line in lines)


def test_verify_answers_for_unknown_and_malformed_links(live: LiveNetwork) -> None:
    client = live.client()
    unknown = client.call("GET", "/v1/trace/verify", query={
        "link": "https://id.gs1.org/01/04000000000013/21/nope", "country": "DE"})
    assert unknown["verdict"] == "unknown_product" and unknown["scan_recorded"] is False
    for link, code in (("https://id.gs1.org/01/04000000000014/21/x", "bad_check_digit"),
                       ("urn:epc:id:sscc:0614141.1234567890", "not_serialised")):
        with pytest.raises(ApiError) as refused:
            client.call("GET", "/v1/trace/verify", query={"link": link, "country": "DE"})
        assert refused.value.status == 400 and refused.value.code == code
    with pytest.raises(ApiError) as bad_country:
        client.call("GET", "/v1/trace/verify", query={
            "link": "https://id.gs1.org/01/04000000000013/21/1", "country": "Germany"})
    assert bad_country.value.code == "bad_query"


def test_provenance_and_products_not_found(live: LiveNetwork) -> None:
    client = live.client()
    with pytest.raises(ApiError) as none:
        client.call("GET", "/v1/trace/provenance",
                    query={"id": "https://id.gs1.org/01/04000000000013/21/none"})
    assert none.value.status == 404 and none.value.code == "no_history"
    with pytest.raises(ApiError) as missing:
        client.call("GET", "/v1/trace/products/04000000000013")
    assert missing.value.code == "product_not_found"


def test_certificate_verification_reports_each_check(live: LiveNetwork) -> None:
    client = live.client()
    forged: dict[str, Any] = {
              "version": "ecosphere.verifiable-document/v1", "data": {"id": "x:string:y"},
              "signature": {"type": "SHA256MerkleProof", "targetHash": "0" * 64,
                            "merkleRoot": "0" * 64, "proof": [], "index": 0,
                            "treeSize": 1}}
    report = client.call("POST", "/v1/trace/certificates/verify", body={"document": forged})
    assert report["valid"] is False
    odd = {**forged, "signature": {**forged["signature"], "merkleRoot": "\u00e9" * 64}}
    assert client.call("POST", "/v1/trace/certificates/verify",
                       body={"document": odd})["valid"] is False  # once a 500
    assert {"integrity", "status", "issuer"} <= set(report)
    assert report["status"]["ok"] is False


def test_provenance_of_a_50_step_history_follows_containment_and_new_events(
        live: LiveNetwork) -> None:
    history = History(live.url, live.data, out=lambda _: None)
    history.onboard()
    history.certify()
    tins = history._pallet(0)
    case, pallet = (identifiers.to_digital_link(x) for x in history.containers[0])
    client = live.client()

    def provenance(ident: str, fresh: bool = False) -> dict[str, Any]:
        query = {"id": ident, **({"fresh": "true"} if fresh else {})}
        answer: dict[str, Any] = client.call("GET", "/v1/trace/provenance", query=query)
        return answer

    first = history._wait(lambda: provenance(tins[0]), lambda h: len(h["steps"]) == 50)
    assert provenance(tins[0]) == first == provenance(tins[0], fresh=True)
    steps = first["steps"]
    assert [s["bizStep"] for s in steps][-1] == "retail_selling"
    vias = {s["via"] for s in steps}
    assert {"item", f"parent:{case}", f"parent:{pallet}"} <= vias
    assert any(v.startswith("input:") for v in vias)  # the raw-tea lot
    sold = [s for s in steps if s["bizStep"] == "retail_selling"]
    assert len(sold) == 1  # the other tins' sales are not this tin's history
    # The case's history (cached), then a new event on the case: the answer follows.
    before = provenance(case)
    assert len(before["steps"]) == 43  # its own 5, the pallet's 38
    history.send(history.retail, "trace.capture", {"events": [history._at(
        "retail", 200, type="ObjectEvent", epcList=[case], action="OBSERVE",
        bizStep="storing", disposition="in_progress")]})
    after = history._wait(lambda: provenance(case),
                          lambda h: len(h["steps"]) == 44)
    assert after["steps"][-1]["bizStep"] == "storing"
    assert len(provenance(tins[0])["steps"]) == 50
    metrics = urllib.request.urlopen(f"{live.url}/metrics", timeout=5).read().decode()
    hits = [line for line in metrics.splitlines()
            if line.startswith("ecosphere_provenance_cache_hits_total ")]
    assert hits and float(hits[0].split()[1]) >= 1


@pytest.fixture(scope="module")
def brand(live: LiveNetwork) -> History:
    """A brand owner with a registered, certified product (once per module)."""
    history = History(live.url, live.data, out=lambda _: None)
    history.onboard()
    history.certify()
    return history


def commissioned(history: History, name: str) -> str:
    """The Digital Link of a newly commissioned tin."""
    serial = history._sgtin(f"{history.run_id}{name}")
    history.send(history.maker, "trace.capture", {"events": [history._event(
        "maker", type="ObjectEvent", epcList=[serial], action="ADD",
        bizStep="commissioning", disposition="active")]})
    return identifiers.to_digital_link(serial)


def verify(live: LiveNetwork, link: str, country: str, **query: Any) -> dict[str, Any]:
    answer: dict[str, Any] = live.client().call(
        "GET", "/v1/trace/verify", query={"link": link, "country": country, **query})
    return answer


def chain_item(live: LiveNetwork, history: History, link: str,
               ready: Any = lambda item: True) -> dict[str, Any]:
    key = item_key(link)
    assert key is not None
    answer: dict[str, Any] = history._wait(
        lambda: live.client().call("GET", f"/v1/state/trace/{key}")["value"] or {}, ready)
    return answer


def test_two_anonymous_verifications_from_two_countries_brand_nothing(
        live: LiveNetwork, brand: History) -> None:
    """Issue 10: two anonymous calls ("from DE", then "from CN") turned an untouched
    genuine tin into suspected_clone, for everyone, for good."""
    link = commissioned(brand, "anon")
    first = verify(live, link, "DE")
    assert first["verdict"] == "genuine" and first["scan_recorded"]
    assert first["scan"] == {"evidence": "anonymous", "proof": "absent", "recorded": True,
                             "not_recorded_reason": None}
    chain_item(live, brand, link, lambda item: item.get("last_scan_country") == "DE")
    second = verify(live, link, "CN")
    assert second["verdict"] == "genuine"
    assert [w["code"] for w in second["warnings"]] == ["scan_anomaly"]
    item = chain_item(live, brand, link, lambda item: item.get("anonymous_scans") == 2)
    assert item["clone_suspected"] is False and item["anomalies"] == 1
    assert verify(live, link, "DE")["verdict"] == "genuine"


def test_a_tag_code_in_the_link_is_judged_and_a_copy_of_it_is_replayed(
        live: LiveNetwork, brand: History) -> None:
    link = commissioned(brand, "tag")
    tag = PrivateKey.derive(f"test/tag/{brand.run_id}")
    brand.send(brand.maker, "trace.register_tags", {"tags": [
        {"epc": link, "public_key": tag.public.hex()}]})
    code = tag_code(tag, link, 7)
    tapped = f"{link}?ctr=7&sig={code.signature.hex().upper()}"  # as NTAG 424 writes hex
    first = verify(live, tapped, "DE")
    assert first["verdict"] == "genuine"
    assert first["scan"] == {"evidence": "possession", "proof": "valid", "recorded": True,
                             "not_recorded_reason": None}
    assert first["item"]["tagged"] is True and first["warnings"] == []
    # the same code again — a copied link — before and after its batch commits
    for _ in range(2):
        again = verify(live, link, "CN", tag_counter=7, tag_signature=code.signature.hex())
        assert again["scan"]["proof"] == "replayed" and again["verdict"] == "genuine"
        assert "replayed_code" in [w["code"] for w in again["warnings"]]
        chain_item(live, brand, link, lambda item: item.get("tag_counter") == 7)
    later = tag_code(tag, link, 8)
    fresh = verify(live, link, "DE", tag_counter=8, tag_signature=later.signature.hex())
    assert fresh["scan"]["proof"] == "valid"
    forged = verify(live, f"{link}?ctr=9&sig={'ab' * 64}", "DE")
    assert forged["scan"]["proof"] == "invalid" and forged["verdict"] == "genuine"
    bare = verify(live, link, "DE")
    assert "tag_not_tapped" in [w["code"] for w in bare["warnings"]]
    item = chain_item(live, brand, link, lambda item: item.get("replays", 0) >= 1)
    assert item["clone_suspected"] is False


def test_malformed_tag_codes_are_problems(live: LiveNetwork) -> None:
    link = "https://id.gs1.org/01/04000000000013/21/1"
    sig = "ab" * 64
    client = live.client()
    for query, code in (
            ({"link": f"{link}?ctr=1"}, "incomplete_tag_code"),
            ({"link": f"{link}?ctr=1&ctr=2&sig={sig}"}, "incomplete_tag_code"),
            ({"link": f"{link}?ctr=x&sig={sig}"}, "bad_tag_code"),
            ({"link": f"{link}?ctr={2**53}&sig={sig}"}, "bad_tag_code"),
            ({"link": f"{link}?ctr=1&sig=abc"}, "bad_tag_code"),
            ({"link": link, "tag_counter": "1"}, "incomplete_tag_code"),
            ({"link": link, "tag_counter": "1", "tag_signature": "xy"}, "bad_query"),
            ({"link": f"{link}?ctr=1&sig={sig}", "tag_counter": "2", "tag_signature": sig},
             "conflicting_tag_code")):
        with pytest.raises(ApiError) as refused:
            client.call("GET", "/v1/trace/verify", query={**query, "country": "DE"})
        assert (refused.value.status, refused.value.code) == (400, code), query


def test_a_tag_answering_after_decommissioning_is_told_at_once(
        live: LiveNetwork, brand: History) -> None:
    """The genuine tag answering after its item was decommissioned (moved onto other
    goods, or a recall left it with a consumer) is told at once, and reported to the
    brand owner, but never branded a clone: a tag code carries no time (ADR 0005,
    amended)."""
    link = commissioned(brand, "reused")
    tag = PrivateKey.derive(f"test/reused/{brand.run_id}")
    brand.send(brand.maker, "trace.register_tags", {"tags": [
        {"epc": link, "public_key": tag.public.hex()}]})
    brand.send(brand.maker, "trace.capture", {"events": [brand._event(
        "maker", type="ObjectEvent", epcList=[link], action="DELETE",
        bizStep="decommissioning", disposition="destroyed")]})
    anonymous = verify(live, link, "DE")
    assert anonymous["verdict"] == "decommissioned"  # an anonymous scan proves nothing
    code = tag_code(tag, link, 1)
    tapped = verify(live, link, "DE", tag_counter=1, tag_signature=code.signature.hex())
    assert tapped["verdict"] == "decommissioned"
    assert tapped["scan"]["evidence"] == "possession"
    warnings = {w["code"]: w["message"] for w in tapped["warnings"]}
    assert "brand owner" in warnings["scan_anomaly"]


def test_anonymous_scans_beyond_the_budget_are_answered_not_recorded(
        live: LiveNetwork, brand: History) -> None:
    """The budget: a burst beyond the bucket is answered, not recorded, and the relay
    sends at most one scan transaction per interval."""
    host = live.network.nodes["gateway"].gateway
    assert host is not None
    api = host.plugins["trace"].api  # type: ignore[attr-defined]
    normal = api.scans
    tight = ScanLimits(rate_per_s=0.001, burst=3, batch_max=2, batch_interval_ms=700)

    async def use(recorder: ScanRecorder) -> None:
        await api.scans.close()
        api.scans = recorder

    link = commissioned(brand, "budget")
    started = int(time.time() * 1000)
    live.run(use(ScanRecorder(lambda: api.gateway.relay, tight)))
    try:
        answers = [verify(live, link, country)["scan"]
                   for country in ("DE", "FR", "PL", "CN", "US", "IT")]
        assert [a["recorded"] for a in answers] == [True] * 3 + [False] * 3
        assert {a["not_recorded_reason"] for a in answers[3:]} == {"budget_exhausted"}
        chain_item(live, brand, link, lambda item: item.get("anonymous_scans") == 3)
    finally:
        live.run(use(ScanRecorder(lambda: api.gateway.relay, normal.limits)))
    batches = brand._wait(lambda: [
        tx for tx in live.client().call("GET", "/v1/transactions", query={
            "kind": "trace.record_scans", "limit": 200})["items"]
        if tx["created_at"] >= started and any(
            s["epc"] == link for s in tx["payload"]["scans"])],
        lambda found: sum(len(tx["payload"]["scans"]) for tx in found) == 3)
    sent = sorted(tx["created_at"] for tx in batches)
    assert len(sent) == 2  # 2 + 1 scans
    assert sent[1] - sent[0] >= tight.batch_interval_ms - 50


def test_the_demo_needs_the_data_and_the_gateway_of_a_running_network(
        live: LiveNetwork, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 10: a wrong --data or --gateway ended in a FileNotFoundError or URLError
    traceback; now one line says what is wrong, and the exit status is 2."""
    other = DataDir(tmp_path / "other")
    ensure_genesis(other)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    for gateway, data, says in (
            (live.url, tmp_path / "nowhere", "--data must be the data directory"),
            (live.url, other.root, "runs another chain"),
            (closed, live.data.root, "cannot reach an ecosphere gateway"),
            ("127.0.0.1:8080", live.data.root, "cannot reach an ecosphere gateway")):
        assert run_demo(gateway, str(data)) == 2
        out = capsys.readouterr()
        lines = out.err.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], lines
        assert "Traceback" not in out.err + out.out
