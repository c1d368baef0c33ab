"""Settings of a service process: one place for every option and limit.

Read from the environment (``ECOSPHERE_*``; nested limits with ``__``, e.g.
``ECOSPHERE_AMQP__PREFETCH=256``) and optionally a JSON file named by
``ECOSPHERE_CONFIG_FILE``; environment wins over the file. Limits carry their
unit last (``_ms``, ``_bytes``, ``_max``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ServiceName = Literal["ledger", "trace", "customs", "credit", "gateway"]
VALIDATORS: tuple[ServiceName, ...] = ("ledger", "trace", "customs", "credit")
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


class _Strict(BaseModel):
    """Nested settings refuse unknown keys too: a typo (``ECOSPHERE_AMQP__PREFETCHH``)
    is an error, never a silently ignored value."""

    model_config = ConfigDict(extra="forbid")


class ConsensusTiming(_Strict):
    propose_ms: int = Field(1_000, ge=10)
    propose_delta_ms: int = Field(500, ge=0)
    vote_ms: int = Field(500, ge=10)
    vote_delta_ms: int = Field(500, ge=0)
    empty_block_interval_ms: int = Field(1_000, ge=0)
    gossip_interval_ms: int = Field(500, ge=10)


class ReplicaLimits(_Strict):
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


class AmqpOptions(_Strict):
    prefix: str = "ecosphere"
    queue_type: Literal["quorum", "classic"] = "quorum"
    prefetch: int = Field(512, ge=1)
    txs_prefetch: int = Field(16, ge=1)
    queue_length_max: int = Field(50_000, ge=1)
    consensus_ttl_ms: int = Field(120_000, ge=1_000)
    txs_ttl_ms: int = Field(600_000, ge=1_000)
    publish_in_flight_max: int = Field(512, ge=1)
    outbox_max: int = Field(20_000, ge=1)


class GatewayOptions(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    body_bytes_max: int = Field(4 * 1024 * 1024, ge=1024)
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
    #: EPCIS webhooks may call loopback addresses (``ecosphere up`` on one machine);
    #: never in a deployment, where loopback reaches the node's own admin ports
    webhook_loopback_allowed: bool = False
    #: anonymous consumer scans (GET /v1/trace/verify) recorded on the chain, for all
    #: clients together (a token bucket); beyond it a verify answers "not recorded"
    scan_rate_per_s: float = Field(50.0, gt=0)
    scan_burst: float = Field(200.0, ge=1)
    #: queued scans go out as one trace.record_scans per interval (so captures on the
    #: relay key wait behind at most one); 500 is the contract's SCANS_PER_BATCH_MAX
    scan_batch_max: int = Field(500, ge=1, le=500)
    scan_batch_interval_ms: int = Field(1_000, ge=50, le=60_000)
    scan_queue_max: int = Field(5_000, ge=1)


class ViewsOptions(_Strict):
    enabled: bool = True  # gateway only
    ready_lag_blocks_max: int = Field(50, ge=0)  # /readyz false beyond this projection lag
    batch_blocks_max: int = Field(200, ge=1)
    events_enabled: bool = True  # publish partner CloudEvents (AMQP mode)
    db_name: str = Field("ecosphere", min_length=1, max_length=60)
    provenance_events_max: int = Field(500, ge=1)  # steps in one provenance answer
    provenance_ids_max: int = Field(256, ge=1)  # identifiers one walk may visit
    provenance_depth_max: int = Field(4, ge=0)  # transformation hops back
    provenance_cache_entries: int = Field(2_048, ge=0)
    provenance_cache_steps: int = Field(200_000, ge=0)  # steps held by the cache in all


class NodeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ECOSPHERE_", env_nested_delimiter="__",
                                      extra="forbid")

    service: ServiceName = "ledger"
    data_dir: Path = Path("data")
    amqp_url: str | None = None  # None: the default local broker, else embedded
    mongo_uri: str | None = None  # None: an embedded SecantusDB under <data>/gateway/views
    admin_host: str = "127.0.0.1"
    admin_port: int = Field(0, ge=0, le=65535)  # 0: the gateway serves admin on its port
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    ready_lag_blocks_max: int = Field(2, ge=0)
    restarts: int = Field(0, ge=0)  # set by ``ecosphere up``'s supervisor (/metrics)
    consensus: ConsensusTiming = ConsensusTiming()
    limits: ReplicaLimits = ReplicaLimits()
    amqp: AmqpOptions = AmqpOptions()
    gateway: GatewayOptions = GatewayOptions()
    views: ViewsOptions = ViewsOptions()
    config_file: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _JsonFileSource(settings_cls))

    @property
    def node_dir(self) -> Path:
        return self.data_dir / self.service

    @property
    def is_validator(self) -> bool:
        return self.service in VALIDATORS


class _JsonFileSource(PydanticBaseSettingsSource):
    """Values from the JSON file named by ``config_file`` / ECOSPHERE_CONFIG_FILE (lowest
    priority)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        import os

        # config_file given directly (NodeSettings(config_file=...)) or by environment
        path = self.current_state.get("config_file") or os.environ.get("ECOSPHERE_CONFIG_FILE")
        if not path:
            return {}
        try:
            data = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigFileError(f"config file {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ConfigFileError(f"config file {path} is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigFileError(f"config file {path} must hold a JSON object")
        return data


class ConfigFileError(ValueError):
    """The settings file named by ECOSPHERE_CONFIG_FILE cannot be used."""
