"""Tests for the consortium contract: organisations, keys, governance, validator sets.

Everything is driven through ``Application.execute`` on the testnet's genesis state
(see ``conftest.Chain``): admin key ``i`` belongs to validator organisation ``i``
(0 = "operator", the platform), client keys are members of "merchants".
"""

from __future__ import annotations

from typing import Any

import pytest

from services.ledger.core import consortium
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.errors import InvalidTransaction
from services.ledger.core.execution import BlockExecution
from services.ledger.core.genesis import Genesis, GenesisKey
from services.ledger.core.transactions import Transaction
from services.ledger.core.validators import Validator, ValidatorSet
from services.ledger.sim import testnet as sim_testnet
from tests.ledger.core.conftest import Chain, event_types, rejected_codes

DIGEST = "ab" * 32


def new_key(label: str) -> PrivateKey:
    return PrivateKey.derive(f"consortium-test/{label}")


def anchor(chain: Chain, key: PrivateKey, digest: str = DIGEST, **kw: Any) -> Transaction:
    return chain.tx(key, "notary.anchor", {"digest": digest}, **kw)


def register(
    chain: Chain,
    key: PrivateKey,
    org_id: str = "acme",
    roles: tuple[str, ...] = ("carrier",),
    admin: PrivateKey | None = None,
    name: str = "Acme Ltd",
) -> Transaction:
    admin = admin or new_key(f"admin/{org_id}")
    return chain.tx(
        key,
        "consortium.register_organisation",
        {"id": org_id, "name": name, "roles": list(roles), "admin_key": admin.public.hex()},
    )


def propose(chain: Chain, key: PrivateKey, action: Any) -> Transaction:
    return chain.tx(key, "consortium.propose", {"action": action})


def approve(chain: Chain, key: PrivateKey, proposal_id: str) -> Transaction:
    return chain.tx(key, "consortium.approve", {"proposal": proposal_id})


def one(result: BlockExecution) -> str | None:
    """The block's only transaction outcome: its rejection code, or None if included."""
    assert len(result.included) + len(result.rejected) == 1
    return result.rejected[0].code if result.rejected else None


def org_rec(chain: Chain, org_id: str) -> dict[str, Any]:
    record = consortium.org_record(chain.view(), org_id)
    assert record is not None
    return record


def key_rec(chain: Chain, key_id: str) -> dict[str, Any]:
    record = consortium.key_record(chain.view(), key_id)
    assert record is not None
    return record


def proposal_of(result: BlockExecution) -> str:
    [event] = [e for e in result.events if e.type == "consortium.proposal.submitted"]
    proposal = event.attributes["proposal"]
    assert isinstance(proposal, str)
    return proposal


# --------------------------------------------------------------------------- organisations


def test_register_organisation_by_platform_admin(chain, testnet):
    admin = new_key("acme-admin")
    result = chain.block([register(chain, testnet.admin_keys[0], admin=admin)])
    assert rejected_codes(result) == []
    [event] = result.events
    assert event.type == "consortium.organisation.registered"
    assert event.attributes == {
        "org": "acme",
        "name": "Acme Ltd",
        "roles": ["carrier"],
        "admin_key": admin.key_id,
        "by": "operator",
    }
    assert event.tx_index == 0
    org = org_rec(chain, "acme")
    assert org == {
        "id": "acme",
        "name": "Acme Ltd",
        "roles": ["carrier"],
        "status": "active",
        "since": 1,
    }
    key = key_rec(chain, admin.key_id)
    assert (key["org"], key["permissions"], key["status"]) == (
        "acme",
        ["admin", "member"],
        "active",
    )
    # the new organisation's admin can act at once
    assert one(chain.block([anchor(chain, admin)])) is None


def test_register_organisation_by_non_platform_admin_is_forbidden(chain, testnet):
    for admin in testnet.admin_keys[1:]:
        assert one(chain.block([register(chain, admin)])) == "forbidden"
    assert consortium.org_record(chain.view(), "acme") is None


def test_register_organisation_by_client_is_forbidden(chain, testnet):
    assert one(chain.block([register(chain, testnet.client_keys[0])])) == "forbidden"


def test_register_organisation_needs_an_admin_key_of_the_platform(chain, testnet):
    member = new_key("operator-member")
    chain.block(
        [
            chain.tx(
                testnet.admin_keys[0],
                "consortium.add_key",
                {"public_key": member.public.hex(), "permissions": ["member"]},
            )
        ]
    )
    assert one(chain.block([register(chain, member)])) == "forbidden"


@pytest.mark.parametrize("role", sorted(consortium.PRIVILEGED_ROLES))
def test_register_organisation_with_privileged_role_is_forbidden(chain, testnet, role):
    result = chain.block([register(chain, testnet.admin_keys[0], roles=("carrier", role))])
    assert one(result) == "forbidden"


def test_register_duplicate_organisation_is_a_conflict(chain, testnet):
    op = testnet.admin_keys[0]
    assert one(chain.block([register(chain, op)])) is None
    assert one(chain.block([register(chain, op, admin=new_key("second"))])) == "conflict"
    assert (
        one(chain.block([register(chain, op, org_id="merchants", admin=new_key("third"))]))
        == "conflict"
    )


def test_register_with_existing_admin_key_is_a_conflict(chain, testnet):
    result = chain.block([register(chain, testnet.admin_keys[0], admin=testnet.client_keys[0])])
    assert one(result) == "conflict"
    assert consortium.org_record(chain.view(), "acme") is None


@pytest.mark.parametrize(
    ("org_id", "roles"),
    [
        ("Acme", ("carrier",)),
        ("ac me", ("carrier",)),
        ("x" * 65, ("carrier",)),
        ("acme", ()),
        ("acme", ("pirate",)),
    ],
)
def test_register_organisation_bad_payload(chain, testnet, org_id, roles):
    result = chain.block([register(chain, testnet.admin_keys[0], org_id=org_id, roles=roles)])
    assert one(result) == "bad_payload"


def test_register_organisation_static_checks(chain, testnet):
    tx = chain.tx(
        testnet.admin_keys[0],
        "consortium.register_organisation",
        {"id": "x", "name": "X", "roles": ["carrier"], "admin_key": "zz"},
    )
    with pytest.raises(InvalidTransaction) as info:
        chain.check_static(tx)
    assert info.value.code == "bad_payload"
    tx = chain.tx(
        testnet.admin_keys[0],
        "consortium.register_organisation",
        {"id": "x", "name": "X", "roles": ["carrier"]},
    )
    with pytest.raises(InvalidTransaction) as info:
        chain.check_static(tx)
    assert info.value.code == "bad_payload"


# --------------------------------------------------------------------------- keys


def test_add_key_needs_admin(chain, testnet):
    k = new_key("k")
    tx = chain.tx(
        testnet.client_keys[0],
        "consortium.add_key",
        {"public_key": k.public.hex(), "permissions": ["member"]},
    )
    assert one(chain.block([tx])) == "forbidden"
    assert consortium.key_record(chain.view(), k.key_id) is None


def test_add_key_by_admin(chain, testnet):
    k = new_key("k")
    admin = testnet.admin_keys[1]
    result = chain.block(
        [
            chain.tx(
                admin,
                "consortium.add_key",
                {"public_key": k.public.hex(), "permissions": ["member", "member"]},
            )
        ]
    )
    assert one(result) is None
    assert result.events[0].type == "consortium.key.added"
    assert result.events[0].attributes == {
        "key_id": k.key_id,
        "org": "trace-center",
        "permissions": ["member"],
        "by": admin.key_id,
    }
    rec = key_rec(chain, k.key_id)
    assert (rec["org"], rec["permissions"], rec["status"], rec["since"]) == (
        "trace-center",
        ["member"],
        "active",
        1,
    )
    assert one(chain.block([anchor(chain, k)])) is None


def test_add_existing_key_is_a_conflict(chain, testnet):
    tx = chain.tx(
        testnet.admin_keys[1],
        "consortium.add_key",
        {"public_key": testnet.client_keys[0].public.hex(), "permissions": ["member"]},
    )
    assert one(chain.block([tx])) == "conflict"


@pytest.mark.parametrize("permissions", [[], ["root"], "member", [1]])
def test_add_key_bad_permissions(chain, testnet, permissions):
    tx = chain.tx(
        testnet.admin_keys[1],
        "consortium.add_key",
        {"public_key": new_key("k").public.hex(), "permissions": permissions},
    )
    assert one(chain.block([tx])) == "bad_payload"


def test_node_only_key_cannot_send(chain, testnet):
    k = new_key("node")
    chain.block(
        [
            chain.tx(
                testnet.admin_keys[1],
                "consortium.add_key",
                {"public_key": k.public.hex(), "permissions": ["node"]},
            )
        ]
    )
    assert one(chain.block([anchor(chain, k)])) == "key_inactive"
    assert one(chain.block([anchor(chain, testnet.validator_keys[0])])) == "key_inactive"


def test_rotate_key(chain, testnet):
    old = testnet.client_keys[0]
    new = new_key("rotated")
    result = chain.block([chain.tx(old, "consortium.rotate_key", {"public_key": new.public.hex()})])
    assert one(result) is None
    assert result.events[0].type == "consortium.key.rotated"
    assert result.events[0].attributes == {
        "key_id": old.key_id,
        "successor": new.key_id,
        "org": "merchants",
    }
    old_rec = key_rec(chain, old.key_id)
    assert (old_rec["status"], old_rec["until"], old_rec["successor"]) == ("rotated", 1, new.key_id)
    new_rec = key_rec(chain, new.key_id)
    assert (new_rec["org"], new_rec["permissions"], new_rec["status"]) == (
        "merchants",
        ["member"],
        "active",
    )
    # the old key is unusable from now on, the new one works (its own nonces start at 0)
    assert one(chain.block([anchor(chain, old)])) == "key_inactive"
    tx = anchor(chain, new)
    assert tx.nonce == 0
    assert one(chain.block([tx])) is None


def test_rotated_key_is_unusable_later_in_the_same_block(chain, testnet):
    old = testnet.client_keys[0]
    new = new_key("rotated")
    result = chain.block(
        [
            chain.tx(old, "consortium.rotate_key", {"public_key": new.public.hex()}),
            anchor(chain, old),
            anchor(chain, new),
        ]
    )
    assert len(result.included) == 2
    assert rejected_codes(result) == ["key_inactive"]
    assert result.rejected[0].tx.sender == old.key_id


def test_rotate_to_registered_key_is_a_conflict(chain, testnet):
    tx = chain.tx(
        testnet.client_keys[0],
        "consortium.rotate_key",
        {"public_key": testnet.client_keys[1].public.hex()},
    )
    assert one(chain.block([tx])) == "conflict"


def test_revoke_own_key(chain, testnet):
    me = testnet.client_keys[0]
    result = chain.block(
        [chain.tx(me, "consortium.revoke_key", {"key_id": me.key_id, "reason": "lost"})]
    )
    assert one(result) is None
    assert result.events[0].type == "consortium.key.revoked"
    assert result.events[0].attributes == {
        "key_id": me.key_id,
        "org": "merchants",
        "reason": "lost",
        "by": me.key_id,
    }
    rec = key_rec(chain, me.key_id)
    assert (rec["status"], rec["until"]) == ("revoked", 1)
    assert one(chain.block([anchor(chain, me)])) == "key_inactive"


def test_admin_revokes_own_organisations_key(chain, testnet):
    admin = testnet.admin_keys[2]
    k = new_key("to-revoke")
    chain.block(
        [
            chain.tx(
                admin,
                "consortium.add_key",
                {"public_key": k.public.hex(), "permissions": ["member"]},
            )
        ]
    )
    assert (
        one(chain.block([chain.tx(admin, "consortium.revoke_key", {"key_id": k.key_id})])) is None
    )
    assert key_rec(chain, k.key_id)["status"] == "revoked"
    assert one(chain.block([anchor(chain, k)])) == "key_inactive"
    # revoking again: already revoked
    assert (
        one(chain.block([chain.tx(admin, "consortium.revoke_key", {"key_id": k.key_id})]))
        == "conflict"
    )


def test_revoke_other_organisations_key_is_forbidden(chain, testnet):
    victim = testnet.client_keys[0]
    tx = chain.tx(testnet.admin_keys[0], "consortium.revoke_key", {"key_id": victim.key_id})
    assert one(chain.block([tx])) == "forbidden"
    # a member (not admin) of the same organisation cannot either
    tx = chain.tx(testnet.client_keys[1], "consortium.revoke_key", {"key_id": victim.key_id})
    assert one(chain.block([tx])) == "forbidden"
    assert key_rec(chain, victim.key_id)["status"] == "active"


def test_revoke_unknown_key(chain, testnet):
    tx = chain.tx(testnet.admin_keys[0], "consortium.revoke_key", {"key_id": "0" * 32})
    assert one(chain.block([tx])) == "not_found"


def test_revoke_reason_must_be_short_string(chain, testnet):
    me = testnet.client_keys[0]
    for reason in (5, "x" * 257):
        tx = chain.tx(me, "consortium.revoke_key", {"key_id": me.key_id, "reason": reason})
        assert one(chain.block([tx])) == "bad_payload"


def test_validator_key_cannot_be_revoked(chain, testnet):
    validator = testnet.validator_keys[0]  # organisation "operator", like admin 0
    tx = chain.tx(testnet.admin_keys[0], "consortium.revoke_key", {"key_id": validator.key_id})
    assert one(chain.block([tx])) == "forbidden"
    assert key_rec(chain, validator.key_id)["status"] == "active"


def test_validator_key_cannot_be_rotated(testnet):
    """A validator key that may also send (listed in genesis as admin) still cannot rotate."""
    g = testnet.genesis
    vk = testnet.validator_keys[0]
    keys = (*g.keys, GenesisKey(vk.public.raw, "operator", ("admin", "member", "node")))
    chain = Chain(
        Genesis(g.chain_id, g.genesis_time, g.params, g.organisations, keys, g.validators)
    )
    tx = chain.tx(vk, "consortium.rotate_key", {"public_key": new_key("v").public.hex()})
    assert one(chain.block([tx])) == "forbidden"
    tx = chain.tx(vk, "consortium.revoke_key", {"key_id": vk.key_id})
    assert one(chain.block([tx])) == "forbidden"
    assert one(chain.block([anchor(chain, vk)])) is None  # it may send, though


# --------------------------------------------------------------------------- governance


SUSPEND = {"type": "suspend_organisation", "org": "merchants"}


def test_propose_by_validator_org_admin(chain, testnet):
    result = chain.block([propose(chain, testnet.admin_keys[1], SUSPEND)])
    assert one(result) is None
    pid = proposal_of(result)
    assert pid == result.included[0].hash.hex()
    assert event_types(result) == ["consortium.proposal.submitted"]
    assert result.events[0].attributes == {
        "proposal": pid,
        "action": SUSPEND,
        "by": "trace-center",
        "expires": chain.time + chain.genesis.params.proposal_ttl_ms,
    }
    p = chain.get(f"consortium/proposal/{pid}")
    assert (p["status"], p["approvals"], p["proposer"]) == (
        "open",
        ["trace-center"],
        "trace-center",
    )


def test_propose_needs_admin_of_a_validator_org(chain, testnet):
    assert one(chain.block([propose(chain, testnet.client_keys[0], SUSPEND)])) == "forbidden"
    acme_admin = new_key("acme-admin")
    chain.block([register(chain, testnet.admin_keys[0], admin=acme_admin)])
    assert one(chain.block([propose(chain, acme_admin, SUSPEND)])) == "forbidden"


def test_propose_unknown_organisation(chain, testnet):
    action = {"type": "suspend_organisation", "org": "ghost"}
    assert one(chain.block([propose(chain, testnet.admin_keys[0], action)])) == "not_found"


def test_propose_static_check_of_action_type(chain, testnet):
    for action in ({"type": "dissolve"}, "suspend", {"org": "merchants"}):
        tx = propose(chain, testnet.admin_keys[0], action)
        with pytest.raises(InvalidTransaction) as info:
            chain.check_static(tx)
        assert info.value.code == "bad_payload"


def test_three_of_four_approvals_execute(chain, testnet):
    a = testnet.admin_keys
    pid = proposal_of(chain.block([propose(chain, a[0], SUSPEND)]))
    second = chain.block([approve(chain, a[1], pid)])
    assert event_types(second) == ["consortium.proposal.approved"]
    assert chain.get(f"consortium/proposal/{pid}")["status"] == "open"
    assert org_rec(chain, "merchants")["status"] == "active"
    # two of four do not rule: merchants still transact
    assert one(chain.block([anchor(chain, testnet.client_keys[0])])) is None

    third = chain.block([approve(chain, a[2], pid)])
    assert event_types(third) == ["consortium.proposal.approved", "consortium.proposal.executed"]
    assert third.events[1].attributes == {"proposal": pid, "action": SUSPEND}
    p = chain.get(f"consortium/proposal/{pid}")
    assert (p["status"], p["approvals"]) == (
        "executed",
        ["customs-joint", "operator", "trace-center"],
    )
    assert org_rec(chain, "merchants")["status"] == "suspended"


def test_suspended_organisations_keys_are_refused(chain, testnet):
    a = testnet.admin_keys
    pid = proposal_of(chain.block([propose(chain, a[0], SUSPEND)]))
    chain.block([approve(chain, a[1], pid), approve(chain, a[3], pid)])
    for client in testnet.client_keys:
        assert one(chain.block([anchor(chain, client, digest=client.public.hex())])) == (
            "org_suspended"
        )
    # reinstated by another proposal
    reinstate = {"type": "reinstate_organisation", "org": "merchants"}
    pid2 = proposal_of(chain.block([propose(chain, a[1], reinstate)]))
    chain.block([approve(chain, a[2], pid2), approve(chain, a[3], pid2)])
    assert org_rec(chain, "merchants")["status"] == "active"
    assert one(chain.block([anchor(chain, testnet.client_keys[0])])) is None


def test_suspension_takes_effect_within_the_block(chain, testnet):
    a = testnet.admin_keys
    pid = proposal_of(chain.block([propose(chain, a[0], SUSPEND)]))
    client = testnet.client_keys[0]
    result = chain.block(
        [
            anchor(chain, client, digest="01" * 32),
            approve(chain, a[1], pid),
            approve(chain, a[2], pid),
            anchor(chain, client, digest="02" * 32, nonce=1),
        ]
    )
    assert len(result.included) == 3
    assert rejected_codes(result) == ["org_suspended"]


def test_approve_errors(chain, testnet):
    a = testnet.admin_keys
    pid = proposal_of(chain.block([propose(chain, a[0], SUSPEND)]))
    assert one(chain.block([approve(chain, a[0], pid)])) == "conflict"  # already approved
    assert one(chain.block([approve(chain, a[1], "00" * 32)])) == "not_found"
    assert one(chain.block([approve(chain, testnet.client_keys[0], pid)])) == "forbidden"
    chain.block([approve(chain, a[1], pid), approve(chain, a[2], pid)])
    assert one(chain.block([approve(chain, a[3], pid)])) == "conflict"  # executed


def test_grant_and_revoke_roles(chain, testnet):
    a = testnet.admin_keys
    grant = {"type": "grant_roles", "org": "merchants", "roles": ["accreditor", "retailer"]}
    pid = proposal_of(chain.block([propose(chain, a[0], grant)]))
    chain.block([approve(chain, a[1], pid), approve(chain, a[2], pid)])
    assert org_rec(chain, "merchants")["roles"] == [
        "accreditor",
        "merchant",
        "retailer",
    ]
    revoke = {"type": "revoke_roles", "org": "merchants", "roles": ["accreditor"]}
    pid = proposal_of(chain.block([propose(chain, a[3], revoke)]))
    chain.block([approve(chain, a[1], pid), approve(chain, a[2], pid)])
    assert org_rec(chain, "merchants")["roles"] == ["merchant", "retailer"]


def test_grant_unknown_role_is_bad_payload(chain, testnet):
    action = {"type": "grant_roles", "org": "merchants", "roles": ["pirate"]}
    assert one(chain.block([propose(chain, testnet.admin_keys[0], action)])) == "bad_payload"


# --------------------------------------------------------------------------- validator set


def replacement_set(
    testnet: sim_testnet.Testnet, label: str = "new-validator"
) -> tuple[PrivateKey, ValidatorSet]:
    """The genesis set with validator 3 (credit-center) replaced by a new key."""
    nv = new_key(label)
    keep = [
        v
        for v in testnet.genesis.validators.validators
        if v.key_id != testnet.validator_keys[3].key_id
    ]
    new = ValidatorSet.of([*keep, Validator(nv.key_id, nv.public.raw, 1, "credit-center")])
    return nv, new


def set_validators_action(vset: ValidatorSet, effective_height: int) -> dict[str, Any]:
    return {
        "type": "set_validators",
        "effective_height": effective_height,
        "validators": [
            {"public_key": v.public_key.hex(), "power": v.power, "org": v.org}
            for v in vset.validators
        ],
    }


def test_set_validators_takes_effect_exactly_at_effective_height(chain, testnet):
    a = testnet.admin_keys
    old = testnet.genesis.validators
    nv, new = replacement_set(testnet)
    effective = 4
    action = set_validators_action(new, effective)
    first = chain.execute([])
    assert first.validators_next == old

    b1 = chain.block([propose(chain, a[0], action)])
    pid = proposal_of(b1)
    b2 = chain.block([approve(chain, a[1], pid), approve(chain, a[2], pid)])
    assert "consortium.proposal.executed" in event_types(b2)
    assert b2.validators_next == old  # installed at the end of block effective-1 = 3
    assert chain.get("consortium/validators_pending") == [
        {"effective_height": effective, "validators": new.to_wire()}
    ]
    nv_rec = key_rec(chain, nv.key_id)
    assert (nv_rec["org"], nv_rec["permissions"]) == ("credit-center", ["node"])

    b3 = chain.block([])
    assert chain.height == effective - 1
    assert b3.validators_next == new
    assert b3.validators_next.hash != old.hash
    assert event_types(b3) == ["consortium.validators.changed"]
    assert b3.events[0].attributes == {
        "effective_height": effective,
        "validators": [v.key_id for v in new.validators],
    }
    assert b3.events[0].tx_index is None
    assert consortium.validator_set(chain.view()) == new
    assert chain.get("consortium/validators_pending") == []

    b4 = chain.block([])
    assert b4.validators_next == new
    assert b4.events == ()


def test_set_validators_at_minimum_delay(chain, testnet):
    a = testnet.admin_keys
    _, new = replacement_set(testnet)
    delay = testnet.genesis.params.validator_change_delay
    proposal = propose(chain, a[0], set_validators_action(new, 1 + delay))
    pid = proposal.hash.hex()
    b1 = chain.block([proposal, approve(chain, a[1], pid), approve(chain, a[2], pid)])
    assert rejected_codes(b1) == []
    assert "consortium.proposal.executed" in event_types(b1)
    assert b1.validators_next == testnet.genesis.validators
    b2 = chain.block([])
    assert b2.validators_next == new


def test_set_validators_effective_height_too_early(chain, testnet):
    _, new = replacement_set(testnet)
    delay = testnet.genesis.params.validator_change_delay
    for height in (0, 1, delay):  # block 1: the earliest allowed is 1 + delay
        tx = chain.tx(
            testnet.admin_keys[0],
            "consortium.propose",
            {"action": set_validators_action(new, height)},
            nonce=0,
        )
        assert one(chain.execute([tx])) == "bad_payload"
    tx = chain.tx(
        testnet.admin_keys[0],
        "consortium.propose",
        {"action": set_validators_action(new, 1 + delay)},
        nonce=0,
    )
    assert one(chain.execute([tx])) is None


def test_set_validators_approval_after_it_became_too_early_fails_cleanly(chain, testnet):
    a = testnet.admin_keys
    _, new = replacement_set(testnet)
    proposal = propose(chain, a[0], set_validators_action(new, 3))
    pid = proposal.hash.hex()
    chain.block([proposal, approve(chain, a[1], pid)])
    before = chain.get(f"consortium/proposal/{pid}")
    nonce_before = chain.next_nonce(a[2].key_id)
    # at height 2, effective height 3 is no longer >= 2 + delay: the approval that would
    # execute the proposal fails, and with it the approval's own writes and event
    result = chain.block([approve(chain, a[2], pid)])
    assert rejected_codes(result) == ["bad_payload"]
    assert result.events == ()
    assert result.writes == {}
    assert chain.get(f"consortium/proposal/{pid}") == before
    assert chain.next_nonce(a[2].key_id) == nonce_before


@pytest.mark.parametrize(
    "validators",
    [
        [],
        "x",
        [{"public_key": "00", "power": 1, "org": "operator"}],
        [{"public_key": "ab" * 32, "power": 0, "org": "operator"}],
        [{"public_key": "ab" * 32, "power": True, "org": "operator"}],
    ],
)
def test_set_validators_bad_validators(chain, testnet, validators):
    action = {"type": "set_validators", "effective_height": 10, "validators": validators}
    assert one(chain.execute([propose(chain, testnet.admin_keys[0], action)])) == "bad_payload"


def test_set_validators_unknown_org(chain, testnet):
    action = {
        "type": "set_validators",
        "effective_height": 10,
        "validators": [{"public_key": "ab" * 32, "power": 1, "org": "ghost"}],
    }
    assert one(chain.execute([propose(chain, testnet.admin_keys[0], action)])) == "not_found"


def test_pending_validator_key_cannot_be_revoked(chain, testnet):
    a = testnet.admin_keys
    nv, new = replacement_set(testnet)
    pid = proposal_of(chain.block([propose(chain, a[0], set_validators_action(new, 10))]))
    chain.block([approve(chain, a[1], pid), approve(chain, a[2], pid)])
    tx = chain.tx(a[3], "consortium.revoke_key", {"key_id": nv.key_id})
    assert one(chain.block([tx])) == "forbidden"


# --------------------------------------------------------------------------- expiry


def test_proposal_expires_on_block_time(short_ttl_testnet):
    chain = Chain(short_ttl_testnet.genesis)
    a = short_ttl_testnet.admin_keys
    ttl = short_ttl_testnet.genesis.params.proposal_ttl_ms
    b1 = chain.block([propose(chain, a[0], SUSPEND)])
    pid = proposal_of(b1)
    created = chain.time
    assert chain.get(f"consortium/proposal/{pid}")["expires"] == created + ttl

    before = chain.block([], time=created + ttl - 1)
    assert before.events == ()
    assert chain.get(f"consortium/proposal/{pid}")["status"] == "open"

    at = chain.block([approve(chain, a[1], pid)], time=created + ttl)
    assert event_types(at)[0] == "consortium.proposal.expired"
    assert at.events[0].attributes == {"proposal": pid}
    assert at.events[0].tx_index is None
    assert chain.get(f"consortium/proposal/{pid}")["status"] == "expired"
    # the begin-block expiry runs before the block's transactions
    assert rejected_codes(at) == ["conflict"]


def test_expired_proposal_cannot_be_executed(short_ttl_testnet):
    chain = Chain(short_ttl_testnet.genesis)
    a = short_ttl_testnet.admin_keys
    pid = proposal_of(chain.block([propose(chain, a[0], SUSPEND)]))
    chain.block([approve(chain, a[1], pid)])
    chain.block([], time=chain.time + 10 * 60_000)
    assert one(chain.block([approve(chain, a[2], pid)])) == "conflict"
    assert org_rec(chain, "merchants")["status"] == "active"


def test_executed_proposal_does_not_expire(short_ttl_testnet):
    chain = Chain(short_ttl_testnet.genesis)
    a = short_ttl_testnet.admin_keys
    pid = proposal_of(chain.block([propose(chain, a[0], SUSPEND)]))
    chain.block([approve(chain, a[1], pid), approve(chain, a[2], pid)])
    later = chain.block([], time=chain.time + 10 * 60_000)
    assert later.events == ()
    assert chain.get(f"consortium/proposal/{pid}")["status"] == "executed"


# --- governance rules found in review ----------------------------------------------------


def test_a_validator_organisation_is_not_suspended_while_it_validates(chain, testnet):
    """Found in review: a suspended validator organisation kept voting (or, muted,
    counted as a faulty validator). It must leave the validator set first."""
    action = {"type": "suspend_organisation", "org": "credit-center"}
    refused = chain.block([propose(chain, testnet.admin_keys[0], action)])
    assert rejected_codes(refused) == ["forbidden"]
    assert org_rec(chain, "credit-center")["status"] == "active"


def test_set_validators_takes_only_active_organisations_and_their_node_keys(chain, testnet):
    a = testnet.admin_keys
    keep = [v for v in testnet.genesis.validators.validators if v.org != "credit-center"]
    member = testnet.client_keys[0]  # a merchants member key
    for candidate in (Validator(member.key_id, member.public.raw, 1, "operator"),
                      Validator(member.key_id, member.public.raw, 1, "merchants")):
        action = set_validators_action(ValidatorSet.of([*keep, candidate]), chain.height + 10)
        assert rejected_codes(chain.block([propose(chain, a[0], action)])) == ["forbidden"]
    assert key_rec(chain, member.key_id)["org"] == "merchants"


def test_an_admin_key_is_never_revoked_by_itself(chain, testnet):
    admin = testnet.admin_keys[3]
    assert one(chain.block([chain.tx(admin, "consortium.revoke_key",
                                     {"key_id": admin.key_id})])) == "forbidden"
    assert key_rec(chain, admin.key_id)["status"] == "active"
