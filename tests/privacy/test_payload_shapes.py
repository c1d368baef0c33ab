"""Every field of every privacy action, required or optional, has one declared shape,
checked statically (mempool, gateway, every replica on a proposed block): free text
reaches the chain in no field.

Found in review: ``cross_border_consent`` was only checked for being a known field
and then read with ``is True``, so a name and address in it committed (as "no
consent") in create_record, rectify and grant."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.errors import InvalidTransaction
from services.ledger.sim.testnet import make_testnet
from services.privacy.contract import PrivacyContract
from services.privacy.payloads import ACTIONS, BLOCK_TIME_MAX
from services.privacy.vocabulary import HOLDERS_MAX
from tests.ledger.core.conftest import Chain

KEY = PrivateKey.derive("privacy/shapes")
ME = f"key:{KEY.key_id}"
PII = "Anna Schmidt, Lindenstrasse 5, 10969 Berlin, born 1980-02-03"


def h(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


#: one well-formed payload per action, with every optional field
VALID: dict[str, dict[str, Any]] = {
    "register_key": {"scope": "self", "public_key": h("pub"), "country": "DE"},
    "revoke_key": {"scope": "org"},
    "create_record": {"category": "address", "commitment": h("c"), "ciphertext_hash": h("x"),
                      "jurisdiction": "CN", "holders": [ME, "org:customs-joint"],
                      "wrap_hashes": {ME: h("w1"), "org:customs-joint": h("w2")},
                      "cross_border_consent": True},
    "rectify": {"record_id": h("r"), "commitment": h("c"), "ciphertext_hash": h("x"),
                "holders": [ME], "wrap_hashes": {ME: h("w")},
                "cross_border_consent": False},
    "grant": {"record_id": h("r"), "grantee": "org:org-carrier", "purpose": "delivery",
              "until": 1_700_000_000_000, "wrap_hash": h("w"), "cross_border_consent": True},
    "revoke_grant": {"record_id": h("r"), "grantee": "org:org-carrier",
                     "purpose": "delivery"},
    "access": {"record_id": h("r"), "purpose": "delivery", "basis": "grant", "as": "self"},
    "request_erasure": {"record_id": h("r")},
    "ack_erasure": {"record_id": h("r"), "as": "vault"},
    "attest_match": {"record_a": h("a"), "record_b": h("b"), "purpose": "customs_clearance",
                     "equal": False},
}

#: values of the wrong shape for any field (free text first), but those a field takes
WRONG: list[Any] = [PII, {"note": PII}, [PII], None, 7, True, "", "ORG", "Delivery"]
TAKES: dict[str, list[Any]] = {"cross_border_consent": [True], "equal": [True],
                               "until": [7]}


@pytest.fixture(scope="module")
def chain() -> Chain:
    return Chain(make_testnet(composition=2).genesis)


def refusal(chain: Chain, action: str, payload: dict[str, Any]) -> str | None:
    """The static refusal's message, or None if the payload's shape is accepted."""
    tx = chain.tx(KEY, f"privacy.{action}", payload, nonce=0)
    try:
        chain.check_static(tx)
    except InvalidTransaction as refused:
        assert refused.code == "bad_payload"
        return str(refused)
    return None


def test_the_valid_payloads_cover_every_field_of_every_action() -> None:
    assert set(VALID) == set(ACTIONS) == set(PrivacyContract.actions)
    for action, fields in ACTIONS.items():
        assert set(VALID[action]) == set(fields), action


def test_well_formed_payloads_pass(chain: Chain) -> None:
    for action, payload in VALID.items():
        assert refusal(chain, action, payload) is None, action
        optional = {k for k, f in ACTIONS[action].items() if not f.required}
        bare = {k: v for k, v in payload.items() if k not in optional}
        assert refusal(chain, action, bare) is None, action


@pytest.mark.parametrize("action", sorted(VALID))
def test_every_field_refuses_every_other_shape(chain: Chain, action: str) -> None:
    for field in VALID[action]:
        for value in WRONG:
            if any(type(value) is type(t) and value == t for t in TAKES.get(field, [])):
                continue
            message = refusal(chain, action, {**VALID[action], field: value})
            assert message is not None, f"{action}.{field} = {value!r} passed"
            assert f"{field} is " in message, message


@pytest.mark.parametrize("action", ["create_record", "rectify", "grant"])
def test_cross_border_consent_carries_no_free_text(chain: Chain, action: str) -> None:
    """The review's repro: a name and address in ``cross_border_consent``."""
    for value in (PII, "true", 1, 0, {"consent": True}, [True], None):
        message = refusal(chain, action, {**VALID[action], "cross_border_consent": value})
        assert message is not None and "cross_border_consent is true or false" in message


def test_unknown_and_missing_fields_are_refused(chain: Chain) -> None:
    for action, payload in VALID.items():
        message = refusal(chain, action, {**payload, "note": PII})
        assert message is not None and "unknown payload fields ['note']" in message
        required = sorted(k for k, f in ACTIONS[action].items() if f.required)
        message = refusal(chain, action, {k: v for k, v in payload.items()
                                          if k != required[0]})
        assert message is not None and "lacks" in message, action


def test_shapes_within_a_field(chain: Chain) -> None:
    create, grant = VALID["create_record"], VALID["grant"]
    cases: list[tuple[str, dict[str, Any]]] = [
        ("create_record", {**create, "holders": [ME, ME],
                           "wrap_hashes": {ME: h("w")}}),
        ("create_record", {**create, "holders": [ME, "vault"],
                           "wrap_hashes": {ME: h("w"), "vault": h("v")}}),
        ("create_record", {**create, "holders": [ME, "org:Customs"],
                           "wrap_hashes": {ME: h("w"), "org:Customs": h("v")}}),
        ("create_record", {**create, "holders": [ME, f"org:{PII}"],
                           "wrap_hashes": {ME: h("w"), f"org:{PII}": h("v")}}),
        ("create_record", {**create, "holders": [f"org:o{i}" for i in range(HOLDERS_MAX + 1)],
                           "wrap_hashes": {f"org:o{i}": h("w")
                                           for i in range(HOLDERS_MAX + 1)}}),
        ("create_record", {**create, "wrap_hashes": {ME: h("w")}}),  # customs' missing
        ("create_record", {**create, "wrap_hashes": {ME: h("w"), "org:customs-joint": PII}}),
        ("create_record", {**create, "jurisdiction": "cn"}),
        ("create_record", {**create, "category": "shoe_size"}),
        ("grant", {**grant, "until": 0}),
        ("grant", {**grant, "until": -5}),
        ("grant", {**grant, "grantee": "org:"}),
        ("grant", {**grant, "purpose": "marketing"}),
        ("register_key", {**VALID["register_key"], "public_key": "AB" * 32}),
        ("register_key", {**VALID["register_key"], "country": "Deutschland"}),
        ("access", {**VALID["access"], "as": "vault"}),  # only erasure is acked for it
        ("access", {**VALID["access"], "basis": "curiosity"}),
        ("ack_erasure", {**VALID["ack_erasure"], "as": "customs"}),
        ("attest_match", {**VALID["attest_match"], "record_b": h("a")}),  # the same twice
        ("attest_match", {**VALID["attest_match"], "equal": "yes"}),
    ]
    for action, payload in cases:
        assert refusal(chain, action, payload) is not None, (action, payload)
    assert refusal(chain, "grant", {**grant, "until": BLOCK_TIME_MAX}) is None
