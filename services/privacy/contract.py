"""The privacy contract: encryption keys, vault records, grants, accesses, erasure and
match attestations — run by every replica. It never sees personal data.

State (namespace ``privacy``)::

    enckey/<party>           {party, key_id, public_key (X25519), country, since,
                              status: active|revoked, previous: [{key_id, public_key,
                              since, until}], by}
    record/<record id>       {record_id (its transaction's hash), subject (key id),
                              category, jurisdiction, commitment, ciphertext_hash,
                              holders {party: key id}, grantees {party: [purposes]},
                              created, status: active|superseded|erasing|erased,
                              supersedes, superseded_by, cross_border_consent,
                              erasure {requested, deadline, bucket, reason, pending[],
                              acknowledged[], overdue, completed}}
    subject/<key id>         [record ids] of one subject's records not yet erased
    grant/<record>/<party>/<purpose>  {record_id, grantee, purpose, until, granted,
                              status: active|revoked, wrap_hash, key_id,
                              cross_border_consent, by}
    accessed/<record>/<party>/<purpose>  block time of the last granted access
    match/<record a>/<record b>   an attested comparison (matching.py)
    deadline/...             erasure deadlines (ledger.core.deadlines)

Parties are ``org:<id>``, ``key:<key id>`` or ``vault`` (vocabulary.py).
docs/adr/0008-personal-data-vault.md records the decisions.

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from services.ledger.core.contract import BlockContext, Contract, TxContext, static_fail
from services.ledger.core.transactions import Transaction
from services.privacy import erasure, grants, keys, matching, records

__all__ = ["NAME", "PrivacyContract"]

NAME = "privacy"

_HANDLERS: Mapping[str, Callable[[TxContext], None]] = {
    "register_key": keys.register_key,
    "revoke_key": keys.revoke_key,
    "create_record": records.create_record,
    "rectify": records.rectify,
    "grant": grants.grant,
    "revoke_grant": grants.revoke_grant,
    "access": grants.access,
    "request_erasure": erasure.request_erasure,
    "ack_erasure": erasure.ack_erasure,
    "attest_match": matching.attest_match,
}


class PrivacyContract(Contract):
    name = NAME
    actions: Mapping[str, frozenset[str] | None] = {
        "register_key": frozenset({"scope", "public_key", "country"}),
        "revoke_key": frozenset({"scope"}),
        "create_record": frozenset({"category", "commitment", "ciphertext_hash",
                                    "jurisdiction", "holders"}),
        "rectify": frozenset({"record_id", "commitment", "ciphertext_hash", "holders"}),
        "grant": frozenset({"record_id", "grantee", "purpose", "until", "wrap_hash"}),
        "revoke_grant": frozenset({"record_id", "grantee", "purpose"}),
        "access": frozenset({"record_id", "purpose", "basis"}),
        "request_erasure": frozenset({"record_id"}),
        "ack_erasure": frozenset({"record_id"}),
        "attest_match": frozenset({"record_a", "record_b", "purpose", "equal"}),
    }

    #: optional payload fields; any other is refused (no free text reaches the chain:
    #: every field is an id, a hash, a code or a number)
    optional: Mapping[str, frozenset[str]] = {
        "create_record": frozenset({"cross_border_consent"}),
        "rectify": frozenset({"cross_border_consent"}),
        "grant": frozenset({"cross_border_consent"}),
        "access": frozenset({"as"}),
        "ack_erasure": frozenset({"as"}),
    }

    def check_static(self, tx: Transaction) -> None:
        super().check_static(tx)
        allowed = (self.actions[tx.action] or frozenset()) | self.optional.get(
            tx.action, frozenset())
        extra = sorted(set(tx.payload) - allowed)
        if extra:
            static_fail(f"{tx.kind}: unknown payload fields {extra} (personal data never "
                        "goes on the chain: it goes to the vault, encrypted)")

    def apply(self, ctx: TxContext) -> None:
        _HANDLERS[ctx.tx.action](ctx)

    def begin_block(self, ctx: BlockContext) -> None:
        erasure.overdue(ctx)
