"""Settings of a service process: one place for every option and limit.

Read from the environment (``ECOSPHERE_*``; nested sections with ``__``, e.g.
``ECOSPHERE_AMQP__PREFETCH=256``) and optionally a JSON file named by
``ECOSPHERE_CONFIG_FILE``; environment wins over the file. Each section belongs to
its owner: the ledger node's (``consensus``, ``limits``, ``amqp``), the gateway
host's (``gateway``, ``views``) and each domain's (``trace``, ...: one per domain
of :data:`services.composition.DOMAINS` that has options, checked by the tests).
Limits carry their unit last (``_ms``, ``_bytes``, ``_max``); every section refuses
unknown keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from services.gateway.settings import GatewayOptions, ViewsOptions
from services.ledger.node.settings import AmqpOptions, ConsensusTiming, ReplicaLimits
from services.privacy.edge.settings import PrivacySettings
from services.trace.edge.settings import TraceSettings
from services.trade.edge.settings import TradeSettings

ServiceName = Literal["ledger", "trace", "customs", "credit", "gateway"]
VALIDATORS: tuple[ServiceName, ...] = ("ledger", "trace", "customs", "credit")


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
    trace: TraceSettings = TraceSettings()
    privacy: PrivacySettings = PrivacySettings()
    trade: TradeSettings = TradeSettings()
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


__all__ = ["VALIDATORS", "ConfigFileError", "NodeSettings", "ServiceName"]
