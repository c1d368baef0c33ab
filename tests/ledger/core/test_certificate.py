"""Tests for votes, commit certificates and BFT time (certificate.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from services.ledger.core import crypto
from services.ledger.core.certificate import (
    PRECOMMIT,
    PREVOTE,
    VOTE_TAG,
    CommitCertificate,
    CommitSig,
    Vote,
    check_vote_fields,
    vote_digest,
)
from services.ledger.core.crypto import PrivateKey
from services.ledger.core.encoding import decode, encode, tagged_hash
from services.ledger.core.errors import EncodingError, InvalidBlock, InvalidMessage
from services.ledger.core.validators import Validator, ValidatorSet

CHAIN = "ecosphere-test"
BLOCK = bytes(range(32))
OTHER_BLOCK = bytes(range(1, 33))
HEIGHT, ROUND, BLOCK_TIME = 5, 1, 1_000_000


def make_keys(n: int, label: str = "cert") -> list[PrivateKey]:
    keys = [PrivateKey.derive(f"{label}/{i}") for i in range(n)]
    return sorted(keys, key=lambda k: k.key_id)


def make_set(keys: list[PrivateKey], powers: list[int] | None = None) -> ValidatorSet:
    powers = powers or [1] * len(keys)
    return ValidatorSet.of(
        [
            Validator(k.key_id, k.public.raw, p, f"org-{i}")
            for i, (k, p) in enumerate(zip(keys, powers, strict=True))
        ]
    )


KEYS = make_keys(4)
VSET = make_set(KEYS)


def precommit(
    key: PrivateKey,
    *,
    time: int = BLOCK_TIME + 10,
    block: bytes | None = BLOCK,
    height: int = HEIGHT,
    round_: int = ROUND,
    chain_id: str = CHAIN,
    vote_type: str = PRECOMMIT,
) -> Vote:
    return Vote.sign(key, vote_type, chain_id, height, round_, block, time)


def certificate(
    keys: list[PrivateKey], *, times: list[int] | None = None, **kwargs: Any
) -> CommitCertificate:
    times = times or [BLOCK_TIME + 10 + i for i in range(len(keys))]
    return CommitCertificate.from_votes(
        {k.key_id: precommit(k, time=t, **kwargs) for k, t in zip(keys, times, strict=True)}
    )


def cert_code(
    cert: CommitCertificate, validators: ValidatorSet = VSET, block_time: int = BLOCK_TIME
) -> str:
    with pytest.raises(InvalidBlock) as info:
        cert.verify(CHAIN, validators, block_time=block_time)
    return info.value.code


# --------------------------------------------------------------------------- votes


def test_vote_digest_definition():
    body = {
        "type": PRECOMMIT,
        "chain_id": CHAIN,
        "height": 1,
        "round": 0,
        "block_hash": BLOCK.hex(),
        "time": 7,
        "validator": "v",
    }
    assert vote_digest(PRECOMMIT, CHAIN, 1, 0, BLOCK, 7, "v") == tagged_hash(VOTE_TAG, encode(body))
    nil = dict(body, block_hash=None)
    assert vote_digest(PRECOMMIT, CHAIN, 1, 0, None, 7, "v") == tagged_hash(VOTE_TAG, encode(nil))


def test_vote_sign_and_verify():
    vote = precommit(KEYS[0])
    assert vote.validator == KEYS[0].key_id
    assert vote.verify(VSET)
    assert crypto.verify(KEYS[0].public.raw, vote.signature, vote.digest)


def test_vote_from_non_validator_does_not_verify():
    assert not precommit(PrivateKey.derive("outsider")).verify(VSET)


def test_vote_fields_are_all_signed():
    vote = precommit(KEYS[0])
    variants = [
        dataclasses.replace(vote, type=PREVOTE),
        dataclasses.replace(vote, chain_id="other"),
        dataclasses.replace(vote, height=vote.height + 1),
        dataclasses.replace(vote, round=vote.round + 1),
        dataclasses.replace(vote, block_hash=OTHER_BLOCK),
        dataclasses.replace(vote, block_hash=None),
        dataclasses.replace(vote, time=vote.time + 1),
        dataclasses.replace(vote, validator=KEYS[1].key_id),
    ]
    for v in variants:
        assert v != vote
        assert not v.verify(VSET), v


@pytest.mark.parametrize("block", [BLOCK, None])
def test_vote_wire_round_trip(block):
    vote = precommit(KEYS[1], block=block)
    again = Vote.from_wire(decode(encode(vote.to_wire())))
    assert again == vote
    assert again.verify(VSET)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", "commit"),
        ("height", 0),
        ("round", -1),
        ("round", 1_000_001),
        ("block_hash", "ab"),
        ("signature", "00" * 63),
        ("time", True),
        ("validator", 5),
    ],
)
def test_vote_from_wire_rejects(field, value):
    wire = precommit(KEYS[0]).to_wire()
    wire[field] = value
    with pytest.raises(EncodingError):
        Vote.from_wire(wire)


def test_vote_from_wire_rejects_extra_field():
    with pytest.raises(EncodingError):
        Vote.from_wire({**precommit(KEYS[0]).to_wire(), "extra": 0})


def test_check_vote_fields():
    check_vote_fields(precommit(KEYS[0]), CHAIN)
    with pytest.raises(InvalidMessage) as info:
        check_vote_fields(precommit(KEYS[0], chain_id="other"), CHAIN)
    assert info.value.code == "wrong_chain"


# --------------------------------------------------------------------------- certificates


def test_three_of_four_verifies():
    cert = certificate(KEYS[:3])
    cert.verify(CHAIN, VSET, block_time=BLOCK_TIME)
    cert.verify(CHAIN, VSET)
    certificate(KEYS).verify(CHAIN, VSET, block_time=BLOCK_TIME)
    for skip in range(4):
        certificate([k for i, k in enumerate(KEYS) if i != skip]).verify(CHAIN, VSET)


def test_two_of_four_is_below_quorum():
    assert cert_code(certificate(KEYS[:2])) == "bad_certificate"
    assert cert_code(certificate(KEYS[2:])) == "bad_certificate"


def test_empty_certificate_is_below_quorum():
    assert cert_code(CommitCertificate(HEIGHT, ROUND, BLOCK, ())) == "bad_certificate"


def test_from_votes_sorts_by_validator():
    votes = {k.key_id: precommit(k) for k in reversed(KEYS)}
    cert = CommitCertificate.from_votes(votes)
    assert [s.validator for s in cert.votes] == sorted(k.key_id for k in KEYS)
    assert (cert.height, cert.round, cert.block_hash) == (HEIGHT, ROUND, BLOCK)


def test_weighted_quorum():
    keys = make_keys(4, "weighted")
    vs = make_set(keys, [1, 1, 1, 10])  # quorum 9
    heavy = keys[3]
    certificate([heavy], times=[BLOCK_TIME + 1]).verify(CHAIN, make_set(keys, [1, 1, 1, 8]))
    assert cert_code(certificate(keys[:3]), vs) == "bad_certificate"
    certificate([heavy]).verify(CHAIN, vs)


def test_unknown_validator_rejected():
    outsider = PrivateKey.derive("outsider")
    keys = sorted([*KEYS[:3], outsider], key=lambda k: k.key_id)
    assert cert_code(certificate(keys)) == "bad_certificate"


def test_unknown_validator_cannot_make_up_power():
    outsider = PrivateKey.derive("outsider")
    keys = sorted([*KEYS[:2], outsider], key=lambda k: k.key_id)
    assert cert_code(certificate(keys)) == "bad_certificate"


def test_duplicated_vote_rejected():
    cert = certificate(KEYS[:3])
    dup = CommitCertificate(HEIGHT, ROUND, BLOCK, (cert.votes[0], *cert.votes))
    assert cert_code(dup) == "bad_certificate"
    # two copies of one vote must not pass for two validators' power
    two = certificate(KEYS[:2])
    padded = CommitCertificate(HEIGHT, ROUND, BLOCK, (*two.votes, two.votes[1]))
    assert cert_code(padded) == "bad_certificate"


def test_unsorted_votes_rejected():
    cert = certificate(KEYS[:3])
    swapped = CommitCertificate(HEIGHT, ROUND, BLOCK, (cert.votes[1], cert.votes[0], cert.votes[2]))
    assert cert_code(swapped) == "bad_certificate"


def test_vote_for_another_block_rejected():
    good = certificate(KEYS[:2])
    stray = precommit(KEYS[2], block=OTHER_BLOCK)
    sigs = sorted(
        [*good.votes, CommitSig(stray.validator, stray.time, stray.signature)],
        key=lambda s: s.validator,
    )
    assert cert_code(CommitCertificate(HEIGHT, ROUND, BLOCK, tuple(sigs))) == "bad_certificate"
    # and a whole certificate moved onto another block hash
    moved = certificate(KEYS)
    assert cert_code(CommitCertificate(HEIGHT, ROUND, OTHER_BLOCK, moved.votes)) == (
        "bad_certificate"
    )


def test_votes_for_another_height_round_or_chain_rejected():
    for cert in (
        certificate(KEYS, height=HEIGHT + 1),
        certificate(KEYS, round_=ROUND + 1),
        certificate(KEYS, chain_id="other"),
    ):
        relabelled = CommitCertificate(HEIGHT, ROUND, BLOCK, cert.votes)
        assert cert_code(relabelled) == "bad_certificate"


def test_prevotes_do_not_make_a_commit():
    cert = certificate(KEYS, vote_type=PREVOTE)
    assert cert_code(cert) == "bad_certificate"


def test_vote_not_later_than_block_time_rejected():
    at_block_time = certificate(KEYS[:3], times=[BLOCK_TIME + 5, BLOCK_TIME, BLOCK_TIME + 5])
    assert cert_code(at_block_time) == "bad_certificate"
    before = certificate(KEYS[:3], times=[BLOCK_TIME - 1, BLOCK_TIME + 5, BLOCK_TIME + 5])
    assert cert_code(before) == "bad_certificate"
    just_after = certificate(KEYS[:3], times=[BLOCK_TIME + 1] * 3)
    just_after.verify(CHAIN, VSET, block_time=BLOCK_TIME)
    # without block_time only signatures and power are checked
    at_block_time.verify(CHAIN, VSET)


def test_tampered_vote_time_rejected():
    cert = certificate(KEYS[:3])
    first = cert.votes[0]
    forged = CommitSig(first.validator, first.time + 1, first.signature)
    tampered = CommitCertificate(HEIGHT, ROUND, BLOCK, (forged, *cert.votes[1:]))
    assert cert_code(tampered) == "bad_certificate"


def test_certificate_hash_and_wire_round_trip():
    cert = certificate(KEYS[:3])
    again = CommitCertificate.from_wire(decode(encode(cert.to_wire())))
    assert again == cert
    assert again.hash == cert.hash
    assert cert.hash == tagged_hash(b"ecosphere/commit/v1", encode(cert.to_wire()))
    assert certificate(KEYS).hash != cert.hash
    again.verify(CHAIN, VSET, block_time=BLOCK_TIME)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda w: w.update(height=0),
        lambda w: w.update(block_hash="00"),
        lambda w: w.update(extra=1),
        lambda w: w["votes"][0].update(extra=1),
        lambda w: w["votes"][0].update(signature="00"),
        lambda w: w["votes"][0].update(time=-1),
        lambda w: w.update(votes={}),
    ],
)
def test_certificate_from_wire_rejects(mutate):
    wire = certificate(KEYS[:3]).to_wire()
    mutate(wire)
    with pytest.raises(EncodingError):
        CommitCertificate.from_wire(wire)


# --------------------------------------------------------------------------- BFT time


def test_bft_time_is_weighted_median():
    assert certificate(KEYS[:3], times=[10, 20, 30]).bft_time(VSET) == 20
    assert certificate(KEYS, times=[10, 20, 30, 40]).bft_time(VSET) == 30
    assert certificate(KEYS, times=[40, 30, 20, 10]).bft_time(VSET) == 30
    assert certificate(KEYS[:1], times=[99]).bft_time(VSET) == 99


def test_bft_time_weights_by_power():
    keys = make_keys(3, "bft-weight")
    vs = make_set(keys, [1, 1, 5])
    # the heavy validator's time is the median whatever the others say
    for times in ([1, 2, 100], [100, 200, 3], [5, 500, 50]):
        assert certificate(keys, times=times).bft_time(vs) == times[2]


@pytest.mark.parametrize("extreme", [0, 1, 10**15, 2**53 - 1])
def test_bft_time_stays_in_honest_range(extreme):
    honest = [1_000, 1_010, 1_020]
    for position in range(4):
        times = [*honest]
        times.insert(position, extreme)
        t = certificate(KEYS, times=times).bft_time(VSET)
        assert min(honest) <= t <= max(honest), (times, t)
        # with only a quorum of three, one of them faulty
        t3 = certificate(KEYS[:3], times=[honest[0], honest[1], extreme]).bft_time(VSET)
        assert min(honest[:2]) <= t3 <= max(honest[:2])


def test_bft_time_of_empty_certificate():
    with pytest.raises(InvalidBlock) as info:
        CommitCertificate(HEIGHT, ROUND, BLOCK, ()).bft_time(VSET)
    assert info.value.code == "bad_certificate"
