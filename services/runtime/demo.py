"""``ecosphere demo``: a China–Europe supply chain played through the gateway.

Against a running ``ecosphere up`` (its data directory gives the platform
operator's admin key), with real signed transactions through the SDK:

1. the operator onboards a certification body, a Chinese tea manufacturer, a
   rail carrier and two European retailers (Germany, France), and accredits the
   certification body;
2. the manufacturer registers its product and locations; the certification
   body issues an ORGANIC certificate (a verifiable document anchored on chain);
3. the manufacturer records the transformation of a raw-tea lot into serialised
   tins, packs them into a case; the carrier departs with it, its sensor reading on
   the event (cold-chain agreements and their penalties are the trade domain's,
   docs/adr/0009-trade.md);
4. a European consumer verifies a tin (genuine, certified), reads its
   provenance and checks one step's proof offline against the genesis alone;
5. clone verdicts rest on evidence (docs/adr/0005-clone-verdicts.md): the brand
   owner registers a tin's secure tag and a consumer taps it (possession proven);
   a copy of that tap's link scanned "from China" is told *replayed*, and an
   anonymous scan from China only raises a warning — the tin stays genuine; the
   rail carrier in Poland and the retailer in Germany scanning a tin hours apart
   is its route, not a conflict; two registered retailers (Germany, France)
   offering the same tin the same day flag it a suspected clone;
6. personal data (docs/adr/0008-personal-data-vault.md): a consumer in Germany
   stores a delivery address in the vault (encrypted on the client; the chain gets
   a salted commitment), readable by themself and customs; grants it to the rail
   carrier for delivery; the carrier reads it on the grant and customs on its legal
   basis, both accesses judged and logged on chain; the consumer exports their data
   and sees both; asks for erasure, which every holder acknowledges; then the chain
   still verifies (a transaction and a state proof, offline) and nobody can read the
   address any more. The personal values used are :attr:`Demo.personal_values`:
   tests/privacy scans every block for them.

Each step prints what it proved; the demo exits 1 if a step fails, and 2 (one line,
no traceback) if the data directory or the gateway is not that of a running
``ecosphere up``.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import sys
import time
import urllib.error
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.ledger.core.genesis import Genesis
from services.ledger.node import keys
from services.runtime.datadir import DataDir, load_genesis
from services.sdk import proofs
from services.sdk.client import ApiError, Client
from services.sdk.privacy import PrivacyClient, PrivacyError
from services.sdk.vault import EncryptionKey
from services.trace import certificate_schema, identifiers, wrapping
from services.trace.items import item_key
from services.trace.scans import tag_code

DAY_MS = 86_400_000


class DemoFailed(Exception):
    pass


class DemoUnusable(Exception):
    """The data directory or the gateway is not that of a running ``ecosphere up``."""


#: what talking to a gateway can raise besides its own problems (ApiError): refused
#: or reset connections and timeouts, something that does not speak HTTP
NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError,
                  http.client.HTTPException)


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
        #: every personal value the demo handed to the vault (never on the chain)
        self.personal_values: list[str] = []
        #: the vault record the privacy steps made (erased by the end)
        self.record_id: str | None = None
        self.enc: dict[str, EncryptionKey] = {}  # the privacy steps' X25519 keys
        self.carrier_access: str | None = None
        # Company prefixes: a Chinese one (690-699) for the manufacturer.
        suffix = int(self.run_id, 16) % 90_000 + 10_000
        self.cp = {"maker": f"69{suffix:05d}", "carrier": f"40{suffix:05d}",
                   "retail": f"41{suffix:05d}", "cert": f"42{suffix:05d}",
                   "shop": f"30{suffix:05d}"}

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
        self.tag_and_copies(serials[1])
        self.readers_flag_a_clone(serials[2])
        self.personal_data()
        self.out(f"demo: all {self.steps} steps proved")
        return 0

    def onboard(self) -> None:
        r = self.run_id
        self.cert = self.party("certifier")
        self.maker = self.party("maker")
        self.carrier = self.party("carrier")
        self.retail = self.party("retailer")
        self.shop = self.party("shop")
        self.orgs = {"cert": f"tuv-demo-{r}", "maker": f"fujian-tea-{r}",
                     "carrier": f"rail-express-{r}", "retail": f"eu-shop-{r}",
                     "shop": f"fr-shop-{r}"}
        roles = {"cert": ["certifier"], "maker": ["manufacturer"], "carrier": ["carrier"],
                 "retail": ["retailer"], "shop": ["retailer"]}
        clients = {"cert": self.cert, "maker": self.maker, "carrier": self.carrier,
                   "retail": self.retail, "shop": self.shop}
        for who, org in self.orgs.items():
            key = clients[who].key
            if key is None:
                raise DemoFailed(f"the demo's {who} client has no key")
            self.send(self.operator, "consortium.register_organisation",
                      {"id": org, "name": org, "roles": roles[who],
                       "admin_key": key.public.raw.hex()})
            self.send(self.operator, "trace.assign_prefix", {"org": org,
                                                             "prefix": self.cp[who]})
        self.step("the operator onboarded a certification body, a Chinese manufacturer, a "
                  "rail carrier and two EU retailers, each with its GS1 company prefix",
                  "5 organisations registered by signed transactions, each receipt's "
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
        data = {"$template": {"type": certificate_schema.CERTIFICATE_TEMPLATE},
                "id": f"organic-{self.run_id}", "type": "ORGANIC",
                "issuer": {"id": self.orgs["cert"], "name": "TUV demo"},
                "subject": {"kind": "product", "id": self.gtin}, "scope": "*",
                "validFrom": _iso(now - DAY_MS), "validUntil": _iso(now + 180 * DAY_MS),
                "findings": "EU 2018/848 organic production rules met"}
        wrapped = wrapping.wrap_batch([data], salt=lambda: str(uuid.uuid4()))
        self.send(self.cert, "trace.anchor_certificate", {
            "merkle_root": wrapped[0].merkle_root, "type": "ORGANIC",
            "subject": {"kind": "product", "id": self.gtin}, "scope": "*",
            "valid_from": now - DAY_MS, "valid_until": now + 180 * DAY_MS})
        shared = wrapping.obfuscate(wrapped[0], ["findings"])
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
        self.send(self.carrier, "trace.capture", {"events": [self._event(
            "carrier", type="ObjectEvent", epcList=serials, action="OBSERVE",
            bizStep="departing", disposition="in_transit",
            sensorElementList=[{"sensorMetadata": {"time": _iso(int(time.time() * 1000))},
                                "sensorReport": [{"type": "Temperature", "value": "18.5",
                                                  "uom": "CEL"}]}])]})
        self.step("the carrier departed with the goods at 18.5 °C",
                  "its own signed event carries the sensor reading, in the tins' history")
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

    def _verify(self, link: str, country: str) -> dict[str, Any]:
        answer: dict[str, Any] = Client(self.gateway).call(
            "GET", "/v1/trace/verify", query={"link": link, "country": country})
        return answer

    def _item(self, serial: str) -> Callable[[], dict[str, Any]]:
        key = item_key(serial)
        self.expect(key is not None, f"{serial} names no item")
        return lambda: self.operator.call("GET", f"/v1/state/trace/{key}")["value"] or {}

    def tag_and_copies(self, serial: str) -> None:
        link = identifiers.to_digital_link(serial)
        tag = keys.generate()  # a secure tag's key: on a real chip it never leaves it
        self.send(self.maker, "trace.register_tags", {"tags": [
            {"epc": link, "public_key": tag.public.hex()}]})
        tap = tag_code(tag, link, 1)
        tapped = f"{link}?ctr={tap.counter}&sig={tap.signature.hex()}"
        first = self._verify(tapped, "DE")
        self.expect(first["verdict"] == "genuine" and first["scan"]["proof"] == "valid"
                    and first["scan"]["recorded"], f"the tap: {first}")
        self._wait(self._item(serial), lambda i: i.get("tag_counter") == 1)
        self.step("the brand owner registered a tin's secure tag; a consumer in Germany "
                  "tapped it",
                  "the tag's fresh code (counter 1) verified against the key on the "
                  "chain: the genuine tag is in the consumer's hands")
        copied = self._verify(tapped, "CN")
        bare = self._verify(link, "CN")
        self.expect(copied["scan"]["proof"] == "replayed" and any(
            w["code"] == "replayed_code" for w in copied["warnings"]),
            f"the copied link: {copied}")
        self.expect(bare["scan"]["evidence"] == "anonymous" and bare["warnings"],
                    f"the anonymous scan: {bare}")
        item = self._wait(self._item(serial), lambda i: i.get("replays", 0) >= 1
                          and i.get("anonymous_scans", 0) >= 2)
        after = self._verify(link, "DE")
        self.expect(not item["clone_suspected"] and after["verdict"] == "genuine",
                    f"anonymous scans decided a verdict: {after}")
        self.step("a copy of that tap's link, and then the bare link, were scanned "
                  "'from China' the same day",
                  "the copied code was told 'replayed' and the anonymous scan got a "
                  f"warning ({bare['warnings'][0]['code']}); the tin is still "
                  f"{after['verdict']}: neither scan proves where a tin is")

    def readers_flag_a_clone(self, serial: str) -> None:
        link = identifiers.to_digital_link(serial)
        self.send(self.carrier, "trace.record_scan", {"epc": link, "country": "PL"})
        self.send(self.retail, "trace.record_scan", {"epc": link, "country": "DE"})
        route = self._verify(link, "DE")
        self.expect(route["verdict"] != "suspected_clone", f"verdict: {route['verdict']}")
        flagged = self.send(self.shop, "trace.record_scan", {"epc": link, "country": "FR"})
        later = self._verify(link, "DE")
        self.expect(later["verdict"] == "suspected_clone", f"verdict: {later['verdict']}")
        self.step("registered readers scanned another tin with their own keys: the rail "
                  "carrier in Poland and the retailer in Germany (its route: verdict "
                  f"{route['verdict']}), then a second retailer in France the same day",
                  f"verdict {later['verdict']} (block {flagged.get('height')}): two "
                  "accountable shops cannot both offer the one genuine tin; a clone "
                  "suspicion event was raised for the brand owner")

    # --- personal data ------------------------------------------------------------------

    def personal_data(self) -> None:
        consumer, customs, carrier = self.privacy_onboard()
        record_id = self.store_address(consumer)
        self.share_and_read(record_id, consumer, customs, carrier)
        self.export_shows_accesses(record_id, consumer)
        self.erase(record_id, consumer, customs, carrier)
        self.erased_and_still_verified(record_id, consumer, carrier)

    def _enc_key(self, name: str) -> EncryptionKey:
        """A party's X25519 key, kept (0600) in the run's demo folder."""
        path = self.data.root / "demo" / self.run_id / f"{name}.enc"
        if path.exists():
            return EncryptionKey.load(path)
        key = EncryptionKey.generate()
        key.save(path)
        return key

    def privacy_onboard(self) -> tuple[PrivacyClient, PrivacyClient, PrivacyClient]:
        person = self.party("consumer")
        if person.key is None:
            raise DemoFailed("the demo's consumer client has no key")
        # The organisation's id and name are a pseudonym: no personal data on the chain.
        self.orgs["consumer"] = f"consumer-{self.run_id}"
        self.send(self.operator, "consortium.register_organisation",
                  {"id": self.orgs["consumer"], "name": self.orgs["consumer"],
                   "roles": ["consumer"], "admin_key": person.key.public.raw.hex()})
        consumer = PrivacyClient(person)
        customs = PrivacyClient(Client(self.gateway, key=keys.load(
            self.data.admin_key("customs")), genesis=self.genesis))
        carrier = PrivacyClient(self.carrier)
        self.enc = {"consumer": self._enc_key("consumer"), "customs": self._enc_key("customs"),
                    "carrier": self._enc_key("carrier")}
        consumer.register_key(self.enc["consumer"], scope="self", country="DE")
        customs.register_key(self.enc["customs"], scope="org", country="DE")
        carrier.register_key(self.enc["carrier"], scope="org", country="PL")
        self.step("a consumer in Germany joined with their own key and registered an X25519 "
                  "encryption key; customs and the rail carrier registered their "
                  "organisations' keys",
                  f"3 public keys on the chain (the consumer's {self.enc['consumer'].key_id}"
                  "); the private keys never left their holders")
        return consumer, customs, carrier

    def store_address(self, consumer: PrivacyClient) -> str:
        address = f"Anna Schmidt, Lindenstraße {int(self.run_id, 16) % 200 + 1}, 10969 Berlin"
        self.personal_values.append(address)
        ref = consumer.put_record("address", address, jurisdiction="DE",
                                  key=self.enc["consumer"], holders=["org:customs-joint"])
        self.record_id = ref.record_id
        on_chain = consumer.record_on_chain(ref.record_id)
        self.expect(on_chain["commitment"] == ref.commitment
                    and sorted(on_chain["holders"]) == sorted(ref.holders),
                    f"the record on the chain: {on_chain}")
        self.step("the consumer stored a delivery address in the vault, readable by "
                  "themself and customs",
                  f"encrypted on the client: the chain holds only a salted commitment "
                  f"({ref.commitment[:12]}…) and the ciphertext's hash; the vault holds the "
                  "ciphertext and the data key wrapped (HPKE) for each holder")
        return ref.record_id

    def share_and_read(self, record_id: str, consumer: PrivacyClient,
                       customs: PrivacyClient, carrier: PrivacyClient) -> None:
        address = self.personal_values[-1]
        grantee = f"org:{self.orgs['carrier']}"
        consumer.grant(record_id, grantee, "delivery", int(time.time() * 1000) + 30 * DAY_MS,
                       key=self.enc["consumer"])
        self.step("the consumer granted the address to the rail carrier for delivery, for "
                  "30 days",
                  "the grant is on the chain, bound to the key wrapped for the carrier "
                  "(wrap_hash); the consumer's signature is the consent")
        read = carrier.read(record_id, purpose="delivery", basis="grant",
                            key=self.enc["carrier"])
        self.expect(read == address, "the carrier read another value")
        self.carrier_access = carrier.last_access
        self.step("the carrier read the address to deliver",
                  "the access was judged on the chain (a live grant) and logged; the "
                  "value decrypted matches the record's commitment")
        read = customs.read(record_id, purpose="customs_clearance", basis="legal_basis",
                            key=self.enc["customs"])
        self.expect(read == address, "customs read another value")
        self.step("customs read the address for customs clearance, without a grant",
                  "customs' roles hold a legal basis for addresses (ICS2/H7): judged and "
                  "logged on the chain like any access")

    def export_shows_accesses(self, record_id: str, consumer: PrivacyClient) -> None:
        wanted = {(f"org:{self.orgs['carrier']}", "grant"),
                  ("org:customs-joint", "legal_basis")}

        def seen(export: dict[str, Any]) -> bool:
            return wanted <= {(a["party"], a["basis"]) for a in export["access_log"]
                              if a["record_id"] == record_id and a["outcome"] == "granted"}

        export = self._wait(lambda: consumer.export(self.enc["consumer"]), seen)
        values = [r["value"] for r in export["records"] if r["record_id"] == record_id]
        self.expect(values == self.personal_values[-1:], "the export lacks the address")
        self.expect(any(g["record_id"] == record_id for g in export["grants"]),
                    "the export lacks the grant")
        self.step("the consumer exported their data",
                  "machine-readable: the address (decrypted on their machine), the grant, "
                  f"and all {len(export['access_log'])} accesses to it — their own, the "
                  "carrier's on the grant, customs' on its legal basis")

    def erase(self, record_id: str, consumer: PrivacyClient, customs: PrivacyClient,
              carrier: PrivacyClient) -> None:
        consumer.erase(record_id)
        carrier.acknowledge_erasure(record_id, "org")
        customs.acknowledge_erasure(record_id, "org")
        # the record is its parties' to read (the gateway's read policy): the subject's
        record = self._wait(lambda: consumer.client.state(f"privacy/record/{record_id}",
                                                          signed=True),
                            lambda r: r["status"] == "erased")
        erasure = record["erasure"]
        self.step("the consumer asked for the address's erasure; the carrier and customs "
                  "acknowledged deleting their copies, the vault's custodian its ciphertext",
                  f"record erased on the chain: {len(erasure['acknowledged'])} parties "
                  "acknowledged (" + ", ".join(erasure["acknowledged"]) + "): the data key "
                  "exists nowhere, the ciphertext is noise")

    def erased_and_still_verified(self, record_id: str, consumer: PrivacyClient,
                                  carrier: PrivacyClient) -> None:
        created = self._wait(lambda: consumer.client.transaction(record_id, verify=True,
                                                                 signed=True),
                             lambda t: t["height"] > 0)
        record = consumer.client.state(f"privacy/record/{record_id}", verify=True,
                                       signed=True)
        self.expect(record["status"] == "erased", f"the proven record: {record}")
        self.step("the chain still verifies after the erasure",
                  f"the record's creation (block {created['height']}) and its state "
                  "(erased) checked offline against the genesis validators alone: "
                  "nothing on chain was rewritten")
        try:
            carrier.envelope(record_id, self.carrier_access or "")
            raise DemoFailed("the vault still hands out the erased record")
        except PrivacyError as exc:
            self.expect(exc.status == 410, f"the envelope: {exc}")
        try:
            carrier.read(record_id, purpose="delivery", basis="grant", key=self.enc["carrier"])
            raise DemoFailed("the carrier read an erased record")
        except PrivacyError as exc:
            self.expect(exc.reason == "record_erased", f"the carrier's read: {exc}")
        export = consumer.export(self.enc["consumer"])
        self.expect(all(r["value"] is None for r in export["records"]
                        if r["record_id"] == record_id), "the export still decrypts it")
        self.step("nobody can read the address any more",
                  "the vault answers 410 Gone to the carrier's earlier access, a new one is "
                  "refused on the chain (record_erased), and the consumer's own export "
                  "holds no ciphertext")

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


def preflight(gateway: str, data: DataDir) -> Genesis:
    """The genesis of ``data``, once its admin key is readable and the gateway answers
    for the same chain; else :class:`DemoUnusable` saying what is wrong, in one line."""
    hint = "--data must be the data directory of the running `ecosphere up`"
    admin = data.admin_key("ledger")
    for needed in (data.genesis_path, admin):
        if not needed.is_file():
            raise DemoUnusable(f"{needed} not found: {hint}")
    try:
        genesis = load_genesis(data)
        keys.load(admin)
    except (OSError, ValueError, keys.KeyFileError) as exc:
        raise DemoUnusable(f"{data.root} is unusable ({exc}): {hint}") from None
    try:
        status = Client(gateway, timeout_s=10).call("GET", "/v1/status")
    except (ApiError, ValueError, OSError, http.client.HTTPException) as exc:
        # ValueError: a URL without a scheme
        raise DemoUnusable(f"cannot reach an ecosphere gateway at {gateway} ({exc}): is "
                           "`ecosphere up` running there? (--gateway)") from None
    if not isinstance(status, dict) or "genesis_hash" not in status:
        raise DemoUnusable(f"{gateway} does not answer like an ecosphere gateway "
                           "(--gateway)")
    if status["genesis_hash"] != genesis.hash.hex():
        raise DemoUnusable(f"the gateway at {gateway} runs another chain than "
                           f"{data.root} (genesis {str(status['genesis_hash'])[:12]}… vs "
                           f"{genesis.hash.hex()[:12]}…): {hint}")
    return genesis


def run_demo(gateway: str, data_dir: str) -> int:
    data = DataDir(Path(data_dir))
    try:
        preflight(gateway, data)
    except DemoUnusable as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    demo = Demo(gateway, data)
    try:
        return demo.run()
    except (DemoFailed, ApiError, PrivacyError, proofs.ProofError) as exc:
        print(f"demo: FAILED at step {demo.steps + 1}: {exc}")
        return 1
    except NETWORK_ERRORS as exc:
        print(f"demo: FAILED at step {demo.steps + 1}: the gateway at {gateway} stopped "
              f"answering ({exc})")
        return 1
