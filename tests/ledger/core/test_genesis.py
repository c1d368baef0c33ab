"""Tests for the genesis document and the state at height 0 (genesis.py, genesis_writes)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from services.composition import build_application
from services.ledger.core import consortium
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.encoding import decode, encode, tagged_hash
from services.ledger.core.errors import EncodingError
from services.ledger.core.genesis import ChainParams, Genesis, GenesisKey, GenesisOrg
from services.ledger.core.state import StateView
from services.ledger.core.transactions import TxLimits
from services.ledger.sim import testnet as sim_testnet
from services.ledger.sim.testnet import GENESIS_TIME, make_testnet


@pytest.fixture(scope="module")
def tn() -> sim_testnet.Testnet:
    return make_testnet()


def org_rec(view: StateView, org_id: str) -> dict[str, Any]:
    record = consortium.org_record(view, org_id)
    assert record is not None
    return record


def key_rec(view: StateView, key_id: str) -> dict[str, Any]:
    record = consortium.key_record(view, key_id)
    assert record is not None
    return record


def with_changes(genesis: Genesis, **changes: Any) -> Genesis:
    fields = {f.name: getattr(genesis, f.name) for f in dataclasses.fields(Genesis) if f.init}
    fields.update(changes)
    return Genesis(**fields)


# --------------------------------------------------------------------------- ChainParams


def test_chain_params_defaults():
    p = ChainParams()
    assert p.block_txs_max == 2_000
    assert p.block_bytes_max == 4 * 1024 * 1024
    assert p.tx_ttl_ms == 3_600_000
    assert p.tx_future_ms == 600_000
    assert p.validator_change_delay == 2
    assert p.proposal_ttl_ms == 7 * 24 * 3_600_000
    assert p.tx_limits == TxLimits(p.tx_bytes_max, p.tx_payload_depth_max)


def test_chain_params_wire_round_trip():
    p = ChainParams(block_txs_max=10, proposal_ttl_ms=5)
    assert ChainParams.from_wire(p.to_wire()) == p
    assert set(p.to_wire()) == {f.name for f in dataclasses.fields(ChainParams)}


def test_chain_params_missing_fields_take_defaults():
    assert ChainParams.from_wire({}) == ChainParams()
    assert ChainParams.from_wire({"tx_ttl_ms": 7}) == ChainParams(tx_ttl_ms=7)


@pytest.mark.parametrize(
    "wire",
    [{"bogus": 1}, {"tx_ttl_ms": 0}, {"tx_ttl_ms": True}, {"tx_ttl_ms": "1"}, {"tx_ttl_ms": -5}],
)
def test_chain_params_refuses(wire):
    with pytest.raises(EncodingError):
        ChainParams.from_wire(wire)


# --------------------------------------------------------------------------- Genesis


def test_testnet_genesis_shape(tn):
    g = tn.genesis
    assert g.chain_id == "ecosphere-sim"
    assert g.genesis_time == GENESIS_TIME
    assert [o.id for o in g.organisations] == [
        "operator",
        "trace-center",
        "customs-joint",
        "credit-center",
        "merchants",
    ]
    assert g.organisations[0].roles == ("platform",)
    assert len(g.validators.validators) == 4
    assert {v.org for v in g.validators.validators} == {
        "operator",
        "trace-center",
        "customs-joint",
        "credit-center",
    }


def test_testnet_is_deterministic():
    a, b = make_testnet(), make_testnet()
    assert a.genesis.hash == b.genesis.hash
    assert make_testnet(label="other").genesis.hash != a.genesis.hash
    assert make_testnet(chain_id="other").genesis.hash != a.genesis.hash


def test_genesis_hash_definition(tn):
    g = tn.genesis
    assert g.hash == tagged_hash(b"ecosphere/genesis/v1", encode(g.to_wire()))


def test_genesis_wire_round_trip(tn):
    g = tn.genesis
    again = Genesis.from_wire(decode(encode(g.to_wire())))
    assert again == g
    assert again.hash == g.hash
    assert again.to_wire() == g.to_wire()


def test_genesis_hash_covers_contents(tn):
    g = tn.genesis
    variants = [
        with_changes(g, chain_id="other"),
        with_changes(g, genesis_time=g.genesis_time + 1),
        with_changes(g, params=ChainParams(block_txs_max=1)),
        with_changes(g, organisations=(*g.organisations, GenesisOrg("x", "X", ("carrier",)))),
        with_changes(g, keys=g.keys[:-1]),
    ]
    assert len({g.hash} | {v.hash for v in variants}) == 1 + len(variants)


@pytest.mark.parametrize("chain_id", ["", "UPPER", "-lead", "a" * 65, "sp ace", "ünï"])
def test_genesis_bad_chain_id(tn, chain_id):
    with pytest.raises(EncodingError):
        with_changes(tn.genesis, chain_id=chain_id)


def test_genesis_duplicate_org(tn):
    g = tn.genesis
    with pytest.raises(EncodingError):
        with_changes(g, organisations=(*g.organisations, g.organisations[0]))


def test_genesis_key_of_unknown_org(tn):
    k = PrivateKey.derive("nobody")
    with pytest.raises(EncodingError):
        with_changes(
            tn.genesis, keys=(*tn.genesis.keys, GenesisKey(k.public.raw, "ghost", ("member",)))
        )


def test_genesis_validator_of_unknown_org(tn):
    g = tn.genesis
    vs = g.validators
    bad = dataclasses.replace(vs.validators[0], org="ghost")
    with pytest.raises(EncodingError):
        with_changes(g, validators=type(vs).of([bad, *vs.validators[1:]]))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda w: w.pop("chain_id"),
        lambda w: w.pop("params"),
        lambda w: w.update(params=[]),
        lambda w: w.update(genesis_time=-1),
        lambda w: w.update(organisations={}),
        lambda w: w["keys"][0].update(public_key="00"),
        lambda w: w["keys"][0].update(permissions="admin"),
        lambda w: w["keys"][0].update(permissions=[1]),
        lambda w: w["organisations"][0].update(roles=[None]),
        lambda w: w["validators"][0].update(power=0),
        lambda w: w.update(validators=[]),
        lambda w: w.update(validators=[*w["validators"], w["validators"][0]]),
    ],
)
def test_genesis_from_wire_refuses(tn, mutate):
    wire = copy.deepcopy(tn.genesis.to_wire())
    mutate(wire)
    with pytest.raises(EncodingError):
        Genesis.from_wire(wire)


def test_genesis_from_wire_refuses_non_object():
    bad: object
    for bad in ([], "genesis", None):
        with pytest.raises(EncodingError):
            Genesis.from_wire(bad)


# --------------------------------------------------------------------------- state at height 0


def test_genesis_state(tn):
    app = build_application()
    view = StateView(app.genesis_state(tn.genesis))
    g = tn.genesis
    assert view.get("consortium/params") == g.params.to_wire()
    assert view.get("consortium/validators") == g.validators.to_wire()
    assert view.get("consortium/validators_pending") == []
    assert consortium.validator_set(view) == g.validators
    assert consortium.chain_params(view) == g.params
    op = org_rec(view, "operator")
    assert op == {
        "id": "operator",
        "name": "Ecosphere Platform Operator",
        "roles": ["platform"],
        "status": "active",
        "since": 0,
    }
    customs = org_rec(view, "customs-joint")
    assert customs["roles"] == ["customs_cn", "customs_eu"]
    admin = tn.admin_keys[0]
    assert key_rec(view, admin.key_id) == {
        "key_id": admin.key_id,
        "public_key": admin.public.hex(),
        "org": "operator",
        "permissions": ["admin", "member"],
        "status": "active",
        "since": 0,
        "until": None,
        "successor": None,
    }
    client = key_rec(view, tn.client_keys[0].key_id)
    assert (client["org"], client["permissions"]) == ("merchants", ["member"])
    for i, vk in enumerate(tn.validator_keys):
        rec = key_rec(view, vk.key_id)
        assert rec["permissions"] == ["node"]
        assert rec["org"] == g.organisations[i].id


def test_genesis_state_is_deterministic(tn):
    app = build_application()
    assert app.genesis_state(tn.genesis).root == app.genesis_state(make_testnet().genesis).root
    assert (
        app.genesis_state(tn.genesis).root
        != app.genesis_state(make_testnet(params=ChainParams(block_txs_max=5)).genesis).root
    )
    # the chain id lives in the genesis hash, not in the state
    assert (
        app.genesis_state(tn.genesis).root
        == app.genesis_state(make_testnet(chain_id="x").genesis).root
    )


def test_genesis_key_listed_for_a_validator_keeps_its_permissions(tn):
    g = tn.genesis
    vk = tn.validator_keys[0]
    keys = (*g.keys, GenesisKey(vk.public.raw, "operator", ("admin", "member", "node")))
    view = StateView(build_application().genesis_state(with_changes(g, keys=keys)))
    assert key_rec(view, vk.key_id)["permissions"] == ["admin", "member", "node"]


def test_genesis_writes_refuse_unknown_role(tn):
    g = tn.genesis
    orgs = (*g.organisations, GenesisOrg("x", "X", ("emperor",)))
    with pytest.raises(EncodingError):
        consortium.genesis_writes(with_changes(g, organisations=orgs))


def test_genesis_writes_refuse_unknown_permission(tn):
    g = tn.genesis
    k = PrivateKey.derive("perm")
    keys = (*g.keys, GenesisKey(k.public.raw, "merchants", ("root",)))
    with pytest.raises(EncodingError):
        consortium.genesis_writes(with_changes(g, keys=keys))


@pytest.mark.parametrize("org_id", ["Upper", "sp ace", "", "x" * 65, "a/b"])
def test_genesis_writes_refuse_bad_org_id(tn, org_id):
    g = tn.genesis
    orgs = (*g.organisations, GenesisOrg(org_id, "X", ("carrier",)))
    with pytest.raises(EncodingError):
        consortium.genesis_writes(with_changes(g, organisations=orgs))


def test_a_key_is_listed_once_and_a_validator_key_only_as_its_node_key() -> None:
    """Found in review: a key listed twice ended as whichever came last; a validator key
    listed as another organisation's admin could not gossip."""
    import dataclasses

    import pytest

    from services.ledger.core.errors import EncodingError
    from services.ledger.core.genesis import GenesisKey
    from services.ledger.sim.testnet import make_testnet

    genesis = make_testnet().genesis
    twice = (*genesis.keys, genesis.keys[0])
    with pytest.raises(EncodingError, match="listed twice"):
        dataclasses.replace(genesis, keys=twice)
    validator = genesis.validators.validators[0]
    other_org = next(o.id for o in genesis.organisations if o.id != validator.org)
    wrong = (*genesis.keys, GenesisKey(validator.public_key, other_org, ("admin", "member")))
    with pytest.raises(EncodingError, match="node permission"):
        dataclasses.replace(genesis, keys=wrong)
