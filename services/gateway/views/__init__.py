"""The gateway's MongoDB views: indexed, rebuildable read models of the chain.

* :mod:`.schema`: the views (one collection per entity), their indexes, and the
  pure projection of a committed block into writes; the platform's own views
  (domains declare theirs in their edge; the composition assembles them).
* :mod:`.projector`: follows committed blocks and applies those writes,
  idempotently, checkpointed by height; rebuilds every view from the chain.
* :mod:`.queries`: the reads the HTTP API serves, with cursor pagination.
* :mod:`.mongo`: the connection, and the embedded server used when no MongoDB
  URI is configured.

MongoDB is never the source of truth: drop it and ``rebuild`` gives the same
documents back.
"""
