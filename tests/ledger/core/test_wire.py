"""Tests for the replica-to-replica envelope (wire.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.ledger.core import crypto
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.encoding import decode, encode, tagged_hash
from services.ledger.core.errors import InvalidMessage
from services.ledger.core.wire import MESSAGE_TYPES, MSG_TAG, open_envelope, seal, seal_bytes

CHAIN = "ecosphere-test"
SIZE = 1 << 20
NODE = PrivateKey.derive("wire/node")
BODY = {"height": 3, "round": 0, "note": 'é\n"', "items": [1, None, True, {"b": 2, "a": 1}]}


def open_code(data: bytes, *, chain_id: str = CHAIN, size_max: int = SIZE) -> str:
    with pytest.raises(InvalidMessage) as info:
        open_envelope(data, chain_id=chain_id, size_max=size_max)
    return info.value.code


def signed_digest(chain_id: str, msg_type: str, sender: str, body: Any) -> bytes:
    return tagged_hash(
        MSG_TAG, encode({"chain_id": chain_id, "type": msg_type, "from": sender, "body": body})
    )


@pytest.mark.parametrize("msg_type", sorted(MESSAGE_TYPES))
def test_seal_open_round_trip(msg_type):
    data = seal(NODE, CHAIN, msg_type, BODY)
    env = open_envelope(data, chain_id=CHAIN, size_max=SIZE)
    assert env.chain_id == CHAIN
    assert env.type == msg_type
    assert env.sender == NODE.key_id
    assert env.body == BODY
    assert env.size == len(data)
    assert env.digest == signed_digest(CHAIN, msg_type, NODE.key_id, BODY)
    assert crypto.verify(NODE.public.raw, env.signature, env.digest)


def test_sealed_bytes_are_canonical():
    data = seal(NODE, CHAIN, "status", BODY)
    obj = decode(data)
    assert set(obj) == {"chain_id", "type", "from", "body", "signature"}
    assert encode(obj) == data


def test_seal_bytes_matches_seal():
    assert seal_bytes(NODE, CHAIN, "txs", encode(BODY)) == seal(NODE, CHAIN, "txs", BODY)


def test_body_containing_a_signature_field():
    body = {"signature": "ab" * 64, "inner": {"signature": "cd" * 64}}
    data = seal(NODE, CHAIN, "proposal", body)
    env = open_envelope(data, chain_id=CHAIN, size_max=SIZE)
    assert env.body == body
    assert env.digest == signed_digest(CHAIN, "proposal", NODE.key_id, body)
    assert crypto.verify(NODE.public.raw, env.signature, env.digest)


def test_tampered_body_no_longer_verifies():
    data = seal(NODE, CHAIN, "status", {"height": 3})
    forged = data.replace(b'"height":3', b'"height":4')
    env = open_envelope(forged, chain_id=CHAIN, size_max=SIZE)
    assert env.body == {"height": 4}
    assert not crypto.verify(NODE.public.raw, env.signature, env.digest)


def test_relabelled_sender_no_longer_verifies():
    other = PrivateKey.derive("wire/other")
    data = seal(NODE, CHAIN, "status", {"height": 3})
    forged = data.replace(NODE.key_id.encode(), other.key_id.encode())
    env = open_envelope(forged, chain_id=CHAIN, size_max=SIZE)
    assert env.sender == other.key_id
    assert not crypto.verify(other.public.raw, env.signature, env.digest)
    assert not crypto.verify(NODE.public.raw, env.signature, env.digest)


def test_retyped_message_no_longer_verifies():
    data = seal(NODE, CHAIN, "sync_request", {"height": 3})
    forged = data.replace(b'"type":"sync_request"', b'"type":"status"')
    env = open_envelope(forged, chain_id=CHAIN, size_max=SIZE)
    assert env.type == "status"
    assert not crypto.verify(NODE.public.raw, env.signature, env.digest)


def test_wrong_chain():
    data = seal(NODE, "other-chain", "vote", BODY)
    assert open_code(data) == "wrong_chain"
    env = open_envelope(data, chain_id="other-chain", size_max=SIZE)
    assert env.chain_id == "other-chain"


def test_unknown_type():
    assert open_code(seal(NODE, CHAIN, "gossip", BODY)) == "unknown_type"
    assert open_code(seal(NODE, CHAIN, "Vote", BODY)) == "unknown_type"


def test_wrong_chain_is_reported_before_unknown_type():
    assert open_code(seal(NODE, "other", "gossip", BODY)) == "wrong_chain"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        b"null",
        b'{"chain_id":"ecosphere-test"}',
        b"\xff\xfe",
    ],
    ids=["empty", "garbage", "array", "null", "missing-fields", "bad-utf8"],
)
def test_malformed(data):
    assert open_code(data) == "malformed"


def test_non_canonical_bytes_are_malformed():
    data = seal(NODE, CHAIN, "vote", BODY)
    pretty = json.dumps(json.loads(data), indent=1).encode()
    assert open_code(pretty) == "malformed"
    assert open_code(data + b" ") == "malformed"


def test_float_in_body_is_malformed():
    data = seal(NODE, CHAIN, "vote", {"h": 1})
    assert open_code(data.replace(b'"h":1', b'"h":1.0')) == "malformed"


@pytest.mark.parametrize(
    ("field", "value"),
    [("signature", "ab"), ("signature", 5), ("from", 7), ("type", None), ("chain_id", [])],
)
def test_bad_field_types_are_malformed(field, value):
    obj = decode(seal(NODE, CHAIN, "vote", BODY))
    obj[field] = value
    assert open_code(encode(obj)) == "malformed"


def test_extra_field_is_malformed():
    obj = decode(seal(NODE, CHAIN, "vote", BODY))
    obj["extra"] = 1
    assert open_code(encode(obj)) == "malformed"


def test_oversize():
    data = seal(NODE, CHAIN, "txs", BODY)
    open_envelope(data, chain_id=CHAIN, size_max=len(data))
    assert open_code(data, size_max=len(data) - 1) == "malformed"
