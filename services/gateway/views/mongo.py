"""The views' MongoDB connection, and the embedded server used when none is configured.

:func:`open_database` connects to ``uri`` or, when ``uri`` is None, starts an
in-process SecantusDB server (a MongoDB-wire-compatible server) storing under
``data_dir / "views"`` on 127.0.0.1 and an ephemeral port, and connects to
that. Either way the client is PyMongo's native asyncio client with:

* ``retryWrites=false``: SecantusDB needs it, and the projector does not rely
  on it (its writes are idempotent upserts that it retries itself);
* short server-selection and connect timeouts, so that an outage surfaces
  as an error within seconds instead of hanging a request or the projector.

The client connects lazily: opening the database succeeds while MongoDB is
down, and every operation fails fast until it comes back.

SecantusDB is GPL-licensed and an optional extra: it is imported only inside
:meth:`EmbeddedServer.start`, never when this module is imported.

The embedded server runs standalone (``replica_set_name=None``): the views use
no change streams or transactions, and without a replica set the server
keeps no oplog, which saves a write per document.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

log = logging.getLogger("ecosphere.gateway.views")

DEFAULT_DB_NAME = "ecosphere"
EMBEDDED_HOST = "127.0.0.1"
EMBEDDED_DIR = "views"
SERVER_SELECTION_TIMEOUT_MS = 2_000
CONNECT_TIMEOUT_MS = 2_000
#: A server that accepted a request but never answers is an outage too.
SOCKET_TIMEOUT_MS = 30_000
POOL_SIZE_MAX = 50

Document = dict[str, Any]


class EmbeddedServer:
    """An in-process SecantusDB server (its accept loop and connections are threads).

    Stop it from the thread that started it: SecantusDB 0.7.0b3's storage close,
    run from another thread, logs a spurious "failed to persist oplog meta during
    close" error (it opens a session on the already closed store). The async
    helpers :meth:`start_async` / :meth:`stop_async` keep both on one thread of
    their own.
    """

    def __init__(self, server: Any, storage_path: Path) -> None:
        self._server = server
        self.storage_path = storage_path
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    async def start_async(cls, storage_path: Path, *, host: str = EMBEDDED_HOST,
                          port: int = 0) -> EmbeddedServer:
        executor = ThreadPoolExecutor(1, thread_name_prefix="views-embedded")
        try:
            server = await asyncio.get_running_loop().run_in_executor(
                executor, functools.partial(cls.start, storage_path, host=host, port=port))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        server._executor = executor
        return server

    async def stop_async(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            await asyncio.to_thread(self.stop)
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self.stop)
        finally:
            executor.shutdown(wait=False)

    @classmethod
    def start(cls, storage_path: Path, *, host: str = EMBEDDED_HOST,
              port: int = 0) -> EmbeddedServer:
        """Open the store under ``storage_path`` and listen on ``host:port`` (0: ephemeral).

        Blocking (it opens the storage engine); call it from a thread in async code.
        """
        try:
            import secantus  # type: ignore[import-untyped]
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise RuntimeError("no MongoDB URI is configured and the embedded server "
                               "(the optional SecantusDB package) is not installed") from exc
        storage_path.mkdir(parents=True, exist_ok=True)
        server = secantus.SecantusDBServer(host=host, port=port,
                                           storage_path=str(storage_path),
                                           replica_set_name=None)
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        log.info("embedded views server on %s (data %s)", server.uri, storage_path)
        return cls(server, storage_path)

    @property
    def port(self) -> int:
        return int(self._server.address[1])

    @property
    def uri(self) -> str:
        return str(self._server.uri)

    def stop(self) -> None:
        """Close connections and the storage engine (blocking; idempotent).

        The listening socket is shut down first: SecantusDB's ``stop`` only closes
        it, which on Linux does not wake the thread blocked in ``accept``, so
        ``stop`` waited out its 2 s join timeout every time.
        """
        listener = getattr(self._server, "_socket", None)
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
        self._server.stop()


def connect(uri: str, *, server_selection_timeout_ms: int = SERVER_SELECTION_TIMEOUT_MS,
            ) -> AsyncMongoClient[Document]:
    """A lazily connecting client with the views' options (see the module docstring)."""
    return AsyncMongoClient(
        uri,
        retryWrites=False,
        serverSelectionTimeoutMS=server_selection_timeout_ms,
        connectTimeoutMS=CONNECT_TIMEOUT_MS,
        socketTimeoutMS=SOCKET_TIMEOUT_MS,
        maxPoolSize=POOL_SIZE_MAX,
        tz_aware=False,
    )


@dataclass
class ViewsDatabase:
    client: AsyncMongoClient[Document]
    db: AsyncDatabase[Document]
    server: EmbeddedServer | None
    uri: str

    async def close(self) -> None:
        await self.client.close()
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop_async()


async def open_database(uri: str | None, *, data_dir: Path, db_name: str = DEFAULT_DB_NAME,
                        server_selection_timeout_ms: int = SERVER_SELECTION_TIMEOUT_MS,
                        ) -> ViewsDatabase:
    """Connect to ``uri``, or start the embedded server under ``data_dir/views`` and
    connect to it."""
    server = None
    if uri is None:
        server = await EmbeddedServer.start_async(data_dir / EMBEDDED_DIR)
        uri = server.uri
    client = connect(uri, server_selection_timeout_ms=server_selection_timeout_ms)
    return ViewsDatabase(client, client[db_name], server, uri)
