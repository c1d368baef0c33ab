"""Tests for the transaction envelope and its static validation (transactions.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.ledger.core import crypto
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.encoding import decode, encode, tagged_hash
from services.ledger.core.errors import EncodingError, InvalidSignature, InvalidTransaction
from services.ledger.core.transactions import (
    TX_TAG,
    Transaction,
    TxLimits,
    check_static,
    sign_transaction,
    tx_hash_of,
)

CHAIN = "ecosphere-test"
LIMITS = TxLimits()
KEY = PrivateKey.derive("tx/alice")
OTHER = PrivateKey.derive("tx/bob")


def make(
    payload: dict[str, Any] | None = None,
    *,
    key: PrivateKey = KEY,
    chain_id: str = CHAIN,
    kind: str = "notary.anchor",
    nonce: int = 0,
    created_at: int = 1_000,
) -> Transaction:
    return sign_transaction(
        key,
        chain_id=chain_id,
        kind=kind,
        nonce=nonce,
        payload={"digest": "ab" * 32} if payload is None else payload,
        created_at=created_at,
    )


def rewire(tx: Transaction, **changes: Any) -> Transaction:
    """The wire form of ``tx`` with body fields replaced (signature kept)."""
    wire = copy.deepcopy(tx.to_wire())
    wire["body"].update(changes)
    return Transaction.from_wire(wire)


def nested_payload(levels: int) -> dict[str, Any]:
    """A payload object ``levels`` containers deep, the payload itself included."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"n": value}
    return value


def static_code(tx: Transaction, *, chain_id: str = CHAIN, limits: TxLimits = LIMITS) -> str:
    with pytest.raises((InvalidTransaction, InvalidSignature)) as info:
        check_static(tx, chain_id=chain_id, limits=limits)
    return info.value.code


# --------------------------------------------------------------------------- shape


def test_fields_and_properties():
    tx = make(nonce=7, created_at=123)
    assert (tx.chain_id, tx.kind, tx.sender, tx.nonce, tx.created_at) == (
        CHAIN,
        "notary.anchor",
        KEY.key_id,
        7,
        123,
    )
    assert tx.contract == "notary"
    assert tx.action == "anchor"
    assert tx.public_key == KEY.public.raw
    assert tx.payload == {"digest": "ab" * 32}


def test_action_keeps_dots_after_the_first():
    tx = make(kind="shop.order.create")
    assert (tx.contract, tx.action) == ("shop", "order.create")


def test_round_trip_wire_transaction_wire():
    tx = make()
    wire = tx.to_wire()
    again = Transaction.from_wire(decode(encode(wire)))
    assert again == tx
    assert again.to_wire() == wire
    assert again.hash == tx.hash
    assert again.wire_bytes == tx.wire_bytes == encode(wire)


def test_hash_is_tagged_hash_of_canonical_body():
    tx = make()
    assert tx.hash == tagged_hash(TX_TAG, encode(tx.body()))
    assert tx.hash == tx_hash_of(tx.body())


def test_signature_is_over_the_hash():
    tx = make()
    assert crypto.verify(KEY.public.raw, tx.signature, tx.hash)


def test_hash_excludes_signature():
    tx = make()
    wire = tx.to_wire()
    wire["signature"] = "00" * 64
    forged = Transaction.from_wire(wire)
    assert forged.hash == tx.hash
    assert forged.wire_bytes != tx.wire_bytes
    assert forged != tx  # equality is on the bytes, signature included


def test_hash_covers_every_body_field():
    tx = make()
    changed = [
        rewire(tx, chain_id="other"),
        rewire(tx, kind="notary.other"),
        rewire(tx, sender=OTHER.key_id),
        rewire(tx, nonce=1),
        rewire(tx, created_at=1_001),
        rewire(tx, payload={"digest": "cd" * 32}),
    ]
    hashes = {tx.hash} | {t.hash for t in changed}
    assert len(hashes) == 1 + len(changed)


def test_equal_transactions_hash_alike():
    a, b = make(), make()
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1


# --------------------------------------------------------------------------- from_wire


@pytest.mark.parametrize("field", ["body", "public_key", "signature"])
def test_from_wire_missing_wire_field(field):
    wire = make().to_wire()
    del wire[field]
    with pytest.raises(EncodingError):
        Transaction.from_wire(wire)


def test_from_wire_extra_wire_field():
    wire = make().to_wire()
    wire["extra"] = 1
    with pytest.raises(EncodingError):
        Transaction.from_wire(wire)


@pytest.mark.parametrize("field", ["chain_id", "kind", "sender", "nonce", "payload", "created_at"])
def test_from_wire_missing_body_field(field):
    wire = make().to_wire()
    del wire["body"][field]
    with pytest.raises(EncodingError):
        Transaction.from_wire(wire)


def test_from_wire_extra_body_field():
    wire = make().to_wire()
    wire["body"]["fee"] = 0
    with pytest.raises(EncodingError):
        Transaction.from_wire(wire)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("nonce", True),
        ("nonce", False),
        ("created_at", True),
        ("nonce", 1.0),
        ("nonce", "1"),
        ("nonce", -1),
        ("nonce", 2**53),
        ("created_at", None),
        ("chain_id", 5),
        ("kind", None),
        ("sender", ["x"]),
        ("payload", []),
        ("payload", "x"),
        ("payload", None),
    ],
)
def test_from_wire_bad_body_types(field, value):
    wire = make().to_wire()
    wire["body"][field] = value
    with pytest.raises(EncodingError):
        Transaction.from_wire(wire)


@pytest.mark.parametrize(
    "payload",
    [{"x": 1.5}, {"x": [float("nan")]}, {"é": 1}, {"x": 2**53}, {"x": b"raw"}],
    ids=["float", "nan", "non-ascii-key", "big-int", "bytes"],
)
def test_from_wire_payload_outside_profile(payload):
    wire = make().to_wire()
    wire["body"]["payload"] = payload
    with pytest.raises(EncodingError):
        Transaction.from_wire(wire)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("public_key", "AB" * 32),
        ("public_key", "ab" * 31),
        ("public_key", "ab" * 33),
        ("public_key", 5),
        ("signature", "ab" * 63),
        ("signature", "zz" * 64),
        ("signature", None),
    ],
)
def test_from_wire_bad_hex(field, value):
    wire = make().to_wire()
    wire[field] = value
    with pytest.raises(EncodingError):
        Transaction.from_wire(wire)


def test_float_on_the_wire_rejected_by_decode():
    data = make().wire_bytes.replace(b'"nonce":0', b'"nonce":0.0')
    assert data != make().wire_bytes
    with pytest.raises(EncodingError):
        decode(data)


def test_sign_transaction_refuses_values_outside_profile():
    with pytest.raises(EncodingError):
        make({"amount": 1.5})
    with pytest.raises(EncodingError):
        make(nonce=2**53)


# --------------------------------------------------------------------------- check_static


def test_check_static_accepts_valid():
    check_static(make(), chain_id=CHAIN, limits=LIMITS)


def test_wrong_chain():
    assert static_code(make(chain_id="other-chain")) == "wrong_chain"


def test_tx_too_large_boundary():
    tx = make({"digest": "ab" * 32, "blob": "x" * 1000})
    size = len(tx.wire_bytes)
    check_static(tx, chain_id=CHAIN, limits=TxLimits(tx_bytes_max=size))
    assert static_code(tx, limits=TxLimits(tx_bytes_max=size - 1)) == "tx_too_large"


def test_tx_too_large_default_limit():
    tx = make({"blob": "x" * LIMITS.tx_bytes_max})
    assert static_code(tx) == "tx_too_large"


@pytest.mark.parametrize(
    "kind",
    [
        "notary",
        "Notary.anchor",
        "notary.Anchor",
        "notary.",
        ".anchor",
        "1notary.anchor",
        "notary-x.anchor",
        "notary.anchor!",
        "a" * 33 + ".x",
        "a." + "b" * 65,
        "",
    ],
)
def test_bad_kind(kind):
    assert static_code(make(kind=kind)) == "bad_kind"


@pytest.mark.parametrize("kind", ["a.b", "notary.anchor", "a" * 32 + "." + "b" * 64, "x_1.y.z_2"])
def test_good_kind(kind):
    check_static(make(kind=kind), chain_id=CHAIN, limits=LIMITS)


@pytest.mark.parametrize("sender", ["", "xyz", "AB" * 16, "ab" * 15, "g" * 32])
def test_bad_sender(sender):
    assert static_code(rewire(make(), sender=sender)) == "bad_sender"


def test_key_mismatch():
    tx = rewire(make(), sender=OTHER.key_id)
    with pytest.raises(InvalidSignature) as info:
        check_static(tx, chain_id=CHAIN, limits=LIMITS)
    assert info.value.code == "key_mismatch"


def test_payload_depth_boundary():
    ok = make(nested_payload(LIMITS.payload_depth_max))
    check_static(ok, chain_id=CHAIN, limits=LIMITS)
    too_deep = make(nested_payload(LIMITS.payload_depth_max + 1))
    assert static_code(too_deep) == "bad_payload"


def test_payload_depth_limit_is_configurable():
    tx = make(nested_payload(3))
    check_static(tx, chain_id=CHAIN, limits=TxLimits(payload_depth_max=3))
    assert static_code(tx, limits=TxLimits(payload_depth_max=2)) == "bad_payload"


def test_tampered_body_with_old_signature():
    tampered = rewire(make(), nonce=1)
    with pytest.raises(InvalidSignature) as info:
        check_static(tampered, chain_id=CHAIN, limits=LIMITS)
    assert info.value.code == "bad_signature"


def test_tampered_payload_with_old_signature():
    tampered = rewire(make(), payload={"digest": "cd" * 32})
    assert static_code(tampered) == "bad_signature"


def test_tampered_signature():
    tx = make()
    for index in (0, 31, 32, 63):
        wire = tx.to_wire()
        sig = bytearray(tx.signature)
        sig[index] ^= 0x01
        wire["signature"] = sig.hex()
        assert static_code(Transaction.from_wire(wire)) == "bad_signature"


def test_signature_by_another_key_with_own_public_key():
    tx = make()
    wire = tx.to_wire()
    wire["signature"] = OTHER.sign(tx.hash).hex()
    assert static_code(Transaction.from_wire(wire)) == "bad_signature"


def test_verify_signature_false_skips_only_the_signature():
    tampered = rewire(make(), nonce=1)
    check_static(tampered, chain_id=CHAIN, limits=LIMITS, verify_signature=False)
    with pytest.raises(InvalidTransaction) as info:
        check_static(
            rewire(make(), chain_id="other"), chain_id=CHAIN, limits=LIMITS, verify_signature=False
        )
    assert info.value.code == "wrong_chain"


def test_check_order_chain_before_size_before_kind():
    tx = make({"blob": "x" * 2000}, chain_id="other", kind="BAD")
    small = TxLimits(tx_bytes_max=100)
    assert static_code(tx, limits=small) == "wrong_chain"
    assert static_code(tx, chain_id="other", limits=small) == "tx_too_large"
    assert static_code(tx, chain_id="other") == "bad_kind"
