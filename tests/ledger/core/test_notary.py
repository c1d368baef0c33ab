"""Tests for the notary contract: anchoring document digests (notary.py)."""

from __future__ import annotations

import pytest

from services.ledger.core.errors import InvalidTransaction
from services.ledger.core.notary import LABEL_CHARS_MAX
from services.ledger.core.transactions import Transaction
from tests.ledger.core.conftest import Chain, rejected_codes

DIGEST = "0123456789abcdef" * 4


def static_code(chain: Chain, tx: Transaction) -> str:
    with pytest.raises(InvalidTransaction) as info:
        chain.check_static(tx)
    return info.value.code


def test_anchor(chain, testnet):
    client = testnet.client_keys[0]
    tx = chain.tx(client, "notary.anchor", {"digest": DIGEST, "label": "invoice 42"})
    chain.check_static(tx)
    result = chain.block([tx])
    assert rejected_codes(result) == []
    [event] = result.events
    assert event.type == "notary.document.anchored"
    assert event.attributes == {
        "digest": DIGEST,
        "by": client.key_id,
        "org": "merchants",
        "label": "invoice 42",
    }
    assert (event.tx_index, event.index) == (0, 0)
    assert chain.get(f"notary/anchor/{DIGEST}") == {
        "digest": DIGEST,
        "by": client.key_id,
        "org": "merchants",
        "height": 1,
        "time": chain.genesis.genesis_time,
        "label": "invoice 42",
    }


def test_anchor_without_label(chain, testnet):
    admin = testnet.admin_keys[2]
    result = chain.block([chain.tx(admin, "notary.anchor", {"digest": DIGEST})])
    assert result.events[0].attributes["label"] == ""
    record = chain.get(f"notary/anchor/{DIGEST}")
    assert (record["label"], record["org"]) == ("", "customs-joint")


def test_duplicate_digest_is_a_conflict(chain, testnet):
    a, b = testnet.client_keys[:2]
    chain.block([chain.tx(a, "notary.anchor", {"digest": DIGEST})])
    first = chain.get(f"notary/anchor/{DIGEST}")
    later = chain.block([chain.tx(b, "notary.anchor", {"digest": DIGEST, "label": "mine"})])
    assert rejected_codes(later) == ["conflict"]
    assert later.events == ()
    assert chain.get(f"notary/anchor/{DIGEST}") == first


def test_duplicate_digest_in_the_same_block(chain, testnet):
    a, b = testnet.client_keys[:2]
    result = chain.block(
        [
            chain.tx(a, "notary.anchor", {"digest": DIGEST}),
            chain.tx(b, "notary.anchor", {"digest": DIGEST}),
        ]
    )
    assert rejected_codes(result) == ["conflict"]
    assert result.included[0].sender == a.key_id
    assert chain.get(f"notary/anchor/{DIGEST}")["by"] == a.key_id


@pytest.mark.parametrize(
    "payload",
    [
        {"digest": "ab" * 31},
        {"digest": "ab" * 33},
        {"digest": DIGEST.upper()},
        {"digest": "zz" * 32},
        {"digest": 5},
        {"digest": None},
        {},
        {"digest": DIGEST, "label": "x" * (LABEL_CHARS_MAX + 1)},
        {"digest": DIGEST, "label": 7},
        {"digest": DIGEST, "extra": 1},
    ],
    ids=[
        "short",
        "long",
        "uppercase",
        "not-hex",
        "int",
        "null",
        "missing",
        "long-label",
        "label-int",
        "extra-field",
    ],
)
def test_static_bad_payload(chain, testnet, payload):
    tx = chain.tx(testnet.client_keys[0], "notary.anchor", payload)
    assert static_code(chain, tx) == "bad_payload"


def test_longest_label_is_fine(chain, testnet):
    tx = chain.tx(
        testnet.client_keys[0], "notary.anchor", {"digest": DIGEST, "label": "é" * LABEL_CHARS_MAX}
    )
    chain.check_static(tx)
    assert rejected_codes(chain.block([tx])) == []


def test_unknown_action(chain, testnet):
    tx = chain.tx(testnet.client_keys[0], "notary.burn", {"digest": DIGEST})
    assert static_code(chain, tx) == "unknown_kind"
