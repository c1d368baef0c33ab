"""``ecosphere bench trace``: provenance of 50-event histories, measured.

Starts the five services over the real RabbitMQ with MongoDB views (``$MONGO_URI``
or an embedded SecantusDB server in a process of its own), then records through
the SDK, with real signed transactions, the supply chain of ``pallets`` pallets of
tins: a raw-tea lot (commissioned, inspected, stored, received), its transformation
into 10 serialised tins, commissioning, packing into a case, the case onto a
pallet, the pallet's rail journey (loading, departure, ``OBSERVATIONS`` sensor
readings, arrival, customs inspection), unloading, receipt at the retailer,
unpacking and the sale. Each tin's provenance is 50 steps.

Then it asks ``GET /v1/trace/provenance`` for the tins: once each with the
gateway's provenance cache bypassed (``cold``), then for ``seconds`` from one
client (``warm``, what a popular product sees) and from ``readers`` concurrent
clients. It prints p50/p99 per phase against the issue's target (p99 well under
20 ms for a 50-event history).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from services.runtime.bench_gateway import _wait_projected, views_bench
from services.runtime.demo import Demo, _iso
from services.runtime.loadgen import percentile
from services.sdk.client import AsyncClient
from services.trace import identifiers

OBSERVATIONS = 34  # sensor readings on the journey: brings a tin's history to 50 steps
TINS_PER_PALLET = 10
TARGET_P99_MS = 20


class History(Demo):
    """The demo's parties and product, then ``pallets`` full supply chains."""

    containers: list[tuple[str, str]]  # (case, pallet) of each pallet built
    t0 = 0

    def build(self, pallets: int) -> list[str]:
        self.onboard()
        self.certify()
        tins: list[str] = []
        for p in range(pallets):
            tins += self._pallet(p)
        return tins

    def _at(self, who: str, minute: int, **fields: Any) -> dict[str, Any]:
        event = self._event(who, **fields)
        event["eventTime"] = _iso(self.t0 + minute * 60_000)
        return event

    def _pallet(self, p: int) -> list[str]:
        self.t0 = int(time.time() * 1000) - 6 * 3_600_000
        tins = [self._sgtin(f"{self.run_id}p{p}t{n}") for n in range(TINS_PER_PALLET)]
        lot = identifiers.Lgtin(self.gtin, f"RAW{self.run_id}P{p}", 7).to_urn()
        qty = [{"epcClass": lot, "quantity": 1000, "uom": "GRM"}]
        ref = int(self.run_id, 16) % 10**7
        case = f"urn:epc:id:sscc:{self.cp['maker']}.0{ref:07d}{p:02d}"
        pallet = f"urn:epc:id:sscc:{self.cp['maker']}.1{ref:07d}{p:02d}"
        if not hasattr(self, "containers"):
            self.containers = []
        self.containers.append((case, pallet))
        m = 0

        def tick() -> int:
            nonlocal m
            m += 1
            return m

        maker = [self._at("maker", tick(), type="ObjectEvent", quantityList=qty, action="ADD",
                          bizStep="commissioning", disposition="active")]
        for step in ("inspecting", "storing", "receiving"):
            maker.append(self._at("maker", tick(), type="ObjectEvent", quantityList=qty,
                                  action="OBSERVE", bizStep=step, disposition="active"))
        maker += [
            self._at("maker", tick(), type="ObjectEvent", epcList=tins, action="ADD",
                     bizStep="commissioning", disposition="active"),
            self._at("maker", tick(), type="TransformationEvent", inputQuantityList=qty,
                     outputEPCList=tins, bizStep="commissioning", disposition="active"),
            self._at("maker", tick(), type="AggregationEvent", parentID=case, childEPCs=tins,
                     action="ADD", bizStep="packing", disposition="in_progress"),
            self._at("maker", tick(), type="AggregationEvent", parentID=pallet,
                     childEPCs=[case], action="ADD", bizStep="packing",
                     disposition="in_progress")]
        self.send(self.maker, "trace.capture", {"events": maker})
        carrier = [self._at("carrier", tick(), type="ObjectEvent", epcList=[pallet],
                            action="OBSERVE", bizStep="loading", disposition="in_transit")]
        carrier.append(self._at("carrier", tick(), type="ObjectEvent", epcList=[pallet],
                                action="OBSERVE", bizStep="departing",
                                disposition="in_transit"))
        for n in range(OBSERVATIONS):
            minute = tick()
            carrier.append(self._at(
                "carrier", minute, type="ObjectEvent", epcList=[pallet], action="OBSERVE",
                bizStep="transporting", disposition="in_transit",
                sensorElementList=[{"sensorMetadata": {"time": _iso(self.t0 + minute * 60_000)},
                                    "sensorReport": [{"type": "Temperature",
                                                      "value": f"{10 + n % 7}.5",
                                                      "uom": "CEL"}]}]))
        for step in ("arriving", "inspecting"):
            carrier.append(self._at("carrier", tick(), type="ObjectEvent", epcList=[pallet],
                                    action="OBSERVE", bizStep=step, disposition="in_transit"))
        carrier.append(self._at("carrier", tick(), type="AggregationEvent", parentID=pallet,
                                childEPCs=[case], action="DELETE", bizStep="unpacking",
                                disposition="in_progress"))
        self.send(self.carrier, "trace.capture", {"events": carrier})
        retail = [self._at("retail", tick(), type="ObjectEvent", epcList=[case],
                           action="OBSERVE", bizStep="receiving", disposition="in_progress"),
                  self._at("retail", tick(), type="AggregationEvent", parentID=case,
                           childEPCs=tins, action="DELETE", bizStep="unpacking",
                           disposition="sellable_accessible")]
        sold = tick()
        retail += [self._at("retail", sold, type="ObjectEvent", epcList=[tin],
                            action="OBSERVE", bizStep="retail_selling",
                            disposition="retail_sold") for tin in tins]
        self.send(self.retail, "trace.capture", {"events": retail})
        return tins


async def _ask(client: AsyncClient, tin: str, *, fresh: bool) -> tuple[float, int]:
    query = {"id": tin, **({"fresh": "true"} if fresh else {})}
    started = time.perf_counter()
    answer = await client.call("GET", "/v1/trace/provenance", query=query)
    return (time.perf_counter() - started) * 1000, len(answer["steps"])


def _figures(samples: list[float]) -> dict[str, Any]:
    return {"count": len(samples), "p50_ms": round(percentile(samples, 50), 2),
            "p99_ms": round(percentile(samples, 99), 2)}


async def _measure(url: str, tins: list[str], *, seconds: float,
                   readers: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with AsyncClient(url) as client:
        cold: list[float] = []
        steps: set[int] = set()
        for tin in tins:
            for _ in range(3):
                ms, n = await _ask(client, tin, fresh=True)
                cold.append(ms)
                steps.add(n)
        out["steps_per_history"] = sorted(steps)
        out["cold_1_reader"] = _figures(cold)

    async def reader(n: int, into: list[float], until: float) -> None:
        async with AsyncClient(url) as client:
            i = n
            while time.monotonic() < until:
                ms, _ = await _ask(client, tins[i % len(tins)], fresh=False)
                into.append(ms)
                i += 1

    warm: list[float] = []
    await reader(0, warm, time.monotonic() + seconds)
    out["warm_1_reader"] = _figures(warm)
    many: list[float] = []
    until = time.monotonic() + seconds
    await asyncio.gather(*(reader(n, many, until) for n in range(readers)))
    out[f"warm_{readers}_readers"] = _figures(many)
    return out


async def bench_trace(*, pallets: int = 4, seconds: float = 5.0, readers: int = 4,
                      mongo_uri: str | None = None, port: int = 18800) -> dict[str, Any]:
    figures: dict[str, Any] = {"pallets": pallets, "tins": pallets * TINS_PER_PALLET}
    # One client address asks thousands of times a second: lift the per-client limit.
    unlimited = {"ECOSPHERE_GATEWAY__RATE_PER_S": "1000000",
                 "ECOSPHERE_GATEWAY__RATE_BURST": "1000000"}
    async with views_bench("benchtrace", port, mongo_uri=mongo_uri,
                           extra_env=unlimited) as bench:
        figures["mongo"] = "embedded SecantusDB" if bench.embedded else "MONGO_URI"
        history = History(bench.gateway, bench.data, out=lambda _: None)
        started = time.monotonic()
        tins = await asyncio.to_thread(history.build, pallets)
        figures["record_s"] = round(time.monotonic() - started, 2)
        figures["catch_up_s"] = await _wait_projected(port)
        figures.update(await _measure(bench.gateway, tins, seconds=seconds, readers=readers))
    figures["target_p99_ms"] = TARGET_P99_MS
    return figures
