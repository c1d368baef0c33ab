"""The gateway host's options: its HTTP server and policies, and its MongoDB views.

Sections ``gateway`` and ``views`` of a service's settings
(:class:`services.runtime.settings.NodeSettings`; ``ECOSPHERE_GATEWAY__PORT=8080``).
A domain's own options are its own section (e.g. ``ECOSPHERE_TRACE__…``).
"""

from __future__ import annotations

from pydantic import Field

from services.ledger.node.settings import Strict


class GatewayOptions(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    body_bytes_max: int = Field(4 * 1024 * 1024, ge=1024)
    #: content codings stacked on one body ("gzip, gzip" is legal, and a cheap amplifier)
    content_codings_max: int = Field(2, ge=1, le=8)
    #: gzip members in one coded layer (RFC 1952 allows several; clients send one), and
    #: how many of them may decode to nothing (each still costs a decoder)
    gzip_members_max: int = Field(16, ge=1)
    gzip_empty_members_max: int = Field(2, ge=0)
    #: a body sent and decoded within this many bytes is decoded on the event loop; a
    #: larger one in a worker thread, at most ``decodes_max`` at once (503 beyond)
    decode_inline_bytes_max: int = Field(64 * 1024, ge=0)
    decodes_max: int = Field(4, ge=1)
    batch_txs_max: int = Field(1_000, ge=1)
    wait_commit_ms: int = Field(30_000, ge=100)
    waiters_max: int = Field(100_000, ge=1)
    rate_per_s: float = Field(2_000.0, gt=0)  # per key (signed) or per client address
    rate_burst: float = Field(4_000.0, gt=0)
    cors_origins: list[str] = Field(default_factory=list)
    rate_buckets_max: int = Field(100_000, ge=1)  # callers tracked by the rate limiter
    #: proxies (CIDR) whose X-Forwarded-For is believed, e.g. the ingress controller's
    #: pod network; empty: the peer address is the client
    trusted_proxies: list[str] = Field(default_factory=list)
    idempotency_ttl_s: float = Field(24 * 3600, gt=0)
    idempotency_entries_max: int = Field(100_000, ge=1)
    idempotency_bytes_max: int = Field(64 * 1024 * 1024, ge=1024)  # answers remembered
    #: ``https://host[:port]`` clients reach the gateway at, behind a proxy or ingress:
    #: RFC 9421 signatures are checked against it (unset: the request's own Host).
    public_base_url: str | None = Field(None, pattern=r"^https?://[^/?#\s]+$")
    #: items (transactions, events) one page of a list or replay filtered by the domains'
    #: read policies looks at, at most: past them it answers what it found (a shorter
    #: page) with a cursor after them, so a caller who may see little costs little
    read_scan_items_max: int = Field(5_000, ge=100)


class ViewsOptions(Strict):
    enabled: bool = True  # gateway only
    ready_lag_blocks_max: int = Field(50, ge=0)  # /readyz false beyond this projection lag
    batch_blocks_max: int = Field(200, ge=1)
    events_enabled: bool = True  # publish partner CloudEvents (AMQP mode)
    db_name: str = Field("ecosphere", min_length=1, max_length=60)


__all__ = ["GatewayOptions", "ViewsOptions"]
