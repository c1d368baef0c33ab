"""The trace domain through the gateway: the demo scenario end to end, and the public
endpoints' answers and errors."""

from __future__ import annotations

import pytest

from services.runtime.demo import Demo
from services.sdk.client import ApiError
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
    forged = {"version": "ecosphere.verifiable-document/v1", "data": {"id": "x:string:y"},
              "signature": {"type": "SHA256MerkleProof", "targetHash": "0" * 64,
                            "merkleRoot": "0" * 64, "proof": [], "index": 0,
                            "treeSize": 1}}
    report = client.call("POST", "/v1/trace/certificates/verify", body={"document": forged})
    assert report["valid"] is False
    assert {"integrity", "status", "issuer"} <= set(report)
    assert report["status"]["ok"] is False
