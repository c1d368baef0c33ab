"""The privacy domain's gateway plugin: its routes, its follower, its metrics.

Built once per gateway process from a :class:`~services.gateway.plugin.PluginContext`
(the gateway's API object, the ``privacy`` settings section): the vault over the views'
MongoDB server (:mod:`.vault`, a database of its own), the endpoints (:mod:`.api`) and
the vault custodian that crypto-shreds erased records (:mod:`.custodian`), the plugin's
one follower of the chain.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.registry import Collector

from services.gateway.openapi import Endpoint
from services.gateway.plugin import PluginContext, PluginFollower, ProjectedDocs
from services.privacy.edge.api import PrivacyApi, PrivacyLimits
from services.privacy.edge.custodian import CustodianCollector, CustodianLimits, VaultCustodian
from services.privacy.edge.settings import PrivacySettings
from services.privacy.edge.vault import Vault

__all__ = ["PrivacyPlugin"]


class PrivacyPlugin:
    name = "privacy"

    def __init__(self, context: PluginContext) -> None:
        settings = context.settings
        if not isinstance(settings, PrivacySettings):
            raise TypeError(f"the privacy plugin needs PrivacySettings, not {type(settings)}")
        self.settings = settings
        host = context.host
        self.vault = Vault(host.views, settings.vault_db_name)
        self.api = PrivacyApi(host, self.vault, PrivacyLimits(
            ciphertext_bytes_max=settings.ciphertext_bytes_max,
            wrap_bytes_max=settings.wrap_bytes_max,
            access_valid_ms=settings.access_valid_ms,
            access_lookup_blocks_max=settings.access_lookup_blocks_max,
            export_records_max=settings.export_records_max,
            export_access_log_max=settings.export_access_log_max))
        self.custodian = VaultCustodian(host, self.vault, CustodianLimits(
            batch_blocks_max=settings.custodian_batch_blocks_max,
            poll_interval_s=settings.custodian_poll_interval_s,
            retry_backoff_max_s=settings.custodian_retry_backoff_max_s))

    def endpoints(self) -> Sequence[Endpoint]:
        return self.api.endpoints()

    def followers(self) -> Sequence[PluginFollower]:
        return [self.custodian]

    def collectors(self) -> Sequence[Collector]:
        return [CustodianCollector(self.custodian)]

    def on_projected(self, docs: ProjectedDocs) -> None:
        """Nothing is cached from the views."""

    async def close(self) -> None:
        """The custodian stops with the follower loop; nothing else runs."""
