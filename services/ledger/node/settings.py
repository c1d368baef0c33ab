"""The ledger node's options: consensus timing, replica limits, the AMQP transport.

They are sections of a service process's settings
(:class:`services.runtime.settings.NodeSettings`, read from ``ECOSPHERE_*``), which
also holds the gateway's and every domain's sections. Limits carry their unit last
(``_ms``, ``_bytes``, ``_max``). Every section refuses unknown keys (:class:`Strict`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


class Strict(BaseModel):
    """Nested settings refuse unknown keys too: a typo (``ECOSPHERE_AMQP__PREFETCHH``)
    is an error, never a silently ignored value."""

    model_config = ConfigDict(extra="forbid")


class ConsensusTiming(Strict):
    propose_ms: int = Field(1_000, ge=10)
    propose_delta_ms: int = Field(500, ge=0)
    vote_ms: int = Field(500, ge=10)
    vote_delta_ms: int = Field(500, ge=0)
    empty_block_interval_ms: int = Field(1_000, ge=0)
    gossip_interval_ms: int = Field(500, ge=10)


class ReplicaLimits(Strict):
    mempool_txs_max: int = Field(100_000, ge=1)
    mempool_bytes_max: int = Field(128 * 1024 * 1024, ge=1024)
    mempool_per_sender_max: int = Field(10_000, ge=1)
    tx_batch_txs_max: int = Field(1_000, ge=1)
    tx_batch_wait_ms: int = Field(5, ge=0)
    sync_batch_blocks_max: int = Field(64, ge=1)
    sync_timeout_ms: int = Field(2_000, ge=10)
    message_bytes_max: int = Field(32 * 1024 * 1024, ge=1024)
    #: a transaction accepted from a client and not committed after this is gossiped
    #: again, then with doubling waits up to ``tx_resend_max_ms`` (ledger.core.regossip)
    tx_resend_after_ms: int = Field(2_000, ge=10)
    tx_resend_max_ms: int = Field(16_000, ge=10)
    tx_resend_per_tick_max: int = Field(5_000, ge=1)


class AmqpOptions(Strict):
    prefix: str = "ecosphere"
    queue_type: Literal["quorum", "classic"] = "quorum"
    prefetch: int = Field(512, ge=1)
    txs_prefetch: int = Field(16, ge=1)
    queue_length_max: int = Field(50_000, ge=1)
    consensus_ttl_ms: int = Field(120_000, ge=1_000)
    txs_ttl_ms: int = Field(600_000, ge=1_000)
    publish_in_flight_max: int = Field(512, ge=1)
    outbox_max: int = Field(20_000, ge=1)


__all__ = ["DEFAULT_AMQP_URL", "AmqpOptions", "ConsensusTiming", "ReplicaLimits", "Strict"]
