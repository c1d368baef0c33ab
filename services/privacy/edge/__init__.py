"""The privacy domain's edge: everything of it that does I/O.

Its gateway plugin (:mod:`.plugin`): the vault of ciphertexts and wrapped data keys
(:mod:`.vault`, MongoDB), its HTTP endpoints (:mod:`.api`, with :mod:`.models` and
:mod:`.reads`) and the vault custodian that crypto-shreds erased records and
acknowledges on chain (:mod:`.custodian`); its MongoDB views (:mod:`.views`), its
partner-event schemas (:mod:`.event_schemas`) and its settings section
(:mod:`.settings`), and who reads its chain data on the platform's generic routes
(:mod:`.read_policy`). :data:`EDGE` is what the composition hands the gateway host. The
domain's pure part (contract and rules) is the package above; this edge may import it,
never the other way round. It never sees plaintext: clients seal before they send.
"""

from __future__ import annotations

from services.gateway.plugin import DomainEdge
from services.privacy.edge.event_schemas import PRIVACY_EVENTS
from services.privacy.edge.plugin import PrivacyPlugin
from services.privacy.edge.read_policy import PRIVACY_READ_POLICY
from services.privacy.edge.views import PRIVACY_VIEWS

EDGE = DomainEdge(name="privacy", views=PRIVACY_VIEWS, events=PRIVACY_EVENTS,
                  plugin=PrivacyPlugin, read_policy=PRIVACY_READ_POLICY)

__all__ = ["EDGE"]
