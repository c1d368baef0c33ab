"""Verifiable certificates (services/trace/wrapping.py and services/trace/documents.py):
wrap, unwrap, selective disclosure, integrity, status and issuer checks. The
certificate schema and its RFC 3339 times are tests/trace/test_certificate_schema.py's.

The module is cross-checked against a second, deliberately naive implementation
written here from the module's specification (``ref_*``: recursive flattening,
``json.dumps``, the recursive RFC 6962 definitions). That implementation also
produced ``vectors/documents.json``, the committed known-answer vector. It is
*not* an external standard vector (our documents are OpenAttestation v2 with
SHA-256 and an RFC 6962 tree, which no other tool produces); it exists so that
any future change to the salting, paths, hashing or tree is caught. Regenerate it
only for an intended format change, with ``python -m tests.trace.test_documents``.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ledger.core import merkle
from services.ledger.core.encoding import INT_MAX, INT_MIN
from services.trace import documents, wrapping
from services.trace.certificate_schema import check_certificate_data
from services.trace.documents import AnchorRecord, IssuerRecord, verify
from services.trace.wrapping import (
    CheckResult,
    DocumentError,
    WrappedDocument,
    obfuscate,
    unwrap,
    verify_integrity,
    wrap,
    wrap_batch,
)
from tests.trace.certificate_samples import certificate, counter_salt, ms, salt_number

VECTORS_PATH = Path(__file__).parent / "vectors" / "documents.json"


# --------------------------------------------------------------------------- helpers


T_ANCHOR = ms("2025-02-01T08:00:00Z")
NOW = ms("2026-06-01T00:00:00Z")


def anchor_for(doc: WrappedDocument, **changes: Any) -> AnchorRecord:
    # as the trace contract stores it, with keys this module ignores
    state: dict[str, Any] = {"merkle_root": doc.merkle_root, "issuer": "tuv-sud",
                             "anchored_at": T_ANCHOR, "anchored_height": 42,
                             "anchored_by": "tuv-sud/key-1", "type": "CE",
                             "subject": {"kind": "product", "id": "4006381333931"},
                             "scope": "EA-19/LVD", "revoked": False}
    state.update(changes)
    return AnchorRecord.from_state(state)


def issuer_state(**changes: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "org": "tuv-sud",
        "roles": ["certifier"],
        "accreditations": [{"id": "DAkkS-D-ZE-12024", "types": ["CE", "ISO9001"],
                            "scopes": ["EA-19", "EA-18"], "valid_from": ms("2020-01-01T00:00:00Z"),
                            "valid_until": ms("2030-01-01T00:00:00Z"), "revoked_at": None,
                            "by": "dakks", "status": "active"}],
    }
    state.update(changes)
    return state


def issuer_for(**changes: Any) -> IssuerRecord:
    return IssuerRecord.from_state(issuer_state(**changes))


def wrapped_certificate(**changes: Any) -> WrappedDocument:
    batch = wrap_batch([certificate(**changes), certificate(id="CE-2025-0043")],
                       salt=counter_salt())
    return batch[0]


# --------------------------------------------------------------------------- the reference


def ref_typed(value: Any) -> str:
    if value is None:
        return "null:null"
    if isinstance(value, bool):
        return "boolean:true" if value else "boolean:false"
    if isinstance(value, int):
        return "number:" + str(value)
    if isinstance(value, str):
        return "string:" + value
    if isinstance(value, dict):
        return "object:{}"
    return "array:[]"


def ref_salt(value: Any, salts: Iterator[str]) -> Any:
    if isinstance(value, dict) and value:
        return {key: ref_salt(value[key], salts) for key in sorted(value)}
    if isinstance(value, list) and value:
        return [ref_salt(item, salts) for item in value]
    return next(salts) + ":" + ref_typed(value)


def ref_flatten(node: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = [(str(i), item) for i, item in enumerate(node) if item is not None]
    else:
        return {prefix: node}
    for key, item in items:
        out.update(ref_flatten(item, prefix + "." + key if prefix else key))
    return out


def ref_field_hash(path: str, salted: str) -> str:
    text = json.dumps({path: salted}, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def ref_target(field_hashes: list[str]) -> str:
    text = json.dumps(sorted(field_hashes), separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def ref_split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, recursively, straight from the definition."""
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = ref_split(len(leaves))
    return hashlib.sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:])).digest()


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 section 2.1.1 PATH(m, D[n])."""
    if len(leaves) == 1:
        return []
    k = ref_split(len(leaves))
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


def ref_wrap_batch(batch: list[dict[str, Any]], salts: Iterator[str]) -> list[dict[str, Any]]:
    salted = [{key: ref_salt(data[key], salts) for key in sorted(data)} for data in batch]
    targets = [ref_target([ref_field_hash(p, s) for p, s in ref_flatten(d).items()])
               for d in salted]
    leaves = [bytes.fromhex(t) for t in targets]
    root = ref_mth(leaves).hex()
    return [{
        "version": "ecosphere.verifiable-document/v1",
        "data": data,
        "signature": {"type": "SHA256MerkleProof", "targetHash": target,
                      "proof": [node.hex() for node in ref_path(i, leaves)],
                      "merkleRoot": root, "index": i, "treeSize": len(batch)},
        "privacy": {"obfuscatedData": []},
    } for i, (data, target) in enumerate(zip(salted, targets, strict=True))]


def ref_prune(node: Any, prefix: str, hidden: set[str]) -> Any:
    """Drop hidden leaves: an object loses the member, an array gets a null, trailing
    nulls go, an emptied container goes (None means gone)."""
    if isinstance(node, str):
        return None if prefix in hidden else node
    if isinstance(node, dict):
        out = {}
        for key, item in node.items():
            kept = ref_prune(item, prefix + "." + key if prefix else key, hidden)
            if kept is not None:
                out[key] = kept
        return out or None
    items = [None if item is None else ref_prune(item, f"{prefix}.{i}", hidden)
             for i, item in enumerate(node)]
    while items and items[-1] is None:
        items.pop()
    return items or None


def ref_obfuscate(wrapped: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    leaves = ref_flatten(wrapped["data"])
    hidden = {p for p in leaves if any(p == t or p.startswith(t + ".") for t in paths)}
    out = copy.deepcopy(wrapped)
    out["data"] = ref_prune(wrapped["data"], "", hidden) or {}
    out["privacy"]["obfuscatedData"] += [ref_field_hash(p, leaves[p])
                                         for p in leaves if p in hidden]
    return out


def ref_unwrap_value(salted: str) -> Any:
    _salt, kind, value = salted.split(":", 2)
    restored: Any = {"string": value, "boolean": value == "true", "null": None,
                     "object": {}, "array": []}.get(kind)
    return int(value) if kind == "number" else restored


def ref_unwrap(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: ref_unwrap(item) for key, item in node.items()}
    if isinstance(node, list):
        return [ref_unwrap(item) for item in node if item is not None]
    return ref_unwrap_value(node)


# --------------------------------------------------------------------------- the vector


def vector_documents() -> list[dict[str, Any]]:
    organic: dict[str, Any] = {
        "$template": {"type": "ecosphere.certificate/v1"},
        "id": "CN-ORG-2025-7781",
        "type": "ORGANIC",
        "issuer": {"id": "cqc", "name": "中国质量认证中心"},
        "subject": {"kind": "batch", "id": "LOT-2025-03-117", "name": "绿茶 Longjing"},
        "scope": "GB/T 19630:2019",
        "validFrom": "2025-03-01T00:00:00+08:00",
        "validUntil": "2026-02-28T23:59:59.999+08:00",
        "harvest": {"region": "Hangzhou: West Lake", "weightKg": "1250.5", "lots": [117, 118]},
        "pesticideResidue": None,
        "coldChain": False,
        "notes": {},
        "extraTests": [],
    }
    iso: dict[str, Any] = {
        "$template": {"type": "ecosphere.certificate/v1"},
        "id": "ISO-9001-000815",
        "type": "ISO9001",
        "issuer": {"id": "tuv-sud", "name": "TÜV SÜD"},
        "subject": {"kind": "organisation", "id": "shenzhen-lighting"},
        "scope": "EA-19",
        "validFrom": "2024-06-01T00:00:00Z",
        "validUntil": "2027-05-31T00:00:00Z",
        "attachments": [{"filename": "cert.pdf", "type": "application/pdf"}],
        "sites": [["Shenzhen", "Bao'an"], ["Dongguan"]],
        "employees": -1,
    }
    return [certificate(), organic, iso]


VECTOR_HIDE_IN = 1
VECTOR_HIDE = ["issuer.name", "harvest.lots.0", "notes"]


def build_vector() -> dict[str, Any]:
    """The vector, from the reference implementation only."""
    batch = vector_documents()
    salts = (salt_number(n) for n in itertools.count())
    wrapped = ref_wrap_batch(batch, salts)
    return {
        "description": (
            "Known-answer vector for services/trace/documents.py. NOT an external standard "
            "vector: computed by the independent reference implementation in "
            "tests/trace/test_documents.py (ref_*), to catch any change to salting, paths, "
            "field hashes, target hashes or the RFC 6962 batch tree."),
        "salt": "the n-th salt drawn (from 0, across the batch) is "
                "'{n:08x}-0000-4000-8000-{n:012x}'",
        "documents": batch,
        "merkleRoot": wrapped[0]["signature"]["merkleRoot"],
        "targetHashes": [w["signature"]["targetHash"] for w in wrapped],
        "wrapped": wrapped,
        "obfuscated": {"document": VECTOR_HIDE_IN, "paths": VECTOR_HIDE,
                       "wrapped": ref_obfuscate(wrapped[VECTOR_HIDE_IN], VECTOR_HIDE)},
    }


def load_vector() -> dict[str, Any]:
    vector: dict[str, Any] = json.loads(VECTORS_PATH.read_text("utf-8"))
    return vector


def test_vector_matches_the_reference_implementation() -> None:
    assert build_vector() == load_vector()


def test_vector_matches_the_module() -> None:
    vector = load_vector()
    wrapped = wrap_batch(vector["documents"], salt=counter_salt())
    assert [w.to_json() for w in wrapped] == vector["wrapped"]
    assert {w.merkle_root for w in wrapped} == {vector["merkleRoot"]}
    assert [w.target_hash for w in wrapped] == vector["targetHashes"]
    spec = vector["obfuscated"]
    hidden = obfuscate(wrapped[spec["document"]], spec["paths"])
    assert hidden.to_json() == spec["wrapped"]
    for document in [*vector["wrapped"], spec["wrapped"]]:
        assert verify_integrity(document).ok
    assert [unwrap(w) for w in vector["wrapped"]] == vector["documents"]


def test_vector_documents_are_valid_certificates() -> None:
    for data in load_vector()["documents"]:
        check_certificate_data(data)


# --------------------------------------------------------------------------- strategies

KEY_ALPHABET = string.ascii_letters + string.digits + "_-$@: "
keys = st.text(KEY_ALPHABET, min_size=1, max_size=6).filter(lambda k: not k.isdigit())
scalars = (st.none() | st.booleans() | st.integers(INT_MIN, INT_MAX)
           | st.text(max_size=12))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=16,
)
json_objects = st.dictionaries(keys, json_values, min_size=1, max_size=6)
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- wrap / unwrap


@SETTINGS
@given(json_objects)
def test_round_trip_preserves_values_and_types(data: dict[str, Any]) -> None:
    wrapped = wrap(data, salt=counter_salt())
    assert unwrap(wrapped) == data
    shipped = json.loads(json.dumps(wrapped.to_json()))
    assert unwrap(shipped) == data
    assert WrappedDocument.from_json(shipped) == wrapped
    assert verify_integrity(shipped).ok


@SETTINGS
@given(st.lists(json_objects, min_size=1, max_size=5))
def test_module_agrees_with_reference(batch: list[dict[str, Any]]) -> None:
    ours = [w.to_json() for w in wrap_batch(batch, salt=counter_salt())]
    assert ours == ref_wrap_batch(batch, (salt_number(n) for n in itertools.count()))


def test_every_value_is_a_salted_string_and_types_survive() -> None:
    data = {"s": "a:b:c", "n": -7, "z": 0, "t": True, "f": False, "x": None, "o": {},
            "a": [], "nested": {"list": [1, "1", [None], {}]}}
    wrapped = wrap(data, salt=counter_salt())
    leaves = ref_flatten(wrapped.to_json()["data"])
    assert sorted(leaves) == ["a", "f", "n", "nested.list.0", "nested.list.1",
                              "nested.list.2.0", "nested.list.3", "o", "s", "t", "x", "z"]
    assert leaves["s"].endswith(":string:a:b:c")
    assert leaves["n"].endswith(":number:-7")
    assert leaves["nested.list.0"].endswith(":number:1")
    assert leaves["nested.list.1"].endswith(":string:1")
    assert leaves["nested.list.2.0"].endswith(":null:null")
    assert leaves["o"].endswith(":object:{}") and leaves["a"].endswith(":array:[]")
    assert unwrap(wrapped) == data


def test_tuples_are_arrays() -> None:
    wrapped = wrap({"a": (1, 2)}, salt=counter_salt())
    assert unwrap(wrapped) == {"a": [1, 2]}


def test_determinism_with_injected_salt() -> None:
    data = certificate()
    shuffled = dict(reversed(list(data.items())))
    first = wrap(data, salt=counter_salt()).to_json()
    assert wrap(shuffled, salt=counter_salt()).to_json() == first
    assert wrap(data, salt=counter_salt(1000)).to_json() != first
    calls = []

    def salt() -> str:
        calls.append(1)
        return salt_number(len(calls))

    wrap(data, salt=salt)
    assert len(calls) == len(ref_flatten(first["data"]))


def test_empty_document_is_refused() -> None:
    """Its target hash would be the constant SHA-256("[]"), shared by all empty documents."""
    with pytest.raises(DocumentError) as info:
        wrap_batch([{"a": 1}, {}], salt=counter_salt())
    assert info.value.code == "empty_document"


@pytest.mark.parametrize(("data", "code"), [
    ({"price": 19.9}, "float_not_allowed"),
    ({"a": [{"b": [1.0]}]}, "float_not_allowed"),
    ({"a": float("nan")}, "float_not_allowed"),
    ({"n": 2**53}, "integer_out_of_range"),
    ({"n": -(2**53)}, "integer_out_of_range"),
    ({"a.b": 1}, "bad_key"),
    ({"a": {"0": 1}}, "bad_key"),
    ({"": 1}, "bad_key"),
    ({"ключ": 1}, "bad_key"),
    ({1: 1}, "bad_key"),
    ({"a": {1, 2}}, "not_json"),
    ({"a": b"bytes"}, "not_json"),
    ({"a": "\ud800"}, "not_json"),
])
def test_wrap_refuses_what_the_chain_cannot_hash(data: dict[Any, Any], code: str) -> None:
    with pytest.raises(DocumentError) as info:
        wrap(data, salt=counter_salt())
    assert info.value.code == code


def test_wrap_refuses_deep_nesting_and_bad_batches() -> None:
    deep: Any = "x"
    for _ in range(70):
        deep = {"k": deep}
    with pytest.raises(DocumentError, match="deeper") as info:
        wrap(deep, salt=counter_salt())
    assert info.value.code == "too_deep"
    with pytest.raises(DocumentError) as info:
        wrap_batch([], salt=counter_salt())
    assert info.value.code == "empty_batch"
    with pytest.raises(DocumentError) as info:
        wrap_batch([{"a": 1}, ["not", "an", "object"]], salt=counter_salt())  # type: ignore[list-item]
    assert info.value.code == "not_object"


@pytest.mark.parametrize(("salt", "code"), [
    (lambda: "constant-salt-0000000", "salt_reused"),
    (lambda: "short", "bad_salt"),
    (lambda: "has:colon-0000000000", "bad_salt"),
    (lambda: 12345678901234567890, "bad_salt"),
])
def test_salt_must_be_fresh_and_well_formed(salt: Callable[[], Any], code: str) -> None:
    with pytest.raises(DocumentError) as info:
        wrap({"a": 1, "b": 2}, salt=salt)
    assert info.value.code == code


def test_salts_are_fresh_across_a_batch() -> None:
    salts = iter([salt_number(1), salt_number(2), salt_number(1)])
    with pytest.raises(DocumentError) as info:
        wrap_batch([{"a": 1, "b": 2}, {"c": 3}], salt=lambda: next(salts))
    assert info.value.code == "salt_reused"


@pytest.mark.parametrize("salted", [
    "nosalt", "short:string:x", f"{salt_number(1)}:number:01", f"{salt_number(1)}:number:-0",
    f"{salt_number(1)}:number:1.5", f"{salt_number(1)}:number:{2**53}",
    f"{salt_number(1)}:boolean:True", f"{salt_number(1)}:null:None",
    f"{salt_number(1)}:object:[]", f"{salt_number(1)}:undefined:undefined",
    f"{salt_number(1)}:string", f"{salt_number(1)}:number:١",
])
def test_unwrap_refuses_malformed_salted_values(salted: str) -> None:
    document = wrap({"a": "x"}, salt=counter_salt()).to_json()
    document["data"]["a"] = salted
    with pytest.raises(DocumentError) as info:
        unwrap(document)
    assert info.value.code == "malformed"
    assert verify_integrity(document).code == "malformed"


# --------------------------------------------------------------------------- tampering


def locations(node: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every salted string in wrapped data."""
    found: list[tuple[Any, Any]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, item in items:
        if isinstance(item, str):
            found.append((node, key))
        elif item is not None:
            found.extend(locations(item))
    return found


def changed_value(salted: str) -> str:
    salt, kind, value = salted.split(":", 2)
    if kind == "string":
        return f"{salt}:string:{value}x"
    return f"{salt}:string:{value}"  # same text, another type




@SETTINGS
@given(json_objects, st.data())
def test_tampering_with_any_value_salt_or_path_breaks_integrity(
        data: dict[str, Any], draw: st.DataObject) -> None:
    document = wrap(data, salt=counter_salt()).to_json()
    spots = locations(document["data"])
    position = draw.draw(st.integers(0, len(spots) - 1))
    how = draw.draw(st.sampled_from(["value", "salt", "rename", "shift", "swap"]))
    tampered = copy.deepcopy(document)
    container, key = locations(tampered["data"])[position]
    salted = container[key]
    if how == "value":
        container[key] = changed_value(salted)
    elif how == "salt":
        container[key] = "f" * 32 + salted[salted.index(":"):]
    elif how == "rename" and isinstance(container, dict):
        container[key + "z" if key + "z" not in container else key + "zz"] = container.pop(key)
    elif how in {"rename", "shift"}:
        if isinstance(container, dict):
            container[key] = [salted]  # the path gains an index segment
        else:
            container.insert(key, None)  # the later elements' indices move
    else:
        others = [s for s in locations(tampered["data"]) if s[0][s[1]] != salted]
        if not others:
            container[key] = changed_value(salted)
        else:
            other_container, other_key = others[0]
            container[key], other_container[other_key] = other_container[other_key], salted
    result = verify_integrity(tampered)
    assert not result.ok
    assert result.code == "tampered", result


def test_adding_a_field_or_an_empty_container_breaks_integrity() -> None:
    document = wrapped_certificate().to_json()
    added = copy.deepcopy(document)
    added["data"]["extra"] = f"{salt_number(999)}:string:forged"
    assert verify_integrity(added).code == "tampered"
    fillers: tuple[Any, ...] = ({}, [], None, 1, True)
    for filler in fillers:
        padded = copy.deepcopy(document)
        padded["data"]["issuer"]["extra"] = filler
        assert verify_integrity(padded).code == "malformed"
    trailing = copy.deepcopy(document)
    trailing["data"]["standards"].append(None)
    assert verify_integrity(trailing).code == "malformed"


@SETTINGS
@given(st.lists(json_objects, min_size=2, max_size=9), st.data())
def test_tampering_with_the_signature_breaks_integrity(
        batch: list[dict[str, Any]], draw: st.DataObject) -> None:
    wrapped = wrap_batch(batch, salt=counter_salt())
    document = draw.draw(st.sampled_from(wrapped)).to_json()
    signature = document["signature"]
    what = draw.draw(st.sampled_from(["proof", "root", "target", "index", "hidden"]))
    tampered = copy.deepcopy(document)
    sig = tampered["signature"]
    if what == "proof":
        i = draw.draw(st.integers(0, len(signature["proof"]) - 1))
        sig["proof"][i] = flip(sig["proof"][i])
        expected = "bad_proof"
    elif what == "root":
        sig["merkleRoot"] = flip(sig["merkleRoot"])
        expected = "bad_proof"
    elif what == "target":
        sig["targetHash"] = flip(sig["targetHash"])
        expected = "tampered"
    elif what == "index":
        sig["index"] = (sig["index"] + 1) % sig["treeSize"]
        expected = "bad_proof"
    else:
        tampered["privacy"]["obfuscatedData"].append("0" * 64)
        expected = "tampered"
    assert verify_integrity(tampered).code == expected


def flip(hex_hash: str) -> str:
    return ("1" if hex_hash[0] == "0" else "0") + hex_hash[1:]


def test_proof_elements_and_their_order_matter() -> None:
    wrapped = wrap_batch([{"n": i} for i in range(5)], salt=counter_salt())
    for document in wrapped:
        proof = document.to_json()["signature"]["proof"]
        variants = [proof[1:], [*proof, proof[0]]] + ([proof[::-1]] if len(proof) > 1 else [])
        for variant in variants:
            data = document.to_json()
            data["signature"]["proof"] = variant
            assert verify_integrity(data).code == "bad_proof"
    first, second = wrapped[0].to_json(), wrapped[1].to_json()
    first["signature"]["proof"] = second["signature"]["proof"]
    assert verify_integrity(first).code == "bad_proof"


# --------------------------------------------------------------------------- batches


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17])
def test_every_document_of_a_batch_has_a_proof(size: int) -> None:
    batch = [certificate(id=f"C-{i}") for i in range(size)]
    wrapped = wrap_batch(batch, salt=counter_salt())
    roots = {w.merkle_root for w in wrapped}
    assert len(roots) == 1
    targets = [bytes.fromhex(w.target_hash) for w in wrapped]
    assert roots == {merkle.merkle_root(targets).hex()} == {ref_mth(targets).hex()}
    for index, document in enumerate(wrapped):
        assert (document.index, document.tree_size) == (index, size)
        assert list(document.proof) == [node.hex() for node in ref_path(index, targets)]
        assert verify_integrity(document).ok
        assert unwrap(document) == batch[index]


def test_a_single_document_root_is_its_leaf_hash() -> None:
    document = wrap(certificate(), salt=counter_salt())
    assert document.proof == ()
    expected = hashlib.sha256(b"\x00" + bytes.fromhex(document.target_hash)).hexdigest()
    assert document.merkle_root == expected


def test_a_phantom_document_of_two_tree_nodes_does_not_verify() -> None:
    """The attack the RFC 6962 prefixes prevent (see the module docstring)."""
    wrapped = wrap_batch([{"n": i} for i in range(4)], salt=counter_salt())
    leaves = [merkle.leaf_hash(bytes.fromhex(w.target_hash)) for w in wrapped]
    left, right = leaves[0], leaves[1]
    phantom = {"version": wrapping.VERSION, "data": {},
               "signature": {"type": "SHA256MerkleProof",
                             "targetHash": ref_target([left.hex(), right.hex()]),
                             "proof": [merkle.node_hash(leaves[2], leaves[3]).hex()],
                             "merkleRoot": wrapped[0].merkle_root, "index": 0, "treeSize": 2},
               "privacy": {"obfuscatedData": [left.hex(), right.hex()]}}
    assert verify_integrity(phantom).code == "bad_proof"


# --------------------------------------------------------------------------- selective disclosure


@SETTINGS
@given(json_objects, st.data())
def test_obfuscating_any_subset_keeps_integrity_and_hides_the_fields(
        data: dict[str, Any], draw: st.DataObject) -> None:
    wrapped = wrap(data, salt=counter_salt())
    leaves = ref_flatten(wrapped.to_json()["data"])
    prefixes = sorted({".".join(p.split(".")[:i]) for p in leaves
                       for i in range(1, p.count(".") + 2)})
    chosen = draw.draw(st.lists(st.sampled_from(prefixes), min_size=1, max_size=4))
    hidden = {p for p in leaves if any(p == c or p.startswith(c + ".") for c in chosen)}
    # in one step or in two, the result verifies and hides exactly those fields
    once = obfuscate(wrapped, chosen)
    twice = obfuscate(wrapped, chosen[:1])
    left = ref_flatten(twice.to_json()["data"])
    rest = [c for c in chosen[1:] if any(p == c or p.startswith(c + ".") for p in left)]
    if rest:
        twice = obfuscate(twice, rest)
    for document in (once, twice):
        shipped = document.to_json()
        assert verify_integrity(shipped).ok
        assert document.target_hash == wrapped.target_hash
        assert ref_flatten(shipped["data"]) == {p: s for p, s in leaves.items()
                                                if p not in hidden}
        assert sorted(shipped["privacy"]["obfuscatedData"]) == sorted(
            ref_field_hash(p, leaves[p]) for p in hidden)
        text = json.dumps(shipped)
        for path in hidden:
            assert leaves[path].split(":", 1)[0] not in text  # its unique salt is gone
        assert unwrap(shipped) == ref_unwrap(shipped["data"])
    assert once.to_json() == ref_obfuscate(wrapped.to_json(), chosen)


def test_obfuscating_array_elements_keeps_the_other_paths() -> None:
    wrapped = wrapped_certificate()
    hidden = obfuscate(wrapped, ["attachments.0", "standards.1", "issuer.name"])
    shipped = hidden.to_json()
    assert shipped["data"]["attachments"][0] is None
    assert len(shipped["data"]["standards"]) == 1  # a trailing hidden element goes
    assert "name" not in shipped["data"]["issuer"]
    assert verify_integrity(shipped).ok
    data = unwrap(shipped)
    assert data["attachments"] == [{"filename": "photo.jpg", "type": "image/jpeg"}]
    assert data["standards"] == ["EN 60598-1:2015"]
    assert data["issuer"] == {"id": "tuv-sud"}
    everything = obfuscate(wrapped, list(certificate()))
    assert everything.data == {} and unwrap(everything) == {}
    assert verify_integrity(everything).ok


def test_obfuscate_refuses_unknown_paths() -> None:
    wrapped = wrapped_certificate()
    for paths in (["issuer.nmae"], ["attachments.5"], ["issuer.name.x"], [""], ["issu"]):
        with pytest.raises(DocumentError) as info:
            obfuscate(wrapped, paths)
        assert info.value.code == "unknown_path"
    once = obfuscate(wrapped, "issuer.name")
    with pytest.raises(DocumentError) as info:
        obfuscate(once, ["issuer.name"])
    assert info.value.code == "unknown_path"


def test_obfuscate_does_not_change_its_input() -> None:
    wrapped = wrapped_certificate()
    before = wrapped.to_json()
    obfuscate(wrapped, ["attachments", "issuer.name"])
    assert wrapped.to_json() == before


# --------------------------------------------------------------------------- malformed input

arbitrary = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=4) | st.integers(), children, max_size=4),
    max_leaves=12)


@SETTINGS
@given(arbitrary)
def test_verify_integrity_never_raises_on_garbage(value: Any) -> None:
    assert verify_integrity(value).code == "malformed"


@SETTINGS
@given(st.sampled_from(["version", "data", "signature", "privacy", "type", "targetHash",
                        "proof", "merkleRoot", "index", "treeSize", "obfuscatedData"]),
       arbitrary)
def test_verify_integrity_never_raises_on_a_corrupted_field(name: str, value: Any) -> None:
    document = wrapped_certificate().to_json()
    for obj in (document, document["signature"], document["privacy"]):
        if name in obj:
            obj[name] = value
    result = verify_integrity(document)
    assert result.code in wrapping.INTEGRITY_CODES
    verification = verify(document, anchor=None, issuer=None, now_ms=NOW)
    assert not verification.valid


def test_integrity_malformed_and_unsupported() -> None:
    document = wrapped_certificate().to_json()
    assert verify_integrity({**document, "version": "2.0"}).code == "unsupported"
    other = copy.deepcopy(document)
    other["signature"]["type"] = "SHA3MerkleProof"
    assert verify_integrity(other).code == "unsupported"
    assert verify_integrity({**document, "extra": 1}).code == "malformed"
    no_privacy = {k: v for k, v in document.items() if k != "privacy"}
    assert verify_integrity(no_privacy).ok
    bad_index = copy.deepcopy(document)
    bad_index["signature"]["index"] = 2
    assert verify_integrity(bad_index).code == "malformed"
    bool_index = copy.deepcopy(document)
    bool_index["signature"]["index"] = False
    assert verify_integrity(bool_index).code == "malformed"
    upper = copy.deepcopy(document)
    upper["signature"]["targetHash"] = upper["signature"]["targetHash"].upper()
    assert verify_integrity(upper).code == "malformed"
    deep = copy.deepcopy(document)
    node: Any = f"{salt_number(5)}:string:x"
    for _ in range(70):
        node = {"k": node}
    deep["data"]["deep"] = node
    assert verify_integrity(deep).code == "malformed"
    assert verify_integrity("not a document").code == "malformed"


def test_wrapped_document_checks_its_shape() -> None:
    document = wrapped_certificate()
    with pytest.raises(DocumentError):
        WrappedDocument(data=document.data, target_hash="xyz", merkle_root=document.merkle_root,
                        proof=(), index=0, tree_size=1)
    with pytest.raises(DocumentError):
        WrappedDocument(data=document.data, target_hash=document.target_hash,
                        merkle_root=document.merkle_root, proof=("0" * 64,) * 65,
                        index=0, tree_size=1)


# --------------------------------------------------------------------------- status


def status_of(document: Any, anchor: AnchorRecord | None, now: int = NOW) -> CheckResult:
    return verify(document, anchor=anchor, issuer=issuer_for(), now_ms=now).status


def test_status_ok() -> None:
    document = wrapped_certificate()
    result = status_of(document, anchor_for(document))
    assert result.ok and result.code == "ok", result
    assert "2027-12-31T23:00:00.000Z" in result.message


def test_status_not_anchored() -> None:
    document = wrapped_certificate()
    assert status_of(document, None).code == "not_anchored"
    other = wrap(certificate(), salt=counter_salt(500))
    assert status_of(document, anchor_for(other)).code == "not_anchored"
    assert status_of(document, anchor_for(document), now=T_ANCHOR - 1).code == "not_anchored"


def test_status_revoked_document_or_batch() -> None:
    document = wrapped_certificate()
    when = ms("2026-01-01T00:00:00Z")
    batch = anchor_for(document, revoked_at=when)
    assert status_of(document, batch).code == "revoked"
    assert status_of(document, batch, now=when - 1).ok  # not yet revoked back then
    single = anchor_for(document, revoked_targets={document.target_hash: when})
    result = status_of(document, single)
    assert result.code == "revoked" and document.target_hash in result.message
    sibling = wrap_batch([certificate(), certificate(id="CE-2025-0043")],
                         salt=counter_salt())[1]
    assert status_of(sibling, single).ok  # revoking one document spares its batch


def test_status_validity_window() -> None:
    document = wrapped_certificate()
    anchor = anchor_for(document, anchored_at=ms("2024-06-01T00:00:00Z"))
    assert status_of(document, anchor, now=ms("2024-12-31T23:59:59.999Z")).code == \
        "not_yet_valid"
    assert status_of(document, anchor, now=ms("2025-01-01T00:00:00Z")).ok
    until = ms("2028-01-01T00:00:00+01:00")
    assert status_of(document, anchor, now=until - 1).ok
    assert status_of(document, anchor, now=until).code == "expired"
    # the anchor's own window narrows the document's
    narrow = anchor_for(document, valid_until=ms("2026-01-01T00:00:00Z"))
    assert status_of(document, narrow).code == "expired"
    late = anchor_for(document, valid_from=ms("2027-01-01T00:00:00Z"))
    assert status_of(document, late).code == "not_yet_valid"


def test_status_when_validity_is_hidden() -> None:
    document = obfuscate(wrapped_certificate(), ["validUntil", "validFrom"])
    assert status_of(document, anchor_for(document)).code == "validity_undisclosed"
    half = anchor_for(document, valid_until=ms("2027-01-01T00:00:00Z"))
    assert status_of(document, half).code == "validity_undisclosed"
    windowed = anchor_for(document, valid_from=ms("2024-01-01T00:00:00Z"),
                          valid_until=ms("2027-01-01T00:00:00Z"))
    assert status_of(document, windowed).ok


def test_hiding_valid_from_never_makes_a_future_certificate_valid() -> None:
    """Found in review: a holder hid validFrom of a not-yet-valid certificate and the
    status turned ok."""
    future = wrapped_certificate(validFrom="2030-01-01T00:00:00Z",
                                 validUntil="2031-01-01T00:00:00Z")
    anchor = anchor_for(future)
    assert status_of(future, anchor, now=ms("2026-06-01T00:00:00Z")).code == \
        "not_yet_valid"
    hidden = obfuscate(future, ["validFrom"])
    assert status_of(hidden, anchor_for(hidden),
                     now=ms("2026-06-01T00:00:00Z")).code == "validity_undisclosed"


def test_status_invalid_data() -> None:
    document = wrapped_certificate(validUntil="31/12/2027")
    result = status_of(document, anchor_for(document))
    assert result.code == "invalid_data" and "validUntil" in result.message
    document = wrapped_certificate(validFrom=20250101)
    assert status_of(document, anchor_for(document)).code == "invalid_data"


def test_malformed_document_fails_every_check() -> None:
    verification = verify({"data": 1}, anchor=None, issuer=None, now_ms=NOW)
    assert [verification.integrity.code, verification.status.code,
            verification.issuer.code] == ["malformed"] * 3
    assert not verification.valid
    with pytest.raises(DocumentError) as info:
        verify(wrapped_certificate(), anchor=None, issuer=None, now_ms="now")  # type: ignore[arg-type]
    assert info.value.code == "bad_time"


# --------------------------------------------------------------------------- issuer


def issuer_check(document: WrappedDocument, issuer: IssuerRecord | None,
                 anchor: AnchorRecord | None = None) -> CheckResult:
    anchor = anchor_for(document) if anchor is None else anchor
    return verify(document, anchor=anchor, issuer=issuer, now_ms=NOW).issuer


def accreditation(**changes: Any) -> dict[str, Any]:
    entry = dict(issuer_state()["accreditations"][0])
    entry.update(changes)
    return entry


def test_issuer_ok() -> None:
    document = wrapped_certificate()
    result = issuer_check(document, issuer_for())
    assert result.ok and "DAkkS-D-ZE-12024" in result.message
    assert issuer_check(document, issuer_for(accreditations=[
        accreditation(scopes=["*"])])).ok
    assert issuer_check(wrapped_certificate(scope="EA-19"), issuer_for()).ok


def test_issuer_not_anchored_unknown_or_mismatched() -> None:
    document = wrapped_certificate()
    assert verify(document, anchor=None, issuer=issuer_for(),
                  now_ms=NOW).issuer.code == "not_anchored"
    assert issuer_check(document, None).code == "unknown_issuer"
    assert issuer_check(document, issuer_for(org="bureau-veritas")).code == "issuer_mismatch"
    forged = wrapped_certificate(issuer={"id": "bureau-veritas", "name": "BV"})
    result = issuer_check(forged, issuer_for())
    assert result.code == "issuer_mismatch" and "bureau-veritas" in result.message
    elsewhere = anchor_for(document, issuer="shenzhen-lighting")
    assert issuer_check(document, issuer_for(org="shenzhen-lighting"),
                        elsewhere).code == "issuer_mismatch"


def test_issuer_must_be_a_certification_body() -> None:
    document = wrapped_certificate()
    result = issuer_check(document, issuer_for(roles=["merchant", "manufacturer"]))
    assert result.code == "not_certification_body"


def test_issuer_accreditation_at_issue_time() -> None:
    document = wrapped_certificate()
    cases = {
        "no accreditation": [],
        "other type": [accreditation(types=["ORGANIC"])],
        "not yet accredited": [accreditation(valid_from=T_ANCHOR + 1)],
        "expired before issue": [accreditation(valid_until=T_ANCHOR)],
        "revoked before issue": [accreditation(revoked_at=T_ANCHOR)],
    }
    for name, accreditations in cases.items():
        result = issuer_check(document, issuer_for(accreditations=accreditations))
        assert result.code == "not_accredited", name
    # revoked or lapsed *after* issue: the certificate issued before stays good
    later = [accreditation(valid_until=T_ANCHOR + 1, revoked_at=T_ANCHOR + 1)]
    assert issuer_check(document, issuer_for(accreditations=later)).ok
    # an old accreditation, since replaced, still covers what was issued under it
    history = [accreditation(id="old", valid_until=T_ANCHOR + 1),
               accreditation(id="new", valid_from=T_ANCHOR + 1, types=["ORGANIC"])]
    result = issuer_check(document, issuer_for(accreditations=history))
    assert result.ok and "old" in result.message


def test_issuer_accreditation_scope() -> None:
    document = wrapped_certificate(scope="EA-29/LVD")
    assert issuer_check(document, issuer_for()).code == "accreditation_scope"
    prefix_trap = wrapped_certificate(scope="EA-190")
    assert issuer_check(prefix_trap, issuer_for()).code == "accreditation_scope"
    other_type = wrapped_certificate(type="ISO9001", scope="EA-18")
    assert issuer_check(other_type, issuer_for()).ok


def test_issuer_fields_must_be_disclosed_and_well_typed() -> None:
    document = wrapped_certificate()
    for path in ("issuer.id", "issuer", "type", "scope"):
        result = issuer_check(obfuscate(document, [path]), issuer_for())
        assert result.code == "undisclosed" and path.split(".")[0] in result.message
    assert issuer_check(obfuscate(document, ["issuer.name"]), issuer_for()).ok
    numeric = wrapped_certificate(issuer={"id": 42, "name": "x"})
    assert issuer_check(numeric, issuer_for()).code == "invalid_data"


# --------------------------------------------------------------------------- verification


def test_valid_only_if_all_three_checks_pass() -> None:
    document = wrapped_certificate()
    anchor, issuer = anchor_for(document), issuer_for()
    good = verify(document, anchor=anchor, issuer=issuer, now_ms=NOW)
    assert good.valid and good.to_json()["valid"] is True
    assert set(good.to_json()) == {"valid", "integrity", "status", "issuer"}
    tampered = document.to_json()
    tampered["data"]["scope"] = changed_value(tampered["data"]["scope"])
    bad_integrity = verify(tampered, anchor=anchor, issuer=issuer, now_ms=NOW)
    assert not bad_integrity.valid and bad_integrity.integrity.code == "tampered"
    bad_status = verify(document, anchor=anchor, issuer=issuer, now_ms=ms("2029-01-01T00:00:00Z"))
    assert not bad_status.valid and bad_status.integrity.ok and bad_status.issuer.ok
    bad_issuer = verify(document, anchor=anchor, issuer=None, now_ms=NOW)
    assert not bad_issuer.valid and bad_issuer.integrity.ok and bad_issuer.status.ok


def test_a_disclosed_subset_still_verifies() -> None:
    document = obfuscate(wrapped_certificate(), ["attachments", "priceEur", "subject.name",
                                                 "issuer.name", "standards.0"])
    verification = verify(document.to_json(), anchor=anchor_for(document),
                          issuer=issuer_for(), now_ms=NOW)
    assert verification.valid, verification


def test_every_code_is_reachable() -> None:
    """Each documented code is produced by some scenario above (a summary check)."""
    document = wrapped_certificate()
    anchor = anchor_for(document)
    soon = wrapped_certificate(validUntil="soon")
    produced = {
        "integrity": {
            verify_integrity(document).code,
            verify_integrity({}).code,
            verify_integrity({**document.to_json(), "version": "x"}).code,
            verify_integrity({**document.to_json(), "privacy": {
                "obfuscatedData": ["0" * 64]}}).code,
            verify_integrity(WrappedDocument(
                data=document.data, target_hash=document.target_hash,
                merkle_root="0" * 64, proof=document.proof, index=0, tree_size=2)).code,
        },
        "status": {
            status_of(document, anchor).code,
            status_of({}, anchor).code,
            status_of(document, None).code,
            status_of(document, anchor_for(document, revoked_at=T_ANCHOR)).code,
            status_of(document, anchor_for(document, anchored_at=ms("2024-06-01T00:00:00Z")),
                      now=ms("2024-07-01T00:00:00Z")).code,
            status_of(document, anchor, now=ms("2030-01-01T00:00:00Z")).code,
            status_of(obfuscate(document, ["validUntil"]), anchor).code,
            status_of(soon, anchor_for(soon)).code,
        },
        "issuer": {
            issuer_check(document, issuer_for()).code,
            verify({}, anchor=anchor, issuer=None, now_ms=NOW).issuer.code,
            verify(document, anchor=None, issuer=None, now_ms=NOW).issuer.code,
            issuer_check(document, None).code,
            issuer_check(document, issuer_for(org="x")).code,
            issuer_check(document, issuer_for(roles=["merchant"])).code,
            issuer_check(document, issuer_for(accreditations=[])).code,
            issuer_check(wrapped_certificate(scope="EA-01"), issuer_for()).code,
            issuer_check(obfuscate(document, ["type"]), issuer_for()).code,
            issuer_check(wrapped_certificate(scope=7), issuer_for()).code,
        },
    }
    assert produced["integrity"] == wrapping.INTEGRITY_CODES
    assert produced["status"] == documents.STATUS_CODES
    assert produced["issuer"] == documents.ISSUER_CODES


# --------------------------------------------------------------------------- state records


def test_anchor_record_from_state() -> None:
    record = AnchorRecord.from_state({"merkle_root": "ab" * 32, "issuer": "cqc",
                                      "anchored_at": 5, "valid_from": None,
                                      "revoked_targets": {"cd" * 32: 9}, "label": "ignored"})
    assert record == AnchorRecord(merkle_root="ab" * 32, issuer="cqc", anchored_at=5,
                                  revoked_targets={"cd" * 32: 9})


@pytest.mark.parametrize("changes", [
    {"merkle_root": "AB" * 32}, {"merkle_root": None}, {"issuer": ""}, {"anchored_at": "5"},
    {"anchored_at": True}, {"anchored_at": 2**53}, {"revoked_at": 1.5},
    {"revoked_targets": []}, {"revoked_targets": {"xy": 1}},
    {"revoked_targets": {"cd" * 32: None}}, {"valid_until": "2027"},
])
def test_anchor_record_refuses_bad_state(changes: dict[str, Any]) -> None:
    state = {"merkle_root": "ab" * 32, "issuer": "cqc", "anchored_at": 5, **changes}
    with pytest.raises(DocumentError) as info:
        AnchorRecord.from_state(state)
    assert info.value.code == "bad_record"
    with pytest.raises(DocumentError):
        AnchorRecord.from_state([])  # type: ignore[arg-type]


def test_issuer_record_from_state() -> None:
    record = issuer_for()
    assert record.org == "tuv-sud" and record.roles == frozenset({"certifier"})
    (entry,) = record.accreditations
    assert entry.types == frozenset({"CE", "ISO9001"}) and entry.scopes == ("EA-19", "EA-18")
    assert entry.revoked_at is None and entry.id == "DAkkS-D-ZE-12024"
    minimal = IssuerRecord.from_state({"org": "x", "roles": []})
    assert minimal.accreditations == ()
    unnamed = IssuerRecord.from_state(issuer_state(accreditations=[
        {"types": ["CE"], "scopes": ["*"], "valid_from": 0}]))
    assert unnamed.accreditations[0].id == "#0"


@pytest.mark.parametrize("changes", [
    {"org": 1}, {"roles": "certifier"}, {"roles": [""]}, {"accreditations": {}},
    {"accreditations": ["x"]}, {"accreditations": [{"id": "a", "types": ["CE"]}]},
    {"accreditations": [accreditation(valid_from=None)]},
    {"accreditations": [accreditation(types="CE")]},
    {"accreditations": [accreditation(revoked_at="now")]},
    {"accreditations": [accreditation(id="")]},
])
def test_issuer_record_refuses_bad_state(changes: dict[str, Any]) -> None:
    with pytest.raises(DocumentError) as info:
        IssuerRecord.from_state(issuer_state(**changes))
    assert info.value.code == "bad_record"


if __name__ == "__main__":  # regenerate the vector (only for an intended format change)
    VECTORS_PATH.parent.mkdir(exist_ok=True)
    VECTORS_PATH.write_text(json.dumps(build_vector(), indent=1, ensure_ascii=False) + "\n",
                            "utf-8")
    print(f"wrote {VECTORS_PATH}")
