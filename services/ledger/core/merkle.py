"""RFC 6962 Merkle trees: block transaction roots and their proofs.

The ecosphere commits to the ordered transactions of a block (and to any other
append-only list of byte strings) with the Merkle Tree Hash of Certificate
Transparency, so that a light client can check that one transaction is in a
block (an *inclusion proof*) and that a later list extends an earlier one (a
*consistency proof*) from a few 32-byte hashes.

Hashing is exactly that of RFC 6962 section 2.1 (SHA-256 throughout):

* the hash of the empty list is ``SHA-256("")``;
* a leaf hash is ``SHA-256(0x00 || leaf)``;
* an interior node is ``SHA-256(0x01 || left || right)``;
* a list of ``n > 1`` entries is split at ``k``, the largest power of two
  smaller than ``n``: ``MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n]))``.

The distinct leaf and node prefixes keep a leaf from ever being taken for an
interior node (second-preimage resistance).

Roots are computed bottom-up, level by level: adjacent nodes are paired and an
odd last node is carried up unchanged. With the left-balanced split of RFC
6962 this gives exactly the same tree, with ``n - 1`` hashes and no recursion.
Every node of those levels covers an aligned range of leaves, so the proofs
below read their hashes off the levels instead of re-hashing subtrees.

Proofs:

* :func:`inclusion_proof` is the audit path ``PATH(m, D[n])`` of RFC 6962
  section 2.1.1; :func:`verify_inclusion` is the verification algorithm of
  RFC 9162 section 2.1.3.2.
* :func:`consistency_proof` is ``PROOF(m, D[n])`` / ``SUBPROOF`` of RFC 6962
  section 2.1.2; :func:`verify_consistency` is the verification algorithm of
  RFC 9162 section 2.1.4.2.
* :class:`InclusionProof` carries an audit path on the wire, with hashes as
  lowercase hex strings.

Proof generation refuses invalid arguments with :class:`ValueError`.
Verification never raises: malformed input (wrong hash lengths, indices out of
range, over-long proofs, wrong types) simply does not verify.

This module is part of the pure core: deterministic, synchronous, standard
library only. It never does I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeGuard

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_PROOF_LENGTH",
    "InclusionProof",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "merkle_root",
    "merkle_root_from_hashes",
    "node_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Length in bytes of every hash in a tree (SHA-256)."""

MAX_PROOF_LENGTH = 64
"""Longest proof accepted: a tree of fewer than 2**64 leaves never needs more."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root of the empty tree: ``SHA-256("")`` (RFC 6962 section 2.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_HEX_DIGITS = frozenset("0123456789abcdef")
_WIRE_KEYS = frozenset({"index", "tree_size", "path"})

_sha256 = hashlib.sha256


# --------------------------------------------------------------------------- hashing


def leaf_hash(leaf: bytes) -> bytes:
    """``SHA-256(0x00 || leaf)``: the hash of one leaf (RFC 6962 section 2.1)."""
    return _sha256(_LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: an interior node (RFC 6962 section 2.1)."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash ``MTH(D[n])`` of a list of raw leaves."""
    return merkle_root_from_hashes([leaf_hash(leaf) for leaf in leaves])


def merkle_root_from_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of a list whose leaves are already hashed.

    ``leaf_hashes[i]`` must be ``leaf_hash(D[i])``. Runs in ``n - 1`` hashes.
    Raises :class:`ValueError` if an element is not a 32-byte ``bytes``.
    """
    level = _checked_hashes(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def _next_level(level: list[bytes]) -> list[bytes]:
    """Pair adjacent nodes; an odd last node is carried up unchanged."""
    sha256 = _sha256
    prefix = _NODE_PREFIX
    # zip stops before an odd last node, which is appended below.
    pairs = zip(level[0::2], level[1::2], strict=False)
    upper = [sha256(prefix + left + right).digest() for left, right in pairs]
    if len(level) & 1:
        upper.append(level[-1])
    return upper


def _levels(leaf_hashes: list[bytes]) -> list[list[bytes]]:
    """Every level of a non-empty tree, leaves first, root level (one node) last.

    ``levels[h][j]`` is the MTH of leaves ``[j * 2**h, min((j + 1) * 2**h, n))``.
    """
    levels = [leaf_hashes]
    level = leaf_hashes
    while len(level) > 1:
        level = _next_level(level)
        levels.append(level)
    return levels


def _subtree(levels: list[list[bytes]], start: int, end: int) -> bytes:
    """MTH of leaves ``[start, end)``, read off the levels.

    Valid for every range the RFC 6962 recursion visits: ``start`` is a multiple
    of ``2**h`` where ``2**h`` is the smallest power of two ``>= end - start``,
    and the range either is a full ``2**h`` block or runs to the end of the tree.
    """
    height = (end - start - 1).bit_length()
    return levels[height][start >> height]


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _checked_hashes(leaf_hashes: Sequence[bytes]) -> list[bytes]:
    hashes = list(leaf_hashes)
    for position, value in enumerate(hashes):
        if not _is_hash(value):
            raise ValueError(f"leaf hash {position} is not {HASH_SIZE} bytes")
    return hashes


# --------------------------------------------------------------------------- inclusion


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> tuple[bytes, ...]:
    """The audit path ``PATH(index, D[n])`` of RFC 6962 section 2.1.1.

    Ordered from the leaf's sibling up to the child of the root. Raises
    :class:`ValueError` unless ``0 <= index < len(leaf_hashes)`` or if an element
    is not a 32-byte hash.
    """
    return inclusion_proofs(leaf_hashes, [index])[0]


def inclusion_proofs(leaf_hashes: Sequence[bytes],
                     indices: Sequence[int]) -> list[tuple[bytes, ...]]:
    """Audit paths for several leaves of one tree, building the tree's levels once
    (a client waiting on a thousand transactions of one block costs O(n), not O(n²))."""
    n = len(leaf_hashes)
    for index in indices:
        if not _is_uint(index):
            raise ValueError(f"index must be a non-negative int, got {index!r}")
        if index >= n:
            raise ValueError(f"index {index} is out of range for a tree of size {n}")
    levels = _levels(_checked_hashes(leaf_hashes))
    return [_path(levels, n, index) for index in indices]


def _path(levels: list[list[bytes]], n: int, index: int) -> tuple[bytes, ...]:
    # Walk down from the root: PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) for
    # m < k, else PATH(m - k, D[k:n]) : MTH(D[0:k]); siblings nearer the root
    # come last, so collect top-down and reverse.
    path: list[bytes] = []
    start, end = 0, n
    while end - start > 1:
        middle = start + _split(end - start)
        if index < middle:
            path.append(_subtree(levels, middle, end))
            end = middle
        else:
            path.append(_subtree(levels, start, middle))
            start = middle
    path.reverse()
    return tuple(path)


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` shows ``leaf_hash`` at ``index`` in the tree of ``root``.

    The algorithm of RFC 9162 section 2.1.3.2. Never raises: malformed input
    returns ``False``.
    """
    if not (_is_uint(index) and _is_uint(tree_size) and index < tree_size):
        return False
    if not (_is_hash(leaf_hash) and _is_hash(root) and _is_proof(proof)):
        return False
    fn = index
    sn = tree_size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# --------------------------------------------------------------------------- consistency


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> tuple[bytes, ...]:
    """The consistency proof ``PROOF(old_size, D[n])`` of RFC 6962 section 2.1.2.

    Proves that the tree of the first ``old_size`` leaves is a prefix of the tree
    of all ``n`` leaves. It is empty when ``old_size`` is 0 or ``n``. Raises
    :class:`ValueError` unless ``0 <= old_size <= n`` or if an element is not a
    32-byte hash.
    """
    if not _is_uint(old_size):
        raise ValueError(f"old_size must be a non-negative int, got {old_size!r}")
    n = len(leaf_hashes)
    if old_size > n:
        raise ValueError(f"old_size {old_size} exceeds the tree size {n}")
    hashes = _checked_hashes(leaf_hashes)
    if old_size in (0, n):
        return ()
    levels = _levels(hashes)
    # SUBPROOF(m, D[n], b): for m <= k it is SUBPROOF(m, D[0:k], b) : MTH(D[k:n]),
    # else SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]); at m == n it is empty if
    # b, else MTH(D[n]). As above, collect top-down and reverse.
    proof: list[bytes] = []
    start, end, m, whole = 0, n, old_size, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(_subtree(levels, start + k, end))
            end = start + k
        else:
            proof.append(_subtree(levels, start, start + k))
            start += k
            m -= k
            whole = False
    if not whole:
        proof.append(_subtree(levels, start, end))
    proof.reverse()
    return tuple(proof)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the tree ``(old_size, old_root)`` is a prefix of
    ``(new_size, new_root)``.

    For ``0 < old_size < new_size`` this is the algorithm of RFC 9162 section
    2.1.4.2. Equal sizes need an empty proof and equal roots; an old size of 0
    needs an empty proof and ``old_root == EMPTY_ROOT``. Never raises: malformed
    input returns ``False``.
    """
    if not (_is_uint(old_size) and _is_uint(new_size) and old_size <= new_size):
        return False
    if not (_is_hash(old_root) and _is_hash(new_root) and _is_proof(proof)):
        return False
    if old_size == new_size:
        return len(proof) == 0 and old_root == new_root
    if old_size == 0:
        return len(proof) == 0 and old_root == EMPTY_ROOT
    # 1. An empty proof fails.
    if len(proof) == 0:
        return False
    path = list(proof)
    # 2. If old_size is an exact power of 2, prepend old_root to the path.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3. and 4.
    fn = old_size - 1
    sn = new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7.
    return fr == old_root and sr == new_root and sn == 0


# --------------------------------------------------------------------------- wire form


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """An audit path for the leaf at ``index`` of a tree of ``tree_size`` leaves.

    Construction checks the shape (``ValueError`` otherwise): ``index`` and
    ``tree_size`` are ``int`` (not ``bool``), ``0 <= index < tree_size``, and
    ``path`` is a tuple of at most 64 hashes of 32 bytes.
    """

    index: int
    tree_size: int
    path: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_ints(self.index, self.tree_size)
        _check_path(self.path)

    def verify(self, leaf: bytes, root: bytes) -> bool:
        """Whether this proves the raw ``leaf`` (hashed here) is in the tree of ``root``."""
        return isinstance(leaf, bytes) and verify_inclusion(
            leaf_hash(leaf), self.index, self.tree_size, self.path, root
        )

    def to_wire(self) -> dict[str, object]:
        """``{"index": int, "tree_size": int, "path": [lowercase hex, ...]}``."""
        return {
            "index": self.index,
            "tree_size": self.tree_size,
            "path": [node.hex() for node in self.path],
        }

    @classmethod
    def from_wire(cls, d: object) -> InclusionProof:
        """Parse :meth:`to_wire`'s form strictly; raises ``ValueError`` on anything else."""
        if not isinstance(d, Mapping):
            raise ValueError("inclusion proof: expected an object")
        keys = set(d.keys())
        if keys != _WIRE_KEYS:
            missing = sorted(str(key) for key in _WIRE_KEYS - keys)
            unknown = sorted(repr(key) for key in keys - _WIRE_KEYS)
            raise ValueError(
                f"inclusion proof: wrong fields (missing: {missing}, unknown: {unknown})"
            )
        index = d["index"]
        tree_size = d["tree_size"]
        raw_path = d["path"]
        _check_ints(index, tree_size)
        if not isinstance(raw_path, list | tuple):
            raise ValueError("inclusion proof: path must be an array of hex strings")
        if len(raw_path) > MAX_PROOF_LENGTH:
            raise ValueError(
                f"inclusion proof: path has {len(raw_path)} hashes, "
                f"at most {MAX_PROOF_LENGTH} are allowed"
            )
        path: list[bytes] = []
        for position, value in enumerate(raw_path):
            if not _is_hex_hash(value):
                raise ValueError(
                    f"inclusion proof: path[{position}] must be {2 * HASH_SIZE} lowercase "
                    "hex characters"
                )
            path.append(bytes.fromhex(value))
        return cls(index=index, tree_size=tree_size, path=tuple(path))


def _check_path(path: object) -> None:
    if not isinstance(path, tuple):
        raise ValueError("inclusion proof: path must be a tuple of hashes")
    if len(path) > MAX_PROOF_LENGTH:
        raise ValueError(
            f"inclusion proof: path has {len(path)} hashes, at most {MAX_PROOF_LENGTH} are allowed"
        )
    for position, value in enumerate(path):
        if not _is_hash(value):
            raise ValueError(f"inclusion proof: path[{position}] is not {HASH_SIZE} bytes")


def _check_ints(index: object, tree_size: object) -> None:
    for name, value in (("index", index), ("tree_size", tree_size)):
        if type(value) is not int:
            raise ValueError(f"inclusion proof: {name} must be an int, got {type(value).__name__}")
        if value < 0:
            raise ValueError(f"inclusion proof: {name} must be non-negative, got {value}")
    if not (_is_uint(index) and _is_uint(tree_size) and index < tree_size):
        raise ValueError(
            f"inclusion proof: index {index} is out of range for tree_size {tree_size}"
        )


# --------------------------------------------------------------------------- checks


def _is_uint(value: object) -> TypeGuard[int]:
    """An ``int`` (not a ``bool`` or other subclass) that is ``>= 0``."""
    return type(value) is int and value >= 0


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_proof(proof: object) -> bool:
    if isinstance(proof, bytes | bytearray | memoryview | str):
        return False
    if not isinstance(proof, Sequence) or len(proof) > MAX_PROOF_LENGTH:
        return False
    return all(_is_hash(node) for node in proof)


def _is_hex_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == 2 * HASH_SIZE and _HEX_DIGITS.issuperset(value)
