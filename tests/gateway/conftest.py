"""Gateway test fixtures: one MongoDB-wire server for the whole session, one database per test.

``MONGO_URI`` set: the tests use that server (a real MongoDB). Otherwise one
embedded SecantusDB server is started for the session in a temporary
directory. Each test gets a database of its own, dropped afterwards.

Tests are synchronous and run their async bodies with ``asyncio.run`` through
:meth:`MongoTarget.run`, which opens a client for that event loop (an async
client belongs to the loop it was used on).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from pymongo import MongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.gateway.views.mongo import connect

T = TypeVar("T")


@dataclass(frozen=True)
class MongoTarget:
    uri: str
    name: str

    def run(self, body: Callable[[AsyncDatabase[dict[str, Any]]], Awaitable[T]]) -> T:
        async def main() -> T:
            client = connect(self.uri)
            try:
                return await body(client[self.name])
            finally:
                await client.close()

        return asyncio.run(main())


@pytest.fixture
def mongo(mongo_uri: str) -> Iterator[MongoTarget]:
    target = MongoTarget(mongo_uri, f"test_{uuid.uuid4().hex[:16]}")
    yield target
    client: MongoClient[dict[str, Any]] = MongoClient(
        mongo_uri, retryWrites=False, serverSelectionTimeoutMS=2_000)
    try:
        client.drop_database(target.name)
    finally:
        client.close()
