"""A live embedded network (four validators and the gateway, in-process, over the
in-memory transport) running in a background thread, for API tests through the SDK.

The ``live`` fixture (one network per test module) is imported by the conftest of
each test package that uses it (tests/api, tests/trace/edge)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.genesis import Genesis
from services.ledger.node import keys
from services.runtime.datadir import DataDir, bench_client_key
from services.runtime.embedded import EmbeddedNetwork
from services.sdk.client import Client


@dataclass
class LiveNetwork:
    url: str
    data: DataDir
    genesis: Genesis
    network: EmbeddedNetwork
    loop: asyncio.AbstractEventLoop

    def client(self, key: PrivateKey | None = None, *, pinned: bool = True) -> Client:
        return Client(self.url, key=key, genesis=self.genesis if pinned else None)

    @property
    def demo_key(self) -> PrivateKey:
        return keys.load(self.data.demo_key)

    def admin_key(self, service: str = "ledger") -> PrivateKey:
        return keys.load(self.data.admin_key(service))

    def run(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)  # type: ignore


def start_live(root: Path, *, mongo_uri: str | None = None,
               bench_clients: int = 20) -> tuple[LiveNetwork, threading.Thread,
                                                 asyncio.AbstractEventLoop]:
    from services.runtime.datadir import ensure_genesis

    data = DataDir(root)
    genesis = ensure_genesis(data, bench_clients=bench_clients)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    def main() -> None:
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            overrides: dict[str, object] = {}
            if mongo_uri is not None:
                overrides["mongo_uri"] = mongo_uri
                overrides["views"] = {"db_name": f"live_{uuid.uuid4().hex[:12]}"}
            network = EmbeddedNetwork(data, port=0, settings_overrides=overrides)
            await network.start()
            holder["network"] = network
            ready.set()

        loop.run_until_complete(boot())
        loop.run_forever()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    assert ready.wait(60), "embedded network did not start"
    network = holder["network"]
    assert isinstance(network, EmbeddedNetwork)
    live = LiveNetwork(f"http://127.0.0.1:{network.port}", data, genesis, network, loop)
    return live, thread, loop


def stop_live(live: LiveNetwork, thread: threading.Thread) -> None:
    asyncio.run_coroutine_threadsafe(live.network.stop(), live.loop).result(60)
    live.loop.call_soon_threadsafe(live.loop.stop)
    thread.join(30)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, mongo_uri: str) -> Iterator[LiveNetwork]:
    net, thread, _ = start_live(tmp_path_factory.mktemp("live"), mongo_uri=mongo_uri)
    yield net
    stop_live(net, thread)


__all__ = ["LiveNetwork", "bench_client_key", "start_live", "stop_live"]
