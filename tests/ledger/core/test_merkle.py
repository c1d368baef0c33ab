"""Tests for the RFC 6962 Merkle tree (services/ledger/core/merkle.py).

Known-answer vectors are copied verbatim from published sources, each cited
where it is used:

* transparency-dev/merkle ``testonly/constants.go``: ``LeafInputs()``,
  ``NodeHashes()``, ``RootHashes()``, ``EmptyRootHash()``;
* transparency-dev/merkle ``proof/verify_test.go``: ``inclusionProofs``,
  ``consistencyProofs``, ``roots``, ``sha256SomeHash`` and the corruption probes;
* transparency-dev/merkle ``proof/proof_test.go``: ``TestInclusion`` and
  ``TestConsistency``, which give proofs as node ids of the 8-leaf reference
  tree (resolved here through ``NodeHashes()``);
* google/certificate-transparency ``cpp/merkletree/merkle_tree_test.cc``:
  ``kInputs``, ``kSHA256Roots``, ``kSHA256Paths``, ``kSHA256Proofs``, the same
  values as the first two files (that is where they originate).

Everything else is checked against a plain recursive transcription of the RFC
6962 definitions (MTH, PATH, SUBPROOF) written below.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ledger.core.merkle import (
    EMPTY_ROOT,
    MAX_PROOF_LENGTH,
    InclusionProof,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    merkle_root_from_hashes,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# --------------------------------------------------------------------------- vectors

# transparency-dev/merkle testonly/constants.go, LeafInputs(); identical to
# google/certificate-transparency cpp/merkletree/merkle_tree_test.cc, kInputs.
LEAF_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]

# transparency-dev/merkle testonly/constants.go, RootHashes() (indexed by tree
# size, 0 = EmptyRootHash()); sizes 1..8 are also kSHA256Roots in
# google/certificate-transparency cpp/merkletree/merkle_tree_test.cc and
# `roots` in transparency-dev/merkle proof/verify_test.go.
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]

# transparency-dev/merkle testonly/constants.go, NodeHashes(): NODE_HASHES[level][i]
# is the hash of the complete subtree over leaves [i * 2**level, (i + 1) * 2**level).
NODE_HASHES = [
    [
        bytes.fromhex(h)
        for h in (
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        )
    ],
    [
        bytes.fromhex(h)
        for h in (
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        )
    ],
    [
        bytes.fromhex(h)
        for h in (
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        )
    ],
    [bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]

# transparency-dev/merkle proof/verify_test.go, sha256SomeHash.
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")

# transparency-dev/merkle proof/verify_test.go, inclusionProofs (the entries
# the test verifies, i = 1..5); identical to kSHA256Paths in
# google/certificate-transparency cpp/merkletree/merkle_tree_test.cc. The
# sources number leaves from 1 (the Go test verifies index `leaf - 1`); here
# the first field is that 0-based index: (index, tree_size, path).
INCLUSION_VECTORS: list[tuple[int, int, list[str]]] = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

# transparency-dev/merkle proof/verify_test.go, consistencyProofs:
# (size1, size2, proof). The first four are also kSHA256Proofs in
# google/certificate-transparency cpp/merkletree/merkle_tree_test.cc.
CONSISTENCY_VECTORS: list[tuple[int, int, list[str]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]


def _node(level: int, index: int) -> bytes:
    """``compact.NewNodeID(level, index)`` of proof_test.go, resolved via NodeHashes()."""
    return NODE_HASHES[level][index]


# In proof/proof_test.go ``rehash(begin, end, ...)`` marks node ids that the
# caller hashes together into one proof element (a subtree that is not complete
# in the tree of that size); the ids are listed bottom-up, so [j, i] stands for
# node_hash(i, j) (see TestRehash there). For the 8-leaf tree this is always
# l = node_hash(i, j) of the size-7 tree drawn in that file.
_L7 = node_hash(_node(1, 2), _node(0, 6))

# transparency-dev/merkle proof/proof_test.go, TestInclusion ("Small trees",
# "Tree of size 7", "Smaller trees within a bigger stored tree"):
# (tree_size, index, path).
STRUCTURAL_INCLUSION: list[tuple[int, int, list[bytes]]] = [
    (1, 0, []),
    (2, 0, [_node(0, 1)]),
    (2, 1, [_node(0, 0)]),
    (3, 1, [_node(0, 0), _node(0, 2)]),
    (7, 0, [_node(0, 1), _node(1, 1), _L7]),
    (7, 1, [_node(0, 0), _node(1, 1), _L7]),
    (7, 2, [_node(0, 3), _node(1, 0), _L7]),
    (7, 3, [_node(0, 2), _node(1, 0), _L7]),
    (7, 4, [_node(0, 5), _node(0, 6), _node(2, 0)]),
    (7, 5, [_node(0, 4), _node(0, 6), _node(2, 0)]),
    (7, 6, [_node(1, 2), _node(2, 0)]),
    (4, 2, [_node(0, 3), _node(1, 0)]),
    (5, 3, [_node(0, 2), _node(1, 0), _node(0, 4)]),
    (6, 3, [_node(0, 2), _node(1, 0), _node(1, 2)]),
    (6, 4, [_node(0, 5), _node(2, 0)]),
]

# transparency-dev/merkle proof/proof_test.go, TestConsistency (all cases with
# size2 <= 8): (size1, size2, proof).
STRUCTURAL_CONSISTENCY: list[tuple[int, int, list[bytes]]] = [
    (1, 2, [_node(0, 1)]),
    (1, 4, [_node(0, 1), _node(1, 1)]),
    (1, 6, [_node(0, 1), _node(1, 1), _node(1, 2)]),
    (2, 3, [_node(0, 2)]),
    (2, 8, [_node(1, 1), _node(2, 1)]),
    (3, 7, [_node(0, 2), _node(0, 3), _node(1, 0), _L7]),
    (4, 7, [_L7]),
    (5, 7, [_node(0, 4), _node(0, 5), _node(0, 6), _node(2, 0)]),
    (6, 7, [_node(1, 2), _node(0, 6), _node(2, 0)]),
    (7, 8, [_node(0, 6), _node(0, 7), _node(1, 2), _node(2, 0)]),
    (1, 1, []),
    (2, 2, []),
    (3, 3, []),
    (4, 4, []),
    (5, 5, []),
    (7, 7, []),
    (8, 8, []),
    (2, 4, [_node(1, 1)]),
    (3, 5, [_node(0, 2), _node(0, 3), _node(1, 0), _node(0, 4)]),
    (3, 6, [_node(0, 2), _node(0, 3), _node(1, 0), _node(1, 2)]),
    (4, 6, [_node(1, 2)]),
    (1, 7, [_node(0, 1), _node(1, 1), _L7]),
]

VECTOR_LEAF_HASHES = [leaf_hash(leaf) for leaf in LEAF_INPUTS]


def _hashes(hexes: Sequence[str]) -> tuple[bytes, ...]:
    return tuple(bytes.fromhex(h) for h in hexes)


# --------------------------------------------------------------------------- reference


def _ref_mth(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) transcribed from RFC 6962 section 2.1, over raw leaves."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = _ref_split(n)
    return hashlib.sha256(b"\x01" + _ref_mth(leaves[:k]) + _ref_mth(leaves[k:])).digest()


def _ref_split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _ref_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) transcribed from RFC 6962 section 2.1.1."""
    n = len(leaves)
    if n == 1:
        return []
    k = _ref_split(n)
    if m < k:
        return [*_ref_path(m, leaves[:k]), _ref_mth(leaves[k:])]
    return [*_ref_path(m - k, leaves[k:]), _ref_mth(leaves[:k])]


def _ref_proof(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) transcribed from RFC 6962 section 2.1.2."""
    return _ref_subproof(m, leaves, True)


def _ref_subproof(m: int, leaves: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [_ref_mth(leaves)]
    k = _ref_split(n)
    if m <= k:
        return [*_ref_subproof(m, leaves[:k], b), _ref_mth(leaves[k:])]
    return [*_ref_subproof(m - k, leaves[k:], False), _ref_mth(leaves[:k])]


def _leaves(n: int) -> list[bytes]:
    """Distinct raw leaves of varying length."""
    return [b"tx-%d-" % i + bytes(i % 7) for i in range(n)]


def _flip(value: bytes, bit: int) -> bytes:
    bit %= len(value) * 8
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# --------------------------------------------------------------------------- known answers


def test_empty_tree_root() -> None:
    expected = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert hashlib.sha256(b"").hexdigest() == expected
    assert EMPTY_ROOT.hex() == expected
    assert merkle_root([]).hex() == expected
    assert merkle_root_from_hashes([]).hex() == expected
    assert merkle_root(()) == ROOTS[0]


def test_leaf_hashes_match_published_node_hashes() -> None:
    assert [leaf_hash(leaf) for leaf in LEAF_INPUTS] == NODE_HASHES[0]


def test_interior_nodes_match_published_node_hashes() -> None:
    for level in range(1, len(NODE_HASHES)):
        below = NODE_HASHES[level - 1]
        for i, expected in enumerate(NODE_HASHES[level]):
            assert node_hash(below[2 * i], below[2 * i + 1]) == expected


@pytest.mark.parametrize("size", range(9))
def test_published_roots(size: int) -> None:
    assert merkle_root(LEAF_INPUTS[:size]) == ROOTS[size]
    assert merkle_root_from_hashes(VECTOR_LEAF_HASHES[:size]) == ROOTS[size]
    assert _ref_mth(LEAF_INPUTS[:size]) == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION_VECTORS)
def test_published_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    expected = _hashes(path)
    assert inclusion_proof(VECTOR_LEAF_HASHES[:size], index) == expected
    assert verify_inclusion(VECTOR_LEAF_HASHES[index], index, size, expected, ROOTS[size])
    proof = InclusionProof(index=index, tree_size=size, path=expected)
    assert proof.verify(LEAF_INPUTS[index], ROOTS[size])


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION_VECTORS[1:])
def test_published_inclusion_corruptions(index: int, size: int, path: list[str]) -> None:
    """The probes of corruptInclusionProof in transparency-dev/merkle proof/verify_test.go."""
    proof = list(_hashes(path))
    root = ROOTS[size]
    leaf = VECTOR_LEAF_HASHES[index]
    assert verify_inclusion(leaf, index, size, proof, root)
    probes: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (index - 1, size, root, leaf, proof),
        (index + 1, size, root, leaf, proof),
        (index ^ 2, size, root, leaf, proof),
        (index, size * 2, root, leaf, proof),
        (index, size // 2, root, leaf, proof),
        (index, size, root, b"WrongLeaf", proof),
        (index, size, EMPTY_ROOT, leaf, proof),
        (index, size, SOME_HASH, leaf, proof),
        (index, size, root, leaf, [*proof, b""]),
        (index, size, root, leaf, [*proof, root]),
        (index, size, root, leaf, [b"", *proof]),
        (index, size, root, leaf, [root, *proof]),
        (index, size, root, leaf, proof[:-1]),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 8]) + wrong[i][1:]
        probes.append((index, size, root, leaf, wrong))
    if len(proof) > 1:
        probes.append((index, size, root, leaf, [proof[0], SOME_HASH, *proof[1:]]))
    for p_index, p_size, p_root, p_leaf, p_proof in probes:
        assert not verify_inclusion(p_leaf, p_index, p_size, p_proof, p_root)


def test_published_single_entry_and_bad_sizes() -> None:
    """TestVerifyInclusionSingleEntry and TestVerifyInclusion of proof/verify_test.go."""
    h = leaf_hash(b"data")
    assert verify_inclusion(h, 0, 1, [], h)
    assert not verify_inclusion(b"", 0, 1, [], h)
    assert not verify_inclusion(h, 0, 1, [], b"")
    assert not verify_inclusion(b"", 0, 1, [], b"")
    for index, size in ((0, 0), (0, 1), (1, 0), (2, 1)):
        assert not verify_inclusion(SOME_HASH, index, size, [], b"")
        assert not verify_inclusion(b"", index, size, [], EMPTY_ROOT)
        assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY_VECTORS)
def test_published_consistency_proofs(size1: int, size2: int, proof: list[str]) -> None:
    expected = _hashes(proof)
    assert consistency_proof(VECTOR_LEAF_HASHES[:size2], size1) == expected
    assert verify_consistency(size1, size2, ROOTS[size1], ROOTS[size2], expected)


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY_VECTORS[1:])
def test_published_consistency_corruptions(size1: int, size2: int, proof: list[str]) -> None:
    """The probes of corruptConsistencyProof in transparency-dev/merkle proof/verify_test.go."""
    good = list(_hashes(proof))
    root1, root2 = ROOTS[size1], ROOTS[size2]
    probes: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (size1 - 1, size2, root1, root2, good),
        (size1 + 1, size2, root1, root2, good),
        (size1 ^ 2, size2, root1, root2, good),
        (size1, size2 * 2, root1, root2, good),
        (size1, size2 // 2, root1, root2, good),
        (size1, size2, b"WrongRoot", root2, good),
        (size1, size2, root1, b"WrongRoot", good),
        (size1, size2, root2, root1, good),
        (size1, size2, root1, root2, []),
        (size1, size2, root1, root2, [*good, b""]),
        (size1, size2, root1, root2, [*good, root1]),
        (size1, size2, root1, root2, [*good, root2]),
        (size1, size2, root1, root2, [b"", *good]),
        (size1, size2, root1, root2, [root1, *good]),
        (size1, size2, root1, root2, [root2, *good]),
        (size1, size2, root1, root2, [good[0], *good]),
        (size1, size2, root1, root2, good[:-1]),
    ]
    for i in range(len(good)):
        wrong = list(good)
        wrong[i] = bytes([wrong[i][0] ^ 16]) + wrong[i][1:]
        probes.append((size1, size2, root1, root2, wrong))
    for p_size1, p_size2, p_root1, p_root2, p_proof in probes:
        assert not verify_consistency(p_size1, p_size2, p_root1, p_root2, p_proof)


def test_published_consistency_edge_cases() -> None:
    """The failing cases of TestVerifyConsistency in transparency-dev/merkle proof/verify_test.go.

    The Go test also *accepts* a few cases with 12-byte placeholder roots (and
    any roots at size 0); this module is stricter: hashes must be 32 bytes and
    the old root of an empty tree must be EMPTY_ROOT (see the next test).
    """
    root1 = b"don't care 1"
    root2 = b"don't care 2"
    empty: list[bytes] = []
    one = [EMPTY_ROOT]
    cases = [
        (0, 0, root1, root2, empty),
        (1, 1, root1, root2, empty),
        (1, 0, root1, root2, empty),
        (2, 1, root1, root2, empty),
        (1, 2, root1, root2, empty),
        (0, 0, EMPTY_ROOT, root2, empty),
        (1, 1, EMPTY_ROOT, root2, empty),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, one),
        (0, 1, EMPTY_ROOT, EMPTY_ROOT, one),
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, one),
    ]
    for size1, size2, r1, r2, proof in cases:
        assert not verify_consistency(size1, size2, r1, r2, proof)


def test_consistency_trivial_sizes() -> None:
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    assert not verify_consistency(0, 5, ROOTS[1], ROOTS[5], [])
    assert verify_consistency(5, 5, ROOTS[5], ROOTS[5], [])
    assert not verify_consistency(5, 5, ROOTS[5], ROOTS[4], [])
    assert consistency_proof(VECTOR_LEAF_HASHES, 0) == ()
    assert consistency_proof(VECTOR_LEAF_HASHES, 8) == ()
    assert consistency_proof([], 0) == ()


@pytest.mark.parametrize(("size", "index", "path"), STRUCTURAL_INCLUSION)
def test_published_inclusion_structure(size: int, index: int, path: list[bytes]) -> None:
    assert inclusion_proof(VECTOR_LEAF_HASHES[:size], index) == tuple(path)
    assert verify_inclusion(VECTOR_LEAF_HASHES[index], index, size, path, ROOTS[size])


@pytest.mark.parametrize(("size1", "size2", "proof"), STRUCTURAL_CONSISTENCY)
def test_published_consistency_structure(size1: int, size2: int, proof: list[bytes]) -> None:
    assert consistency_proof(VECTOR_LEAF_HASHES[:size2], size1) == tuple(proof)
    assert verify_consistency(size1, size2, ROOTS[size1], ROOTS[size2], proof)


# --------------------------------------------------------------------------- reference equivalence


def test_iterative_root_equals_recursive_definition() -> None:
    leaves = _leaves(300)
    hashes = [leaf_hash(leaf) for leaf in leaves]
    for n in range(301):
        expected = _ref_mth(leaves[:n])
        assert merkle_root_from_hashes(hashes[:n]) == expected
        assert merkle_root(leaves[:n]) == expected


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=300))
def test_iterative_root_equals_recursive_definition_random(leaves: list[bytes]) -> None:
    assert merkle_root(leaves) == _ref_mth(leaves)


def test_large_block_root() -> None:
    leaves = _leaves(5003)
    assert merkle_root(leaves) == _ref_mth(leaves)


def test_inputs_are_not_mutated_and_tuples_work() -> None:
    hashes = [leaf_hash(leaf) for leaf in _leaves(11)]
    snapshot = list(hashes)
    root = merkle_root_from_hashes(hashes)
    assert hashes == snapshot
    assert merkle_root_from_hashes(tuple(hashes)) == root
    assert inclusion_proof(tuple(hashes), 3) == inclusion_proof(hashes, 3)
    assert hashes == snapshot


# --------------------------------------------------------------------------- inclusion properties


@settings(max_examples=25, deadline=None)
@given(n=st.integers(min_value=1, max_value=300), seed=st.integers(min_value=0, max_value=255))
def test_every_inclusion_proof_verifies_and_tampering_fails(n: int, seed: int) -> None:
    leaves = _leaves(n)
    hashes = [leaf_hash(leaf) for leaf in leaves]
    root = merkle_root_from_hashes(hashes)
    for index in range(n):
        proof = inclusion_proof(hashes, index)
        leaf = hashes[index]
        bit = seed + 37 * index  # which bit to flip: varies with the index
        assert verify_inclusion(leaf, index, n, proof, root)
        assert InclusionProof(index, n, proof).verify(leaves[index], root)
        # A flipped bit in each proof element, the leaf hash, the root.
        for j in range(len(proof)):
            wrong = list(proof)
            wrong[j] = _flip(wrong[j], bit + j)
            assert not verify_inclusion(leaf, index, n, wrong, root)
        assert not verify_inclusion(_flip(leaf, bit), index, n, proof, root)
        assert not verify_inclusion(leaf, index, n, proof, _flip(root, bit))
        assert not InclusionProof(index, n, proof).verify(leaves[index] + b"x", root)
        # Each flipped bit of the index.
        for k in range(n.bit_length() + 1):
            assert not verify_inclusion(leaf, index ^ (1 << k), n, proof, root)
        # Truncated or extended proofs.
        if proof:
            assert not verify_inclusion(leaf, index, n, proof[:-1], root)
        assert not verify_inclusion(leaf, index, n, (*proof, root), root)


@pytest.mark.parametrize("n", [*range(1, 40), 64, 65, 100, 127, 128, 129, 255, 256, 257])
def test_inclusion_proofs_equal_rfc_path(n: int) -> None:
    leaves = _leaves(n)
    hashes = [leaf_hash(leaf) for leaf in leaves]
    for index in range(n):
        assert list(inclusion_proof(hashes, index)) == _ref_path(index, leaves)


def test_inclusion_proof_rejects_bad_arguments() -> None:
    hashes = VECTOR_LEAF_HASHES
    for index in (-1, 8, 9, 100):
        with pytest.raises(ValueError, match="index"):
            inclusion_proof(hashes, index)
    with pytest.raises(ValueError, match="index"):
        inclusion_proof([], 0)
    with pytest.raises(ValueError, match="index"):
        inclusion_proof(hashes, True)
    with pytest.raises(ValueError, match="32 bytes"):
        inclusion_proof([*hashes[:3], b"short"], 0)


def test_verify_inclusion_never_raises_on_malformed_input() -> None:
    leaf = VECTOR_LEAF_HASHES[0]
    proof = inclusion_proof(VECTOR_LEAF_HASHES, 0)
    root = ROOTS[8]
    assert verify_inclusion(leaf, 0, 8, proof, root)
    bad_calls: list[tuple[object, object, object, object, object]] = [
        (leaf, -1, 8, proof, root),
        (leaf, 0, -8, proof, root),
        (leaf, 8, 8, proof, root),
        (leaf, True, 8, proof, root),
        (leaf, 0, 8.0, proof, root),
        (leaf, "0", 8, proof, root),
        (leaf[:31], 0, 8, proof, root),
        (leaf + b"\x00", 0, 8, proof, root),
        (bytearray(leaf), 0, 8, proof, root),
        (leaf.hex(), 0, 8, proof, root),
        (None, 0, 8, proof, root),
        (leaf, 0, 8, proof, root[:31]),
        (leaf, 0, 8, proof, None),
        (leaf, 0, 8, None, root),
        (leaf, 0, 8, b"".join(proof), root),
        (leaf, 0, 8, [p.hex() for p in proof], root),
        (leaf, 0, 8, [*proof[:2], None], root),
        (leaf, 0, 8, [proof[0]] * (MAX_PROOF_LENGTH + 1), root),
        (leaf, 2**70, 2**71, [proof[0]] * MAX_PROOF_LENGTH, root),
    ]
    for args in bad_calls:
        assert verify_inclusion(*args) is False  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.none(), st.binary(max_size=40), st.text(max_size=5)),
    st.one_of(st.integers(), st.booleans(), st.none(), st.text(max_size=3)),
    st.one_of(st.integers(), st.booleans(), st.none()),
    st.one_of(st.none(), st.binary(max_size=70), st.lists(st.binary(max_size=40), max_size=70)),
    st.one_of(st.none(), st.binary(max_size=40)),
)
def test_verify_functions_never_raise(
    leaf: object, index: object, size: object, proof: object, root: object
) -> None:
    assert isinstance(verify_inclusion(leaf, index, size, proof, root), bool)  # type: ignore[arg-type]
    assert isinstance(verify_consistency(index, size, leaf, root, proof), bool)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- consistency properties


def test_every_consistency_proof_verifies_and_tampering_fails() -> None:
    max_n = 70
    leaves = _leaves(max_n)
    hashes = [leaf_hash(leaf) for leaf in leaves]
    roots = [merkle_root_from_hashes(hashes[:n]) for n in range(max_n + 1)]
    bit = 0
    for n in range(1, max_n + 1):
        for m in range(n + 1):
            proof = consistency_proof(hashes[:n], m)
            assert list(proof) == (_ref_proof(m, leaves[:n]) if 0 < m < n else [])
            assert verify_consistency(m, n, roots[m], roots[n], proof)
            bit = (bit * 31 + 7) % 256  # a different bit position each time
            assert not verify_consistency(m, n, _flip(roots[m], bit), roots[n], proof)
            if m > 0:  # every tree extends the empty tree: nothing binds the new root
                assert not verify_consistency(m, n, roots[m], _flip(roots[n], bit), proof)
                assert not verify_consistency(m - 1, n, roots[m], roots[n], proof)
            if m < n:
                assert not verify_consistency(m + 1, n, roots[m], roots[n], proof)
            if not 0 < m < n:
                assert not verify_consistency(m, n, roots[m], roots[n], (*proof, roots[n]))
                continue
            for j in range(len(proof)):
                wrong = list(proof)
                wrong[j] = _flip(wrong[j], bit + j)
                assert not verify_consistency(m, n, roots[m], roots[n], wrong)
            assert not verify_consistency(m, n, roots[m], roots[n], proof[:-1])
            assert not verify_consistency(m, n, roots[m], roots[n], (*proof, roots[n]))
            assert not verify_consistency(m, n, roots[m], roots[n], (roots[m], *proof))
            assert not verify_consistency(n, m, roots[n], roots[m], proof)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(min_value=1, max_value=600), data=st.data())
def test_random_consistency_proofs_equal_rfc_subproof(n: int, data: st.DataObject) -> None:
    m = data.draw(st.integers(min_value=1, max_value=n))
    leaves = _leaves(n)
    hashes = [leaf_hash(leaf) for leaf in leaves]
    proof = consistency_proof(hashes, m)
    assert list(proof) == (_ref_proof(m, leaves) if m < n else [])
    assert verify_consistency(m, n, _ref_mth(leaves[:m]), _ref_mth(leaves), proof)


def test_consistency_proof_rejects_bad_arguments() -> None:
    hashes = VECTOR_LEAF_HASHES
    for old_size in (-1, 9, 100):
        with pytest.raises(ValueError, match="old_size"):
            consistency_proof(hashes, old_size)
    with pytest.raises(ValueError, match="old_size"):
        consistency_proof([], 1)
    with pytest.raises(ValueError, match="old_size"):
        consistency_proof(hashes, False)
    with pytest.raises(ValueError, match="32 bytes"):
        consistency_proof([*hashes[:3], b"short"], 2)


def test_verify_consistency_rejects_malformed_input() -> None:
    proof = consistency_proof(VECTOR_LEAF_HASHES, 6)
    r6, r8 = ROOTS[6], ROOTS[8]
    assert verify_consistency(6, 8, r6, r8, proof)
    bad_calls: list[tuple[object, object, object, object, object]] = [
        (-6, 8, r6, r8, proof),
        (6, -8, r6, r8, proof),
        (8, 6, r6, r8, proof),
        (True, 8, r6, r8, proof),
        (6, 8.0, r6, r8, proof),
        (6, 8, r6[:31], r8, proof),
        (6, 8, r6, r8 + b"\x00", proof),
        (6, 8, bytearray(r6), r8, proof),
        (6, 8, r6, r8, None),
        (6, 8, r6, r8, b"".join(proof)),
        (6, 8, r6, r8, [*proof, b""]),
        (6, 8, r6, r8, [p.hex() for p in proof]),
        (6, 8, r6, r8, [proof[0]] * (MAX_PROOF_LENGTH + 1)),
    ]
    for args in bad_calls:
        assert verify_consistency(*args) is False  # type: ignore[arg-type]


# --------------------------------------------------------------------------- wire form


def test_wire_round_trip() -> None:
    for index, size, path in INCLUSION_VECTORS:
        proof = InclusionProof(index=index, tree_size=size, path=_hashes(path))
        wire = proof.to_wire()
        assert wire == {"index": index, "tree_size": size, "path": path}
        assert InclusionProof.from_wire(wire) == proof
        assert InclusionProof.from_wire(json.loads(json.dumps(wire))) == proof
        assert InclusionProof.from_wire(wire).verify(LEAF_INPUTS[index], ROOTS[size])


@settings(max_examples=30, deadline=None)
@given(n=st.integers(min_value=1, max_value=200), data=st.data())
def test_wire_round_trip_random(n: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    leaves = _leaves(n)
    hashes = [leaf_hash(leaf) for leaf in leaves]
    proof = InclusionProof(index, n, inclusion_proof(hashes, index))
    decoded = InclusionProof.from_wire(json.loads(json.dumps(proof.to_wire())))
    assert decoded == proof
    assert decoded.verify(leaves[index], merkle_root_from_hashes(hashes))
    assert not decoded.verify(leaves[index], EMPTY_ROOT)


_GOOD_HEX = "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"


def _wire(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {"index": 0, "tree_size": 2, "path": [_GOOD_HEX]}
    base.update(changes)
    return base


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (None, "expected an object"),
        ([0, 2, []], "expected an object"),
        ("{}", "expected an object"),
        ({"index": 0, "tree_size": 2}, "missing"),
        ({**_wire(), "extra": 1}, "unknown"),
        (_wire(index=True), "index must be an int"),
        (_wire(index=0.0), "index must be an int"),
        (_wire(index="0"), "index must be an int"),
        (_wire(index=None), "index must be an int"),
        (_wire(tree_size=False), "tree_size must be an int"),
        (_wire(tree_size=2.0), "tree_size must be an int"),
        (_wire(index=-1), "index must be non-negative"),
        (_wire(tree_size=-2), "tree_size must be non-negative"),
        (_wire(index=2), "out of range"),
        (_wire(index=3), "out of range"),
        (_wire(index=0, tree_size=0, path=[]), "out of range"),
        (_wire(path=_GOOD_HEX), "path must be an array"),
        (_wire(path=None), "path must be an array"),
        (_wire(path={"0": _GOOD_HEX}), "path must be an array"),
        (_wire(path=[_GOOD_HEX.upper()]), r"path\[0\] must be 64 lowercase hex"),
        (_wire(path=[_GOOD_HEX[:-2]]), r"path\[0\] must be 64 lowercase hex"),
        (_wire(path=[_GOOD_HEX + "00"]), r"path\[0\] must be 64 lowercase hex"),
        (_wire(path=[_GOOD_HEX, "g" * 64]), r"path\[1\] must be 64 lowercase hex"),
        (_wire(path=[" " + _GOOD_HEX[1:]]), r"path\[0\] must be 64 lowercase hex"),
        (_wire(path=[bytes.fromhex(_GOOD_HEX)]), r"path\[0\] must be 64 lowercase hex"),
        (_wire(path=[None]), r"path\[0\] must be 64 lowercase hex"),
        (_wire(path=[_GOOD_HEX] * 65), "at most 64"),
    ],
)
def test_from_wire_rejects(wire: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InclusionProof.from_wire(wire)


def test_from_wire_accepts_limits() -> None:
    proof = InclusionProof.from_wire(
        {"index": 2**64 - 2, "tree_size": 2**64 - 1, "path": [_GOOD_HEX] * 64}
    )
    assert len(proof.path) == MAX_PROOF_LENGTH
    assert not proof.verify(b"leaf", SOME_HASH)


def test_constructor_validates() -> None:
    good = bytes.fromhex(_GOOD_HEX)
    with pytest.raises(ValueError, match="index must be an int"):
        InclusionProof(True, 2, (good,))
    with pytest.raises(ValueError, match="out of range"):
        InclusionProof(2, 2, (good,))
    with pytest.raises(ValueError, match="tuple"):
        InclusionProof(0, 2, [good])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="32 bytes"):
        InclusionProof(0, 2, (good[:31],))
    with pytest.raises(ValueError, match="at most 64"):
        InclusionProof(0, 2, (good,) * 65)


def test_inclusion_proof_is_frozen_and_hashable() -> None:
    proof = InclusionProof(0, 1, ())
    with pytest.raises(AttributeError):
        proof.index = 1  # type: ignore[misc]
    assert hash(proof) == hash(InclusionProof(0, 1, ()))
    assert proof.verify(b"x", leaf_hash(b"x"))
    assert not proof.verify("x", leaf_hash(b"x"))  # type: ignore[arg-type]
