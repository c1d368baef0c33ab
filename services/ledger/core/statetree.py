"""Authenticated key-value state of the ledger: a persistent binary sparse Merkle tree.

The chain's state (account records, contract storage, anything executed transactions
write) is a map from ``bytes`` keys to ``bytes`` values.  This module keeps that map
together with a 32-byte Merkle commitment, the *state root*, which is recorded in each
block.  Against a state root one can prove that a key has a given value, or that a key
is absent, with a :class:`StateProof` of at most 256 sibling hashes.

Layout (a binary variant of Diem's Jellyfish Merkle Tree):

* A key's path is ``key_hash(key) = sha256(b"ecosphere/state/key" + key)``, read as
  256 bits, most significant bit first; bit ``d`` selects the child at depth ``d``
  (0 = left, 1 = right).
* Node kinds are Empty, Leaf and Internal.  Paths are compressed: a subtree holding
  exactly one key is represented by that key's leaf, placed at the shallowest position
  where it is alone; a subtree holding no key is Empty.  An Internal node therefore
  always has at least two leaves below it (one of its children may be Empty when all
  of them share the next bit).  The shape, and so the root, depends only on the set of
  (key, value) pairs, never on the order in which they were written.

Hashing (domain-separated; the prefixes deliberately differ from the RFC 6962
``0x00``/``0x01`` prefixes used by the transaction tree, so no node of one tree can be
passed off as a node of the other):

* ``EMPTY = 32 zero bytes``
* ``value_hash(value) = sha256(b"ecosphere/state/value" + value)``
* ``leaf = sha256(b"\\x10" + key_hash + value_hash)`` -- independent of the leaf's depth,
  so leaves move up or down freely as neighbours come and go;
* ``internal = sha256(b"\\x11" + left_hash + right_hash)``.

The tree is *persistent*: :meth:`StateTree.update` returns a new tree that shares every
untouched node with the old one, and the old tree stays valid and unchanged.  Consensus
executes proposals speculatively and must keep several candidate states (one per
pending block, plus the last committed one) alive at once; copying a million-key map per
proposal would be unaffordable, and mutating in place would corrupt the other versions.

This module is part of the pure core: it is synchronous and deterministic, and it must
never do I/O, read a clock, draw randomness or use floats.  It imports only the standard
library.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias, TypeGuard

__all__ = [
    "EMPTY_HASH",
    "KEY_BITS",
    "StateProof",
    "StateTree",
    "key_hash",
    "value_hash",
    "verify_state_proof",
]

_sha256 = hashlib.sha256

KEY_DOMAIN: Final = b"ecosphere/state/key"
VALUE_DOMAIN: Final = b"ecosphere/state/value"
LEAF_PREFIX: Final = b"\x10"
INTERNAL_PREFIX: Final = b"\x11"
HASH_LEN: Final = 32
EMPTY_HASH: Final = bytes(HASH_LEN)
KEY_BITS: Final = 256
"""Bits in a key hash, hence the maximum depth of a leaf and the maximum proof length."""

_TOP: Final = KEY_BITS - 1  # shift that brings the depth-0 bit to position 0


def key_hash(key: bytes) -> bytes:
    """Return the 32-byte path of ``key`` in the tree."""
    return _sha256(KEY_DOMAIN + key).digest()


def value_hash(value: bytes) -> bytes:
    """Return the 32-byte hash of ``value`` committed to by its leaf."""
    return _sha256(VALUE_DOMAIN + value).digest()


# --------------------------------------------------------------------------------------
# Nodes.  Plain tuples, immutable once built, with the node's hash first:
#
#   Empty     None
#   Leaf      (hash, key, key_hash, value)     -- 4-tuple
#   Internal  (hash, left, right)              -- 3-tuple
#
# Tuples are the cheapest objects CPython can build (the update path creates one per
# changed internal node), and a leaf tuple holds only bytes, so the cyclic garbage
# collector stops tracking it -- full collections then skip the leaves entirely.

_Leaf: TypeAlias = tuple[bytes, bytes, bytes, bytes]
_Internal: TypeAlias = tuple[bytes, "_Node", "_Node"]
_Node: TypeAlias = "_Leaf | _Internal | None"
_Tree: TypeAlias = "_Leaf | _Internal"  # a non-empty subtree

_LEAF_LEN: Final = 4


def _make_leaf(key: bytes, kh: bytes, value: bytes) -> _Leaf:
    vh = _sha256(VALUE_DOMAIN + value).digest()
    return (_sha256(LEAF_PREFIX + kh + vh).digest(), key, kh, value)


def _node_hash(node: _Node) -> bytes:
    return EMPTY_HASH if node is None else node[0]


def _join(left: _Node, right: _Node) -> _Node:
    """Return the canonical node with children ``left`` and ``right``.

    Re-compresses: a lone leaf (the other side Empty) moves up in place of the parent.
    """
    if left is None:
        if right is None or len(right) == _LEAF_LEN:
            return right
        return (_sha256(INTERNAL_PREFIX + EMPTY_HASH + right[0]).digest(), None, right)
    if right is None:
        if len(left) == _LEAF_LEN:
            return left
        return (_sha256(INTERNAL_PREFIX + left[0] + EMPTY_HASH).digest(), left, None)
    return (_sha256(INTERNAL_PREFIX + left[0] + right[0]).digest(), left, right)


def _lift(node: _Tree, top: int, depth: int, path: int) -> _Tree:
    """Place a subtree whose shallowest allowed depth is ``top`` at ``depth <= top``.

    Adds the chain of single-child internal nodes at depths ``depth .. top - 1`` that
    lead to it along ``path`` (any key hash inside the subtree).  Leaves have ``top == 0``
    (they sit anywhere) and need no chain.
    """
    for d in range(top - 1, depth - 1, -1):
        if (path >> (_TOP - d)) & 1:
            node = (_sha256(INTERNAL_PREFIX + EMPTY_HASH + node[0]).digest(), None, node)
        else:
            node = (_sha256(INTERNAL_PREFIX + node[0] + EMPTY_HASH).digest(), node, None)
    return node


def _build(ints: list[int], leaves: list[_Leaf], depth: int) -> _Node:
    """Build the canonical subtree at ``depth`` holding ``leaves``.

    ``ints`` are the leaves' key hashes as integers, strictly ascending, all sharing
    their first ``depth`` bits.  Works left to right with a stack (no recursion): two
    neighbouring keys first differ at bit ``256 - (a ^ b).bit_length()``, which is the
    depth of the internal node separating them, so the tree is the Cartesian tree of
    those split depths.  Each internal node is hashed exactly once.
    """
    n = len(leaves)
    if n <= 1:
        return leaves[0] if n else None
    # Pending left subtrees on the right spine, with strictly increasing split depths:
    # (split depth at which it gets its right sibling, subtree, its top, a key in it).
    stack: list[tuple[int, _Tree, int, int]] = []
    push = stack.append
    pop = stack.pop
    cur: _Tree = leaves[0]
    cur_top = 0
    prev = ints[0]
    for i in range(1, n):
        x = ints[i]
        split = KEY_BITS - (prev ^ x).bit_length()
        while stack and stack[-1][0] > split:
            sd, left, left_top, left_path = pop()
            if left_top > sd + 1:
                left = _lift(left, left_top, sd + 1, left_path)
            if cur_top > sd + 1:
                cur = _lift(cur, cur_top, sd + 1, prev)
            cur = (_sha256(INTERNAL_PREFIX + left[0] + cur[0]).digest(), left, cur)
            cur_top = sd
        push((split, cur, cur_top, prev))
        cur = leaves[i]
        cur_top = 0
        prev = x
    while stack:
        sd, left, left_top, left_path = pop()
        left = _lift(left, left_top, sd + 1, left_path)
        cur = _lift(cur, cur_top, sd + 1, prev)
        cur = (_sha256(INTERNAL_PREFIX + left[0] + cur[0]).digest(), left, cur)
        cur_top = sd
    return _lift(cur, cur_top, depth, prev)


class _Batch:
    """A sorted batch of changes being applied by :meth:`StateTree.update`.

    ``ints`` are the changed key hashes as integers, strictly ascending; ``news[i]`` is
    the new leaf for ``ints[i]``, or None to delete that key.  ``delta`` accumulates the
    change in the number of keys.
    """

    __slots__ = ("delta", "ints", "news")

    def __init__(self, ints: list[int], news: list[_Leaf | None]) -> None:
        self.ints = ints
        self.news = news
        self.delta = 0

    def apply(self, node: _Node, depth: int, lo: int, hi: int) -> _Node:
        """Apply the changes ``[lo, hi)`` (non-empty) to ``node``, the subtree at ``depth``.

        All of them share their first ``depth`` bits.  Returns the new canonical subtree,
        or ``node`` itself if nothing changed.
        """
        if hi - lo == 1:
            return self._apply_one(node, depth, lo)
        ints = self.ints
        news = self.news
        if node is not None and len(node) != _LEAF_LEN:
            # Internal: split the batch by the bit at this depth (the entries with bit 0
            # come first), recurse into the touched sides only, and re-join.
            _, left, right = node
            shift = _TOP - depth
            mid = bisect_left(ints, ((ints[lo] >> shift) | 1) << shift, lo, hi)
            new_left = self.apply(left, depth + 1, lo, mid) if mid > lo else left
            new_right = self.apply(right, depth + 1, mid, hi) if hi > mid else right
            if new_left is left and new_right is right:
                return node
            if new_left is not None and new_right is not None:
                digest = _sha256(INTERNAL_PREFIX + new_left[0] + new_right[0]).digest()
                return (digest, new_left, new_right)
            return _join(new_left, new_right)

        # Empty or a leaf: the new subtree holds the batch's surviving leaves, plus the
        # old leaf unless the batch overwrites or deletes it.
        out_ints: list[int] = []
        out_leaves: list[_Leaf] = []
        old_int = -1
        at = hi
        if node is not None:
            old_int = int.from_bytes(node[2], "big")
            at = bisect_left(ints, old_int, lo, hi)
            if at < hi and ints[at] == old_int:
                new = news[at]
                if new is not None and new[3] == node[3]:
                    news[at] = node  # unchanged value: keep sharing the old leaf
                self.delta -= 1
                node = None
        for j in range(lo, hi):
            if j == at and node is not None:
                out_ints.append(old_int)
                out_leaves.append(node)
            new = news[j]
            if new is not None:
                out_ints.append(ints[j])
                out_leaves.append(new)
        if at == hi and node is not None:
            out_ints.append(old_int)
            out_leaves.append(node)
        self.delta += len(out_leaves) - (node is not None)
        return _build(out_ints, out_leaves, depth)

    def _apply_one(self, node: _Node, depth: int, i: int) -> _Node:
        """Apply the single change ``i`` to ``node`` at ``depth``, without recursion.

        Below the first dozen levels almost every changed subtree receives one change
        only, so walk down once, then rebuild the path bottom-up in a loop.
        """
        path = self.ints[i]
        new = self.news[i]
        orig = node
        spine: list[_Internal] = []
        shift = _TOP - depth
        while node is not None and len(node) != _LEAF_LEN:
            spine.append(node)
            node = node[2] if (path >> shift) & 1 else node[1]
            shift -= 1
        # ``node`` is the leaf or Empty slot on the path, at depth ``_TOP - shift``.
        old_int = -1 if node is None else int.from_bytes(node[2], "big")
        repl: _Node
        if new is None:
            if old_int != path:
                return orig  # deleting an absent key
            self.delta -= 1
            repl = None
        elif node is None:
            self.delta += 1
            repl = new
        elif old_int == path:
            if new[3] == node[3]:
                return orig  # same value: nothing changes
            repl = new
        else:
            # Another key's leaf occupies the slot: both go into a new subtree there.
            self.delta += 1
            if old_int < path:
                repl = _build([old_int, path], [node, new], _TOP - shift)
            else:
                repl = _build([path, old_int], [new, node], _TOP - shift)
        for parent in reversed(spine):
            shift += 1
            if (path >> shift) & 1:
                left = parent[1]
                right = repl
            else:
                left = repl
                right = parent[2]
            if left is not None and right is not None:
                repl = (_sha256(INTERNAL_PREFIX + left[0] + right[0]).digest(), left, right)
            else:
                repl = _join(left, right)
        return repl


def _require_bytes(name: str, x: object) -> bytes:
    if not isinstance(x, bytes):
        raise TypeError(f"{name} must be bytes, not {type(x).__name__}")
    return x


# --------------------------------------------------------------------------------------
# The tree.


class StateTree:
    """An immutable authenticated map from ``bytes`` keys to ``bytes`` values.

    Build with :meth:`empty` or :meth:`from_items`; derive new versions with
    :meth:`update`.  Two trees compare equal iff their roots are equal, i.e. iff they
    hold the same (key, value) pairs.
    """

    __slots__ = ("_count", "_node")

    _node: _Node
    _count: int

    def __init__(self) -> None:
        """Create an empty tree (same as :meth:`empty`)."""
        self._node = None
        self._count = 0

    @classmethod
    def _of(cls, node: _Node, count: int) -> StateTree:
        tree = cls.__new__(cls)
        tree._node = node
        tree._count = count
        return tree

    @classmethod
    def empty(cls) -> StateTree:
        """Return the tree with no keys; its root is 32 zero bytes."""
        return cls()

    @classmethod
    def from_items(cls, items: Iterable[tuple[bytes, bytes]]) -> StateTree:
        """Build a tree from (key, value) pairs in one pass; a repeated key keeps its last value."""
        by_hash: dict[bytes, _Leaf] = {}
        for key, value in items:
            if type(key) is not bytes or type(value) is not bytes:  # fast path; raises below
                _require_bytes("key", key)
                _require_bytes("value", value)
            kh = _sha256(KEY_DOMAIN + key).digest()
            vh = _sha256(VALUE_DOMAIN + value).digest()
            by_hash[kh] = (_sha256(LEAF_PREFIX + kh + vh).digest(), key, kh, value)
        leaves = [by_hash[kh] for kh in sorted(by_hash)]
        ints = [int.from_bytes(leaf[2], "big") for leaf in leaves]
        return cls._of(_build(ints, leaves, 0), len(leaves))

    @property
    def root(self) -> bytes:
        """The 32-byte state root committing to every (key, value) pair."""
        return _node_hash(self._node)

    def __len__(self) -> int:
        return self._count

    def get(self, key: bytes) -> bytes | None:
        """Return the value stored under ``key``, or None if absent."""
        _require_bytes("key", key)
        kh = _sha256(KEY_DOMAIN + key).digest()
        path = int.from_bytes(kh, "big")
        node = self._node
        shift = _TOP
        while node is not None and len(node) != _LEAF_LEN:
            node = node[2] if (path >> shift) & 1 else node[1]
            shift -= 1
        if node is not None and node[2] == kh:
            return node[3]
        return None

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Iterate over (key, value) pairs in ascending key-hash order."""
        stack: list[_Node] = [self._node]
        pop = stack.pop
        push = stack.append
        while stack:
            node = pop()
            if node is None:
                continue
            if len(node) == _LEAF_LEN:
                yield node[1], node[3]
            else:
                push(node[2])
                push(node[1])

    def update(self, changes: Mapping[bytes, bytes | None]) -> StateTree:
        """Return a new tree with ``changes`` applied; ``self`` is left unchanged.

        A value of None deletes the key (deleting an absent key is a no-op).  The batch
        is applied in one pass: only the paths of changed keys are rebuilt, each changed
        node is hashed once, and deletions re-compress lone leaves upward.
        """
        if not changes:
            return self
        entries: list[tuple[int, bytes, bytes, bytes | None]] = []
        for key, value in changes.items():
            _require_bytes("key", key)
            if value is not None:
                _require_bytes("value", value)
            kh = _sha256(KEY_DOMAIN + key).digest()
            entries.append((int.from_bytes(kh, "big"), kh, key, value))
        entries.sort(key=_first)
        ints = [e[0] for e in entries]
        news: list[_Leaf | None] = [
            None if value is None else _make_leaf(key, kh, value) for _, kh, key, value in entries
        ]
        batch = _Batch(ints, news)
        node = batch.apply(self._node, 0, 0, len(ints))
        if node is self._node:
            return self
        return StateTree._of(node, self._count + batch.delta)

    def prove(self, key: bytes) -> StateProof:
        """Return a proof of ``key``'s value, or of its absence, against :attr:`root`."""
        _require_bytes("key", key)
        kh = _sha256(KEY_DOMAIN + key).digest()
        path = int.from_bytes(kh, "big")
        siblings: list[bytes] = []
        node = self._node
        shift = _TOP
        while node is not None and len(node) != _LEAF_LEN:
            _, left, right = node
            if (path >> shift) & 1:
                siblings.append(EMPTY_HASH if left is None else left[0])
                node = right
            else:
                siblings.append(EMPTY_HASH if right is None else right[0])
                node = left
            shift -= 1
        if node is None:
            return StateProof(key, tuple(siblings), None, None)
        return StateProof(key, tuple(siblings), node[2], value_hash(node[3]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StateTree):
            return NotImplemented
        return self.root == other.root

    def __hash__(self) -> int:
        return hash(self.root)

    def __repr__(self) -> str:
        return f"StateTree(len={self._count}, root={self.root.hex()})"


def _first(entry: tuple[int, bytes, bytes, bytes | None]) -> int:
    return entry[0]


# --------------------------------------------------------------------------------------
# Proofs.

_WIRE_FIELDS: Final = frozenset({"key", "siblings", "leaf_key_hash", "leaf_value_hash"})
_HEX_DIGITS: Final = "0123456789abcdef"


def _is_bytes(x: object) -> bool:
    return isinstance(x, bytes)


def _is_hash(x: object) -> TypeGuard[bytes]:
    return isinstance(x, bytes) and len(x) == HASH_LEN


def _hex_field(value: object, name: str, length: int | None) -> bytes:
    """Decode canonical (lowercase, no separators) hex; ``length`` in bytes if fixed."""
    if not isinstance(value, str):
        raise ValueError(f"state proof field {name} must be a hex string")
    if len(value) % 2 or value.strip(_HEX_DIGITS):
        raise ValueError(f"state proof field {name} is not canonical lowercase hex")
    raw = bytes.fromhex(value)
    if length is not None and len(raw) != length:
        raise ValueError(f"state proof field {name} must be {length} bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True)
class StateProof:
    """Proof that ``key`` has a given value, or is absent, under some state root.

    ``siblings`` are the hashes of the siblings along ``key``'s path, from the root
    downward, one per depth above the terminal node.  The terminal is a leaf given by
    ``leaf_key_hash``/``leaf_value_hash`` (the key's own leaf for presence; for absence,
    the leaf of another key that occupies the path), or Empty when both are None.
    Construction does not validate; :func:`verify_state_proof` rejects malformed proofs.
    """

    key: bytes
    siblings: tuple[bytes, ...]
    leaf_key_hash: bytes | None
    leaf_value_hash: bytes | None

    def to_wire(self) -> dict[str, object]:
        """Encode as a JSON-friendly dict of lowercase hex strings."""
        return {
            "key": self.key.hex(),
            "siblings": [s.hex() for s in self.siblings],
            "leaf_key_hash": None if self.leaf_key_hash is None else self.leaf_key_hash.hex(),
            "leaf_value_hash": None if self.leaf_value_hash is None else self.leaf_value_hash.hex(),
        }

    @classmethod
    def from_wire(cls, d: Mapping[str, object]) -> StateProof:
        """Decode :meth:`to_wire` output, strictly; raise ValueError on anything malformed."""
        obj: object = d
        if not isinstance(obj, Mapping):
            raise ValueError("state proof must be a mapping")
        fields = set(obj.keys())
        if fields != _WIRE_FIELDS:
            missing = sorted(_WIRE_FIELDS - fields)
            extra = sorted(map(repr, fields - _WIRE_FIELDS))
            raise ValueError(f"state proof fields: missing {missing}, unexpected {extra}")
        key = _hex_field(obj["key"], "key", None)
        raw_siblings = obj["siblings"]
        if not isinstance(raw_siblings, list | tuple):
            raise ValueError("state proof field siblings must be a list")
        if len(raw_siblings) > KEY_BITS:
            raise ValueError(
                f"state proof has {len(raw_siblings)} siblings, at most {KEY_BITS} allowed"
            )
        siblings = tuple(
            _hex_field(s, f"siblings[{i}]", HASH_LEN) for i, s in enumerate(raw_siblings)
        )
        raw_kh = obj["leaf_key_hash"]
        raw_vh = obj["leaf_value_hash"]
        if (raw_kh is None) != (raw_vh is None):
            raise ValueError(
                "state proof leaf_key_hash and leaf_value_hash must both be set or null"
            )
        if raw_kh is None:
            return cls(key, siblings, None, None)
        return cls(
            key,
            siblings,
            _hex_field(raw_kh, "leaf_key_hash", HASH_LEN),
            _hex_field(raw_vh, "leaf_value_hash", HASH_LEN),
        )


def verify_state_proof(root: bytes, key: bytes, value: bytes | None, proof: StateProof) -> bool:
    """Check ``proof`` that ``key`` maps to ``value`` (None: is absent) under ``root``.

    Returns False, never raises, for any malformed or non-matching input.
    """
    if not (_is_hash(root) and isinstance(key, bytes) and isinstance(proof, StateProof)):
        return False
    if value is not None and not _is_bytes(value):
        return False
    if not _is_bytes(proof.key) or proof.key != key:
        return False
    siblings: object = proof.siblings
    if not isinstance(siblings, tuple | list) or len(siblings) > KEY_BITS:
        return False
    if not all(_is_hash(s) for s in siblings):
        return False
    depth = len(siblings)
    kh = key_hash(key)
    path = int.from_bytes(kh, "big")
    leaf_kh = proof.leaf_key_hash
    leaf_vh = proof.leaf_value_hash
    if leaf_kh is None and leaf_vh is None:
        if value is not None:
            return False
        h = EMPTY_HASH
    elif _is_hash(leaf_kh) and _is_hash(leaf_vh):
        if value is not None:
            if leaf_kh != kh or leaf_vh != value_hash(value):
                return False
        elif leaf_kh == kh or (int.from_bytes(leaf_kh, "big") ^ path) >> (KEY_BITS - depth):
            # Absence needs another key's leaf lying on this key's path.
            return False
        h = _sha256(LEAF_PREFIX + leaf_kh + leaf_vh).digest()
    else:
        return False
    shift = KEY_BITS - depth
    for sibling in reversed(siblings):
        if (path >> shift) & 1:
            h = _sha256(INTERNAL_PREFIX + sibling + h).digest()
        else:
            h = _sha256(INTERNAL_PREFIX + h + sibling).digest()
        shift += 1
    return h == root
