"""The privacy contract: encryption keys, vault records, grants, accesses, erasure and
match attestations — run by every replica. It never sees personal data.

State (namespace ``privacy``)::

    enckey/<party>           {party, key_id, public_key (X25519), country, since,
                              status: active|revoked, previous: [{key_id, public_key,
                              since, until}], by}
    record/<record id>       {record_id (its transaction's hash), subject (key id),
                              category, jurisdiction, commitment, ciphertext_hash,
                              holders {party: key id}, wrap_hashes {party: SHA-256
                              of its wrapped data key}, grantees {party: [purposes]}
                              (at most GRANTEES_PER_RECORD_MAX parties),
                              created, status: active|superseded|erasing|erased,
                              supersedes, superseded_by, cross_border_consent,
                              erasure {requested, deadline, bucket, reason, pending[],
                              acknowledged[], overdue, completed}}
    subject/<key id>         [record ids] of one subject's records not yet erased
    grant/<record>/<party>/<purpose>  {record_id, grantee, purpose, until, granted,
                              status: active|revoked, wrap_hash, key_id,
                              cross_border_consent, by}
    accessed/<record>/<party>/<purpose>  block time of the last granted access
    match/<record a>/<record b>/<party>/<purpose>  (a < b) one party's attested
                              comparison {records, category, equal, party, purpose,
                              at, by} (matching.py)
    deadline/...             erasure deadlines (ledger.core.deadlines)

Parties are ``org:<id>``, ``key:<key id>`` or ``vault`` (vocabulary.py).
docs/adr/0008-personal-data-vault.md records the decisions.

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from services.ledger.core.contract import BlockContext, Contract, TxContext, static_fail
from services.ledger.core.transactions import Transaction
from services.privacy import erasure, grants, keys, matching, payloads, records

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
    #: action -> its required payload fields (every field's shape: payloads.ACTIONS)
    actions: Mapping[str, frozenset[str] | None] = {
        action: frozenset(name for name, field in fields.items() if field.required)
        for action, fields in payloads.ACTIONS.items()
    }

    def check_static(self, tx: Transaction) -> None:
        """Every field of the payload, required or optional, has its declared shape (an
        id, a hash, a code, a block time or a boolean), and no other field is there: no
        free text reaches the chain (payloads.py)."""
        super().check_static(tx)
        problem = payloads.problem(tx.action, tx.payload)
        if problem is not None:
            static_fail(f"{tx.kind}: {problem}")

    def apply(self, ctx: TxContext) -> None:
        _HANDLERS[ctx.tx.action](ctx)

    def begin_block(self, ctx: BlockContext) -> None:
        erasure.overdue(ctx)
