"""Tests for block headers, roots and check_block_shape (blocks.py).

Headers are built by hand; certificates are signed with ``Vote.sign``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from services.ledger.core import merkle
from services.ledger.core.blocks import (
    HEADER_TAG,
    ZERO_HASH,
    Block,
    BlockHeader,
    check_block_shape,
    event_leaf,
    events_root,
    expected_time,
    tx_root,
)
from services.ledger.core.certificate import PRECOMMIT, CommitCertificate, Vote
from services.ledger.core.contract import Event
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.encoding import decode, encode, tagged_hash
from services.ledger.core.errors import EncodingError, InvalidBlock
from services.ledger.core.transactions import Transaction, sign_transaction
from services.ledger.core.validators import Validator, ValidatorSet

CHAIN = "ecosphere-test"
GENESIS_HASH = tagged_hash(b"ecosphere/genesis/v1", b"test genesis")
GENESIS_TIME = 1_767_225_600_000
KEYS = sorted((PrivateKey.derive(f"blocks/{i}") for i in range(4)), key=lambda k: k.key_id)
VSET = ValidatorSet.of(
    [Validator(k.key_id, k.public.raw, 1, f"org-{i}") for i, k in enumerate(KEYS)]
)
CLIENT = PrivateKey.derive("blocks/client")


def txs(n: int, created_at: int = GENESIS_TIME) -> tuple[Transaction, ...]:
    return tuple(
        sign_transaction(
            CLIENT,
            chain_id=CHAIN,
            kind="notary.anchor",
            nonce=i,
            payload={"digest": f"{i:064x}"},
            created_at=created_at,
        )
        for i in range(n)
    )


def header(
    *,
    height: int = 1,
    prev_hash: bytes = GENESIS_HASH,
    time: int = GENESIS_TIME,
    proposer: str | None = None,
    body: tuple[Transaction, ...] = (),
    validators: ValidatorSet = VSET,
    last_commit: CommitCertificate | None = None,
    chain_id: str = CHAIN,
    **overrides: Any,
) -> BlockHeader:
    fields: dict[str, Any] = {
        "chain_id": chain_id,
        "height": height,
        "prev_hash": prev_hash,
        "time": time,
        "proposer": proposer or validators.proposer(height, 0).key_id,
        "tx_root": tx_root(body),
        "tx_count": len(body),
        "state_root": bytes([7]) * 32,
        "validators_hash": validators.hash,
        "next_validators_hash": validators.hash,
        "events_root": events_root([]),
        "last_commit_hash": ZERO_HASH if last_commit is None else last_commit.hash,
    }
    fields.update(overrides)
    return BlockHeader(**fields)


def block1(body: tuple[Transaction, ...] = (), **overrides: Any) -> Block:
    return Block(header(body=body, **overrides), tuple(body), None)


def commit_for(
    block: Block,
    keys: list[PrivateKey] = KEYS[:3],
    times: list[int] | None = None,
    round_: int = 0,
) -> CommitCertificate:
    times = times or [block.header.time + 100 * (i + 1) for i in range(len(keys))]
    votes = {
        k.key_id: Vote.sign(k, PRECOMMIT, CHAIN, block.height, round_, block.hash, t)
        for k, t in zip(keys, times, strict=True)
    }
    return CommitCertificate.from_votes(votes)


def block2(
    parent: Block, cert: CommitCertificate, body: tuple[Transaction, ...] = (), **overrides: Any
) -> Block:
    fields: dict[str, Any] = {
        "height": 2,
        "prev_hash": parent.hash,
        "time": cert.bft_time(VSET),
        "body": body,
        "last_commit": cert,
    }
    fields.update(overrides)
    return Block(header(**fields), tuple(body), cert)


def check(
    block: Block,
    *,
    prev_hash: bytes = GENESIS_HASH,
    prev_time: int | None = None,
    validators: ValidatorSet = VSET,
    prev_validators: ValidatorSet | None = None,
) -> None:
    check_block_shape(
        block,
        chain_id=CHAIN,
        prev_hash=prev_hash,
        prev_time=prev_time,
        genesis_time=GENESIS_TIME,
        validators=validators,
        prev_validators=prev_validators,
    )


def code_of(block: Block, **kwargs: Any) -> str:
    with pytest.raises(InvalidBlock) as info:
        check(block, **kwargs)
    return info.value.code


@pytest.fixture
def chain2() -> tuple[Block, CommitCertificate, Block]:
    b1 = block1(txs(2))
    cert = commit_for(b1)
    b2 = block2(b1, cert)
    return b1, cert, b2


def check2(block: Block, b1: Block, **kwargs: Any) -> None:
    params: dict[str, Any] = {
        "prev_hash": b1.hash,
        "prev_time": b1.header.time,
        "prev_validators": VSET,
    }
    params.update(kwargs)
    check(block, **params)


def code2(block: Block, b1: Block, **kwargs: Any) -> str:
    with pytest.raises(InvalidBlock) as info:
        check2(block, b1, **kwargs)
    return info.value.code


# --------------------------------------------------------------------------- header & roots


def test_header_hash_definition():
    h = header()
    assert h.hash == tagged_hash(HEADER_TAG, encode(h.to_wire()))


def test_header_hash_covers_every_field():
    base = header()
    seen = {base.hash}
    for f in dataclasses.fields(BlockHeader):
        if f.name == "hash":
            continue
        value = getattr(base, f.name)
        changed: Any
        if isinstance(value, bytes):
            changed = bytes([value[0] ^ 1]) + value[1:]
        elif isinstance(value, int):
            changed = value + 1
        else:
            changed = value + "x"
        seen.add(dataclasses.replace(base, **{f.name: changed}).hash)
    assert len(seen) == len(dataclasses.fields(BlockHeader))


def test_header_wire_round_trip():
    h = header(body=txs(3))
    again = BlockHeader.from_wire(decode(encode(h.to_wire())))
    assert again == h
    assert again.hash == h.hash


@pytest.mark.parametrize(
    ("field", "value"),
    [("height", 0), ("prev_hash", "00"), ("tx_count", -1), ("time", 1.5), ("proposer", 1)],
)
def test_header_from_wire_rejects(field, value):
    wire = header().to_wire()
    wire[field] = value
    with pytest.raises(EncodingError):
        BlockHeader.from_wire(wire)


def test_header_from_wire_rejects_extra_and_missing():
    wire = header().to_wire()
    with pytest.raises(EncodingError):
        BlockHeader.from_wire({**wire, "extra": 0})
    del wire["state_root"]
    with pytest.raises(EncodingError):
        BlockHeader.from_wire(wire)


def test_block_wire_round_trip(chain2):
    b1, _, b2 = chain2
    for block in (b1, b2):
        wire = block.to_wire()
        again = Block.from_wire(decode(encode(wire)))
        assert again == block
        assert again.hash == block.hash
        assert block.wire_bytes == encode(wire)


def test_tx_root_is_rfc6962_over_wire_bytes():
    body = txs(3)
    assert tx_root(body) == merkle.merkle_root([tx.wire_bytes for tx in body])
    assert tx_root(()) == merkle.merkle_root([])
    assert tx_root(body) != tx_root(body[::-1])


def test_events_root_over_canonical_events():
    events = [
        Event("notary.document.anchored", {"digest": "ab"}, 0, 0),
        Event("consortium.key.added", {"k": 1}, None, 1),
    ]
    assert event_leaf(events[0]) == encode(events[0].to_wire())
    assert events_root(events) == merkle.merkle_root([encode(e.to_wire()) for e in events])
    assert Event.from_wire(events[1].to_wire()) == events[1]


def test_expected_time():
    assert expected_time(1, GENESIS_TIME, None, None) == GENESIS_TIME
    with pytest.raises(InvalidBlock) as info:
        expected_time(2, GENESIS_TIME, None, VSET)
    assert info.value.code == "missing_last_commit"


# --------------------------------------------------------------------------- shape, height 1


def test_valid_block_1():
    check(block1())
    check(block1(txs(3)))


def test_wrong_chain():
    assert code_of(block1(chain_id="other")) == "wrong_chain"


def test_wrong_parent():
    assert code_of(block1(prev_hash=ZERO_HASH)) == "wrong_parent"


def test_bad_proposer():
    outsider = PrivateKey.derive("outsider")
    assert code_of(block1(proposer=outsider.key_id)) == "bad_proposer"


def test_bad_validators_hash():
    other = ValidatorSet.of([Validator(k.key_id, k.public.raw, 2, "o") for k in KEYS])
    assert code_of(block1(validators_hash=other.hash)) == "bad_validators_hash"
    # a header naming our set, checked against another set of the same keys
    assert code_of(block1(), validators=other) == "bad_validators_hash"


def test_bad_tx_root():
    body = txs(2)
    assert code_of(Block(header(body=body), body[:1], None)) == "bad_tx_root"
    assert code_of(Block(header(body=body), body[::-1], None)) == "bad_tx_root"
    assert code_of(Block(header(body=body, tx_count=3), body, None)) == "bad_tx_root"
    assert code_of(Block(header(body=body, tx_root=ZERO_HASH), body, None)) == "bad_tx_root"


def test_block_1_with_last_commit_is_bad():
    b1 = block1()
    cert = commit_for(b1)
    assert code_of(Block(b1.header, (), cert)) == "bad_last_commit"
    assert code_of(block1(last_commit_hash=bytes([1]) * 32)) == "bad_last_commit"


def test_block_1_bad_time():
    assert code_of(block1(time=GENESIS_TIME + 1)) == "bad_time"


# --------------------------------------------------------------------------- shape, height 2


def test_valid_block_2(chain2):
    b1, _, b2 = chain2
    check2(b2, b1)
    check2(block2(b1, commit_for(b1, KEYS)), b1)


def test_block_2_missing_last_commit(chain2):
    b1, cert, _ = chain2
    b2 = Block(header(height=2, prev_hash=b1.hash, time=cert.bft_time(VSET)), (), None)
    assert code2(b2, b1) == "missing_last_commit"


def test_block_2_without_previous_validators(chain2):
    b1, _, b2 = chain2
    assert code2(b2, b1, prev_validators=None) == "missing_last_commit"
    assert code2(b2, b1, prev_time=None) == "missing_last_commit"


def test_block_2_certificate_for_another_block(chain2):
    b1, _, _ = chain2
    other = block1(txs(1))
    cert = commit_for(other)
    b2 = Block(
        header(height=2, prev_hash=b1.hash, time=cert.bft_time(VSET), last_commit=cert), (), cert
    )
    assert code2(b2, b1) == "bad_last_commit"


def test_block_2_certificate_for_another_height(chain2):
    b1, _, _ = chain2
    votes = {
        k.key_id: Vote.sign(k, PRECOMMIT, CHAIN, 3, 0, b1.hash, b1.header.time + 5)
        for k in KEYS[:3]
    }
    cert = CommitCertificate.from_votes(votes)
    b2 = Block(
        header(height=2, prev_hash=b1.hash, time=cert.bft_time(VSET), last_commit=cert), (), cert
    )
    assert code2(b2, b1) == "bad_last_commit"


def test_block_2_last_commit_hash_mismatch(chain2):
    b1, cert, _ = chain2
    b2 = Block(
        header(height=2, prev_hash=b1.hash, time=cert.bft_time(VSET), last_commit_hash=ZERO_HASH),
        (),
        cert,
    )
    assert code2(b2, b1) == "bad_last_commit"


def test_block_2_certificate_below_quorum(chain2):
    b1, _, _ = chain2
    cert = commit_for(b1, KEYS[:2])
    assert code2(block2(b1, cert), b1) == "bad_certificate"


def test_block_2_certificate_vote_not_after_parent(chain2):
    b1, _, _ = chain2
    t = b1.header.time
    cert = commit_for(b1, times=[t, t + 10, t + 20])
    assert code2(block2(b1, cert), b1) == "bad_certificate"


def test_block_2_bad_time(chain2):
    b1, cert, _ = chain2
    median = cert.bft_time(VSET)
    for wrong in (median - 1, median + 1, GENESIS_TIME, max(s.time for s in cert.votes)):
        if wrong == median:
            continue
        assert code2(block2(b1, cert, time=wrong), b1) == "bad_time"


def test_block_2_time_is_bft_time_of_parent_votes(chain2):
    b1, _, _ = chain2
    t = b1.header.time
    cert = commit_for(b1, KEYS, times=[t + 400, t + 100, t + 300, t + 200])
    assert cert.bft_time(VSET) == t + 300
    check2(block2(b1, cert, time=t + 300), b1)


def test_block_2_with_certificate_from_other_validators(chain2):
    b1, _, b2 = chain2
    other_keys = sorted(
        (PrivateKey.derive(f"blocks/other/{i}") for i in range(4)), key=lambda k: k.key_id
    )
    other_set = ValidatorSet.of([Validator(k.key_id, k.public.raw, 1, "o") for k in other_keys])
    assert code2(b2, b1, prev_validators=other_set) == "bad_certificate"
