"""Who reads the privacy domain's chain data through the gateway's platform routes.

The privacy routes (:mod:`.api`) judge every read of a record's metadata; the gateway's
generic routes (``/v1/state``, ``/v1/transactions``, ``/v1/events``, ``/v1/events/
replay``, ``/v1/blocks/{height}``) serve the same chain data, so the domain declares
here who may read it there (:data:`PRIVACY_READ_POLICY`, enforced by the host:
``services.gateway.read_policy``). Pseudonymous data is still personal data (GDPR
Recital 26, PIPL art. 4): a subject's key id, the records it holds, whom it shares
them with and who read them are about an identifiable person.

Restricted: every ``privacy/`` state key, ``privacy.*`` event and ``privacy.*``
transaction, except the parties' encryption keys (``privacy/enckey/``, the
``privacy.key.*`` events, ``privacy.register_key`` and ``privacy.revoke_key``): anyone
must find a party's public key to share with it. A restricted item is visible to the
caller (a verified RFC 9421 signature; nobody anonymous) when the caller is:

* the subject of the record it is about;
* a party the item itself names — ``key:<caller>``, ``org:<caller's organisation>``,
  or ``vault`` for a key of an organisation with the platform role: a record's holders,
  a grant's grantee, an access's party, an erasure's pending and acknowledged parties,
  a match's attesting party — or the key that sent it;
* for a record, its grants and its erasure (not its accesses): a party of the record
  as the record names it now — a holder, a grantee with an active grant (the rule of
  ``GET /v1/privacy/records/{id}``), or a party of its erasure;
* for the record's own state only (``privacy/record/<id>``), also an organisation with
  a legal basis for its category (``vocabulary.LEGAL_BASES``: customs, for identities
  and addresses): it may read the value without the subject's grant, and checks what
  the vault hands it against the record's commitment, proven (``PrivacyClient.read``
  reads the record before it asks for access).

An access (``privacy.access``, ``privacy.access.*``, ``privacy/accessed/...``) is the
subject's and the accessing party's only: the access log is the subject's
(``/v1/privacy/me/access-log``), not the other holders'. Internal bookkeeping
(``privacy/deadline/...``) and any key this module does not know are nobody's.

This module does no I/O: it reads the state it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.gateway.read_policy import (
    EventItem,
    ReadItem,
    ReadPolicy,
    StateItem,
    TransactionItem,
)
from services.ledger.core import consortium
from services.ledger.core.state import StateView
from services.privacy.grants import grant_of
from services.privacy.records import record_of
from services.privacy.vocabulary import (
    LEGAL_BASES,
    VAULT,
    VAULT_ROLES,
    org_party,
    self_party,
)

__all__ = ["PRIVACY_READ_POLICY", "judge"]

#: record lifecycle events a party of the record reads (accesses and matches are not)
_RECORD_EVENTS = ("privacy.record.", "privacy.grant.", "privacy.erasure.")


def _named(value: Any) -> set[str]:
    """The parties in an attribute: one, a list, or a ``{party: ...}`` mapping."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, list | dict):
        return {p for p in value if isinstance(p, str)}
    return set()


class _Caller:
    """One signed caller at one tip: its parties, and the records it looked up."""

    def __init__(self, principal: str, view: StateView, now_ms: int) -> None:
        self.principal, self.view, self.now_ms = principal, view, now_ms
        self.parties = {self_party(principal)}
        self.roles: frozenset[str] = frozenset()
        org = self.org_of(principal)
        if org is not None:
            self.parties.add(org_party(org))
            record = consortium.org_record(view, org)
            self.roles = frozenset(record.get("roles", ())) if record is not None \
                else frozenset()
            if VAULT_ROLES & self.roles:
                self.parties.add(VAULT)
        self._records: dict[str, dict[str, Any] | None] = {}

    def org_of(self, key_id: Any) -> str | None:
        record = consortium.key_record(self.view, key_id) if isinstance(key_id, str) else None
        return None if record is None else str(record["org"])

    def record(self, record_id: Any) -> dict[str, Any] | None:
        if not isinstance(record_id, str):
            return None
        if record_id not in self._records:
            self._records[record_id] = record_of(self.view.get, record_id)
        return self._records[record_id]

    def is_subject(self, record_id: Any) -> bool:
        record = self.record(record_id)
        return record is not None and record["subject"] == self.principal

    def party_of_record(self, record: dict[str, Any] | None) -> bool:
        """The subject, a holder, a party of its erasure, or an active grantee."""
        if record is None:
            return False
        if record["subject"] == self.principal:
            return True
        erasure = record.get("erasure") or {}
        named = _named(record.get("holders")) | _named(erasure.get("pending")) \
            | _named(erasure.get("acknowledged"))
        if named & self.parties:
            return True
        grantees = record.get("grantees") or {}
        for party in self.parties & set(grantees):
            for purpose in grantees[party]:
                found = grant_of(self.view.get, record["record_id"], party, purpose)
                if found is not None and found["status"] == "active" \
                        and self.now_ms < found["until"]:
                    return True
        return False

    def legal_reader(self, record: dict[str, Any] | None) -> bool:
        """An organisation with a legal basis to read records of this category."""
        return record is not None and any(
            self.roles & legal.roles and record["category"] in legal.categories
            for legal in LEGAL_BASES.values())

    def acting_party(self, sender: str, acting: Any) -> bool:
        """Whether the party a transaction acted as (``as``) is one of the caller's."""
        if acting == "self":
            return self_party(sender) in self.parties
        if acting == "vault":
            return VAULT in self.parties
        org = self.org_of(sender)
        return org is not None and org_party(org) in self.parties

    # --- the items --------------------------------------------------------------------

    def __call__(self, item: ReadItem) -> bool:
        if isinstance(item, StateItem):
            return self.state(item.key, item.value)
        if isinstance(item, EventItem):
            return self.event(item.type, item.attributes)
        return self.transaction(item)

    def state(self, key: str, value: Any) -> bool:
        parts = key.split("/")
        kind, rest = (parts[1], parts[2:]) if len(parts) > 2 else ("", [])
        if kind == "record" and len(rest) == 1:
            record = value if isinstance(value, dict) else None
            return self.party_of_record(record) or self.legal_reader(record)
        if kind == "subject" and len(rest) == 1:
            return rest[0] == self.principal
        if kind in ("grant", "accessed") and len(rest) == 3:
            return rest[1] in self.parties or self.is_subject(rest[0])
        if kind == "match" and len(rest) == 4:
            by = value.get("by") if isinstance(value, dict) else None
            return rest[2] in self.parties or by == self.principal \
                or self.is_subject(rest[0]) or self.is_subject(rest[1])
        return False  # deadlines, and anything not known here

    def event(self, event_type: str, a: Any) -> bool:
        if a.get("subject") == self.principal or a.get("by") == self.principal:
            return True
        named = set()
        for name in ("party", "grantee", "holders", "pending", "missing"):
            named |= _named(a.get(name))
        if named & self.parties:
            return True
        if event_type == "privacy.match.attested":
            return any(self.is_subject(r) for r in _named(a.get("records")))
        if event_type.startswith(_RECORD_EVENTS):
            return self.party_of_record(self.record(a.get("record_id")))
        return False

    def transaction(self, tx: TransactionItem) -> bool:
        if tx.sender == self.principal:
            return True
        p, action = tx.payload, tx.kind.partition(".")[2]
        record_id = p.get("record_id")
        if action in ("create_record", "rectify"):
            return bool(_named(p.get("holders")) & self.parties) \
                or self.party_of_record(self.record(tx.tx_hash)) \
                or (action == "rectify" and self.party_of_record(self.record(record_id)))
        if action in ("grant", "revoke_grant"):
            return bool(_named(p.get("grantee")) & self.parties) \
                or self.party_of_record(self.record(record_id))
        if action == "access":
            return self.is_subject(record_id) or self.acting_party(tx.sender, p.get("as"))
        if action in ("request_erasure", "ack_erasure"):
            return self.party_of_record(self.record(record_id)) or (
                action == "ack_erasure" and self.acting_party(tx.sender, p.get("as")))
        if action == "attest_match":
            return self.is_subject(p.get("record_a")) or self.is_subject(p.get("record_b")) \
                or self.acting_party(tx.sender, "org")
        return False


def _nobody(_item: ReadItem) -> bool:
    return False


def judge(principal: str | None, view: StateView, now_ms: int) -> Callable[[ReadItem], bool]:
    """Which restricted privacy items the caller may read (anonymous: none)."""
    return _nobody if principal is None else _Caller(principal, view, now_ms)


PRIVACY_READ_POLICY = ReadPolicy(
    judge=judge,
    state_prefixes=("privacy/",), public_state_prefixes=("privacy/enckey/",),
    event_prefixes=("privacy.",), public_event_prefixes=("privacy.key.",),
    kind_prefixes=("privacy.",),
    public_kind_prefixes=("privacy.register_key", "privacy.revoke_key"),
)
