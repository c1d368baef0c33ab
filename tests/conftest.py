"""Session-wide fixtures."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One MongoDB-wire server for the whole session: $MONGO_URI (a real MongoDB) when
    set, else one embedded SecantusDB server in a temporary directory."""
    uri = os.environ.get("MONGO_URI")
    if uri:
        yield uri
        return
    from services.gateway.views.mongo import EmbeddedServer

    server = EmbeddedServer.start(tmp_path_factory.mktemp("mongo"))
    try:
        yield server.uri
    finally:
        server.stop()


@pytest_asyncio.fixture
async def mongo_db(mongo_uri: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    """A database of the test's own on the session's server, dropped afterwards. Its
    client is opened on the test's event loop: an async client belongs to the loop it
    was first used on."""
    from services.gateway.views.mongo import connect

    client = connect(mongo_uri)
    db = client[f"test_{uuid.uuid4().hex[:16]}"]
    try:
        yield db
    finally:
        try:
            await client.drop_database(db.name)
        finally:
            await client.close()
