"""Executing against state: a read-your-writes overlay over the committed tree.

The committed state is a :class:`~services.ledger.core.statetree.StateTree`
(persistent, Merkle-committed). A block executes against a :class:`StateView`:
writes go to an overlay, every transaction runs inside a checkpoint so a
failing transaction leaves no trace, and at the end the overlay is folded into
a new tree in one batch update (which is when the state root is computed).

Keys are ASCII strings ``<namespace>/<rest>``; values are canonical-JSON values
stored as their canonical bytes. Readers get freshly decoded values, so a
contract can never alter state by mutating what it read.

This module never does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from services.ledger.core.encoding import encode
from services.ledger.core.statetree import StateTree

KEY_CHARS_MAX = 512
_ABSENT = object()


def state_key(key: str) -> bytes:
    if not key.isascii() or not 0 < len(key) <= KEY_CHARS_MAX:
        raise ValueError(f"state key must be 1..{KEY_CHARS_MAX} ASCII characters: {key!r}")
    return key.encode("ascii")


def decode_value(raw: bytes) -> Any:
    return json.loads(raw)


class StateView:
    """Pending writes over a base tree, with nested checkpoints for rollback."""

    __slots__ = ("_base", "_journal", "_writes")

    def __init__(self, base: StateTree) -> None:
        self._base = base
        self._writes: dict[bytes, bytes | None] = {}
        self._journal: list[tuple[bytes, object]] = []

    @property
    def base(self) -> StateTree:
        return self._base

    def get_raw(self, key: bytes) -> bytes | None:
        if key in self._writes:
            return self._writes[key]
        return self._base.get(key)

    def get(self, key: str) -> Any | None:
        raw = self.get_raw(state_key(key))
        return None if raw is None else decode_value(raw)

    def has(self, key: str) -> bool:
        return self.get_raw(state_key(key)) is not None

    def put(self, key: str, value: Any) -> None:
        self._set(state_key(key), encode(value))

    def delete(self, key: str) -> None:
        self._set(state_key(key), None)

    def _set(self, key: bytes, raw: bytes | None) -> None:
        self._journal.append((key, self._writes.get(key, _ABSENT)))
        self._writes[key] = raw

    def checkpoint(self) -> int:
        return len(self._journal)

    def rollback(self, checkpoint: int) -> None:
        while len(self._journal) > checkpoint:
            key, previous = self._journal.pop()
            if previous is _ABSENT:
                del self._writes[key]
            else:
                self._writes[key] = previous  # type: ignore[assignment]

    def writes(self) -> Mapping[bytes, bytes | None]:
        return self._writes

    def fold(self) -> StateTree:
        """The new committed tree: base plus every pending write."""
        return self._base.update(self._writes)


def tree_from_items(items: Iterable[tuple[str, Any]]) -> StateTree:
    return StateTree.from_items((state_key(k), encode(v)) for k, v in items)
