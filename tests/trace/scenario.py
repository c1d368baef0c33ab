"""A small supply chain on a hand-driven chain, shared by the trace contract tests.

Organisations: a certification body, a Chinese manufacturer (brand owner), a
carrier and two European retailers (DE, FR), onboarded by the platform operator;
the operator also accredits the certification body.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from typing import Any

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.execution import BlockExecution
from services.ledger.sim.testnet import make_testnet
from services.trace import certificate_schema, identifiers, wrapping
from services.trace.scans import tag_code
from tests.ledger.core.conftest import Chain, rejected_codes

GTIN = "06901234000016"  # company prefix 6901234 (China), item reference 00001
CPL = 7
DAY_MS = 86_400_000


def gln(cp: str, ref: str) -> str:
    body = cp + ref
    return body + identifiers.check_digit(body)


def sgln(cp: str, ref: str) -> str:
    return f"urn:epc:id:sgln:{cp}.{ref}.0"


def sgtin(serial: str) -> str:
    return f"urn:epc:id:sgtin:{GTIN[1:1 + CPL]}.{GTIN[0]}{GTIN[1 + CPL:13]}.{serial}"


def link(serial: str) -> str:
    """The canonical GS1 Digital Link of a serial of GTIN (what a tag signs)."""
    return identifiers.to_digital_link(sgtin(serial))


def iso(ms: int) -> str:
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@dataclass
class Org:
    id: str
    roles: list[str]
    key: PrivateKey
    cp: str = ""

    @property
    def gln(self) -> str:
        return gln(self.cp, "00001")

    @property
    def location(self) -> str:
        return sgln(self.cp, "00001")


@dataclass
class Scenario:
    chain: Chain
    operator: PrivateKey
    certifier: Org
    maker: Org
    carrier: Org
    retailer: Org
    second_retailer: Org
    salts: itertools.count[int] = field(default_factory=itertools.count)

    def run(self, key: PrivateKey, kind: str, payload: dict[str, Any],
            *, time: int | None = None) -> BlockExecution:
        tx = self.chain.tx(key, kind, payload, created_at=time)
        return self.chain.block([tx], time=time)

    def ok(self, key: PrivateKey, kind: str, payload: dict[str, Any],
           *, time: int | None = None) -> BlockExecution:
        result = self.run(key, kind, payload, time=time)
        assert not result.rejected, rejected_codes(result)
        return result

    def code(self, key: PrivateKey, kind: str, payload: dict[str, Any],
             *, time: int | None = None) -> str:
        result = self.run(key, kind, payload, time=time)
        assert len(result.rejected) == 1, "expected a refusal"
        return result.rejected[0].code

    def salt(self) -> str:
        return f"salt-{next(self.salts):012d}-scenario"

    def event(self, org: Org, epcs: list[str], biz_step: str, *, at: int | None = None,
              action: str = "ADD", disposition: str = "active",
              temperatures: list[str] | None = None, location: str | None = None
              ) -> dict[str, Any]:
        when = self.chain.next_time if at is None else at
        event: dict[str, Any] = {
            "type": "ObjectEvent", "eventTime": iso(when), "eventTimeZoneOffset": "+00:00",
            "epcList": epcs, "action": action, "bizStep": biz_step,
            "disposition": disposition,
            "readPoint": {"id": location or org.location},
            "bizLocation": {"id": location or org.location},
        }
        if temperatures:
            event["sensorElementList"] = [{
                "sensorMetadata": {"time": iso(when)},
                "sensorReport": [{"type": "Temperature", "value": t, "uom": "CEL"}
                                 for t in temperatures]}]
        return event

    def capture(self, org: Org, *events: dict[str, Any], **extra: Any) -> BlockExecution:
        return self.run(org.key, "trace.capture", {"events": list(events), **extra})

    def tag(self, serial: str) -> PrivateKey:
        """The brand owner registers a secure tag on a commissioned serial: its key."""
        key = PrivateKey.derive(f"trace/tag/{serial}")
        self.ok(self.maker.key, "trace.register_tags", {"tags": [
            {"epc": sgtin(serial), "public_key": key.public.hex()}]})
        return key

    @staticmethod
    def tap(key: PrivateKey, serial: str, counter: int) -> dict[str, Any]:
        """The code a tag answers on its ``counter``-th tap, as a scan's ``proof``."""
        return tag_code(key, link(serial), counter).to_payload()

    def scan(self, key: PrivateKey, serial: str, country: str, *,
             proof: dict[str, Any] | None = None, time: int | None = None
             ) -> BlockExecution:
        """``trace.record_scan`` sent with ``key`` (the relay's, or a reader's own)."""
        payload: dict[str, Any] = {"epc": sgtin(serial), "country": country}
        if proof is not None:
            payload["proof"] = proof
        return self.ok(key, "trace.record_scan", payload, time=time)

    def certify(self, cert_type: str = "ORGANIC") -> tuple[list[Any], BlockExecution]:
        now = self.chain.next_time
        data = {"$template": {"type": certificate_schema.CERTIFICATE_TEMPLATE}, "id": "cert-1",
                "type": cert_type,
                "issuer": {"id": self.certifier.id, "name": "Cert Body"},
                "subject": {"kind": "product", "id": GTIN}, "scope": "*",
                "validFrom": iso(now - DAY_MS), "validUntil": iso(now + 365 * DAY_MS)}
        wrapped = wrapping.wrap_batch([data], salt=self.salt)
        result = self.ok(self.certifier.key, "trace.anchor_certificate", {
            "merkle_root": wrapped[0].merkle_root, "type": cert_type,
            "subject": {"kind": "product", "id": GTIN}, "scope": "*",
            "valid_from": now - DAY_MS, "valid_until": now + 365 * DAY_MS})
        return wrapped, result


def build() -> Scenario:
    net = make_testnet()
    chain = Chain(net.genesis)
    operator = net.admin_keys[0]  # organisation "operator", role platform
    orgs = [
        Org("cert-body", ["certifier"], PrivateKey.derive("trace/cert-body"), "4000001"),
        Org("shenzhen-maker", ["manufacturer"], PrivateKey.derive("trace/maker"), "6901234"),
        Org("rail-carrier", ["carrier"], PrivateKey.derive("trace/carrier"), "4012345"),
        Org("eu-retail", ["retailer"], PrivateKey.derive("trace/retail"), "4098765"),
        Org("fr-retail", ["retailer"], PrivateKey.derive("trace/retail-fr"), "3012345"),
    ]
    s = Scenario(chain, operator, orgs[0], orgs[1], orgs[2], orgs[3], orgs[4])
    for org in orgs:
        s.ok(operator, "consortium.register_organisation",
             {"id": org.id, "name": org.id, "roles": org.roles,
              "admin_key": org.key.public.raw.hex()})
    countries = {"cert-body": "DE", "shenzhen-maker": "CN", "rail-carrier": "PL",
                 "eu-retail": "DE", "fr-retail": "FR"}
    for org in orgs:
        s.ok(operator, "trace.assign_prefix", {"org": org.id, "prefix": org.cp})
    for org in orgs:
        s.ok(org.key, "trace.register_location", {"gln": org.gln, "name": org.id,
                                                   "country": countries[org.id]})
    s.ok(operator, "trace.accredit", {"org": "cert-body", "types": ["ORGANIC", "CE"],
                                      "valid_until": chain.next_time + 2 * 365 * DAY_MS})
    s.ok(s.maker.key, "trace.register_product", {"gtin": GTIN, "name": "Green tea 100 g",
                                                 "company_prefix_length": CPL})
    return s
