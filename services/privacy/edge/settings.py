"""The privacy domain's options: section ``privacy`` of a service's settings
(``ECOSPHERE_PRIVACY__ACCESS_VALID_MS=600000``): the vault's database and sizes, how
long a granted access opens the vault, the export's bounds, the custodian's pace."""

from __future__ import annotations

from pydantic import Field

from services.ledger.node.settings import Strict


class PrivacySettings(Strict):
    #: the vault's own database on the views' MongoDB server: several gateways sharing
    #: one server share one vault (a rebuild of the views never touches it)
    vault_db_name: str = Field("ecosphere_vault", min_length=1, max_length=60,
                               pattern=r"^[A-Za-z0-9_-]+$")
    #: one record's sealed value: the largest the SDK makes (12 + 25,216 + 16 bytes:
    #: services.privacy.edge.api.CIPHERTEXT_BYTES_MAX, which says why)
    ciphertext_bytes_max: int = Field(25_244, ge=64, le=1_048_576)
    wrap_bytes_max: int = Field(256, ge=64, le=4_096)  # one wrapped data key (HPKE: 80)
    #: a granted access (its block time) opens the vault for this long, on block time
    access_valid_ms: int = Field(600_000, ge=1, le=7 * 24 * 3_600_000)
    #: unprojected blocks an envelope looks through for a fresh access transaction
    access_lookup_blocks_max: int = Field(64, ge=0, le=10_000)
    export_records_max: int = Field(1_000, ge=1, le=100_000)
    export_access_log_max: int = Field(10_000, ge=1, le=1_000_000)
    #: the vault custodian (crypto-shredding): blocks per step, its pace when idle
    custodian_batch_blocks_max: int = Field(256, ge=1, le=10_000)
    custodian_poll_interval_s: float = Field(1.0, gt=0, le=60)
    custodian_retry_backoff_max_s: float = Field(30.0, gt=0, le=3_600)


__all__ = ["PrivacySettings"]
