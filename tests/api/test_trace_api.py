"""The trace domain through the gateway: the demo scenario end to end, and the public
endpoints' answers and errors."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest

from services.runtime.bench_trace import History
from services.runtime.demo import Demo
from services.sdk.client import ApiError
from services.trace import identifiers
from services.trace.contract import item_key
from tests.api.conftest import LiveNetwork

pytestmark = pytest.mark.functional


def test_the_demo_scenario_proves_every_step(live: LiveNetwork) -> None:
    lines: list[str] = []
    assert Demo(live.url, live.data, out=lines.append).run() == 0
    assert lines[-1].startswith("demo: all 8 steps proved")
    assert any("suspected_clone" in line for line in lines)
    assert any("penalty of 250.00 EUR" in line for line in lines)


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


def test_the_scan_that_reveals_a_clone_is_told_at_once(live: LiveNetwork) -> None:
    """Found in review: the consumer whose scan revealed the copy was told 'genuine'."""
    history = History(live.url, live.data, out=lambda _: None)
    history.onboard()
    history.certify()
    serial = history._sgtin(f"{history.run_id}clone")
    history.send(history.maker, "trace.capture", {"events": [history._event(
        "maker", type="ObjectEvent", epcList=[serial], action="ADD",
        bizStep="commissioning", disposition="active")]})
    link = identifiers.to_digital_link(serial)
    consumer = live.client()
    first = consumer.call("GET", "/v1/trace/verify", query={"link": link, "country": "DE"})
    assert first["verdict"] == "genuine" and first["scan_recorded"]
    key = item_key(link)
    assert key is not None
    history._wait(lambda: consumer.call("GET", f"/v1/state/trace/{key}"),
                  lambda answer: (answer["value"] or {}).get("last_scan_country") == "DE")
    second = consumer.call("GET", "/v1/trace/verify", query={"link": link, "country": "PL"})
    assert second["verdict"] == "suspected_clone"
