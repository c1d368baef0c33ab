"""The trace contract's certificates: a certification body anchors the Merkle root of a
batch of verifiable certificates (:mod:`services.trace.documents`) for a product, a lot
or an organisation, under an accreditation in force (:mod:`services.trace.registry`
grants them), and revokes the batch or one certificate of it. Also the one rule for
whether an anchored batch vouches (:func:`certificate_in_force`), shared by the
trade domain's listings and the gateway's product pages.

State: ``anchor/<root>`` and ``cert_subject/<kind>:<id>`` (see
:mod:`services.trace.contract`). Runs in every replica: it must never do I/O, read the
clock (block time is ``ctx.time``), draw randomness or use floats, and any change of
behaviour forks the chain.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from services.ledger.core.contract import TxContext, payload_int, payload_str
from services.trace import identifiers
from services.trace.certificate_schema import CERTIFICATE_TYPES

__all__ = [
    "CERT_TYPES",
    "anchor_certificate",
    "anchor_of",
    "certificate_in_force",
    "certificate_root",
    "has_valid_certificate",
    "revoke_certificate",
]

CERT_TYPES = frozenset(CERTIFICATE_TYPES)


def anchor_certificate(ctx: TxContext) -> None:
    """Anchor the Merkle root of a batch of certificates (services.trace.documents).

    The state record has documents.AnchorRecord's shape (root, org, time,
    valid_from, valid_until, revoked_at, revoked) plus what the chain checks."""
    ctx.require_org_role("certifier")
    cert_type = payload_str(ctx, "type", size_max=32)
    scope = ctx.payload.get("scope", "*")
    if not isinstance(scope, str) or not 0 < len(scope) <= 64:
        ctx.fail("bad_payload", "scope must be a scope code")
    accreditation = _accreditation(ctx.get(f"accreditation/{ctx.sender_org}"),
                                   cert_type, scope, ctx.time)
    if accreditation is None:
        ctx.fail("not_accredited", f"{ctx.sender_org} holds no accreditation in force "
                 f"for {cert_type} ({scope})")
    root = payload_str(ctx, "merkle_root", size_max=64)
    if len(root) != 64 or not all(c in "0123456789abcdef" for c in root):
        ctx.fail("bad_payload", "merkle_root must be 64 lowercase hex digits")
    if ctx.has(f"anchor/{root}"):
        ctx.fail("conflict", "these certificates are already anchored")
    subject = ctx.payload["subject"]
    if not isinstance(subject, dict) or subject.get("kind") not in (
            "product", "batch", "organisation") or not isinstance(subject.get("id"), str) \
            or not 0 < len(subject["id"]) <= 128:
        ctx.fail("bad_payload", "subject must be {kind: product|batch|organisation, id}")
    subject_id = subject["id"]
    if subject["kind"] == "product":
        try:
            subject_id = identifiers.normalize_gtin(subject_id)
        except identifiers.IdentifierError as exc:
            ctx.fail(exc.code, str(exc))
        if not ctx.has(f"product/{subject_id}"):
            ctx.fail("not_found", f"product {subject_id} is not registered")
    valid_from = payload_int(ctx, "valid_from")
    valid_until = payload_int(ctx, "valid_until")
    if valid_until <= valid_from:
        ctx.fail("bad_payload", "valid_until must be after valid_from")
    if valid_until > accreditation["valid_until"]:
        ctx.fail("beyond_accreditation", "a certificate may not outlast the "
                 "accreditation it is issued under (valid_until after "
                 f"{accreditation['valid_until']})")
    record = {"merkle_root": root, "issuer": ctx.sender_org, "anchored_at": ctx.time,
              "valid_from": valid_from, "valid_until": valid_until, "revoked_at": None,
              "revoked_targets": {}, "type": cert_type, "scope": scope,
              "subject": {"kind": subject["kind"], "id": subject_id},
              "height": ctx.height, "by": ctx.sender}
    ctx.put(f"anchor/{root}", record)
    subject_key = f"cert_subject/{subject['kind']}:{subject_id}"
    ctx.put(subject_key, [*(ctx.get(subject_key) or []), root][-64:])
    ctx.emit("trace.certificate.issued", {
        "merkle_root": root, "issuer": ctx.sender_org, "type": cert_type, "scope": scope,
        "subject_kind": subject["kind"], "subject_id": subject_id,
        "valid_from": valid_from, "valid_until": valid_until})


def revoke_certificate(ctx: TxContext) -> None:
    root = payload_str(ctx, "merkle_root", size_max=64)
    record = ctx.get(f"anchor/{root}")
    if record is None:
        ctx.fail("not_found", "no such anchored certificate")
    if record["issuer"] != ctx.sender_org:
        ctx.fail("forbidden", "only the issuer revokes its certificates")
    target = ctx.payload.get("target_hash")
    reason = ctx.payload.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 256:
        ctx.fail("bad_payload", "reason must be at most 256 characters")
    if target is None:
        if record["revoked_at"] is not None:
            ctx.fail("conflict", "already revoked")
        record["revoked_at"] = ctx.time
    else:
        if not isinstance(target, str) or len(target) != 64 or not all(
                c in "0123456789abcdef" for c in target):
            ctx.fail("bad_payload", "target_hash must be 64 lowercase hex digits")
        if target in record["revoked_targets"]:
            ctx.fail("conflict", "already revoked")
        record["revoked_targets"] = {**record["revoked_targets"], target: ctx.time}
    ctx.put(f"anchor/{root}", record)
    ctx.emit("trace.certificate.revoked", {"merkle_root": root, "target_hash": target,
                                           "issuer": ctx.sender_org, "reason": reason})


def _accreditation(record: Mapping[str, Any] | None, cert_type: str, scope: str,
                   at: int) -> Mapping[str, Any] | None:
    """The accreditation in force at ``at`` covering ``cert_type`` and ``scope`` (the one
    lasting longest, if several), or None."""
    found: Mapping[str, Any] | None = None
    for a in (record or {}).get("accreditations", []):
        in_force = a["valid_from"] <= at < a["valid_until"] and (
            a["revoked_at"] is None or at < a["revoked_at"])
        covers = any(s in ("*", scope) or scope.startswith(s + "/") for s in a["scopes"])
        if in_force and covers and cert_type in a["types"] and (
                found is None or a["valid_until"] > found["valid_until"]):
            found = a
    return found


def _accredited(record: Mapping[str, Any] | None, cert_type: str, scope: str,
                at: int) -> bool:
    return _accreditation(record, cert_type, scope, at) is not None


def certificate_in_force(record: Mapping[str, Any], accreditations: Mapping[str, Any] | None,
                         at: int) -> bool:
    """Whether an anchored certificate batch vouches at ``at``: in its validity, with no
    certificate of it revoked (a batch has one subject, so the chain cannot tell which
    leaf still vouches), from a body accredited for its type and scope when it issued.
    The one rule for the contract's checks and the gateway's product pages."""
    return (record["revoked_at"] is None and not record.get("revoked_targets")
            and record["valid_from"] <= at < record["valid_until"]
            and _accredited(accreditations, record["type"], record["scope"],
                            record["anchored_at"]))


def has_valid_certificate(ctx: TxContext, gtin: str, cert_type: str) -> bool:
    """Whether a certificate of ``cert_type`` for product ``gtin`` vouches now."""
    for root in ctx.get(f"cert_subject/product:{gtin}") or []:
        record = ctx.get(f"anchor/{root}")
        if record is not None and record["type"] == cert_type and certificate_in_force(
                record, ctx.get(f"accreditation/{record['issuer']}"), ctx.time):
            return True
    return False


# --- for the domains that depend on trace (a full-key state reader: their ``ctx.read``) ---

def anchor_of(read: Callable[[str], Any], root: str) -> dict[str, Any] | None:
    """The anchored certificate batch ``root`` (``read`` takes full keys, e.g. another
    domain's ``ctx.read``), or None."""
    value = read(f"trace/anchor/{root}")
    return value if isinstance(value, dict) else None


def certificate_root(read: Callable[[str], Any], gtin: str, cert_type: str,
                     at: int) -> str | None:
    """The root of a batch holding a certificate of ``cert_type`` for product ``gtin``
    that vouches at ``at`` (the first anchored of them), or None: the rule of
    :func:`has_valid_certificate`, for a domain that needs the proof it rests on."""
    for root in read(f"trace/cert_subject/product:{gtin}") or []:
        record = anchor_of(read, root)
        if record is not None and record["type"] == cert_type and certificate_in_force(
                record, read(f"trace/accreditation/{record['issuer']}"), at):
            return str(root)
    return None
