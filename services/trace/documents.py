"""Verifiable certificates against the chain: what the chain says about a document
(:class:`AnchorRecord`, :class:`IssuerRecord`) and the three checks of a document
(:func:`verify`).

A product certificate (CE, CCC, ISO 9001, organic, origin, a test report, ...)
is issued by an accredited certification body as a *verifiable document*: a
JSON object whose every value is salted and hashed, whose hashes roll up into
one *target hash*, and whose batch of target hashes rolls up into one *Merkle
root* that the issuer anchors on the chain. Anyone holding the document checks
it against the chain without asking the issuer, and the holder can hide fields
(selective disclosure) without breaking the check.

The construction (salting, hashing, batching, selective disclosure, integrity) is
:mod:`services.trace.wrapping`'s; the data of a certificate and its RFC 3339 times are
:mod:`services.trace.certificate_schema`'s.

**Verification** is three separate checks (:func:`verify`):

* *integrity* (:func:`~services.trace.wrapping.verify_integrity`): the fields and
  ``obfuscatedData`` hash to ``targetHash`` and the proof leads from it to
  ``merkleRoot``.
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
from state dicts with ``from_state``) and the time. This module is pure: it must
never do I/O, read the clock, draw randomness or read chain state itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from services.ledger.core.encoding import INT_MAX, INT_MIN
from services.trace.certificate_schema import ms_to_rfc3339, rfc3339_to_ms
from services.trace.wrapping import (
    CheckResult,
    DocumentError,
    WrappedDocument,
    as_document,
    failed,
    passed,
    read_document,
    verify_integrity,
)

__all__ = [
    "CERTIFIER_ROLE",
    "ISSUER_CODES",
    "STATUS_CODES",
    "Accreditation",
    "AnchorRecord",
    "IssuerRecord",
    "Verification",
    "verify",
]

CERTIFIER_ROLE: Final = "certifier"
"""The consortium role of a certification body (``services.ledger.core.consortium``)."""

STATUS_CODES: Final = frozenset({
    "ok", "malformed", "not_anchored", "revoked", "not_yet_valid", "expired",
    "validity_undisclosed", "invalid_data",
})
ISSUER_CODES: Final = frozenset({
    "ok", "malformed", "not_anchored", "unknown_issuer", "issuer_mismatch",
    "not_certification_body", "not_accredited", "accreditation_scope", "undisclosed",
    "invalid_data",
})

_HEX64_RE: Final = re.compile(r"[0-9a-f]{64}")


def _fail(code: str, message: str) -> DocumentError:
    return DocumentError(message, code=code)


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
        doc = as_document(document)
        data, _ = read_document(doc)
    except DocumentError as exc:
        bad = failed("malformed", exc.message)
        return Verification(integrity, bad, bad)
    return Verification(integrity, _check_status(doc, data, anchor, now_ms),
                        _check_issuer(doc, data, anchor, issuer))


def _anchor_problem(doc: WrappedDocument, anchor: AnchorRecord | None) -> CheckResult | None:
    if anchor is None:
        return failed("not_anchored", f"merkleRoot {doc.merkle_root} is not anchored")
    if anchor.merkle_root != doc.merkle_root:
        return failed("not_anchored", f"the anchor record is for {anchor.merkle_root}, "
                                    f"not for merkleRoot {doc.merkle_root}")
    return None


def _time_field(data: Mapping[str, Any], key: str) -> int | CheckResult | None:
    value = _get(data, key)
    if value is _MISSING:
        return None
    try:
        return rfc3339_to_ms(value)
    except DocumentError as exc:
        return failed("invalid_data", f"{key}: {exc.message}")


def _check_status(doc: WrappedDocument, data: Mapping[str, Any], anchor: AnchorRecord | None,
                  now_ms: int) -> CheckResult:
    problem = _anchor_problem(doc, anchor)
    if problem is not None or anchor is None:  # _anchor_problem answers a missing anchor
        return problem or failed("not_anchored", "no anchor")
    if now_ms < anchor.anchored_at:
        return failed("not_anchored", f"anchored only at {_show(anchor.anchored_at)}")
    if anchor.revoked_at is not None and anchor.revoked_at <= now_ms:
        return failed("revoked", f"the batch {anchor.merkle_root} was revoked at "
                               f"{_show(anchor.revoked_at)}")
    revoked_at = anchor.revoked_targets.get(doc.target_hash)
    if revoked_at is not None and revoked_at <= now_ms:
        return failed("revoked", f"the document {doc.target_hash} was revoked at "
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
        return failed("validity_undisclosed", f"{missing} is not disclosed and the anchor "
                                            "has no validity window")
    if starts and now_ms < max(starts):
        return failed("not_yet_valid", f"valid only from {_show(max(starts))}")
    if now_ms >= min(ends):
        return failed("expired", f"expired at {_show(min(ends))}")
    return passed(f"anchored by {anchor.issuer} at {_show(anchor.anchored_at)}, not revoked, "
               f"valid until {_show(min(ends))}")


def _text_field(data: Mapping[str, Any], key: str) -> str | CheckResult:
    value = _get(data, key)
    if value is _MISSING:
        return failed("undisclosed", f"{key} is not disclosed")
    if not isinstance(value, str):
        return failed("invalid_data", f"{key} must be a string")
    return value


def _check_issuer(doc: WrappedDocument, data: Mapping[str, Any], anchor: AnchorRecord | None,
                  issuer: IssuerRecord | None) -> CheckResult:
    problem = _anchor_problem(doc, anchor)
    if problem is not None or anchor is None:  # _anchor_problem answers a missing anchor
        return problem or failed("not_anchored", "no anchor")
    if issuer is None:
        return failed("unknown_issuer", f"{anchor.issuer}, which anchored the document, "
                                      "is not a known certification body")
    if issuer.org != anchor.issuer:
        return failed("issuer_mismatch", f"the issuer record is for {issuer.org}, but "
                                       f"{anchor.issuer} anchored the document")
    declared = _text_field(data, "issuer.id")
    if isinstance(declared, CheckResult):
        return declared
    if declared != anchor.issuer:
        return failed("issuer_mismatch", f"the document names {declared!r} as issuer, "
                                       f"but {anchor.issuer} anchored it")
    if CERTIFIER_ROLE not in issuer.roles:
        return failed("not_certification_body", f"{issuer.org} does not hold the "
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
        return failed("not_accredited", f"{issuer.org} was not accredited for {cert_type} "
                                      f"when it issued at {_show(anchor.anchored_at)}: {reason}")
    covering = [a for a in in_force if a.covers_scope(scope)]
    if not covering:
        return failed("accreditation_scope", f"{issuer.org}'s accreditation for {cert_type} "
                                           f"does not cover scope {scope!r}")
    return passed(f"issued by {issuer.org} under accreditation {covering[0].id} "
               f"({cert_type}, {scope})")

def _show(ms: int) -> str:
    try:
        return ms_to_rfc3339(ms)
    except DocumentError:
        return f"{ms} ms"

