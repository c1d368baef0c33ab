"""Tests for canonical JSON (services/ledger/core/encoding.py).

The known-answer vectors live in ``vectors/encoding.json`` (canonical texts written
by hand, several taken from RFC 8785 and its author's test data, each with a
``source``); every one is recomputed here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from services.ledger.core.encoding import (
    DEPTH_MAX,
    INT_MAX,
    INT_MIN,
    check_value,
    decode,
    encode,
    from_hex,
    get_int,
    get_list,
    get_map,
    get_str,
    require_keys,
    sha256,
    tagged_hash,
)
from services.ledger.core.errors import EncodingError

VECTORS = json.loads((Path(__file__).parent / "vectors" / "encoding.json").read_text("utf-8"))
CANONICAL = VECTORS["canonical"]
REJECTED = VECTORS["rejected"]


def nest(levels: int, inner: object = None) -> object:
    """``levels`` containers deep: ``[[...[inner]...]]`` (``[]`` innermost if no inner)."""
    value: object = [] if inner is None else [inner]
    for _ in range(levels - 1):
        value = [value]
    return value


# --------------------------------------------------------------------------- vectors


def test_vector_file_is_well_formed():
    names = [v["name"] for v in CANONICAL + REJECTED]
    assert len(names) == len(set(names))
    assert len(CANONICAL) >= 20
    assert len(REJECTED) >= 30
    assert any("RFC 8785" in v.get("source", "") for v in CANONICAL)
    assert any("RFC 8785" in v.get("source", "") for v in REJECTED)


@pytest.mark.parametrize("vector", CANONICAL, ids=[v["name"] for v in CANONICAL])
def test_canonical_vector(vector):
    expected = bytes.fromhex(vector["canonical_hex"])
    assert encode(vector["value"]) == expected
    assert hashlib.sha256(expected).hexdigest() == vector["sha256_hex"]
    assert sha256(encode(vector["value"])).hex() == vector["sha256_hex"]
    assert decode(expected) == vector["value"]


@pytest.mark.parametrize("vector", REJECTED, ids=[v["name"] for v in REJECTED])
def test_rejected_vector(vector):
    data = bytes.fromhex(vector["bytes_hex"])
    with pytest.raises(EncodingError) as info:
        decode(data, size_max=vector.get("size_max"))
    assert info.value.code == vector["error"]


# --------------------------------------------------------------------------- encode


def test_tuple_encodes_as_array():
    assert encode({"a": (1, 2)}) == b'{"a":[1,2]}'


def test_integer_bounds():
    assert INT_MAX == 2**53 - 1
    assert INT_MIN == -(2**53 - 1)
    assert encode([INT_MIN, INT_MAX]) == b"[-9007199254740991,9007199254740991]"
    for bad in (INT_MAX + 1, INT_MIN - 1, 2**64, -(2**64)):
        with pytest.raises(EncodingError) as info:
            encode(bad)
        assert info.value.code == "bad_encoding"
        with pytest.raises(EncodingError):
            encode({"nested": [bad]})


@pytest.mark.parametrize(
    "value",
    [1.0, 0.5, float("nan"), float("inf"), -float("inf"), [1.5], {"a": float("nan")}],
    ids=["1.0", "0.5", "nan", "inf", "-inf", "float-in-list", "nan-in-object"],
)
def test_floats_rejected(value):
    with pytest.raises(EncodingError) as info:
        encode(value)
    assert info.value.code == "bad_encoding"


@pytest.mark.parametrize(
    "value",
    [b"bytes", {1, 2}, object(), {1: "int key"}, {("t",): 1}],
    ids=["bytes", "set", "object", "int-key", "tuple-key"],
)
def test_other_types_rejected(value):
    with pytest.raises(EncodingError):
        encode(value)


@pytest.mark.parametrize("key", ["é", "€", "中", "😀", "a\u0080"])
def test_non_ascii_keys_rejected(key):
    with pytest.raises(EncodingError):
        encode({key: 1})
    with pytest.raises(EncodingError):
        encode([{"ok": {key: 1}}])


def test_non_ascii_values_allowed():
    assert encode({"k": "é"}) == '{"k":"é"}'.encode()


@pytest.mark.parametrize("text", ["\ud800", "\udfff", "a\udc00b", "\ude00\ud83d"])
def test_lone_surrogates_rejected(text):
    with pytest.raises(EncodingError) as info:
        encode(text)
    assert info.value.code == "bad_encoding"
    with pytest.raises(EncodingError):
        encode({"k": [text]})


def test_depth_limit_on_encode():
    assert DEPTH_MAX == 64
    assert encode(nest(DEPTH_MAX)) == b"[" * 64 + b"]" * 64
    assert encode(nest(DEPTH_MAX, 1)) == b"[" * 64 + b"1" + b"]" * 64
    with pytest.raises(EncodingError):
        encode(nest(DEPTH_MAX + 1))
    with pytest.raises(EncodingError):
        encode(nest(DEPTH_MAX + 1, "x"))


def test_depth_counts_objects_too():
    value: object = {}
    for _ in range(DEPTH_MAX - 1):
        value = {"k": value}
    check_value(value)
    with pytest.raises(EncodingError):
        check_value({"k": value})


def test_check_value_custom_depth():
    check_value(nest(3), depth_max=3)
    with pytest.raises(EncodingError):
        check_value(nest(4), depth_max=3)
    check_value("scalar", depth_max=0)
    with pytest.raises(EncodingError):
        check_value([], depth_max=0)


def test_encode_is_deterministic_whatever_the_insertion_order():
    a = {"x": 1, "y": {"b": 2, "a": 3}}
    b = {"y": {"a": 3, "b": 2}, "x": 1}
    assert encode(a) == encode(b) == b'{"x":1,"y":{"a":3,"b":2}}'


# --------------------------------------------------------------------------- decode


def test_decode_round_trips_values():
    value = {"list": [None, True, False, -5, "é\n"], "obj": {"a": {}}}
    assert decode(encode(value)) == value


def test_decode_size_limit_is_inclusive():
    data = encode("abcd")  # 6 bytes
    assert decode(data, size_max=6) == "abcd"
    with pytest.raises(EncodingError) as info:
        decode(data, size_max=5)
    assert info.value.code == "bad_encoding"


def test_decode_deeply_nested_garbage_is_an_encoding_error():
    with pytest.raises(EncodingError):
        decode(b"[" * 100_000)
    with pytest.raises(EncodingError):
        decode(b"[" * 100_000 + b"]" * 100_000)


def test_decode_accepts_depth_limit():
    assert decode(b"[" * 64 + b"]" * 64) == nest(64)


def test_decode_refuses_huge_integer_literal():
    with pytest.raises(EncodingError):
        decode(b"1" + b"0" * 5000)


# --------------------------------------------------------------------------- hashing


def test_tagged_hash_definition():
    assert tagged_hash(b"tag", b"data") == hashlib.sha256(b"tag\x00data").digest()
    assert sha256(b"abc").hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_tagged_hash_domain_separation():
    data = b"same bytes"
    assert tagged_hash(b"ecosphere/tx/v1", data) != tagged_hash(b"ecosphere/vote/v1", data)
    assert tagged_hash(b"a", data) != sha256(data)
    # the separator keeps (tag, data) pairs from sliding into one another
    assert tagged_hash(b"ab", b"c") != tagged_hash(b"a", b"bc")
    assert tagged_hash(b"a", b"") != tagged_hash(b"", b"a")


# --------------------------------------------------------------------------- schema helpers


def test_from_hex():
    assert from_hex("00ff") == b"\x00\xff"
    assert from_hex("", length=0) == b""
    assert from_hex("ab" * 32, length=32) == b"\xab" * 32
    for bad in ("00FF", "0", "zz", "0x00", " 00", 12, None, b"00"):
        with pytest.raises(EncodingError):
            from_hex(bad)
    with pytest.raises(EncodingError):
        from_hex("ab" * 31, length=32)


def test_get_int():
    assert get_int({"n": 5}, "n") == 5
    assert get_int({"n": -3}, "n", lo=-3) == -3
    for obj in ({"n": True}, {"n": False}, {"n": 1.0}, {"n": "1"}, {}, {"n": None}):
        with pytest.raises(EncodingError):
            get_int(obj, "n")
    with pytest.raises(EncodingError):
        get_int({"n": -1}, "n")
    with pytest.raises(EncodingError):
        get_int({"n": 11}, "n", hi=10)


def test_get_str_get_map_get_list():
    assert get_str({"s": "abc"}, "s", size_max=3) == "abc"
    with pytest.raises(EncodingError):
        get_str({"s": "abcd"}, "s", size_max=3)
    with pytest.raises(EncodingError):
        get_str({"s": 1}, "s")
    assert get_map({"m": {}}, "m") == {}
    with pytest.raises(EncodingError):
        get_map({"m": []}, "m")
    assert get_list({"l": [1, 2]}, "l", size_max=2) == [1, 2]
    with pytest.raises(EncodingError):
        get_list({"l": [1, 2, 3]}, "l", size_max=2)
    with pytest.raises(EncodingError):
        get_list({"l": {}}, "l", size_max=2)


def test_require_keys():
    keys = frozenset({"a", "b"})
    assert require_keys({"a": 1, "b": 2}, keys, "thing") == {"a": 1, "b": 2}
    obj: object
    for obj in ({"a": 1}, {"a": 1, "b": 2, "c": 3}, [], "ab", None):
        with pytest.raises(EncodingError):
            require_keys(obj, keys, "thing")
