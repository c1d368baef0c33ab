"""Tests for the read-your-writes overlay over the state tree (state.py)."""

from __future__ import annotations

import pytest

from services.ledger.core.encoding import encode
from services.ledger.core.errors import EncodingError
from services.ledger.core.state import KEY_CHARS_MAX, StateView, state_key, tree_from_items
from services.ledger.core.statetree import StateTree

BASE = [("ns/a", {"v": 1}), ("ns/b", [1, 2]), ("other/c", "text")]


@pytest.fixture
def view() -> StateView:
    return StateView(tree_from_items(BASE))


def test_tree_from_items_stores_canonical_bytes():
    tree = tree_from_items(BASE)
    assert tree.get(b"ns/a") == encode({"v": 1})
    assert tree.get(b"other/c") == b'"text"'
    assert tree == StateTree.from_items([(k.encode(), encode(v)) for k, v in BASE])


def test_read_base(view):
    assert view.get("ns/a") == {"v": 1}
    assert view.get("missing") is None
    assert view.has("ns/b")
    assert not view.has("missing")
    assert view.get_raw(b"ns/b") == b"[1,2]"


def test_read_your_writes(view):
    view.put("ns/a", {"v": 2})
    view.put("ns/new", 7)
    assert view.get("ns/a") == {"v": 2}
    assert view.get("ns/new") == 7
    view.delete("ns/b")
    assert view.get("ns/b") is None
    assert not view.has("ns/b")
    # the base tree is untouched
    assert view.base.get(b"ns/a") == encode({"v": 1})
    assert view.base.get(b"ns/b") == b"[1,2]"


def test_readers_get_fresh_copies(view):
    value = view.get("ns/a")
    value["v"] = 99
    assert view.get("ns/a") == {"v": 1}
    view.put("ns/x", {"list": [1]})
    got = view.get("ns/x")
    got["list"].append(2)
    assert view.get("ns/x") == {"list": [1]}


def test_put_stores_a_copy(view):
    value = {"list": [1]}
    view.put("ns/x", value)
    value["list"].append(2)
    assert view.get("ns/x") == {"list": [1]}


def test_put_refuses_values_outside_profile(view):
    for bad in (1.5, {"é": 1}, 2**53, b"x"):
        with pytest.raises(EncodingError):
            view.put("ns/x", bad)
    assert not view.has("ns/x")


@pytest.mark.parametrize("key", ["", "é", "x" * (KEY_CHARS_MAX + 1)])
def test_bad_keys(view, key):
    with pytest.raises(ValueError):
        view.get(key)
    with pytest.raises(ValueError):
        view.put(key, 1)
    with pytest.raises(ValueError):
        state_key(key)


def test_longest_key(view):
    key = "k" * KEY_CHARS_MAX
    view.put(key, 1)
    assert view.get(key) == 1
    assert state_key(key) == key.encode()


def test_checkpoint_rollback(view):
    view.put("ns/a", 1)
    cp = view.checkpoint()
    view.put("ns/a", 2)
    view.put("ns/new", 3)
    view.delete("ns/b")
    view.rollback(cp)
    assert view.get("ns/a") == 1
    assert not view.has("ns/new")
    assert view.get("ns/b") == [1, 2]
    assert b"ns/new" not in view.writes()
    assert b"ns/b" not in view.writes()


def test_nested_checkpoints(view):
    outer = view.checkpoint()
    view.put("ns/a", "outer")
    inner = view.checkpoint()
    view.put("ns/a", "inner")
    view.delete("ns/a")
    view.rollback(inner)
    assert view.get("ns/a") == "outer"
    view.rollback(outer)
    assert view.get("ns/a") == {"v": 1}
    assert dict(view.writes()) == {}


def test_rollback_to_current_checkpoint_is_a_no_op(view):
    view.put("ns/a", 5)
    view.rollback(view.checkpoint())
    assert view.get("ns/a") == 5


def test_fold(view):
    view.put("ns/a", 2)
    view.delete("ns/b")
    view.put("ns/new", [])
    tree = view.fold()
    assert tree.get(b"ns/a") == b"2"
    assert tree.get(b"ns/b") is None
    assert tree.get(b"ns/new") == b"[]"
    assert tree.get(b"other/c") == b'"text"'
    expected = tree_from_items([("ns/a", 2), ("ns/new", []), ("other/c", "text")])
    assert tree.root == expected.root
    # the base is persistent
    assert view.base.get(b"ns/b") == b"[1,2]"


def test_fold_without_writes_keeps_the_root(view):
    assert view.fold().root == view.base.root


def test_writes_record_deletes_as_none(view):
    view.delete("ns/a")
    view.put("ns/z", 1)
    assert dict(view.writes()) == {b"ns/a": None, b"ns/z": b"1"}
