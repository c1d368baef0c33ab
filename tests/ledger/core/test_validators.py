"""Tests for the validator set: quorum, fault tolerance, proposer rotation (validators.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.encoding import decode, encode, tagged_hash
from services.ledger.core.errors import EncodingError
from services.ledger.core.validators import VALIDATORS_MAX, Validator, ValidatorSet


def make_set(powers: list[int], label: str = "val") -> ValidatorSet:
    keys = [PrivateKey.derive(f"{label}/{i}") for i in range(len(powers))]
    return ValidatorSet.of(
        [
            Validator(k.key_id, k.public.raw, p, f"org-{i}")
            for i, (k, p) in enumerate(zip(keys, powers, strict=True))
        ]
    )


@pytest.mark.parametrize(
    ("powers", "quorum", "fault"),
    [
        ([1], 1, 0),
        ([1, 1], 2, 0),
        ([1, 1, 1], 3, 0),
        ([1] * 4, 3, 1),
        ([1] * 5, 4, 1),
        ([1] * 6, 5, 1),
        ([1] * 7, 5, 2),
        ([1] * 10, 7, 3),
        ([1, 1, 1, 10], 9, 4),
        ([3, 3, 3], 7, 2),
    ],
)
def test_quorum_and_fault_power(powers, quorum, fault):
    vs = make_set(powers)
    assert vs.total_power == sum(powers)
    assert vs.quorum_power == quorum
    assert vs.fault_power == fault
    # quorum is strictly more than two thirds, and the least such integer
    assert 3 * vs.quorum_power > 2 * vs.total_power
    assert 3 * (vs.quorum_power - 1) <= 2 * vs.total_power
    # any two quorums overlap in more than f
    assert 2 * vs.quorum_power - vs.total_power > vs.fault_power


def test_validators_sorted_by_key_id():
    vs = make_set([1, 2, 3, 4])
    ids = [v.key_id for v in vs.validators]
    assert ids == sorted(ids)
    assert set(vs.by_id) == set(ids)
    assert vs.orgs == frozenset({"org-0", "org-1", "org-2", "org-3"})


def test_power_of():
    vs = make_set([1, 2, 3])
    for v in vs.validators:
        assert vs.power_of(v.key_id) == v.power
    assert vs.power_of("0" * 32) == 0


@pytest.mark.parametrize("powers", [[1] * 4, [1] * 7, [1, 2, 3, 4], [5, 1, 1]])
def test_proposer_rotation_is_proportional_to_power(powers):
    vs = make_set(powers)
    for start in (0, 1, 17):
        counts = Counter(vs.proposer(h, 0).key_id for h in range(start, start + vs.total_power))
        assert counts == {v.key_id: v.power for v in vs.validators}
    counts = Counter(vs.proposer(h, 0).key_id for h in range(3 * vs.total_power))
    assert counts == {v.key_id: 3 * v.power for v in vs.validators}


def test_proposer_is_pure_function_of_height_plus_round():
    vs = make_set([1] * 4)
    for h in range(1, 10):
        for r in range(5):
            assert vs.proposer(h, r) == vs.proposer(h + r, 0)
            assert vs.proposer(h, r) == make_set([1] * 4).proposer(h, r)


def test_new_round_moves_to_another_proposer():
    vs = make_set([1] * 4)
    for h in range(1, 10):
        assert vs.proposer(h, 1) != vs.proposer(h, 0)
    order = [vs.proposer(5, r).key_id for r in range(4)]
    assert sorted(order) == sorted(vs.by_id)


def test_single_validator_always_proposes():
    vs = make_set([3])
    assert {vs.proposer(h, r) for h in range(5) for r in range(3)} == {vs.validators[0]}


def test_empty_set_refused():
    with pytest.raises(EncodingError):
        ValidatorSet(())


def test_unsorted_or_duplicate_refused():
    vs = make_set([1, 1, 1])
    with pytest.raises(EncodingError):
        ValidatorSet(tuple(reversed(vs.validators)))
    with pytest.raises(EncodingError):
        ValidatorSet((vs.validators[0], vs.validators[0]))


def test_too_many_validators_refused():
    keys = [PrivateKey.derive(f"many/{i}") for i in range(VALIDATORS_MAX + 1)]
    validators = [Validator(k.key_id, k.public.raw, 1, "o") for k in keys]
    ValidatorSet.of(validators[:VALIDATORS_MAX])
    with pytest.raises(EncodingError):
        ValidatorSet.of(validators)


def test_hash_is_tagged_hash_of_wire_and_changes_with_power():
    vs = make_set([1, 1, 1, 1])
    assert vs.hash == tagged_hash(b"ecosphere/validators/v1", encode(vs.to_wire()))
    assert make_set([1, 1, 1, 2]).hash != vs.hash
    assert make_set([1, 1, 1, 1]).hash == vs.hash


def test_wire_round_trip():
    vs = make_set([1, 2, 3, 4])
    again = ValidatorSet.from_wire(decode(encode(vs.to_wire())))
    assert again == vs
    assert again.hash == vs.hash
    v = vs.validators[0]
    assert Validator.from_wire(v.to_wire()) == v


def test_validator_from_wire_refuses_mismatched_key_id():
    a, b = PrivateKey.derive("a"), PrivateKey.derive("b")
    wire = Validator(a.key_id, a.public.raw, 1, "o").to_wire()
    wire["public_key"] = b.public.hex()
    with pytest.raises(EncodingError):
        Validator.from_wire(wire)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("power", 0),
        ("power", 1_000_001),
        ("power", True),
        ("power", "1"),
        ("org", 3),
        ("org", "o" * 65),
        ("public_key", "00"),
    ],
)
def test_validator_from_wire_bad_fields(field, value):
    k = PrivateKey.derive("a")
    wire = Validator(k.key_id, k.public.raw, 1, "o").to_wire()
    wire[field] = value
    with pytest.raises(EncodingError):
        Validator.from_wire(wire)


def test_validator_from_wire_extra_or_missing_field():
    k = PrivateKey.derive("a")
    wire = Validator(k.key_id, k.public.raw, 1, "o").to_wire()
    with pytest.raises(EncodingError):
        Validator.from_wire({**wire, "extra": 1})
    del wire["org"]
    with pytest.raises(EncodingError):
        Validator.from_wire(wire)


def test_set_from_wire_refuses_non_list_and_unsorted():
    vs = make_set([1, 1])
    with pytest.raises(EncodingError):
        ValidatorSet.from_wire({"validators": vs.to_wire()})
    with pytest.raises(EncodingError):
        ValidatorSet.from_wire(list(reversed(vs.to_wire())))
    with pytest.raises(EncodingError):
        ValidatorSet.from_wire([])
