"""Tests for the authenticated state tree (services.ledger.core.statetree).

The module under test is checked against a deliberately naive reference model written
here from the specification alone: key hashes as strings of '0'/'1', subtrees as lists
filtered by one bit at a time.  It shares no code with the implementation.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ledger.core.statetree import (
    EMPTY_HASH,
    KEY_BITS,
    StateProof,
    StateTree,
    key_hash,
    value_hash,
    verify_state_proof,
)

# --------------------------------------------------------------------------------------
# Reference model, straight from the specification.


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ref_key_hash(key: bytes) -> bytes:
    return _h(b"ecosphere/state/key" + key)


def ref_value_hash(value: bytes) -> bytes:
    return _h(b"ecosphere/state/value" + value)


def ref_bits(digest: bytes) -> str:
    return "".join(f"{byte:08b}" for byte in digest)


# An entry: (path bits, key hash, value hash, leaf hash).
Entry = tuple[str, bytes, bytes, bytes]


def ref_entries(pairs: Mapping[bytes, bytes]) -> list[Entry]:
    out = []
    for key, value in pairs.items():
        kh = ref_key_hash(key)
        vh = ref_value_hash(value)
        out.append((ref_bits(kh), kh, vh, _h(b"\x10" + kh + vh)))
    return out


def ref_subtree(entries: list[Entry], depth: int) -> bytes:
    """Hash of the canonical subtree at ``depth`` holding ``entries``."""
    if not entries:
        return bytes(32)
    if len(entries) == 1:
        return entries[0][3]  # a lone leaf sits as high as it can
    left = [e for e in entries if e[0][depth] == "0"]
    right = [e for e in entries if e[0][depth] == "1"]
    return _h(b"\x11" + ref_subtree(left, depth + 1) + ref_subtree(right, depth + 1))


def ref_root(pairs: Mapping[bytes, bytes]) -> bytes:
    return ref_subtree(ref_entries(pairs), 0)


def ref_proof(
    pairs: Mapping[bytes, bytes], key: bytes
) -> tuple[list[bytes], tuple[bytes, bytes] | None]:
    """Siblings (root first) and terminal (key hash, value hash) or None for Empty."""
    bits = ref_bits(ref_key_hash(key))
    entries = ref_entries(pairs)
    siblings = []
    depth = 0
    while len(entries) >= 2:  # an internal node: descend along the key's bit
        same = [e for e in entries if e[0][depth] == bits[depth]]
        other = [e for e in entries if e[0][depth] != bits[depth]]
        siblings.append(ref_subtree(other, depth + 1))
        entries = same
        depth += 1
    if not entries:
        return siblings, None
    return siblings, (entries[0][1], entries[0][2])


# --------------------------------------------------------------------------------------
# Key searches (deterministic, cached).


def _prefix(key: bytes, bits: int) -> int:
    return int.from_bytes(ref_key_hash(key), "big") >> (KEY_BITS - bits)


@functools.cache
def keys_sharing_prefix(bits: int) -> tuple[bytes, bytes]:
    """Two distinct keys whose key hashes share their first ``bits`` bits (birthday search)."""
    seen: dict[int, bytes] = {}
    i = 0
    while True:
        key = b"deep-%d" % i
        p = _prefix(key, bits)
        if p in seen:
            return seen[p], key
        seen[p] = key
        i += 1


def key_with_prefix_of(target: bytes, bits: int, exclude: tuple[bytes, ...] = ()) -> bytes:
    """A key, not in ``exclude``, whose key hash starts with the first ``bits`` of target's."""
    want = _prefix(target, bits)
    i = 0
    while True:
        key = b"probe-%d" % i
        if key != target and key not in exclude and _prefix(key, bits) == want:
            return key
        i += 1


def bit(key: bytes, depth: int) -> str:
    return ref_bits(ref_key_hash(key))[depth]


def starts_with(bits: str) -> Callable[[bytes], bool]:
    return lambda key: ref_bits(ref_key_hash(key)).startswith(bits)


def first_key(pred: Callable[[bytes], bool], prefix: bytes = b"k") -> bytes:
    i = 0
    while not pred(prefix + b"%d" % i):
        i += 1
    return prefix + b"%d" % i


# --------------------------------------------------------------------------------------
# Strategies.

small_keys = st.binary(min_size=0, max_size=3)
values = st.binary(min_size=0, max_size=8)
pair_maps = st.dictionaries(small_keys, values, max_size=40)
# A small key pool makes batches overwrite and delete existing keys often.
pool_keys = st.sampled_from([b"", b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"k1", b"k2"])
batches = st.dictionaries(pool_keys | small_keys, st.none() | values, max_size=12)


def apply_model(model: dict[bytes, bytes], batch: Mapping[bytes, bytes | None]) -> None:
    for k, v in batch.items():
        if v is None:
            model.pop(k, None)
        else:
            model[k] = v


def check_tree(tree: StateTree, model: Mapping[bytes, bytes]) -> None:
    assert tree.root == ref_root(model)
    assert len(tree) == len(model)
    assert dict(tree.items()) == model
    order = [key_hash(k) for k, _ in tree.items()]
    assert order == sorted(order)
    for k, v in model.items():
        assert tree.get(k) == v


def check_proofs(tree: StateTree, model: Mapping[bytes, bytes], absent: list[bytes]) -> None:
    root = tree.root
    for k, v in model.items():
        proof = tree.prove(k)
        siblings, terminal = ref_proof(model, k)
        assert list(proof.siblings) == siblings
        assert (proof.leaf_key_hash, proof.leaf_value_hash) == terminal
        assert verify_state_proof(root, k, v, proof)
        assert not verify_state_proof(root, k, None, proof)
        assert not verify_state_proof(root, k, v + b"x", proof)
    for k in absent:
        if k in model:
            continue
        proof = tree.prove(k)
        siblings, terminal = ref_proof(model, k)
        assert list(proof.siblings) == siblings
        assert (proof.leaf_key_hash, proof.leaf_value_hash) == (terminal or (None, None))
        assert verify_state_proof(root, k, None, proof)
        assert not verify_state_proof(root, k, b"", proof)


# --------------------------------------------------------------------------------------
# Hashing rules and fixed vectors.

ABC = {b"a": b"1", b"b": b"2", b"c": b"3"}
ABC_ROOT = "f37028a9616ca80a9044f2e3717b8807f2166c64c24d139b7e807b4e6a9eec7e"


def test_helpers_follow_spec() -> None:
    assert key_hash(b"k") == _h(b"ecosphere/state/key" + b"k")
    assert value_hash(b"v") == _h(b"ecosphere/state/value" + b"v")
    assert bytes(32) == EMPTY_HASH


def test_fixed_vector_abc() -> None:
    tree = StateTree.from_items(ABC.items())
    assert ref_root(ABC).hex() == ABC_ROOT
    assert tree.root.hex() == ABC_ROOT
    assert StateTree.empty().update(ABC).root.hex() == ABC_ROOT


def test_empty_tree() -> None:
    tree = StateTree.empty()
    assert tree.root == bytes(32)
    assert len(tree) == 0
    assert list(tree.items()) == []
    assert tree.get(b"a") is None
    assert tree == StateTree() == StateTree.from_items([])
    proof = tree.prove(b"a")
    assert proof == StateProof(b"a", (), None, None)
    assert verify_state_proof(tree.root, b"a", None, proof)
    assert not verify_state_proof(tree.root, b"a", b"1", proof)
    assert not verify_state_proof(b"\x01" * 32, b"a", None, proof)


def test_single_key_is_a_leaf_at_the_root() -> None:
    tree = StateTree.empty().update({b"a": b"1"})
    kh = ref_key_hash(b"a")
    assert tree.root == _h(b"\x10" + kh + ref_value_hash(b"1"))
    assert len(tree) == 1
    proof = tree.prove(b"a")
    assert proof.siblings == ()
    assert verify_state_proof(tree.root, b"a", b"1", proof)
    # Absence of any other key is shown by the one leaf occupying every path.
    other = tree.prove(b"b")
    assert (other.siblings, other.leaf_key_hash) == ((), kh)
    assert verify_state_proof(tree.root, b"b", None, other)
    assert not verify_state_proof(tree.root, b"a", None, proof)


def test_leaf_hash_does_not_depend_on_depth() -> None:
    a, b = keys_sharing_prefix(16)
    tree = StateTree.from_items([(a, b"1"), (b, b"2")])
    proof = tree.prove(a)
    assert len(proof.siblings) > 16
    assert proof.siblings[-1] == _h(b"\x10" + ref_key_hash(b) + ref_value_hash(b"2"))


# --------------------------------------------------------------------------------------
# Against the reference model.


@given(pair_maps)
def test_from_items_matches_reference(model: dict[bytes, bytes]) -> None:
    check_tree(StateTree.from_items(model.items()), model)


@given(pair_maps, st.lists(small_keys, max_size=10))
def test_proofs_for_every_key(model: dict[bytes, bytes], absent: list[bytes]) -> None:
    tree = StateTree.from_items(model.items())
    check_proofs(tree, model, [*absent, b"absent", b"zz", b"\x00\x00\x00\x00"])


@given(st.lists(batches, max_size=8))
def test_batch_updates_match_model(steps: list[dict[bytes, bytes | None]]) -> None:
    tree = StateTree.empty()
    model: dict[bytes, bytes] = {}
    for batch in steps:
        tree = tree.update(batch)
        apply_model(model, batch)
        check_tree(tree, model)
    assert tree == StateTree.from_items(model.items())
    check_proofs(tree, model, [b"a", b"zz", b"k1"])


@given(pair_maps, st.randoms(use_true_random=False))
def test_root_is_independent_of_update_order(model: dict[bytes, bytes], rnd: random.Random) -> None:
    expected = ref_root(model)
    # One key at a time, in a shuffled order, with detours through other values and
    # temporary keys that are deleted again.
    keys = list(model)
    rnd.shuffle(keys)
    tree = StateTree.empty().update({b"temp-1": b"x", b"temp-2": b"y"})
    for k in keys:
        tree = tree.update({k: model[k] + b"detour"})
    for k in reversed(keys):
        tree = tree.update({k: model[k]})
    tree = tree.update({b"temp-1": None}).update({b"temp-2": None})
    assert tree.root == expected
    assert len(tree) == len(model)
    # Random batch splits.
    tree = StateTree.empty()
    rnd.shuffle(keys)
    i = 0
    while i < len(keys):
        n = rnd.randint(1, 6)
        tree = tree.update({k: model[k] for k in keys[i : i + n]})
        i += n
    assert tree.root == expected
    assert tree == StateTree.from_items(model.items())


def test_from_items_last_duplicate_wins() -> None:
    tree = StateTree.from_items([(b"a", b"1"), (b"b", b"2"), (b"a", b"3")])
    assert tree.get(b"a") == b"3"
    assert len(tree) == 2
    assert tree.root == ref_root({b"a": b"3", b"b": b"2"})


# --------------------------------------------------------------------------------------
# Deep paths, compression and deletion.


def test_two_keys_with_long_shared_prefix() -> None:
    a, b = keys_sharing_prefix(32)
    model = {a: b"A", b: b"B"}
    tree = StateTree.from_items(model.items())
    check_tree(tree, model)
    cpl = (
        KEY_BITS
        - (int.from_bytes(key_hash(a), "big") ^ int.from_bytes(key_hash(b), "big")).bit_length()
    )
    assert cpl >= 32
    # A chain of single-child internal nodes down to the split, then the two leaves.
    proof = tree.prove(a)
    assert len(proof.siblings) == cpl + 1
    assert proof.siblings[:cpl] == (EMPTY_HASH,) * cpl
    # An absent key following the chain for a while ends in an Empty slot, deep down.
    x = key_with_prefix_of(a, 10, exclude=(b,))
    x_proof = tree.prove(x)
    assert x_proof.leaf_key_hash is None
    assert len(x_proof.siblings) > 10
    check_proofs(tree, model, [x, b"other"])
    # Same keys via updates, in both orders, and with a third key that goes elsewhere.
    assert StateTree.empty().update({a: b"A"}).update({b: b"B"}) == tree
    assert StateTree.empty().update({b: b"B"}).update({a: b"A"}) == tree
    c = first_key(lambda k: bit(k, 0) != bit(a, 0))
    bigger = tree.update({c: b"C"})
    check_tree(bigger, {**model, c: b"C"})
    check_proofs(bigger, {**model, c: b"C"}, [x])
    # Deleting one of the pair collapses the whole chain: the survivor moves up.
    assert bigger.update({a: None}) == StateTree.from_items([(b, b"B"), (c, b"C")])
    assert len(bigger.update({a: None}).prove(b).siblings) == 1
    assert tree.update({b: None}).root == _h(b"\x10" + key_hash(a) + value_hash(b"A"))


def test_absence_proof_terminal_kinds() -> None:
    # Two keys that both start with bits 00: the root and its left child are chain
    # nodes with an Empty right child.
    a = first_key(lambda k: bit(k, 0) == "0" and bit(k, 1) == "0")
    b = first_key(lambda k: bit(k, 0) == "0" and bit(k, 1) == "0" and k != a)
    tree = StateTree.from_items([(a, b"1"), (b, b"2")])
    for first_bits, depth in (("1", 1), ("01", 2)):
        x = first_key(starts_with(first_bits), b"x")
        proof = tree.prove(x)
        assert (proof.leaf_key_hash, proof.leaf_value_hash) == (None, None)
        assert len(proof.siblings) == depth
        assert verify_state_proof(tree.root, x, None, proof)
    # Some absent key ends at the leaf of a or b instead.
    y = first_key(lambda k: k not in (a, b) and tree.prove(k).leaf_key_hash is not None, b"y")
    proof = tree.prove(y)
    assert proof.leaf_key_hash in (key_hash(a), key_hash(b))
    assert verify_state_proof(tree.root, y, None, proof)
    assert not verify_state_proof(tree.root, y, b"1", proof)


def test_delete_recompresses() -> None:
    a_b = StateTree.from_items([(b"a", b"1"), (b"b", b"2")])
    abc = StateTree.empty().update({b"a": b"1"}).update({b"b": b"2"}).update({b"c": b"3"})
    after = abc.update({b"c": None})
    assert after == a_b
    assert len(after) == 2
    for k in (b"a", b"b", b"zz"):
        assert after.prove(k) == a_b.prove(k)
    # Down to one key: it becomes the root leaf; down to none: the empty root.
    only_a = after.update({b"b": None})
    assert only_a.root == _h(b"\x10" + key_hash(b"a") + value_hash(b"1"))
    assert only_a.prove(b"a").siblings == ()
    assert only_a.update({b"a": None}).root == EMPTY_HASH
    assert len(abc.update({b"a": None, b"b": None, b"c": None})) == 0


@given(pair_maps, st.data())
def test_deleting_keys_matches_building_without_them(model: dict[bytes, bytes], data: Any) -> None:
    tree = StateTree.from_items(model.items())
    doomed = data.draw(st.sets(st.sampled_from(sorted(model)))) if model else set()
    after = tree.update(dict.fromkeys(doomed))
    rest = {k: v for k, v in model.items() if k not in doomed}
    assert after == StateTree.from_items(rest.items())
    check_tree(after, rest)
    check_proofs(after, rest, sorted(doomed))


def test_noops_keep_root_and_len() -> None:
    tree = StateTree.from_items(ABC.items())
    assert tree.update({}) is tree
    assert tree.update({b"zz": None}).root == tree.root
    assert len(tree.update({b"zz": None, b"yy": None})) == 3
    same = tree.update({b"a": b"1"})
    assert same.root == tree.root
    assert len(same) == 3
    assert tree.update({b"a": b"1", b"b": b"2", b"q": None}) == tree
    # Changing and changing back gives the same root.
    assert tree.update({b"a": b"other"}).update({b"a": b"1"}) == tree


@given(pair_maps)
def test_equal_contents_equal_roots(model: dict[bytes, bytes]) -> None:
    one = StateTree.from_items(model.items())
    two = StateTree.from_items(reversed(list(model.items())))
    three = one.update(dict(model))
    assert one.root == two.root == three.root
    assert hash(one) == hash(two)


# --------------------------------------------------------------------------------------
# Persistence.


@given(pair_maps, batches, batches)
def test_old_versions_are_unchanged(
    model: dict[bytes, bytes], b1: dict[bytes, bytes | None], b2: dict[bytes, bytes | None]
) -> None:
    v0 = StateTree.from_items(model.items())
    snapshot0 = (v0.root, len(v0), list(v0.items()))
    v1 = v0.update(b1)
    snapshot1 = (v1.root, len(v1), list(v1.items()))
    v2a = v1.update(b2)  # two speculative children of v1
    v2b = v1.update({k: None for k in b2})
    assert (v0.root, len(v0), list(v0.items())) == snapshot0
    assert (v1.root, len(v1), list(v1.items())) == snapshot1
    m1 = dict(model)
    apply_model(m1, b1)
    m2a = dict(m1)
    apply_model(m2a, b2)
    m2b = dict(m1)
    apply_model(m2b, dict.fromkeys(b2))
    check_tree(v0, model)
    check_tree(v1, m1)
    check_tree(v2a, m2a)
    check_tree(v2b, m2b)
    for k, v in model.items():
        assert verify_state_proof(v0.root, k, v, v0.prove(k))


# --------------------------------------------------------------------------------------
# Tampering.


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def tampered_variants(proof: StateProof) -> list[StateProof]:
    out = []
    for i, s in enumerate(proof.siblings):
        sib = list(proof.siblings)
        sib[i] = _flip(s, i % 32)
        out.append(replace(proof, siblings=tuple(sib)))
    out.append(replace(proof, siblings=proof.siblings[1:]))
    out.append(replace(proof, siblings=proof.siblings[:-1]))
    out.append(replace(proof, siblings=(EMPTY_HASH, *proof.siblings)))
    out.append(replace(proof, siblings=(*proof.siblings, EMPTY_HASH)))
    out.append(replace(proof, key=proof.key + b"x"))
    if proof.leaf_key_hash is not None and proof.leaf_value_hash is not None:
        out.append(replace(proof, leaf_key_hash=_flip(proof.leaf_key_hash, 31)))
        out.append(replace(proof, leaf_value_hash=_flip(proof.leaf_value_hash, 0)))
        out.append(replace(proof, leaf_key_hash=None, leaf_value_hash=None))
        out.append(replace(proof, leaf_value_hash=None))
    else:
        out.append(replace(proof, leaf_key_hash=bytes(32), leaf_value_hash=bytes(32)))
        out.append(replace(proof, leaf_key_hash=key_hash(proof.key), leaf_value_hash=bytes(32)))
    return [p for p in out if p != proof]


@settings(max_examples=50)
@given(st.dictionaries(small_keys, values, min_size=1, max_size=30), small_keys)
def test_tampering_breaks_verification(model: dict[bytes, bytes], absent: bytes) -> None:
    tree = StateTree.from_items(model.items())
    root = tree.root
    claims: list[tuple[bytes, bytes | None]] = list(model.items())
    if absent not in model:
        claims.append((absent, None))
    for k, v in claims:
        proof = tree.prove(k)
        assert verify_state_proof(root, k, v, proof)
        for bad in tampered_variants(proof):
            assert not verify_state_proof(root, k, v, bad)
        # Wrong claimed value, wrong key, wrong root.
        assert not verify_state_proof(root, k, b"forged" if v is None else v + b"!", proof)
        assert not verify_state_proof(root, k + b"?", v, proof)
        assert not verify_state_proof(_flip(root, 5), k, v, proof)


def test_tampering_deep_proof() -> None:
    a, b = keys_sharing_prefix(32)
    tree = StateTree.from_items([(a, b"A"), (b, b"B"), (b"c", b"C")])
    for k, v in ((a, b"A"), (b, b"B"), (b"zz", None)):
        proof = tree.prove(k)
        assert verify_state_proof(tree.root, k, v, proof)
        for bad in tampered_variants(proof):
            assert not verify_state_proof(tree.root, k, v, bad)


def test_absence_with_foreign_leaf_off_the_path_is_rejected() -> None:
    # Hand-built (non-canonical) root in which a leaf sits on the wrong side: the hash
    # chain would check out for key x, but the leaf does not share x's first bit.
    x = first_key(lambda k: bit(k, 0) == "0", b"x")
    stray = first_key(lambda k: bit(k, 0) == "1", b"s")
    stray_leaf = _h(b"\x10" + key_hash(stray) + value_hash(b"v"))
    sibling = _h(b"anything")
    forged_root = _h(b"\x11" + stray_leaf + sibling)
    proof = StateProof(x, (sibling,), key_hash(stray), value_hash(b"v"))
    assert not verify_state_proof(forged_root, x, None, proof)
    # The same shape with a leaf that does share the bit is accepted.
    near = first_key(lambda k: bit(k, 0) == "0" and k != x, b"n")
    near_leaf = _h(b"\x10" + key_hash(near) + value_hash(b"v"))
    ok_root = _h(b"\x11" + near_leaf + sibling)
    assert verify_state_proof(
        ok_root, x, None, StateProof(x, (sibling,), key_hash(near), value_hash(b"v"))
    )


def test_presence_proof_for_another_key_is_rejected() -> None:
    tree = StateTree.from_items(ABC.items())
    proof_a = tree.prove(b"a")
    assert not verify_state_proof(tree.root, b"b", b"1", proof_a)
    assert not verify_state_proof(tree.root, b"b", b"1", replace(proof_a, key=b"b"))
    # An absence claim for a present key cannot reuse its presence proof.
    assert not verify_state_proof(tree.root, b"a", None, proof_a)


@pytest.mark.parametrize(
    "proof",
    [
        StateProof(b"a", ("x",), None, None),  # type: ignore[arg-type]
        StateProof(b"a", (b"short",), None, None),
        StateProof(b"a", cast(Any, None), None, None),
        StateProof(b"a", cast(Any, "ab"), None, None),
        StateProof(b"a", (EMPTY_HASH,) * 257, None, None),
        StateProof(b"a", (), b"short", bytes(32)),
        StateProof(b"a", (), bytes(32), None),
        StateProof(b"a", (), None, bytes(32)),
        StateProof(b"a", (), cast(Any, "00" * 32), cast(Any, "00" * 32)),
        StateProof(cast(Any, "a"), (), None, None),
        StateProof(cast(Any, None), (), None, None),
        cast(Any, None),
        cast(Any, {"key": "61"}),
    ],
)
def test_verify_never_raises_on_malformed_proofs(proof: StateProof) -> None:
    tree = StateTree.from_items(ABC.items())
    for root in (tree.root, EMPTY_HASH):
        assert verify_state_proof(root, b"a", None, proof) is False
        assert verify_state_proof(root, b"a", b"1", proof) is False


def test_verify_rejects_malformed_arguments() -> None:
    tree = StateTree.from_items(ABC.items())
    proof = tree.prove(b"a")
    assert verify_state_proof(tree.root, b"a", b"1", proof)
    assert not verify_state_proof(tree.root[:31], b"a", b"1", proof)
    assert not verify_state_proof(cast(Any, tree.root.hex()), b"a", b"1", proof)
    assert not verify_state_proof(tree.root, cast(Any, "a"), b"1", proof)
    assert not verify_state_proof(tree.root, b"a", cast(Any, "1"), proof)
    assert not verify_state_proof(tree.root, b"a", cast(Any, 1), proof)


def test_max_depth_proof_is_accepted_by_verify_and_wire() -> None:
    # 256 siblings is the limit; verify handles it without special cases.
    proof = StateProof(b"a", (EMPTY_HASH,) * 256, None, None)
    assert StateProof.from_wire(proof.to_wire()) == proof
    assert verify_state_proof(bytes(range(32)), b"a", None, proof) is False


# --------------------------------------------------------------------------------------
# Wire format.


@given(pair_maps, small_keys)
def test_wire_round_trip(model: dict[bytes, bytes], extra: bytes) -> None:
    tree = StateTree.from_items(model.items())
    for k in [*model, extra]:
        proof = tree.prove(k)
        wire = proof.to_wire()
        assert set(wire) == {"key", "siblings", "leaf_key_hash", "leaf_value_hash"}
        decoded = StateProof.from_wire(json.loads(json.dumps(wire)))
        assert decoded == proof
        assert verify_state_proof(tree.root, k, model.get(k), decoded)


def test_wire_shape() -> None:
    tree = StateTree.from_items(ABC.items())
    wire = tree.prove(b"a").to_wire()
    assert wire["key"] == "61"
    assert wire["leaf_key_hash"] == key_hash(b"a").hex()
    assert wire["leaf_value_hash"] == value_hash(b"1").hex()
    assert wire["siblings"] == [s.hex() for s in tree.prove(b"a").siblings]
    absent = StateTree.empty().prove(b"").to_wire()
    assert absent == {"key": "", "siblings": [], "leaf_key_hash": None, "leaf_value_hash": None}


def _good_wire() -> dict[str, object]:
    return StateTree.from_items(ABC.items()).prove(b"a").to_wire()


def _with(**changes: object) -> dict[str, object]:
    wire = _good_wire()
    wire.update(changes)
    return wire


def _without(field: str) -> dict[str, object]:
    wire = _good_wire()
    del wire[field]
    return wire


H64 = "ab" * 32


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ([], "mapping"),
        ("key", "mapping"),
        (None, "mapping"),
        (_without("key"), "missing"),
        (_without("siblings"), "missing"),
        (_without("leaf_value_hash"), "missing"),
        (_with(extra=1), "unexpected"),
        (_with(key=b"a"), "key"),
        (_with(key=97), "key"),
        (_with(key=None), "key"),
        (_with(key="6"), "key"),
        (_with(key="6G"), "key"),
        (_with(key="6A"), "key"),
        (_with(key=" 61"), "key"),
        (_with(key="61 "), "key"),
        (_with(key="0x61"), "key"),
        (_with(siblings="ab" * 32), "siblings"),
        (_with(siblings=None), "siblings"),
        (_with(siblings={"0": H64}), "siblings"),
        (_with(siblings=[H64[:-2]]), "siblings[0]"),
        (_with(siblings=[H64, H64 + "00"]), "siblings[1]"),
        (_with(siblings=[H64, b"\xab" * 32]), "siblings[1]"),
        (_with(siblings=[H64.upper()]), "siblings[0]"),
        (_with(siblings=[None]), "siblings[0]"),
        (_with(siblings=[H64] * 257), "at most 256"),
        (_with(leaf_key_hash=None), "both"),
        (_with(leaf_value_hash=None), "both"),
        (_with(leaf_key_hash="ab" * 31), "leaf_key_hash"),
        (_with(leaf_value_hash="ab" * 33), "leaf_value_hash"),
        (_with(leaf_value_hash="zz" * 32), "leaf_value_hash"),
        (_with(leaf_key_hash=1), "leaf_key_hash"),
    ],
)
def test_from_wire_rejects(wire: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        StateProof.from_wire(cast(Any, wire))


def test_from_wire_accepts_tuple_and_max_siblings() -> None:
    wire = _with(siblings=tuple([H64] * 256))
    proof = StateProof.from_wire(wire)
    assert len(proof.siblings) == 256
    assert proof.siblings[0] == bytes.fromhex(H64)


# --------------------------------------------------------------------------------------
# API details.


def test_type_checks_on_input() -> None:
    tree = StateTree.empty()
    with pytest.raises(TypeError):
        tree.update({cast(Any, "a"): b"1"})
    with pytest.raises(TypeError):
        tree.update({b"a": cast(Any, "1")})
    with pytest.raises(TypeError):
        StateTree.from_items([(b"a", cast(Any, 1))])
    with pytest.raises(TypeError):
        StateTree.from_items([(cast(Any, bytearray(b"a")), b"1")])
    with pytest.raises(TypeError):
        tree.get(cast(Any, "a"))
    with pytest.raises(TypeError):
        tree.prove(cast(Any, "a"))


def test_repr_and_equality() -> None:
    tree = StateTree.from_items(ABC.items())
    assert repr(tree) == f"StateTree(len=3, root={ABC_ROOT})"
    assert tree != StateTree.empty()
    assert tree != ABC_ROOT
    assert {tree, StateTree.from_items(ABC.items())} == {tree}


def test_larger_random_tree_against_reference() -> None:
    rnd = random.Random(20240601)
    model = {
        rnd.randbytes(rnd.randint(0, 12)): rnd.randbytes(rnd.randint(0, 20)) for _ in range(600)
    }
    tree = StateTree.from_items(model.items())
    check_tree(tree, model)
    for k in list(model)[:60]:
        assert verify_state_proof(tree.root, k, model[k], tree.prove(k))
    # Many batched changes, checked against from_items and the reference.
    for step in range(10):
        batch: dict[bytes, bytes | None] = {}
        for k in rnd.sample(sorted(model), 40):
            batch[k] = None if rnd.random() < 0.5 else rnd.randbytes(4)
        for i in range(40):
            batch[b"new-%d-%d" % (step, i)] = rnd.randbytes(3)
        tree = tree.update(batch)
        apply_model(model, batch)
        assert tree.root == ref_root(model)
        assert len(tree) == len(model)
    assert tree == StateTree.from_items(model.items())
    sample = rnd.sample(sorted(model), 50)
    for k in sample:
        proof = tree.prove(k)
        assert verify_state_proof(tree.root, k, model[k], proof)
        absent = k + b"-absent"
        assert verify_state_proof(tree.root, absent, None, tree.prove(absent))
