"""Verifiable certificates in the TradeTrust / OpenAttestation manner.

A product certificate (CE, CCC, ISO 9001, organic, origin, a test report, ...)
is issued by an accredited certification body as a *verifiable document*: a
JSON object whose every value is salted and hashed, whose hashes roll up into
one *target hash*, and whose batch of target hashes rolls up into one *Merkle
root* that the issuer anchors on the chain. Anyone holding the document checks
it against the chain without asking the issuer, and the holder can hide fields
(selective disclosure) without breaking the check.

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

**Verification** is three separate checks (:func:`verify`):

* *integrity* (:func:`verify_integrity`): the fields and ``obfuscatedData``
  hash to ``targetHash`` and the proof leads from it to ``merkleRoot``.
  Codes: ``ok``, ``malformed``, ``unsupported``, ``tampered``, ``bad_proof``.
* *status*: the Merkle root is anchored (and was by ``now_ms``), neither the
  batch nor this document is revoked, and ``now_ms`` lies in the validity
  window: ``validFrom``/``validUntil`` (RFC 3339) of the visible data and the
  anchor record's own window, when it has one, intersected. Codes: ``ok``,
  ``malformed``, ``not_anchored``, ``revoked``, ``not_yet_valid``,
  ``expired``, ``validity_undisclosed``, ``invalid_data``.
* *issuer identity*: the anchoring organisation is the document's declared
  issuer (``issuer.id``), holds the ``certifier`` role (a certification body)
  and held, at issue time (the anchor's block time), an accreditation in force
  that covers the certificate's ``type`` and ``scope``. Codes: ``ok``,
  ``malformed``, ``not_anchored``, ``unknown_issuer``, ``issuer_mismatch``,
  ``not_certification_body``, ``not_accredited``, ``accreditation_scope``,
  ``undisclosed``, ``invalid_data``.

Status and issuer depend on chain state, which this module does not read: the
caller passes the records (:class:`AnchorRecord`, :class:`IssuerRecord`, built
from state dicts with ``from_state``) and the time. Everything here is pure:
no I/O, no clock, no randomness.

Certificates follow a small schema (:func:`check_certificate_data`)::

    {"$template": {"type": "ecosphere.certificate/v1"},
     "id": "<certificate number>", "type": "CE" | "CCC" | "ISO9001" | ...,
     "issuer": {"id": "<org id>", "name": "<name>"},
     "subject": {"kind": "product" | "batch" | "organisation", "id": "...", "name"?},
     "scope": "<scope code>", "validFrom": "<RFC 3339>", "validUntil": "<RFC 3339>",
     "attachments": [{"filename": ..., "type": <MIME type>, ...}, ...],  # optional
     ...free fields}
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from services.ledger.core import merkle
from services.ledger.core.encoding import DEPTH_MAX, INT_MAX, INT_MIN, encode
from services.ledger.core.errors import EncodingError, Rejected
from services.trace.civil import civil_from_days, days_from_civil, days_in_month

__all__ = [
    "CERTIFICATE_TEMPLATE",
    "CERTIFICATE_TYPES",
    "CERTIFIER_ROLE",
    "INTEGRITY_CODES",
    "ISSUER_CODES",
    "SIGNATURE_TYPE",
    "STATUS_CODES",
    "SUBJECT_KINDS",
    "VERSION",
    "Accreditation",
    "AnchorRecord",
    "CheckResult",
    "DocumentError",
    "IntegrityResult",
    "IssuerRecord",
    "Verification",
    "WrappedDocument",
    "check_certificate_data",
    "field_hash",
    "ms_to_rfc3339",
    "obfuscate",
    "rfc3339_to_ms",
    "unwrap",
    "verify",
    "verify_integrity",
    "wrap",
    "wrap_batch",
]

VERSION: Final = "ecosphere.verifiable-document/v1"
SIGNATURE_TYPE: Final = "SHA256MerkleProof"
CERTIFICATE_TEMPLATE: Final = "ecosphere.certificate/v1"
CERTIFIER_ROLE: Final = "certifier"
"""The consortium role of a certification body (``services.ledger.core.consortium``)."""

CERTIFICATE_TYPES: Final = frozenset({
    "CE", "CCC", "UKCA", "ISO9001", "ISO14001", "ISO22000", "ISO45001", "HACCP", "GMP",
    "ORGANIC", "ORIGIN", "TEST_REPORT", "BRAND", "HALAL", "KOSHER", "FSC", "FAIRTRADE", "FDA",
})
SUBJECT_KINDS: Final = frozenset({"product", "batch", "organisation"})

INTEGRITY_CODES: Final = frozenset({"ok", "malformed", "unsupported", "tampered", "bad_proof"})
STATUS_CODES: Final = frozenset({
    "ok", "malformed", "not_anchored", "revoked", "not_yet_valid", "expired",
    "validity_undisclosed", "invalid_data",
})
ISSUER_CODES: Final = frozenset({
    "ok", "malformed", "not_anchored", "unknown_issuer", "issuer_mismatch",
    "not_certification_body", "not_accredited", "accreditation_scope", "undisclosed",
    "invalid_data",
})

_SALT_RE: Final = re.compile(r"[A-Za-z0-9_-]{16,128}")
_INT_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]*)")
_HEX64_RE: Final = re.compile(r"[0-9a-f]{64}")
_DIGITS_RE: Final = re.compile(r"[0-9]+")
_ORG_ID_RE: Final = re.compile(r"[a-z0-9_.-]{1,64}")
_RFC3339_RE: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
_DOCUMENT_KEYS: Final = frozenset({"version", "data", "signature", "privacy"})
_SIGNATURE_KEYS: Final = frozenset({
    "type", "targetHash", "proof", "merkleRoot", "index", "treeSize",
})
_TEXT_MAX = 256
_ID_MAX = 128


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


def _check_json(node: object, path: str, depth_left: int) -> None:
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
            _check_json(value, _join(path, _check_key(key, where, "bad_key")), depth_left - 1)
        return
    if isinstance(node, list | tuple):
        for index, value in enumerate(node):
            _check_json(value, _join(path, str(index)), depth_left - 1)
        return
    raise _fail("not_json", f"{where}: {type(node).__name__} is not a JSON value")


# --------------------------------------------------------------------------- salting


def _typed(value: object) -> str:
    """``<type>:<value>`` of a leaf (already checked by :func:`_check_json`)."""
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


def _as_document(document: object) -> WrappedDocument:
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


def _read(document: WrappedDocument) -> tuple[dict[str, Any], list[tuple[str, str]]]:
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
        _check_json(data, "", DEPTH_MAX)

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
    data, _ = _read(_as_document(document))
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
    doc = _as_document(document)
    _, leaves = _read(doc)
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


def _ok(message: str) -> CheckResult:
    return CheckResult(True, "ok", message)


def _bad(code: str, message: str) -> CheckResult:
    return CheckResult(False, code, message)


@dataclass(frozen=True, slots=True)
class Verification:
    """The three checks; the document is valid only if all three are ok."""

    integrity: CheckResult
    status: CheckResult
    issuer: CheckResult

    @property
    def valid(self) -> bool:
        return self.integrity.ok and self.status.ok and self.issuer.ok

    def to_json(self) -> dict[str, Any]:
        return {"valid": self.valid, "integrity": self.integrity.to_json(),
                "status": self.status.to_json(), "issuer": self.issuer.to_json()}


def verify_integrity(document: object) -> IntegrityResult:
    """Whether the document's fields hash to its target hash and its proof leads
    to its Merkle root. Never raises: malformed input gives ``malformed`` or
    ``unsupported``."""
    try:
        doc = _as_document(document)
        _, leaves = _read(doc)
        hashes = [field_hash(path, value) for path, value in leaves]
        target = _target_hash([*hashes, *doc.obfuscated_data])
    except DocumentError as exc:
        code = "unsupported" if exc.code == "unsupported" else "malformed"
        return _bad(code, exc.message)
    if target != doc.target_hash:
        return _bad("tampered", f"the fields hash to {target}, not to targetHash "
                                f"{doc.target_hash}")
    proven = merkle.verify_inclusion(
        merkle.leaf_hash(bytes.fromhex(target)), doc.index, doc.tree_size,
        [bytes.fromhex(node) for node in doc.proof], bytes.fromhex(doc.merkle_root))
    if not proven:
        return _bad("bad_proof", f"the proof does not lead from targetHash {target} "
                                 f"to merkleRoot {doc.merkle_root}")
    return _ok(f"{len(hashes)} visible and {len(doc.obfuscated_data)} obfuscated fields "
               f"hash to targetHash {target}, which is in the tree of {doc.merkle_root}")


# --------------------------------------------------------------------------- chain records


def _state_int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if type(value) is not int or not INT_MIN <= value <= INT_MAX:
        raise _fail("bad_record", f"{key} must be an integer (ms since the epoch)")
    return value


def _state_opt_int(obj: Mapping[str, Any], key: str) -> int | None:
    return None if obj.get(key) is None else _state_int(obj, key)


def _state_str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise _fail("bad_record", f"{key} must be a non-empty string")
    return value


def _state_strs(obj: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail("bad_record", f"{key} must be an array of non-empty strings")
    return tuple(value)


def _state_map(obj: object, what: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise _fail("bad_record", f"{what} must be an object")
    return obj


@dataclass(frozen=True, slots=True)
class AnchorRecord:
    """What the chain says about one anchored Merkle root (all times ms since the epoch).

    State dict (``from_state``), as the trace contract keeps it under
    ``certificate/<merkle_root>``; other keys (``type``, ``subject``,
    ``scope``, ``anchored_height``, ``anchored_by``, ``revoked``, ...) are
    ignored::

        {"merkle_root": "<64 lowercase hex>",
         "issuer": "<org id of the anchoring organisation (ctx.sender_org)>",
         "anchored_at": <BFT time of the anchoring block: the issue time>,
         "valid_from": <ms> | null,    # optional: a window for the whole batch
         "valid_until": <ms> | null,   # optional
         "revoked_at": <ms> | null,    # optional: when the WHOLE BATCH was revoked
         "revoked_targets": {"<targetHash>": <ms revoked at>, ...}}   # optional

    ``revoked_at`` means the whole batch, so it must not be set when only single
    documents are revoked; those go in ``revoked_targets`` with their own times.
    The times let a verifier ask about the past ("was it valid when the goods
    crossed the border?"): a revocation counts from its time on.
    """

    merkle_root: str
    issuer: str
    anchored_at: int
    valid_from: int | None = None
    valid_until: int | None = None
    revoked_at: int | None = None
    revoked_targets: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_state(cls, obj: Mapping[str, Any]) -> AnchorRecord:
        """Parse the state dict; :class:`DocumentError` ``bad_record`` if it is malformed."""
        obj = _state_map(obj, "anchor record")
        root = obj.get("merkle_root")
        if not isinstance(root, str) or not _HEX64_RE.fullmatch(root):
            raise _fail("bad_record", "merkle_root must be 64 lowercase hex digits")
        targets = _state_map(obj.get("revoked_targets", {}), "revoked_targets")
        for target in targets:
            if not isinstance(target, str) or not _HEX64_RE.fullmatch(target):
                raise _fail("bad_record", "revoked_targets keys must be target hashes")
            _state_int(targets, target)
        return cls(
            merkle_root=root, issuer=_state_str(obj, "issuer"),
            anchored_at=_state_int(obj, "anchored_at"),
            valid_from=_state_opt_int(obj, "valid_from"),
            valid_until=_state_opt_int(obj, "valid_until"),
            revoked_at=_state_opt_int(obj, "revoked_at"),
            revoked_targets=dict(targets),
        )


@dataclass(frozen=True, slots=True)
class Accreditation:
    """An accreditation of a certification body for certificate types and scopes.

    In force from ``valid_from`` (inclusive) to ``valid_until`` (exclusive;
    ``None``: open-ended) unless revoked, at ``revoked_at`` (exclusive).
    A scope is covered by ``"*"``, by itself, and by any ``/``-prefix of it:
    ``"EA-19"`` covers ``"EA-19/LVD"``. Scopes are therefore codes (an IAF/EA
    sector, a directive), not free text.
    """

    id: str
    types: frozenset[str]
    scopes: tuple[str, ...]
    valid_from: int
    valid_until: int | None = None
    revoked_at: int | None = None

    def in_force_at(self, ms: int) -> bool:
        return (self.valid_from <= ms
                and (self.valid_until is None or ms < self.valid_until)
                and (self.revoked_at is None or ms < self.revoked_at))

    def covers_scope(self, scope: str) -> bool:
        return any(s in ("*", scope) or scope.startswith(s + "/") for s in self.scopes)


@dataclass(frozen=True, slots=True)
class IssuerRecord:
    """What the chain says about the organisation that anchored a document.

    State dict (``from_state``): the caller assembles it from the consortium's
    ``org/<org_id>`` record (``roles``, read now: governance striking the
    ``certifier`` role off a body fails its certificates' issuer check) and the
    trace contract's accreditations of that organisation (each judged at issue
    time, so past ones matter too); other keys (``by``, ``status``, ...) are
    ignored::

        {"org": "<org id>",
         "roles": ["certifier", ...],
         "accreditations": [                     # optional, default []
            {"id": "<accreditation id>",         # optional, for messages
             "types": ["ISO9001", "CE", ...],    # CERTIFICATE_TYPES
             "scopes": ["*" | "<scope code>", ...],
             "valid_from": <ms>,
             "valid_until": <ms> | null,         # optional
             "revoked_at": <ms> | null}, ...]}   # optional

    The trace contract should accept an accreditation only from an
    organisation with the ``accreditor`` role and only for one with the
    ``certifier`` role; this module does not see who granted it.
    """

    org: str
    roles: frozenset[str]
    accreditations: tuple[Accreditation, ...] = ()

    @classmethod
    def from_state(cls, obj: Mapping[str, Any]) -> IssuerRecord:
        """Parse the state dict; :class:`DocumentError` ``bad_record`` if it is malformed."""
        obj = _state_map(obj, "issuer record")
        raw = obj.get("accreditations", [])
        if not isinstance(raw, list):
            raise _fail("bad_record", "accreditations must be an array")
        accreditations = []
        for position, entry in enumerate(raw):
            item = _state_map(entry, "accreditation")
            accreditations.append(Accreditation(
                id=_state_str(item, "id") if "id" in item else f"#{position}",
                types=frozenset(_state_strs(item, "types")),
                scopes=_state_strs(item, "scopes"),
                valid_from=_state_int(item, "valid_from"),
                valid_until=_state_opt_int(item, "valid_until"),
                revoked_at=_state_opt_int(item, "revoked_at"),
            ))
        return cls(org=_state_str(obj, "org"), roles=frozenset(_state_strs(obj, "roles")),
                   accreditations=tuple(accreditations))


# --------------------------------------------------------------------------- verify

_MISSING: Final = object()


def _get(data: Mapping[str, Any], path: str) -> Any:
    node: Any = data
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


def verify(document: object, *, anchor: AnchorRecord | None, issuer: IssuerRecord | None,
           now_ms: int) -> Verification:
    """The three checks of a certificate at time ``now_ms`` (ms since the epoch).

    ``anchor`` is the chain's record for the document's ``merkleRoot`` (``None``
    if there is none); ``issuer`` is the record of the organisation that made
    that anchor (``None`` if it has none). Status and issuer read the visible
    data and the claimed hashes; they are only meaningful if integrity holds,
    which is why :attr:`Verification.valid` needs all three. Never raises on a
    malformed document; raises :class:`DocumentError` ``bad_time`` if
    ``now_ms`` is not an integer.
    """
    if type(now_ms) is not int:
        raise _fail("bad_time", "now_ms must be an integer (ms since the epoch)")
    integrity = verify_integrity(document)
    try:
        doc = _as_document(document)
        data, _ = _read(doc)
    except DocumentError as exc:
        bad = _bad("malformed", exc.message)
        return Verification(integrity, bad, bad)
    return Verification(integrity, _check_status(doc, data, anchor, now_ms),
                        _check_issuer(doc, data, anchor, issuer))


def _anchor_problem(doc: WrappedDocument, anchor: AnchorRecord | None) -> CheckResult | None:
    if anchor is None:
        return _bad("not_anchored", f"merkleRoot {doc.merkle_root} is not anchored")
    if anchor.merkle_root != doc.merkle_root:
        return _bad("not_anchored", f"the anchor record is for {anchor.merkle_root}, "
                                    f"not for merkleRoot {doc.merkle_root}")
    return None


def _time_field(data: Mapping[str, Any], key: str) -> int | CheckResult | None:
    value = _get(data, key)
    if value is _MISSING:
        return None
    try:
        return rfc3339_to_ms(value)
    except DocumentError as exc:
        return _bad("invalid_data", f"{key}: {exc.message}")


def _check_status(doc: WrappedDocument, data: Mapping[str, Any], anchor: AnchorRecord | None,
                  now_ms: int) -> CheckResult:
    problem = _anchor_problem(doc, anchor)
    if problem is not None:
        return problem
    assert anchor is not None
    if now_ms < anchor.anchored_at:
        return _bad("not_anchored", f"anchored only at {_show(anchor.anchored_at)}")
    if anchor.revoked_at is not None and anchor.revoked_at <= now_ms:
        return _bad("revoked", f"the batch {anchor.merkle_root} was revoked at "
                               f"{_show(anchor.revoked_at)}")
    revoked_at = anchor.revoked_targets.get(doc.target_hash)
    if revoked_at is not None and revoked_at <= now_ms:
        return _bad("revoked", f"the document {doc.target_hash} was revoked at "
                               f"{_show(revoked_at)}")
    starts: list[int] = [] if anchor.valid_from is None else [anchor.valid_from]
    ends: list[int] = [] if anchor.valid_until is None else [anchor.valid_until]
    for key, bounds in (("validFrom", starts), ("validUntil", ends)):
        value = _time_field(data, key)
        if isinstance(value, CheckResult):
            return value
        if value is not None:
            bounds.append(value)
    if not ends or not starts:
        # Hiding a bound must never widen the validity: without it (disclosed, or on
        # the anchor) the status cannot be established.
        missing = "validUntil" if not ends else "validFrom"
        return _bad("validity_undisclosed", f"{missing} is not disclosed and the anchor "
                                            "has no validity window")
    if starts and now_ms < max(starts):
        return _bad("not_yet_valid", f"valid only from {_show(max(starts))}")
    if now_ms >= min(ends):
        return _bad("expired", f"expired at {_show(min(ends))}")
    return _ok(f"anchored by {anchor.issuer} at {_show(anchor.anchored_at)}, not revoked, "
               f"valid until {_show(min(ends))}")


def _text_field(data: Mapping[str, Any], key: str) -> str | CheckResult:
    value = _get(data, key)
    if value is _MISSING:
        return _bad("undisclosed", f"{key} is not disclosed")
    if not isinstance(value, str):
        return _bad("invalid_data", f"{key} must be a string")
    return value


def _check_issuer(doc: WrappedDocument, data: Mapping[str, Any], anchor: AnchorRecord | None,
                  issuer: IssuerRecord | None) -> CheckResult:
    problem = _anchor_problem(doc, anchor)
    if problem is not None:
        return problem
    assert anchor is not None
    if issuer is None:
        return _bad("unknown_issuer", f"{anchor.issuer}, which anchored the document, "
                                      "is not a known certification body")
    if issuer.org != anchor.issuer:
        return _bad("issuer_mismatch", f"the issuer record is for {issuer.org}, but "
                                       f"{anchor.issuer} anchored the document")
    declared = _text_field(data, "issuer.id")
    if isinstance(declared, CheckResult):
        return declared
    if declared != anchor.issuer:
        return _bad("issuer_mismatch", f"the document names {declared!r} as issuer, "
                                       f"but {anchor.issuer} anchored it")
    if CERTIFIER_ROLE not in issuer.roles:
        return _bad("not_certification_body", f"{issuer.org} does not hold the "
                                              f"{CERTIFIER_ROLE!r} role")
    cert_type = _text_field(data, "type")
    if isinstance(cert_type, CheckResult):
        return cert_type
    scope = _text_field(data, "scope")
    if isinstance(scope, CheckResult):
        return scope
    for_type = [a for a in issuer.accreditations if cert_type in a.types]
    in_force = [a for a in for_type if a.in_force_at(anchor.anchored_at)]
    if not in_force:
        reason = ("none was in force at issue time" if for_type
                  else "it has no accreditation for that type")
        return _bad("not_accredited", f"{issuer.org} was not accredited for {cert_type} "
                                      f"when it issued at {_show(anchor.anchored_at)}: {reason}")
    covering = [a for a in in_force if a.covers_scope(scope)]
    if not covering:
        return _bad("accreditation_scope", f"{issuer.org}'s accreditation for {cert_type} "
                                           f"does not cover scope {scope!r}")
    return _ok(f"issued by {issuer.org} under accreditation {covering[0].id} "
               f"({cert_type}, {scope})")


# --------------------------------------------------------------------------- certificates


def _require(data: Mapping[str, Any], key: str) -> Any:
    if key not in data:
        raise _fail("missing_field", f"{key} is required")
    return data[key]


def _text(value: object, where: str, code: str, size_max: int = _TEXT_MAX) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > size_max:
        raise _fail(code, f"{where} must be a non-blank string of at most {size_max} characters")
    if any(ord(ch) < 0x20 for ch in value):
        raise _fail(code, f"{where} must not contain control characters")
    return value


def _gtin_ok(digits: str) -> bool:
    if len(digits) not in (8, 12, 13, 14) or not _DIGITS_RE.fullmatch(digits):
        return False
    body = digits[:-1]
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == int(digits[-1])


def check_certificate_data(data: object) -> None:
    """Raise :class:`DocumentError` unless ``data`` is a certificate of
    ``ecosphere.certificate/v1`` (see the module docstring).

    Codes: ``not_object``, the JSON-profile codes of :func:`wrap_batch`
    (``float_not_allowed``, ...), ``bad_template``, ``missing_field``,
    ``bad_field`` (``id``, ``issuer``, ``scope``), ``unknown_certificate_type``,
    ``bad_subject`` (a product is a GTIN-8/12/13/14 with its check digit, a
    batch a lot id, an organisation an org id), ``bad_validity`` (RFC 3339
    date-times, ``validFrom`` before ``validUntil``), ``bad_attachments``.
    Free fields beyond these are allowed.
    """
    if not isinstance(data, Mapping):
        raise _fail("not_object", "certificate data must be a JSON object")
    _check_json(data, "", DEPTH_MAX)
    template = _require(data, "$template")
    if not isinstance(template, Mapping) or template.get("type") != CERTIFICATE_TEMPLATE:
        raise _fail("bad_template", f"$template.type must be {CERTIFICATE_TEMPLATE!r}")
    _text(_require(data, "id"), "id", "bad_field", _ID_MAX)
    cert_type = _require(data, "type")
    if not isinstance(cert_type, str) or cert_type not in CERTIFICATE_TYPES:
        raise _fail("unknown_certificate_type",
                    f"type {cert_type!r} is not one of {sorted(CERTIFICATE_TYPES)}")
    issuer = _require(data, "issuer")
    if not isinstance(issuer, Mapping):
        raise _fail("bad_field", "issuer must be an object {id, name}")
    issuer_id = issuer.get("id")
    if not isinstance(issuer_id, str) or not _ORG_ID_RE.fullmatch(issuer_id):
        raise _fail("bad_field", "issuer.id must be an organisation id (1..64 of [a-z0-9-_.])")
    _text(issuer.get("name"), "issuer.name", "bad_field")
    _check_subject(_require(data, "subject"))
    _text(_require(data, "scope"), "scope", "bad_field")
    try:
        start = rfc3339_to_ms(_require(data, "validFrom"))
        end = rfc3339_to_ms(_require(data, "validUntil"))
    except DocumentError as exc:
        if exc.code == "missing_field":
            raise
        raise _fail("bad_validity", exc.message) from exc
    if not start < end:
        raise _fail("bad_validity", "validFrom must be before validUntil")
    if "attachments" in data:
        _check_attachments(data["attachments"])


def _check_subject(subject: object) -> None:
    if not isinstance(subject, Mapping) or set(subject) - {"kind", "id", "name"}:
        raise _fail("bad_subject", "subject must be an object {kind, id[, name]}")
    kind = subject.get("kind")
    ident = subject.get("id")
    if kind not in SUBJECT_KINDS:
        raise _fail("bad_subject", f"subject.kind must be one of {sorted(SUBJECT_KINDS)}")
    if not isinstance(ident, str):
        raise _fail("bad_subject", "subject.id must be a string")
    if kind == "product" and not _gtin_ok(ident):
        raise _fail("bad_subject", "a product is identified by its GTIN-8/12/13/14 "
                                   "(digits, valid check digit)")
    if kind == "organisation" and not _ORG_ID_RE.fullmatch(ident):
        raise _fail("bad_subject", "an organisation is identified by its org id")
    if kind == "batch":
        _text(ident, "subject.id", "bad_subject", _ID_MAX)
    if "name" in subject:
        _text(subject["name"], "subject.name", "bad_subject")


def _check_attachments(attachments: object) -> None:
    if not isinstance(attachments, list | tuple):
        raise _fail("bad_attachments", "attachments must be an array")
    for position, item in enumerate(attachments):
        if not isinstance(item, Mapping):
            raise _fail("bad_attachments", f"attachments.{position} must be an object")
        _text(item.get("filename"), f"attachments.{position}.filename", "bad_attachments")
        _text(item.get("type"), f"attachments.{position}.type", "bad_attachments")


# --------------------------------------------------------------------------- RFC 3339


_DAY_MS = 86_400_000


def rfc3339_to_ms(text: object) -> int:
    """Milliseconds since the Unix epoch of an RFC 3339 date-time (``2026-01-31T12:00:00Z``,
    ``...T20:00:00.250+08:00``); fractions below a millisecond are truncated.

    Strict RFC 3339 ``date-time`` (section 5.6), not ISO 8601 at large: no
    date alone, no week dates, no basic format. A leap second (``:60``) is
    refused: the chain counts Unix milliseconds, which have none. Raises
    :class:`DocumentError` ``bad_time``.
    """
    match = _RFC3339_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise _fail("bad_time", f"{text!r} is not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction, zulu, sign, off_hour, off_minute = match.group(7, 8, 9, 10, 11)
    if not (1 <= month <= 12 and 1 <= day <= days_in_month(year, month)
            and hour <= 23 and minute <= 59 and second <= 59):
        raise _fail("bad_time", f"{text!r} is not a valid date and time")
    millis = int((fraction[1:] + "00")[:3]) if fraction else 0
    offset = 0
    if not zulu:
        if int(off_hour) > 23 or int(off_minute) > 59:
            raise _fail("bad_time", f"{text!r} has an invalid offset")
        offset = (int(off_hour) * 60 + int(off_minute)) * 60_000
        offset = -offset if sign == "-" else offset
    return (days_from_civil(year, month, day) * _DAY_MS
            + ((hour * 60 + minute) * 60 + second) * 1000 + millis - offset)


def ms_to_rfc3339(ms: int) -> str:
    """RFC 3339 in UTC with millisecond precision: ``2026-01-01T00:00:00.446Z``.

    For years 0000..9999; :class:`DocumentError` ``bad_time`` otherwise.
    """
    days, rest = divmod(ms, _DAY_MS)
    year, month, day = civil_from_days(days)
    if not 0 <= year <= 9999:
        raise _fail("bad_time", f"{ms} ms is outside years 0000..9999")
    seconds, millis = divmod(rest, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"


def _show(ms: int) -> str:
    try:
        return ms_to_rfc3339(ms)
    except DocumentError:
        return f"{ms} ms"
