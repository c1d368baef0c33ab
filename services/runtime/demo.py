"""``ecosphere demo``: a China–Europe supply chain played through the gateway.

Against a running ``ecosphere up`` (its data directory gives the platform
operator's admin key), with real signed transactions through the SDK:

1. the operator onboards a certification body, a Chinese tea manufacturer, a
   rail carrier and a European retailer, and accredits the certification body;
2. the manufacturer registers its product and locations; the certification
   body issues an ORGANIC certificate (a verifiable document anchored on chain);
3. the manufacturer records the transformation of a raw-tea lot into serialised
   tins, packs them into a case; the carrier ships the case under a cold-chain
   agreement;
4. a European consumer verifies a tin (genuine, certified), reads its
   provenance and checks one step's proof offline against the genesis alone;
5. the same serial scanned in two countries within hours is flagged as a
   suspected clone;
6. the carrier's temperature reading outside the agreed range applies a
   penalty from its deposit.

Each step prints what it proved; the demo exits non-zero if any step fails.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.ledger.node import keys
from services.runtime.datadir import DataDir
from services.sdk import proofs
from services.sdk.client import ApiError, Client
from services.trace import documents, identifiers

DAY_MS = 86_400_000


class DemoFailed(Exception):
    pass


def _iso(ms: int) -> str:
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _gln(company_prefix: str, ref: str) -> str:
    body = company_prefix + ref
    return body + identifiers.check_digit(body)


class Demo:
    def __init__(self, gateway: str, data: DataDir, out: Callable[[str], None] = print) -> None:
        self.gateway = gateway
        self.data = data
        self.out = out
        genesis = proofs.load_genesis_file(str(data.genesis_path))
        self.genesis = genesis
        self.run_id = uuid.uuid4().hex[:6]
        self.operator = Client(gateway, key=keys.load(data.admin_key("ledger")),
                               genesis=genesis)
        self.steps = 0
        # Company prefixes: a Chinese one (690-699) for the manufacturer.
        suffix = int(self.run_id, 16) % 90_000 + 10_000
        self.cp = {"maker": f"69{suffix:05d}", "carrier": f"40{suffix:05d}",
                   "retail": f"41{suffix:05d}", "cert": f"42{suffix:05d}"}

    # --- plumbing ---------------------------------------------------------------------

    def step(self, title: str, proved: str) -> None:
        self.steps += 1
        self.out(f"[{self.steps:02d}] {title}\n     proved: {proved}")

    def party(self, name: str) -> Client:
        path = self.data.root / "demo" / self.run_id / f"{name}.key"
        return Client(self.gateway, key=keys.load_or_create(path), genesis=self.genesis)

    def send(self, client: Client, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        result = client.send(kind, payload, verify=True)
        if result.get("status") != "committed":
            raise DemoFailed(f"{kind} did not commit: {result}")
        return result

    @staticmethod
    def expect(condition: bool, message: str) -> None:
        if not condition:
            raise DemoFailed(message)

    # --- the scenario ---------------------------------------------------------------------

    def run(self) -> int:
        self.onboard()
        self.certify()
        serials = self.produce_and_ship()
        self.consumer(serials[0])
        self.clone(serials[1])
        self.penalty(serials)
        self.out(f"demo: all {self.steps} steps proved")
        return 0

    def onboard(self) -> None:
        r = self.run_id
        self.cert = self.party("certifier")
        self.maker = self.party("maker")
        self.carrier = self.party("carrier")
        self.retail = self.party("retailer")
        self.orgs = {"cert": f"tuv-demo-{r}", "maker": f"fujian-tea-{r}",
                     "carrier": f"rail-express-{r}", "retail": f"eu-shop-{r}"}
        roles = {"cert": ["certifier"], "maker": ["manufacturer"], "carrier": ["carrier"],
                 "retail": ["retailer"]}
        clients = {"cert": self.cert, "maker": self.maker, "carrier": self.carrier,
                   "retail": self.retail}
        for who, org in self.orgs.items():
            key = clients[who].key
            assert key is not None
            self.send(self.operator, "consortium.register_organisation",
                      {"id": org, "name": org, "roles": roles[who],
                       "admin_key": key.public.raw.hex()})
            self.send(self.operator, "trace.assign_prefix", {"org": org,
                                                             "prefix": self.cp[who]})
        self.step("the operator onboarded a certification body, a Chinese manufacturer, a "
                  "rail carrier and an EU retailer, each with its GS1 company prefix",
                  "4 organisations registered by signed transactions, each receipt's "
                  "inclusion proof and commit certificate checked against the genesis; "
                  "only a prefix's licensee can register products and locations under it")
        self.send(self.operator, "trace.accredit",
                  {"org": self.orgs["cert"], "types": ["ORGANIC", "CE"],
                   "valid_until": int(time.time() * 1000) + 365 * DAY_MS})
        self.step("the certification body was accredited for ORGANIC and CE",
                  "only an accredited body can anchor certificates of those types")

    def certify(self) -> None:
        body = "0" + self.cp["maker"] + "00001"  # indicator, company prefix, item ref
        self.gtin = body + identifiers.check_digit(body)
        self.send(self.maker, "trace.register_product",
                  {"gtin": self.gtin, "name": "Wuyi oolong tea, 100 g tin",
                   "company_prefix_length": 7, "origin_country": "CN", "hs_code": "090230"})
        countries = {"maker": "CN", "carrier": "PL", "retail": "DE"}
        self.locations = {}
        for who, client in (("maker", self.maker), ("carrier", self.carrier),
                            ("retail", self.retail)):
            gln = _gln(self.cp[who], "00001")
            self.send(client, "trace.register_location",
                      {"gln": gln, "name": f"{who} site", "country": countries[who]})
            self.locations[who] = f"urn:epc:id:sgln:{self.cp[who]}.00001.0"
        now = int(time.time() * 1000)
        data = {"$template": {"type": documents.CERTIFICATE_TEMPLATE},
                "id": f"organic-{self.run_id}", "type": "ORGANIC",
                "issuer": {"id": self.orgs["cert"], "name": "TUV demo"},
                "subject": {"kind": "product", "id": self.gtin}, "scope": "*",
                "validFrom": _iso(now - DAY_MS), "validUntil": _iso(now + 180 * DAY_MS),
                "findings": "EU 2018/848 organic production rules met"}
        wrapped = documents.wrap_batch([data], salt=lambda: str(uuid.uuid4()))
        self.send(self.cert, "trace.anchor_certificate", {
            "merkle_root": wrapped[0].merkle_root, "type": "ORGANIC",
            "subject": {"kind": "product", "id": self.gtin}, "scope": "*",
            "valid_from": now - DAY_MS, "valid_until": now + 180 * DAY_MS})
        shared = documents.obfuscate(wrapped[0], ["findings"])
        report = self.operator.call("POST", "/v1/trace/certificates/verify",
                                    body={"document": shared.to_json()})
        self.expect(report["valid"], f"the certificate does not verify: {report}")
        self.step("the product was registered and certified ORGANIC",
                  "the certificate verifies (integrity, status, issuer) with a field "
                  "hidden by selective disclosure")

    def _event(self, who: str, **fields: Any) -> dict[str, Any]:
        now = int(time.time() * 1000)
        return {"eventTime": _iso(now), "eventTimeZoneOffset": "+08:00" if who == "maker"
                else "+01:00", "readPoint": {"id": self.locations[who]},
                "bizLocation": {"id": self.locations[who]}, **fields}

    def _sgtin(self, serial: str) -> str:
        return identifiers.sgtin_from_gtin(self.gtin, serial, 7).to_urn()

    def produce_and_ship(self) -> list[str]:
        serials = [self._sgtin(f"{self.run_id}{n}") for n in range(3)]
        lot = identifiers.Lgtin(self.gtin, f"RAW{self.run_id}", 7).to_urn()
        self.send(self.maker, "trace.capture", {"events": [
            self._event("maker", type="ObjectEvent", epcList=serials, action="ADD",
                        bizStep="commissioning", disposition="active"),
            self._event("maker", type="TransformationEvent",
                        inputQuantityList=[{"epcClass": lot, "quantity": 300, "uom": "GRM"}],
                        outputEPCList=serials, bizStep="commissioning",
                        disposition="active"),
        ]})
        self.case = f"urn:epc:id:sscc:{self.cp['maker']}.0{int(self.run_id, 16) % 10**9:09d}"
        self.send(self.maker, "trace.capture", {"events": [self._event(
            "maker", type="AggregationEvent", parentID=self.case, childEPCs=serials,
            action="ADD", bizStep="packing", disposition="in_progress")]})
        self.step("raw tea was transformed into 3 serialised tins, packed into a case",
                  "events signed by the brand owner at its own registered location, "
                  "recorded with their CBV 2.0 hashes (duplicates impossible)")
        self.send(self.maker, "trace.propose_agreement", {
            "id": f"cold-chain-{self.run_id}", "counterparty": self.orgs["carrier"],
            "responsible": self.orgs["carrier"], "epcs": serials,
            "rules": [{"type": "temperature_range", "min": "5", "max": "30", "uom": "CEL",
                       "penalty": {"amount": 25_000, "currency": "EUR"}}],
            "deposit": {"amount": 100_000, "currency": "EUR"}})
        self.send(self.carrier, "trace.accept_agreement", {"id": f"cold-chain-{self.run_id}"})
        self.send(self.carrier, "trace.capture", {"events": [self._event(
            "carrier", type="ObjectEvent", epcList=serials, action="OBSERVE",
            bizStep="departing", disposition="in_transit",
            sensorElementList=[{"sensorMetadata": {"time": _iso(int(time.time() * 1000))},
                                "sensorReport": [{"type": "Temperature", "value": "18.5",
                                                  "uom": "CEL"}]}])]})
        self.step("the carrier agreed a 5–30 °C cold chain with a €1,000.00 deposit and "
                  "departed with the goods at 18.5 °C",
                  "the agreement's rules are data on the chain, accepted by both parties")
        return serials

    def consumer(self, serial: str) -> None:
        link = identifiers.to_digital_link(serial)
        consumer = Client(self.gateway, genesis=self.genesis)
        verdict = consumer.call("GET", "/v1/trace/verify", query={"link": link,
                                                                   "country": "DE"})
        self.expect(verdict["verdict"] == "genuine", f"verdict: {verdict['verdict']}")
        self.expect(verdict["certified"], "no valid certificate")
        history = self._wait(lambda: consumer.call(
            "GET", "/v1/trace/provenance", query={"id": serial}),
            lambda h: len(h["steps"]) >= 4)
        kinds = [s["type"] for s in history["steps"]]
        self.expect("TransformationEvent" in kinds and "AggregationEvent" in kinds,
                    f"provenance lacks steps: {kinds}")
        proof = consumer.transaction(history["steps"][0]["tx_hash"], verify=True)
        self.step(f"a consumer in Germany scanned {link}: genuine, ORGANIC certified",
                  f"provenance of {len(history['steps'])} steps from raw material to "
                  f"shipping; step 1's inclusion proof (block {proof['height']}) checked "
                  "offline against the genesis validators alone")

    def clone(self, serial: str) -> None:
        link = identifiers.to_digital_link(serial)
        consumer = Client(self.gateway)
        consumer.call("GET", "/v1/trace/verify", query={"link": link, "country": "DE"})
        consumer.call("GET", "/v1/trace/verify", query={"link": link, "country": "PL"})
        later = self._wait(lambda: consumer.call("GET", "/v1/trace/verify",
                                                 query={"link": link, "country": "PL"}),
                           lambda v: v["verdict"] == "suspected_clone")
        self.step("the same serial was scanned in Germany and Poland within hours",
                  f"verdict {later['verdict']}: a clone suspicion event was raised for the "
                  "brand owner")

    def penalty(self, serials: list[str]) -> None:
        self.send(self.carrier, "trace.capture", {"events": [self._event(
            "carrier", type="ObjectEvent", epcList=serials, action="OBSERVE",
            bizStep="arriving", disposition="in_transit",
            sensorElementList=[{"sensorMetadata": {"time": _iso(int(time.time() * 1000))},
                                "sensorReport": [{"type": "Temperature", "value": "41.0",
                                                  "uom": "CEL"}]}])]})
        penalties = self._wait(lambda: self.operator.call(
            "GET", "/v1/trace/penalties", query={"responsible": self.orgs["carrier"]}),
            lambda p: bool(p["items"]))
        applied = penalties["items"][0]
        self.step("the carrier reported 41.0 °C on arrival",
                  f"a penalty of {applied['amount'] / 100:.2f} {applied['currency']} was "
                  "applied automatically against the carrier's deposit")

    def _wait(self, fetch: Callable[[], Any], ready: Callable[[Any], bool],
              timeout_s: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = fetch()
                if ready(last):
                    return last
            except ApiError as exc:
                if exc.status not in (404, 503):
                    raise
            time.sleep(0.3)
        raise DemoFailed(f"timed out waiting; last answer: {json.dumps(last)[:300]}")


def run_demo(gateway: str, data_dir: str) -> int:
    demo = Demo(gateway, DataDir(Path(data_dir)))
    try:
        return demo.run()
    except (DemoFailed, ApiError, proofs.ProofError) as exc:
        print(f"demo: FAILED at step {demo.steps + 1}: {exc}")
        return 1

