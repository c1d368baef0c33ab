"""The views database as the gateway's API reads it: absent until it is opened, and
unavailable while its projector says MongoDB is away (then every view read answers
503 ``views_unavailable``; blocks, proofs and state stay served from the chain)."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.gateway.views.mongo import ViewsDatabase
from services.gateway.views.projector import Projector

__all__ = ["ViewsAccess"]


class ViewsAccess:
    def __init__(self) -> None:
        self.database: ViewsDatabase | None = None
        self.projector: Projector | None = None

    def attach(self, database: ViewsDatabase, projector: Projector | None) -> None:
        self.database, self.projector = database, projector

    def current(self) -> AsyncDatabase[dict[str, Any]] | None:
        """The database to read now, or None while it is absent or unavailable."""
        if self.database is None:
            return None
        if self.projector is not None and not self.projector.available:
            return None
        return self.database.db

    async def close(self) -> None:
        database, self.database, self.projector = self.database, None, None
        if database is not None:
            await database.close()
