"""Session-wide fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


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
