"""The CBV 2.0 EPCIS event hash: canonical pre-hash string and ``ni:`` hash id.

GS1 CBV 2.0 (section "EPCIS Event Hash ID") defines a canonical *pre-hash
string* for an EPCIS event and names the event by the SHA-256 of that string::

    ni:///sha-256;<64 lowercase hex digits>?ver=CBV2.0

The standard's text leaves room for interpretation and implementations have
disagreed, so this module follows one implementation *exactly*: the reference
implementation ``epcis-event-hash-generator`` (GitHub RalphTro/epcis-event-hash-generator,
MIT licence, (c) Ralph Troeger and Sebastian Schmittner) at commit
``084b00349014d1b7e269b28293be89ac59587638`` in its default ``CBV2.0`` profile. Its
published expected outputs are reproduced byte for byte by
``tests/trace/test_eventhash.py`` (vectors in ``tests/trace/vectors/``). The code here is
an independent re-implementation of that algorithm's observable behaviour:

1. *Vocabulary expansion.* JSON-LD bare words of the standard vocabularies
   (``"shipping"``, ``"in_transit"``, ``"po"``, ``"Temperature"``…) become their web URIs
   (``https://ref.gs1.org/cbv/BizStep-shipping``, ``https://ref.gs1.org/voc/Temperature``).
   Like the reference (which runs a JSON-LD expansion and then replaces, anywhere in the
   event, every string value ``v`` for which exactly one expanded vocabulary URI ends in
   ``-v`` or ``/v``), the replacement is not limited to the field that carried the word.
   CURIE values whose prefix is ``gs1``/``cbv``/``epcis`` are expanded; extension keys
   ``prefix:local`` become ``{namespace}local``.
2. *Tree.* The event becomes a tree of ``(name, value, children)`` nodes: object keys
   sorted, JSON lists flattened into repeated children, ``…List`` wrappers renamed
   (``epcList`` → ``epc`` children, ``quantityList`` → ``quantityElement`` …).
3. *Canonical order.* Standard fields are emitted in the CBV property order
   (:data:`PROPERTY_ORDER`), each as ``name=value`` (containers as ``name`` followed by
   their children), values of one field sorted; then ``ilmd``, then user extensions found
   inside standard fields (prefixed by the path of field names), then event-level user
   extensions, each group sorted. ``eventID``, ``recordTime``, ``errorDeclaration`` and
   ``certificationInfo`` are not part of the hash.
4. *Values.* Surrounding whitespace is stripped. Times in the ordered fields (``eventTime``,
   sensor ``time``/``startTime``/``endTime``) are converted to UTC with exactly three
   fractional digits (more digits rounded half-up, as the reference does; a carry rolls
   into the next second). Old CBV URNs (``urn:epcglobal:cbv:bizstep:…``) become web URIs.
   Numbers lose leading ``+``/zeros and trailing zeros (``"26.0"`` → ``26``) — computed
   with :class:`decimal.Decimal`, never with floats. EPC URNs and GS1 Digital Link URIs
   become the constrained canonical Digital Link on ``https://id.gs1.org`` (query string
   dropped, finest identification level only).

Deliberate, documented differences (all on inputs the reference cannot hash or hashes in
a way that depends on JSON key order, which our canonical JSON does not preserve):

* ``type`` is always emitted before the value in ``bizTransactionList`` / ``sourceList`` /
  ``destinationList`` entries (the reference follows the key order of the JSON object; all
  published examples, like all EPCIS examples, write ``type`` first). An entry without
  ``type`` yields just ``bizTransaction=…`` (the reference raises). Entries with any other
  key are refused.
* Inputs the reference would mangle or fail on are refused with
  :class:`~services.trace.hashvalues.EventHashError`:
  JSON floats (the chain has none — give decimals as strings; for numbers of ordinary size
  the pre-hash string is the same as for the equivalent JSON number), unparsable times or
  times without an offset in the ordered time fields (the reference would read them in
  the machine's local time zone), numbers with an exponent beyond ±4096 (the reference
  would write thousands of zeros), ``@``-keys inside an event, and ``@context`` entries
  other than the EPCIS contexts and prefix definitions.

Step 4's canonical values are :mod:`services.trace.hashvalues`'s; the vocabularies of
step 1 are :mod:`services.trace.cbv`'s. This module is pure: it must never do I/O, read
the clock, draw randomness or use a float.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

from services.trace.cbv import (
    BIZ_STEP_WORDS,
    BIZ_TRANSACTION_TYPE_WORDS,
    CBV,
    COMPONENT_WORDS,
    DISPOSITION_WORDS,
    EPCIS_NS,
    ERROR_REASON_WORDS,
    GS1_VOC,
    MEASUREMENT_TYPE_WORDS,
    SENSOR_EXCEPTION_WORDS,
    SOURCE_DESTINATION_TYPE_WORDS,
)
from services.trace.hashvalues import EventHashError, canonical_time, canonical_value

__all__ = [
    "CBV_VERSION",
    "DEFAULT_CONTEXT",
    "EPCIS_CONTEXT_2_0_0",
    "EPCIS_CONTEXT_LATEST",
    "KNOWN_EPCIS_CONTEXTS",
    "PROPERTY_ORDER",
    "WHITESPACE",
    "document_hashes",
    "document_prehashes",
    "event_hash",
    "event_prehash",
    "hash_of_prehash",
]

CBV_VERSION = "CBV2.0"
HASH_PREFIX = "ni:///sha-256;"
HASH_SUFFIX = "?ver=" + CBV_VERSION

EPCIS_CONTEXT_2_0_0 = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
EPCIS_CONTEXT_LATEST = "https://ref.gs1.org/standards/epcis/epcis-context.jsonld"
#: The EPCIS JSON-LD contexts whose content is known here. The 2.0.0 context protects its
#: terms (a document may not redefine them); the unversioned one does not.
KNOWN_EPCIS_CONTEXTS = {EPCIS_CONTEXT_2_0_0: True, EPCIS_CONTEXT_LATEST: False}
DEFAULT_CONTEXT: tuple[str] = (EPCIS_CONTEXT_2_0_0,)

# --------------------------------------------------------------------------- #
# The tree: (name, value, children); pair = (type node, value node)
# --------------------------------------------------------------------------- #

Node: TypeAlias = tuple[str, str, list[Any]]  # children: list[Node | Pair]
Pair: TypeAlias = tuple[Node, ...]
Order: TypeAlias = Sequence[tuple[str, "Order | None"]]

_QUANTITY: Order = (("epcClass", None), ("quantity", None), ("uom", None))
_PAIR_LISTS = ("bizTransactionList", "sourceList", "destinationList")
_PAIR_VALUE = {"bizTransactionList": "bizTransaction", "sourceList": "source",
               "destinationList": "destination"}

#: The CBV 2.0 canonical property order (eventType precedes it).
PROPERTY_ORDER: Order = (
    ("eventTime", None),
    ("eventTimeZoneOffset", None),
    ("epcList", (("epc", None),)),
    ("parentID", None),
    ("inputEPCList", (("epc", None),)),
    ("childEPCs", (("epc", None),)),
    ("quantityList", (("quantityElement", _QUANTITY),)),
    ("childQuantityList", (("quantityElement", _QUANTITY),)),
    ("inputQuantityList", (("quantityElement", _QUANTITY),)),
    ("outputEPCList", (("epc", None),)),
    ("outputQuantityList", (("quantityElement", _QUANTITY),)),
    ("action", None),
    ("transformationID", None),
    ("bizStep", None),
    ("disposition", None),
    ("persistentDisposition", (("set", None), ("unset", None))),
    ("readPoint", (("id", None),)),
    ("bizLocation", (("id", None),)),
    ("bizTransactionList", (("bizTransaction", None),)),
    ("sourceList", (("source", None),)),
    ("destinationList", (("destination", None),)),
    ("sensorElementList", (("sensorElement", (
        ("sensorMetadata", tuple((n, None) for n in (
            "time", "startTime", "endTime", "deviceID", "deviceMetadata", "rawData",
            "dataProcessingMethod", "bizRules"))),
        ("sensorReport", tuple((n, None) for n in (
            "type", "exception", "deviceID", "deviceMetadata", "rawData",
            "dataProcessingMethod", "time", "microorganism", "chemicalSubstance", "value",
            "component", "stringValue", "booleanValue", "hexBinaryValue", "uriValue",
            "minValue", "maxValue", "meanValue", "sDev", "percRank", "percValue", "uom",
            "coordinateReferenceSystem"))),
    )),)),
)
_NOT_HASHED = frozenset({"recordTime", "eventID", "type", "errorDeclaration",
                         "certificationInfo"})


def _is_pair(item: Any) -> bool:
    return len(item) == 2 and isinstance(item[0], tuple)


# --------------------------------------------------------------------------- #
# JSON-LD context: vocabulary terms (bare word -> URI) of the EPCIS context
# --------------------------------------------------------------------------- #


def _terms(base: str, words: Iterable[str]) -> dict[str, str]:
    return {w: base + w for w in words}


_DISP_TERMS = _terms(CBV + "Disp-", DISPOSITION_WORDS)
_SDT_TERMS = _terms(CBV + "SDT-", SOURCE_DESTINATION_TYPE_WORDS)
_BTT_TERMS = _terms(CBV + "BTT-", BIZ_TRANSACTION_TYPE_WORDS)

# term kinds: "id" (IRI), "vocab" (IRI, vocabulary-relative), "type" (@type),
# "literal" (kept as is), with an optional scoped term table and vocabulary table.
_Term: TypeAlias = tuple[str, "dict[str, _Term] | None", "dict[str, str] | None"]

_SENSOR_METADATA: dict[str, _Term] = {
    "startTime": ("literal", None, None), "endTime": ("literal", None, None),
    "bizRules": ("id", None, None)}
_SENSOR_REPORT: dict[str, _Term] = {
    "type": ("vocab", None, _terms(GS1_VOC, MEASUREMENT_TYPE_WORDS)),
    "exception": ("vocab", None, _terms(GS1_VOC, SENSOR_EXCEPTION_WORDS)),
    "coordinateReferenceSystem": ("id", None, None), "microorganism": ("id", None, None),
    "chemicalSubstance": ("id", None, None), "time": ("literal", None, None),
    "value": ("literal", None, None),
    "component": ("vocab", None, _terms(CBV + "Comp-", COMPONENT_WORDS)),
    "stringValue": ("literal", None, None), "booleanValue": ("literal", None, None),
    "hexBinaryValue": ("literal", None, None), "uriValue": ("id", None, None),
    **{k: ("literal", None, None) for k in ("minValue", "maxValue", "meanValue", "sDev",
                                            "percRank", "percValue")}}
_SENSOR_ELEMENT: dict[str, _Term] = {
    "deviceID": ("id", None, None), "deviceMetadata": ("id", None, None),
    "rawData": ("id", None, None), "dataProcessingMethod": ("id", None, None),
    "time": ("literal", None, None), "type": ("type", None, None),
    "sensorMetadata": ("literal", _SENSOR_METADATA, None),
    "sensorReport": ("literal", _SENSOR_REPORT, None)}


def _pair_scope(value_key: str, types: dict[str, str]) -> dict[str, _Term]:
    return {value_key: ("id", None, None), "type": ("vocab", None, types)}


_TOP_TERMS: dict[str, _Term] = {
    "id": ("id", None, None), "type": ("type", None, None), "eventID": ("id", None, None),
    "eventTime": ("literal", None, None), "recordTime": ("literal", None, None),
    "eventTimeZoneOffset": ("literal", None, None), "action": ("literal", None, None),
    "certificationInfo": ("id", None, None),
    "bizStep": ("vocab", None, _terms(CBV + "BizStep-", BIZ_STEP_WORDS)),
    "disposition": ("vocab", None, _DISP_TERMS),
    "bizLocation": ("id", None, None), "readPoint": ("id", None, None),
    "transformationID": ("id", None, None), "epcList": ("id", None, None),
    "sourceList": ("literal", _pair_scope("source", _SDT_TERMS), None),
    "destinationList": ("literal", _pair_scope("destination", _SDT_TERMS), None),
    "persistentDisposition": ("literal", {
        **{w: ("literal", None, None) for w in DISPOSITION_WORDS},
        "set": ("vocab", None, _DISP_TERMS), "unset": ("vocab", None, _DISP_TERMS)}, None),
    "quantity": ("literal", None, None), "epcClass": ("id", None, None),
    "uom": ("literal", None, None), "quantityList": ("literal", None, None),
    "bizTransactionList": ("literal", _pair_scope("bizTransaction", _BTT_TERMS), None),
    "parentID": ("id", None, None), "childEPCs": ("id", None, None),
    "childQuantityList": ("literal", None, None), "inputEPCList": ("id", None, None),
    "outputEPCList": ("id", None, None), "inputQuantityList": ("literal", None, None),
    "outputQuantityList": ("literal", None, None),
    "sensorElementList": ("literal", _SENSOR_ELEMENT, None),
    "errorDeclaration": ("literal", {
        "reason": ("vocab", None, _terms(CBV + "ER-", ERROR_REASON_WORDS)),
        "correctiveEventIDs": ("id", None, None),
        "declarationTime": ("literal", None, None)}, None),
    "creationDate": ("literal", None, None), "sender": ("literal", None, None),
    "receiver": ("literal", None, None), "instanceIdentifier": ("literal", None, None),
    "schemaVersion": ("literal", None, None), "ilmd": ("literal", None, None),
    "epcisHeader": ("literal", None, None), "masterData": ("literal", None, None),
    "vocabularyList": ("literal", None, None), "epcisBody": ("literal", None, None),
    "queryResults": ("literal", None, None), "subscriptionID": ("literal", None, None),
    "queryName": ("literal", None, None), "resultsBody": ("literal", None, None),
    "eventList": ("literal", None, None), "children": ("id", None, None),
    "member": ("id", None, None),
    **{t: ("literal", None, None) for t in (
        "ObjectEvent", "AggregationEvent", "TransformationEvent", "AssociationEvent",
        "TransactionEvent", "Collection", "EPCISDocument", "EPCISQueryDocument",
        "baseURL")},
}
_CONTEXT_PREFIXES = {
    "epcis": EPCIS_NS, "cbv": CBV, "cbvmda": "urn:epcglobal:cbv:mda:", "gs1": GS1_VOC,
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#", "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": "http://www.w3.org/2001/XMLSchema#", "dcterms": "http://purl.org/dc/terms/"}
#: Prefixes the reference always knows when it rewrites keys and values.
_WELL_KNOWN_NAMESPACES = {"gs1": GS1_VOC, "cbv": CBV, "epcis": EPCIS_NS,
                          "cbvmda": "urn:epcglobal:cbv:mda"}
_EXPANDED_PREFIXES = ("https://ref.gs1.org/cbv", "https://gs1.org/voc", "https://ref.gs1.org/voc")
_VALUE_NAMESPACE_PREFIXES = ("https://ref.gs1.org", "https://gs1.org")


class _Context:
    """What a document's ``@context`` tells the hash: prefixes and namespaces."""

    def __init__(self, context: Any) -> None:
        entries = [context] if isinstance(context, str | Mapping) else context
        if not isinstance(entries, list | tuple):
            raise EventHashError("unsupported_context", "@context must be a string or list")
        known = [e for e in entries if isinstance(e, str) and e in KNOWN_EPCIS_CONTEXTS]
        if len(known) != 1:
            raise EventHashError("unsupported_context",
                                 "@context must name exactly one known EPCIS context")
        protected = KNOWN_EPCIS_CONTEXTS[known[0]]
        self.prefixes = dict(_CONTEXT_PREFIXES)
        self.namespaces = dict(_WELL_KNOWN_NAMESPACES)
        for entry in entries:
            if isinstance(entry, str):
                if entry not in KNOWN_EPCIS_CONTEXTS:
                    raise EventHashError("unsupported_context",
                                         f"unknown @context {entry!r}")
                self.namespaces[entry] = entry
            elif isinstance(entry, Mapping):
                for key, iri in entry.items():
                    self._define(str(key), iri, protected)
            else:
                raise EventHashError("unsupported_context", "bad @context entry")
        self.namespaces["gs1"] = GS1_VOC

    def _define(self, key: str, iri: Any, protected: bool) -> None:
        if not isinstance(iri, str) or not key or key.startswith("@") or ":" in key:
            raise EventHashError("unsupported_context",
                                 f"@context entry {key!r} must map a prefix to an IRI")
        current = self.prefixes.get(key)
        if key in _TOP_TERMS or (current is not None and current != iri and (
                protected or key in ("epcis", "cbv", "gs1"))):
            raise EventHashError("unsupported_context", f"@context redefines {key!r}")
        self.prefixes[key] = iri
        self.namespaces[key] = iri

    # -- key and value rewriting (the reference's namespace replacement) --
    def key(self, key: str) -> str:
        prefix, sep, rest = key.partition(":")
        if sep and prefix in self.namespaces:
            return "{" + self.namespaces[prefix] + "}" + rest
        return key

    def value(self, text: str) -> str:
        prefix, sep, rest = text.partition(":")
        if sep and prefix in self.namespaces:
            namespace = self.namespaces[prefix].replace("{", "").replace("}", "")
            if namespace.startswith(_VALUE_NAMESPACE_PREFIXES):
                return namespace + rest
        return text

    # -- JSON-LD IRI expansion, for the vocabulary URIs the event uses --
    def expand_iri(self, text: str, vocab: dict[str, str] | None, *,
                   vocab_relative: bool = False) -> str | None:
        if vocab is not None and text in vocab:
            return vocab[text]
        if vocab_relative and text in self.prefixes:
            return self.prefixes[text]
        prefix, sep, rest = text.partition(":")
        if sep:
            if not rest.startswith("//") and prefix in self.prefixes:
                return self.prefixes[prefix] + rest
            return text
        return None  # relative: resolved against no base, never a vocabulary URI


def _expanded_values(value: Any, ctx: _Context, scope: Mapping[str, _Term],
                     out: set[str]) -> None:
    """Collect the vocabulary URIs a JSON-LD expansion of ``value`` contains."""
    if isinstance(value, list):
        for item in value:
            _expanded_values(item, ctx, scope, out)
        return
    if not isinstance(value, Mapping):
        return
    for key, item in value.items():
        term = scope.get(key)
        if term is None:
            if ":" not in key or key.startswith("@"):
                continue  # JSON-LD drops keys that are neither terms nor IRIs
            term = ("literal", None, None)
        kind, inner, vocab = term
        inner_scope = {**scope, **inner} if inner else scope
        _expanded_leaf(item, kind, vocab, ctx, inner_scope, out)


def _expanded_leaf(item: Any, kind: str, vocab: dict[str, str] | None, ctx: _Context,
                   scope: Mapping[str, _Term], out: set[str]) -> None:
    if isinstance(item, list):
        for element in item:
            _expanded_leaf(element, kind, vocab, ctx, scope, out)
    elif isinstance(item, Mapping):
        _expanded_values(item, ctx, scope, out)
    elif isinstance(item, str):
        text: str | None = item
        if kind in ("id", "vocab", "type"):
            text = ctx.expand_iri(item, vocab if kind == "vocab" else None,
                                  vocab_relative=kind != "id")
        if text is not None and text.startswith(_EXPANDED_PREFIXES):
            out.add(text)


def _replace_bare_words(value: Any, expanded: set[str]) -> Any:
    if isinstance(value, str):
        matches = [e for e in expanded if e.endswith("-" + value) or e.endswith("/" + value)]
        return matches[0] if len(matches) == 1 else value
    if isinstance(value, list):
        return [_replace_bare_words(item, expanded) for item in value]
    if isinstance(value, Mapping):
        return {key: _replace_bare_words(item, expanded) for key, item in value.items()}
    return value


# --------------------------------------------------------------------------- #
# JSON -> tree
# --------------------------------------------------------------------------- #

_IGNORED_KEYS = ("#text", "rdfs:comment", "comment")
_SORT_BLOCKERS = ("bizTransaction", "source", "destination")


def _scalar(value: Any, ctx: _Context) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "None"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return ctx.value(value)
    if isinstance(value, float):
        raise EventHashError("float_not_allowed",
                             "numbers must be integers or decimal strings, not floats")
    raise EventHashError("bad_value", f"unsupported value of type {type(value).__name__}")


def _to_node(value: Any, ctx: _Context, depth: int = 0) -> Node:
    if depth > 64:
        raise EventHashError("bad_value", "event nested too deeply")
    children: list[Any] = []
    if isinstance(value, list):
        children = [_to_node(item, ctx, depth + 1) for item in value]
        if not any(isinstance(item, str) and item in _SORT_BLOCKERS for item in value):
            children.sort()
        return ("", "", children)
    if not isinstance(value, Mapping):
        return ("", _scalar(value, ctx), [])
    name = value.get("type", "")
    text = value.get("#text", "")
    if not isinstance(name, str) or not isinstance(text, str):
        raise EventHashError("bad_value", "'type' and '#text' must be strings")
    for key, item in value.items():
        if not isinstance(key, str):
            raise EventHashError("bad_value", "object keys must be strings")
        if key in _IGNORED_KEYS:
            continue
        if key.startswith("@"):
            raise EventHashError("unsupported_structure", f"key {key!r} inside an event")
        child = _to_node(item, ctx, depth + 1)
        name_of_key = ctx.key(key)
        if isinstance(item, list):
            children.extend((name_of_key, element[1], element[2]) for element in child[2])
        else:
            children.append((name_of_key, child[1], child[2]))
    if not any(k in value for k in _SORT_BLOCKERS):
        children.sort()
    return (name, text, children)


def _pair_entry(list_name: str, element: Node) -> Pair:
    by_name = {child[0]: child for child in element[2]}
    value_key = _PAIR_VALUE[list_name]
    if len(by_name) != len(element[2]) or not set(by_name) <= {"type", value_key} \
            or value_key not in by_name \
            or any(child[2] for child in element[2]):
        raise EventHashError("unsupported_structure",
                             f"{list_name} entries must be {{type, {value_key}}} strings")
    if "type" in by_name:
        return (by_name["type"], by_name[value_key])
    return (by_name[value_key],)


def _correct(node: Node) -> Node:
    """Reshape the JSON tree like the reference reshapes it to the XML model."""
    children = list(node[2])
    groups: dict[str, list[Any]] = {}
    for element in [c for c in children if c[0].endswith("List")]:
        groups.setdefault(element[0], []).append((element[0][:-4], element[1], element[2]))
        children.remove(element)
    for list_name, elements in groups.items():
        if list_name in _PAIR_LISTS:
            children.append((list_name, "", [_pair_entry(list_name, e) for e in elements]))
        else:
            children.append((list_name, "", elements))
    child_epcs: list[Node] = [("epc", c[1], []) for c in children if c[0] == "childEPCs"]
    if child_epcs:
        children = [c for c in children if c[0] != "childEPCs"]
        children.append(("childEPCs", "", child_epcs))
    corrected = [c if c[0] in _PAIR_LISTS else _correct(c) for c in children]
    name = node[0]
    if name in ("inputEPC", "outputEPC"):
        name = "epc"
    elif name in ("inputQuantity", "outputQuantity", "childQuantity") or (
            name == "quantity" and corrected):
        name = "quantityElement"
    return (name, node[1], corrected)


# --------------------------------------------------------------------------- #
# Pre-hash string
# --------------------------------------------------------------------------- #

#: A-Z to a-z only: str.lower() follows the Python version's Unicode case tables, and a
#: field name (an extension's, say) decides how its value is hashed
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


#: what str.strip() strips (str.isspace: Unicode White_Space plus the C0 separators), as
#: of Unicode 6.3..15, spelt out so that a later Unicode version cannot change a hash
WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003"
              "\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def _is_time_field(name: str) -> bool:
    lowered = name.translate(_ASCII_LOWER)
    return "time" in lowered and "offset" not in lowered


def _ordered(children: list[Any], order: Order) -> str:
    """Emit the children named in ``order``; consume what was emitted (as the reference)."""
    text = ""
    for name, sub_order in order:
        values: list[str] = []
        for child in [c for c in children if c[0] == name]:
            part = _field(child, sub_order)
            if part:
                values.append(part)
            if not child[2]:
                children.remove(child)
        values.sort()
        if "".join(values):
            text = text + "".join(values)
    return text


def _field(node: Node, sub_order: Order | None) -> str:
    nested = ""
    if sub_order:
        if node[2] and all(_is_pair(c) or len(c) == 1 for c in node[2]):
            nested = _generic(node[2])
            node[2].clear()
        else:
            nested = _ordered(node[2], sub_order)
    text = ""
    if node[1]:
        text = node[1].strip(WHITESPACE)
        text = canonical_time(text) if _is_time_field(node[0]) else canonical_value(text)
        if text:
            text = "=" + text
    if text or nested:
        name = "" if node[0] == "sensorElementList" else node[0]
        return name + text + nested
    return ""


def _generic(children: Sequence[Any]) -> str:
    """Extensions and other leftovers: ``name=value`` + nested, sorted (as the reference)."""
    values: list[str] = []
    for child in children:
        if isinstance(child[0], tuple):
            values.append(_generic(child))
            continue
        text = child[1].strip(WHITESPACE)
        if text:
            text = "=" + canonical_value(text)
        values.append(child[0] + text + _generic(child[2]))
    if len(children) > 1 and not any(c[0] in _SORT_BLOCKERS for c in children):
        values.sort()
    return "".join(values)


def _is_extension(node: Any) -> bool:
    return isinstance(node[0], str) and "{" in node[0] and "/}" in node[0]


def _field_extensions(children: list[Any], order: Order) -> str:
    parts: list[str] = []
    for name, sub_order in order:
        if not sub_order:
            continue
        for child in [c for c in children if c[0] == name]:
            inner = _field_extensions(child[2], sub_order)
            if inner:
                parts.append(("" if name == "sensorElementList" else name) + inner)
    direct = [c for c in children if _is_extension(c)]
    if direct:
        parts.append(_generic(direct))
    return "".join(parts)


def _prehash_of_node(event: Node) -> str:
    children = event[2]
    standard = _ordered(children, PROPERTY_ORDER)
    ilmd = [c for c in children if c[0] == "ilmd"]
    for node in ilmd:
        children.remove(node)
    field_parts: list[str] = []
    for name, sub_order in PROPERTY_ORDER:
        if not sub_order:
            continue
        for child in [c for c in children if c[0] == name]:
            inner = _field_extensions(child[2], sub_order)
            if inner:
                field_parts.append(("" if name == "sensorElementList" else name) + inner)
                children.remove(child)
    rest = [c for c in children if c[0] not in _NOT_HASHED]
    trailing = [_generic(ilmd) if ilmd else "", "".join(field_parts),
                _generic(rest) if rest else ""]
    return "eventType=" + event[0] + standard + "".join(t for t in trailing if t)


def _check_event(event: Any) -> Mapping[str, Any]:
    if not isinstance(event, Mapping):
        raise EventHashError("bad_value", "an event is a JSON object")
    kind = event.get("type")
    if not isinstance(kind, str) or not kind:
        raise EventHashError("bad_value", "the event has no type")
    return event


def _prehashes(events: Sequence[Any], ctx: _Context, scope_value: Any) -> list[str]:
    expanded: set[str] = set()
    _expanded_values(scope_value, ctx, _TOP_TERMS, expanded)
    out = []
    for event in events:
        replaced = _replace_bare_words(_check_event(event), expanded)
        out.append(_prehash_of_node(_correct(_to_node(replaced, ctx))))
    return out


def event_prehash(event: Mapping[str, Any], *, context: Any = DEFAULT_CONTEXT) -> str:
    """The CBV 2.0 pre-hash string of one EPCIS event (JSON-LD form, as a dict).

    ``context`` is the ``@context`` of the document the event belongs to (default: the
    EPCIS 2.0.0 context alone); it supplies the namespace prefixes of user extensions.
    Bare-word expansion looks at this event only; :func:`document_prehashes` looks at the
    whole document, as the reference does.
    """
    ctx = _Context(context)
    return _prehashes([event], ctx, event)[0]


def hash_of_prehash(prehash: str) -> str:
    """``ni:///sha-256;<hex>?ver=CBV2.0`` of a pre-hash string (UTF-8)."""
    return HASH_PREFIX + hashlib.sha256(prehash.encode("utf-8")).hexdigest() + HASH_SUFFIX


def event_hash(event: Mapping[str, Any], *, context: Any = DEFAULT_CONTEXT) -> str:
    """The CBV 2.0 event hash id ``ni:///sha-256;<hex>?ver=CBV2.0`` of one event."""
    return hash_of_prehash(event_prehash(event, context=context))


def _document_events(document: Mapping[str, Any]) -> list[Any]:
    body = document.get("epcisBody")
    if not isinstance(body, Mapping):
        raise EventHashError("bad_value", "the document has no epcisBody")
    if "eventList" in body:
        events = body["eventList"]
    elif "queryResults" in body:
        try:
            events = body["queryResults"]["resultsBody"]["eventList"]
        except (KeyError, TypeError) as exc:
            raise EventHashError("bad_value", "queryResults without an eventList") from exc
    elif "event" in body:
        events = [body["event"]]
    else:
        raise EventHashError("bad_value", "epcisBody has no eventList")
    if not isinstance(events, list):
        raise EventHashError("bad_value", "eventList is not a list")
    return events


def document_prehashes(document: Mapping[str, Any]) -> list[str]:
    """Pre-hash strings of every event of an EPCIS(Query)Document, in document order."""
    context = document.get("@context")
    if isinstance(context, list):
        context = [c for c in context if not (isinstance(c, Mapping) and not c)]
    ctx = _Context(context)
    return _prehashes(_document_events(document), ctx, document)


def document_hashes(document: Mapping[str, Any]) -> list[str]:
    """Event hash ids of every event of an EPCIS(Query)Document, in document order."""
    return [hash_of_prehash(p) for p in document_prehashes(document)]

