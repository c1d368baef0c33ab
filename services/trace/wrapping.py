"""Wrapping data as verifiable documents in the TradeTrust / OpenAttestation manner:
salt and hash every value, roll the hashes up into a *target hash* and a batch of
target hashes up into one *Merkle root* (which the issuer anchors on the chain); hide
fields without breaking the check (selective disclosure); check a document's integrity.
What a document proves against the chain is :mod:`services.trace.documents`'s.

This is OpenAttestation v2's construction (``open-attestation`` ``src/2.0``:
``salt.ts``, ``digest.ts``, ``obfuscate.ts``) with two deliberate changes:

* **SHA-256 instead of keccak256** everywhere. The chain hashes everything with
  SHA-256 (``services.ledger.core.encoding``) and these documents are checked
  against our chain's state, never by an Ethereum document-store contract, so
  keccak256 would only add a second hash function (and a dependency) for no
  verifier that needs it. The signature type says so: ``SHA256MerkleProof``
  (OA v2 writes ``SHA3MerkleProof``). OA tooling therefore cannot verify these
  documents, and is not meant to.
* **The batch tree is RFC 6962's** (``services.ledger.core.merkle``), not OA's
  sorted-pair tree. The chain already proves transactions with that tree, so
  there is one audited Merkle construction in the system; and its distinct
  leaf and node prefixes (``0x00`` / ``0x01``) keep a target hash from ever
  being taken for an interior node. OA's unprefixed sorted-pair tree lacks
  that: its target hash of a document with two (visible or obfuscated) field
  hashes ``a, b`` has the same shape as the interior node over ``a, b``, so a
  "document" made only of two obfuscated interior-node hashes would pass OA's
  integrity check as a phantom member of the batch. The price is that a proof
  needs the leaf's position: the signature carries ``index`` and
  ``treeSize`` besides OA's ``proof`` array. They only steer the path: thanks
  to the prefixes any path that reaches the root is a real path, so a changed
  ``treeSize`` that still verifies proves the same membership. They disclose
  the batch size, which OA's proof length discloses roughly too.

The steps, exactly (the test vector ``tests/trace/vectors/documents.json``
pins them):

1. **Leaves.** The data is walked depth-first, object keys in code-point
   order, array elements in index order. Every scalar, and every *empty*
   object or array, is a leaf; its *path* is the dotted list of keys and array
   indices from the root, as OA's ``flatten`` writes it: ``issuer.id``,
   ``attachments.0.filename``. To keep paths unambiguous object keys must be
   non-empty ASCII, contain no ``.`` and not be all digits (so a digit segment
   is always an array index). Values are inside the chain's canonical JSON
   profile: no floats (a decimal is a string, ``"12.50"``), integers within
   ``±(2**53 - 1)``.
2. **Salting.** Each leaf value is replaced by the string
   ``<salt>:<type>:<value>`` with ``type`` one of ``string``, ``number``
   (an integer in decimal), ``boolean`` (``true``/``false``), ``null``
   (``null``), ``object`` (``{}``, an empty object) or ``array`` (``[]``, an
   empty array). The salt comes from the injected ``salt`` function, once per
   leaf in walk order, documents of a batch in order; it must be 16 to 128
   characters of ``[A-Za-z0-9_-]`` (a UUID v4 string fits) and fresh for every
   leaf (a reused salt is refused: disclosing one field would then hand out
   the salt of the hidden ones). This module never draws randomness itself;
   the SDK passes ``lambda: str(uuid.uuid4())`` (``os.urandom``).
3. **Field hashes.** ``SHA-256(canonical JSON of {path: saltedValue})``, as
   lowercase hex. For a one-key object with an ASCII key our canonical JSON is
   byte for byte what OA's ``JSON.stringify`` gives.
4. **Target hash.** ``SHA-256(canonical JSON of the sorted array of all field
   hashes)``, the visible fields' and ``privacy.obfuscatedData``'s together,
   as OA v2's ``digestDocument`` does (``keccak256(JSON.stringify(sorted))``).
   Hashing the JSON array rather than the raw concatenation keeps OA's bytes
   and separates the input from field hashes (``{...}``) and tree nodes.
5. **Merkle root.** The RFC 6962 Merkle Tree Hash of the batch's target hashes
   (32-byte leaves) in batch order; each document carries its inclusion proof.

A wrapped document (:meth:`WrappedDocument.to_json`)::

    {"version": "ecosphere.verifiable-document/v1",
     "data": {<the data, every leaf replaced by its salted string>},
     "signature": {"type": "SHA256MerkleProof", "targetHash": <hex>,
                   "proof": [<hex>, ...], "merkleRoot": <hex>,
                   "index": <int>, "treeSize": <int>},
     "privacy": {"obfuscatedData": [<hex>, ...]}}

**Selective disclosure** (:func:`obfuscate`) removes fields from ``data`` and
appends their field hashes to ``privacy.obfuscatedData``. A removed object
member disappears; a removed array element becomes ``null`` (so the indices,
and thus the paths, of the others do not move), trailing ``null`` s are
dropped, and a container left empty is removed in turn. A wrapped document's
data therefore holds only non-empty objects, non-empty arrays not ending in
``null``, ``null`` placeholders inside arrays and salted strings; anything else
(an added empty object, say, which would hash to nothing) is malformed.
:func:`unwrap` restores the visible values, types preserved, and skips hidden
ones (arrays close up over hidden elements).

This module is pure: it must never do I/O, read the clock or draw randomness (salts are
injected), and never read chain state.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from services.ledger.core import merkle
from services.ledger.core.encoding import DEPTH_MAX, INT_MAX, INT_MIN, encode
from services.ledger.core.errors import EncodingError, Rejected

__all__ = [
    "INTEGRITY_CODES",
    "SIGNATURE_TYPE",
    "VERSION",
    "CheckResult",
    "failed",
    "passed",
    "DocumentError",
    "IntegrityResult",
    "WrappedDocument",
    "as_document",
    "check_json",
    "field_hash",
    "obfuscate",
    "read_document",
    "unwrap",
    "verify_integrity",
    "wrap",
    "wrap_batch",
]

VERSION: Final = "ecosphere.verifiable-document/v1"
SIGNATURE_TYPE: Final = "SHA256MerkleProof"
INTEGRITY_CODES: Final = frozenset({"ok", "malformed", "unsupported", "tampered", "bad_proof"})

_SALT_RE: Final = re.compile(r"[A-Za-z0-9_-]{16,128}")
_INT_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]*)")
_HEX64_RE: Final = re.compile(r"[0-9a-f]{64}")
_DIGITS_RE: Final = re.compile(r"[0-9]+")
_DOCUMENT_KEYS: Final = frozenset({"version", "data", "signature", "privacy"})
_SIGNATURE_KEYS: Final = frozenset({
    "type", "targetHash", "proof", "merkleRoot", "index", "treeSize",
})


class DocumentError(Rejected):
    """A document, its data or a state record is not acceptable; ``code`` says why."""

    code = "bad_document"


def _fail(code: str, message: str) -> DocumentError:
    return DocumentError(message, code=code)


# --------------------------------------------------------------------------- JSON profile


def _check_text(text: str, where: str, code: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _fail(code, f"{where}: string is not valid Unicode (lone surrogate)") from exc


def _check_key(key: object, where: str, code: str) -> str:
    if not isinstance(key, str) or not key or not key.isascii():
        raise _fail(code, f"{where}: object key {key!r} must be a non-empty ASCII string")
    if "." in key or _DIGITS_RE.fullmatch(key):
        raise _fail(code, f"{where}: object key {key!r} must not contain '.' or be all digits")
    return key


def _join(prefix: str, segment: str) -> str:
    return f"{prefix}.{segment}" if prefix else segment


def check_json(node: object, path: str, depth_left: int) -> None:
    """Raise :class:`DocumentError` unless ``node`` is plain data a document may hold."""
    where = path or "data"
    if isinstance(node, float):
        raise _fail("float_not_allowed",
                    f"{where}: floating-point number {node!r}; write decimals as strings")
    if node is None or isinstance(node, bool):
        return
    if isinstance(node, int):
        if not INT_MIN <= node <= INT_MAX:
            raise _fail("integer_out_of_range", f"{where}: integer outside ±(2**53 - 1)")
        return
    if isinstance(node, str):
        _check_text(node, where, "not_json")
        return
    if depth_left <= 0:
        raise _fail("too_deep", f"{where}: nested deeper than {DEPTH_MAX}")
    if isinstance(node, Mapping):
        for key, value in node.items():
            check_json(value, _join(path, _check_key(key, where, "bad_key")), depth_left - 1)
        return
    if isinstance(node, list | tuple):
        for index, value in enumerate(node):
            check_json(value, _join(path, str(index)), depth_left - 1)
        return
    raise _fail("not_json", f"{where}: {type(node).__name__} is not a JSON value")


# --------------------------------------------------------------------------- salting


def _typed(value: object) -> str:
    """``<type>:<value>`` of a leaf (already checked by :func:`check_json`)."""
    if value is None:
        return "null:null"
    if value is True:
        return "boolean:true"
    if value is False:
        return "boolean:false"
    if isinstance(value, int):
        return f"number:{value}"
    if isinstance(value, str):
        return f"string:{value}"
    if isinstance(value, Mapping):
        return "object:{}"
    return "array:[]"


def _salt_tree(node: object, draw: Callable[[], str], top: bool = False) -> Any:
    if isinstance(node, Mapping) and (node or top):
        return {key: _salt_tree(node[key], draw) for key in sorted(node)}
    if isinstance(node, list | tuple) and node:
        return [_salt_tree(item, draw) for item in node]
    return f"{draw()}:{_typed(node)}"


def _unsalt(text: str, path: str) -> Any:
    """The value of a salted string; :class:`DocumentError` ``malformed`` if it is not one.

    Strict: only the exact strings :func:`_typed` writes are accepted, so a value
    has one salted form.
    """
    salt, sep, rest = text.partition(":")
    kind, sep2, value = rest.partition(":")
    if not (sep and sep2 and _SALT_RE.fullmatch(salt)):
        raise _fail("malformed", f"{path}: not a salted value '<salt>:<type>:<value>'")
    if kind == "string":
        return value
    if kind == "number" and _INT_RE.fullmatch(value) and value != "-0":
        number = int(value)
        if INT_MIN <= number <= INT_MAX:
            return number
    elif kind == "boolean" and value in ("true", "false"):
        return value == "true"
    elif kind == "null" and value == "null":
        return None
    elif kind == "object" and value == "{}":
        return {}
    elif kind == "array" and value == "[]":
        return []
    raise _fail("malformed", f"{path}: bad salted value of type {kind!r}")


def field_hash(path: str, salted: str) -> str:
    """A field's hash: ``SHA-256(canonical JSON of {path: salted})`` in lowercase hex."""
    try:
        return hashlib.sha256(encode({path: salted})).hexdigest()
    except EncodingError as exc:
        raise _fail("malformed", f"{path}: {exc}") from exc


def _target_hash(field_hashes: Iterable[str]) -> str:
    return hashlib.sha256(encode(sorted(field_hashes))).hexdigest()


# --------------------------------------------------------------------------- wrapped form


@dataclass(frozen=True, slots=True)
class WrappedDocument:
    """A wrapped (salted, hashed, batched) document.

    ``data`` is the salted data (treat it as immutable); hashes are lowercase
    hex. Construction checks the shape of everything but ``data``, which is
    checked where it is read (:func:`verify_integrity`, :func:`unwrap`,
    :func:`obfuscate`); :class:`DocumentError` otherwise.
    """

    data: dict[str, Any]
    target_hash: str
    merkle_root: str
    proof: tuple[str, ...]
    index: int
    tree_size: int
    obfuscated_data: tuple[str, ...] = ()
    version: str = VERSION

    def __post_init__(self) -> None:
        if self.version != VERSION:
            raise _fail("unsupported", f"version {self.version!r} is not {VERSION!r}")
        if not isinstance(self.data, dict):
            raise _fail("malformed", "data must be an object")
        for name, value in (("targetHash", self.target_hash), ("merkleRoot", self.merkle_root)):
            _check_hex(value, name)
        for name, values in (("proof", self.proof), ("obfuscatedData", self.obfuscated_data)):
            if not isinstance(values, tuple):
                raise _fail("malformed", f"{name} must be a tuple of hashes")
            for position, value in enumerate(values):
                _check_hex(value, f"{name}[{position}]")
        if len(self.proof) > merkle.MAX_PROOF_LENGTH:
            raise _fail("malformed", f"proof longer than {merkle.MAX_PROOF_LENGTH}")
        for name, number in (("index", self.index), ("treeSize", self.tree_size)):
            if type(number) is not int or not 0 <= number <= INT_MAX:
                raise _fail("malformed", f"{name} must be a non-negative integer")
        if self.index >= self.tree_size:
            raise _fail("malformed", "index must be less than treeSize")

    def to_json(self) -> dict[str, Any]:
        """The document as JSON (a fresh copy), the form that is stored and shared."""
        return {
            "version": self.version,
            "data": copy.deepcopy(self.data),
            "signature": {
                "type": SIGNATURE_TYPE,
                "targetHash": self.target_hash,
                "proof": list(self.proof),
                "merkleRoot": self.merkle_root,
                "index": self.index,
                "treeSize": self.tree_size,
            },
            "privacy": {"obfuscatedData": list(self.obfuscated_data)},
        }

    @classmethod
    def from_json(cls, obj: object) -> WrappedDocument:
        """Parse :meth:`to_json`'s form (``privacy`` may be absent); strict on unknown keys."""
        if not isinstance(obj, Mapping):
            raise _fail("malformed", "a wrapped document must be an object")
        keys = set(obj)
        if not {"version", "data", "signature"} <= keys <= _DOCUMENT_KEYS:
            raise _fail("malformed", f"wrapped document: fields {sorted(map(str, keys))}, "
                                     f"expected {sorted(_DOCUMENT_KEYS)}")
        signature = obj["signature"]
        if not isinstance(signature, Mapping) or set(signature) != _SIGNATURE_KEYS:
            raise _fail("malformed", f"signature must be an object with {sorted(_SIGNATURE_KEYS)}")
        if signature["type"] != SIGNATURE_TYPE:
            raise _fail("unsupported", f"signature type {signature['type']!r} "
                                       f"is not {SIGNATURE_TYPE!r}")
        privacy = obj.get("privacy", {"obfuscatedData": []})
        if not isinstance(privacy, Mapping) or set(privacy) != {"obfuscatedData"}:
            raise _fail("malformed", "privacy must be an object with obfuscatedData only")
        proof = signature["proof"]
        hidden = privacy["obfuscatedData"]
        if not isinstance(proof, list) or not isinstance(hidden, list):
            raise _fail("malformed", "proof and obfuscatedData must be arrays")
        if not isinstance(obj["data"], dict):
            raise _fail("malformed", "data must be an object")
        return cls(
            data=copy.deepcopy(obj["data"]),
            target_hash=signature["targetHash"],
            merkle_root=signature["merkleRoot"],
            proof=tuple(proof),
            index=signature["index"],
            tree_size=signature["treeSize"],
            obfuscated_data=tuple(hidden),
            version=obj["version"],
        )


def _check_hex(value: object, name: str) -> None:
    if not isinstance(value, str) or not _HEX64_RE.fullmatch(value):
        raise _fail("malformed", f"{name} must be 64 lowercase hex digits")


def as_document(document: object) -> WrappedDocument:
    """``document`` as a :class:`WrappedDocument` (parsed from its JSON form if need be)."""
    if isinstance(document, WrappedDocument):
        return document
    return WrappedDocument.from_json(document)


def _walk(node: object, path: str, depth_left: int, leaves: list[tuple[str, str]],
          top: bool = False) -> Any:
    """Check salted data, collect its ``(path, salted)`` leaves in walk order and
    return the restored (unsalted) value; hidden array elements are skipped."""
    where = path or "data"
    if isinstance(node, str):
        _check_text(node, where, "malformed")
        value = _unsalt(node, where)
        leaves.append((path, node))
        return value
    if depth_left <= 0:
        raise _fail("malformed", f"{where}: nested deeper than {DEPTH_MAX}")
    if isinstance(node, dict):
        if not node and not top:
            raise _fail("malformed", f"{where}: empty object (an empty value is salted)")
        keys = sorted(_check_key(key, where, "malformed") for key in node)
        return {key: _walk(node[key], _join(path, key), depth_left - 1, leaves) for key in keys}
    if isinstance(node, list):
        if not node or node[-1] is None:
            raise _fail("malformed", f"{where}: empty array or trailing null placeholder")
        return [_walk(item, _join(path, str(index)), depth_left - 1, leaves)
                for index, item in enumerate(node) if item is not None]
    raise _fail("malformed", f"{where}: {type(node).__name__} where a salted string, "
                             "object or array belongs")


def read_document(document: WrappedDocument) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The visible data of ``document`` (values restored) and its ``(path, salted)``
    leaves in walk order; :class:`DocumentError` ``malformed`` if it is not well formed."""
    leaves: list[tuple[str, str]] = []
    data = _walk(document.data, "", DEPTH_MAX, leaves, top=True)
    return data, leaves


# --------------------------------------------------------------------------- wrap / unwrap


def wrap(data: Mapping[str, Any], *, salt: Callable[[], str]) -> WrappedDocument:
    """Wrap one document (a batch of one: its Merkle root is ``leaf_hash(targetHash)``)."""
    return wrap_batch([data], salt=salt)[0]


def wrap_batch(documents: Sequence[Mapping[str, Any]], *,
               salt: Callable[[], str]) -> list[WrappedDocument]:
    """Wrap a batch of documents under one Merkle root, in the given order.

    ``salt`` is called once per leaf (see the module docstring for the order)
    and must return a fresh string of 16 to 128 ``[A-Za-z0-9_-]``. Raises
    :class:`DocumentError`: ``empty_batch``, ``not_object``, ``empty_document``
    (no fields: its target hash would be a constant shared by every empty
    document, so it could be neither told apart nor revoked alone),
    ``float_not_allowed``, ``integer_out_of_range``, ``bad_key``, ``not_json``,
    ``too_deep``, ``bad_salt``, ``salt_reused``.
    """
    if isinstance(documents, Mapping) or not documents:
        raise _fail("empty_batch", "wrap_batch takes a non-empty sequence of documents")
    for position, data in enumerate(documents):
        if not isinstance(data, Mapping):
            raise _fail("not_object", f"document {position}: data must be a JSON object")
        if not data:
            raise _fail("empty_document", f"document {position} has no fields")
        check_json(data, "", DEPTH_MAX)

    seen: set[str] = set()

    def draw() -> str:
        value = salt()
        if not isinstance(value, str) or not _SALT_RE.fullmatch(value):
            raise _fail("bad_salt", f"salt {value!r} is not 16..128 of [A-Za-z0-9_-]")
        if value in seen:
            raise _fail("salt_reused", f"salt {value!r} was drawn twice")
        seen.add(value)
        return value

    salted = [_salt_tree(data, draw, top=True) for data in documents]
    targets: list[str] = []
    for item in salted:
        leaves: list[tuple[str, str]] = []
        _walk(item, "", DEPTH_MAX, leaves, top=True)
        targets.append(_target_hash(field_hash(path, value) for path, value in leaves))
    leaf_hashes = [merkle.leaf_hash(bytes.fromhex(target)) for target in targets]
    root = merkle.merkle_root_from_hashes(leaf_hashes).hex()
    proofs = merkle.inclusion_proofs(leaf_hashes, range(len(targets)))
    return [
        WrappedDocument(data=item, target_hash=target, merkle_root=root,
                        proof=tuple(node.hex() for node in proof), index=index,
                        tree_size=len(targets))
        for index, (item, target, proof) in enumerate(zip(salted, targets, proofs, strict=True))
    ]


def unwrap(document: WrappedDocument | Mapping[str, Any]) -> dict[str, Any]:
    """The document's visible data with the original values and types.

    Hidden fields are skipped (an array closes up over its hidden elements).
    Does not check integrity. Raises :class:`DocumentError` (``malformed``,
    ``unsupported``) if the document is not well formed.
    """
    data, _ = read_document(as_document(document))
    return data


def obfuscate(document: WrappedDocument | Mapping[str, Any],
              paths: str | Iterable[str]) -> WrappedDocument:
    """Hide fields: remove them from ``data`` and append their field hashes to
    ``privacy.obfuscatedData``; the target hash still verifies.

    A path names a leaf (``issuer.name``) or a whole object or array
    (``issuer``, ``attachments.1``), with the dotted syntax of the field paths.
    Raises :class:`DocumentError` ``unknown_path`` for a path that names no
    visible field (a typo must not leave a field disclosed silently), and
    ``malformed`` for a malformed document.
    """
    doc = as_document(document)
    _, leaves = read_document(doc)
    targets = [paths] if isinstance(paths, str) else list(paths)
    for target in targets:
        if not isinstance(target, str) or not target:
            raise _fail("unknown_path", f"path {target!r} must be a non-empty string")

    def hidden(path: str) -> bool:
        return any(path == t or path.startswith(t + ".") for t in targets)

    for target in targets:
        if not any(path == target or path.startswith(target + ".") for path, _ in leaves):
            raise _fail("unknown_path", f"no visible field at {target!r}")
    new_hashes = tuple(field_hash(path, value) for path, value in leaves if hidden(path))
    data = _prune(doc.data, "", hidden)
    return WrappedDocument(
        data=data if isinstance(data, dict) else {},
        target_hash=doc.target_hash, merkle_root=doc.merkle_root, proof=doc.proof,
        index=doc.index, tree_size=doc.tree_size,
        obfuscated_data=doc.obfuscated_data + new_hashes, version=doc.version,
    )


_GONE: Final = object()


def _prune(node: Any, path: str, hidden: Callable[[str], bool]) -> Any:
    """``node`` without the hidden leaves (a fresh copy); :data:`_GONE` if nothing is left."""
    if isinstance(node, str):
        return _GONE if hidden(path) else node
    if isinstance(node, dict):
        kept = {key: _prune(value, _join(path, key), hidden) for key, value in node.items()}
        result = {key: value for key, value in kept.items() if value is not _GONE}
        return result if result else _GONE
    items: list[Any] = []
    for index, item in enumerate(node):
        pruned = None if item is None else _prune(item, _join(path, str(index)), hidden)
        items.append(None if pruned is _GONE else pruned)
    while items and items[-1] is None:
        items.pop()
    return items if items else _GONE


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check: ``code`` is a stable string, ``message`` is for people."""

    ok: bool
    code: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "code": self.code, "message": self.message}


IntegrityResult: TypeAlias = CheckResult


def passed(message: str) -> CheckResult:
    return CheckResult(True, "ok", message)


def failed(code: str, message: str) -> CheckResult:
    return CheckResult(False, code, message)


def verify_integrity(document: object) -> IntegrityResult:
    """Whether the document's fields hash to its target hash and its proof leads
    to its Merkle root. Never raises: malformed input gives ``malformed`` or
    ``unsupported``."""
    try:
        doc = as_document(document)
        _, leaves = read_document(doc)
        hashes = [field_hash(path, value) for path, value in leaves]
        target = _target_hash([*hashes, *doc.obfuscated_data])
    except DocumentError as exc:
        code = "unsupported" if exc.code == "unsupported" else "malformed"
        return failed(code, exc.message)
    if target != doc.target_hash:
        return failed("tampered", f"the fields hash to {target}, not to targetHash "
                                f"{doc.target_hash}")
    proven = merkle.verify_inclusion(
        merkle.leaf_hash(bytes.fromhex(target)), doc.index, doc.tree_size,
        [bytes.fromhex(node) for node in doc.proof], bytes.fromhex(doc.merkle_root))
    if not proven:
        return failed("bad_proof", f"the proof does not lead from targetHash {target} "
                                 f"to merkleRoot {doc.merkle_root}")
    return passed(f"{len(hashes)} visible and {len(doc.obfuscated_data)} obfuscated fields "
               f"hash to targetHash {target}, which is in the tree of {doc.merkle_root}")
