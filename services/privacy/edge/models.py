"""Pydantic models of the privacy endpoints (the OpenAPI document is generated from
them), and the one encoding of bytes at this boundary.

Bytes the vault holds (ciphertexts, wrapped data keys) travel as unpadded base64url
strings (RFC 4648 section 5, no ``=``). Values read from the chain keep their chain
form: hashes, commitments, key ids and X25519 public keys are lowercase hex.
"""

from __future__ import annotations

import base64
import re
from typing import Any, Literal

from pydantic import Field

from services.gateway.models import HEX32, KEY_ID, Model, Open, PageQuery
from services.gateway.problems import Problem

__all__ = [
    "B64URL", "PARTY", "AccessLogEntry", "AccessLogPage", "CiphertextBody",
    "CiphertextStored", "EncryptionKeyAnswer", "Envelope", "EnvelopeQuery", "Export",
    "ExportQuery", "ExportRecord", "RecordList", "RecordMetadata", "WrapBody", "WrapStored",
    "b64url", "from_b64url",
]

B64URL = r"^[A-Za-z0-9_-]*$"
PARTY = r"^(vault|org:[a-z0-9._-]{1,64}|key:[0-9a-f]{32})$"
_B64URL_RE = re.compile(B64URL)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_b64url(text: str, what: str) -> bytes:
    """``text`` decoded, or a 422 ``bad_payload`` problem: unpadded base64url in its one
    canonical form (so one value has one spelling, and equal bytes compare equal)."""
    if not _B64URL_RE.fullmatch(text) or len(text) % 4 == 1:
        raise Problem(422, "bad_payload", f"{what} is unpadded base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(raw) != text:
        raise Problem(422, "bad_payload", f"{what} is not in canonical base64url "
                                          "(unused bits set)")
    return raw


_CIPHERTEXT = Field(pattern=B64URL, min_length=1,
                    description="nonce (12 bytes) ‖ ChaCha20-Poly1305 ciphertext of the "
                                "value under the record's data key, AAD = the commitment's "
                                "32 bytes; unpadded base64url")
_WRAP = Field(pattern=B64URL, min_length=1,
              description="the record's data key wrapped for one party with HPKE (RFC 9180 "
                          "base mode, X25519 / HKDF-SHA256 / ChaCha20-Poly1305): enc ‖ ct, "
                          "unpadded base64url")


class EncryptionKeyAnswer(Open):
    """A party's active encryption key, as registered on the chain."""

    party: str = Field(pattern=PARTY)
    key_id: str = Field(pattern=KEY_ID)
    public_key: str = Field(pattern=HEX32, description="X25519 public key, lowercase hex "
                                                       "(as on the chain)")
    country: str = Field(pattern=r"^[A-Z]{2}$")
    since: int = Field(description="block time of its registration, ms")


class CiphertextBody(Model):
    ciphertext: str = _CIPHERTEXT
    wraps: dict[str, str] = Field(
        default_factory=dict,
        description="party -> the data key wrapped for it; every party is one of the "
                    "record's holders (the subject's own wrap is what its export returns)")


class CiphertextStored(Open):
    record_id: str = Field(pattern=HEX32)
    stored: bool
    wraps: list[str] = Field(description="the parties the vault holds a wrap for")


class WrapBody(Model):
    wrapped_key: str = _WRAP


class WrapStored(Open):
    record_id: str = Field(pattern=HEX32)
    party: str = Field(pattern=PARTY)
    stored: bool


class EnvelopeQuery(Model):
    access: str = Field(pattern=HEX32, description="the hash of your committed "
                                                   "privacy.access transaction (granted)")


class Envelope(Open):
    """What a party needs to decrypt a record: the ciphertext and its own wrap."""

    record_id: str = Field(pattern=HEX32)
    category: str
    commitment: str = Field(pattern=HEX32, description="the AAD, and what the value is "
                                                       "checked against once decrypted")
    ciphertext: str = _CIPHERTEXT
    wrapped_key: str = _WRAP
    party: str = Field(pattern=PARTY, description="the party the key is wrapped for")


class RecordMetadata(Open):
    """A record as the chain holds it: no personal data. A party other than the subject
    sees only its own holder, wrap-hash, grantee and erasure entries."""

    record_id: str = Field(pattern=HEX32)
    subject: str = Field(pattern=KEY_ID)
    category: str
    jurisdiction: str
    status: Literal["active", "superseded", "erasing", "erased"]
    commitment: str = Field(pattern=HEX32)
    ciphertext_hash: str = Field(pattern=HEX32)
    holders: dict[str, str] = Field(description="party -> the encryption key id wrapped for")
    wrap_hashes: dict[str, str] = Field(default_factory=dict,
                                        description="holder -> the SHA-256 of the data key "
                                                    "wrapped for it (what the vault stores)")
    grantees: dict[str, list[str]] = Field(default_factory=dict,
                                           description="party -> purposes ever granted")
    erasure: dict[str, Any] | None = None
    created: int
    supersedes: str | None = None
    superseded_by: str | None = None
    cross_border_consent: bool = False


class RecordList(Open):
    subject: str = Field(pattern=KEY_ID)
    items: list[RecordMetadata]


class AccessLogEntry(Open):
    """One access to one of your records, granted or refused."""

    record_id: str = Field(pattern=HEX32)
    party: str
    purpose: str
    basis: str
    outcome: Literal["granted", "refused"]
    reason: str | None
    by: str = Field(pattern=KEY_ID)
    time: int = Field(description="block time, ms")
    height: int
    tx_hash: str | None


class AccessLogPage(Open):
    items: list[AccessLogEntry]
    next_cursor: str | None


class AccessLogQuery(PageQuery):
    pass


class ExportRecord(RecordMetadata):
    ciphertext: str | None = Field(description="null: not uploaded, or erased")
    wrapped_key: str | None = Field(description="your own wrap (key:<your key id>)")
    history: list[dict[str, Any]] = Field(description="status changes, oldest first")


class ExportQuery(Model):
    cursor: str | None = Field(None, pattern=HEX32,
                               description="the next_cursor of the page before")


class Export(Open):
    """Everything the platform holds about you, machine-readable; decrypt locally. One
    page of your records (in record id order); the access log and your key come with
    the first page."""

    subject: str = Field(pattern=KEY_ID)
    exported_at: int = Field(description="ms since the Unix epoch (gateway clock)")
    height: int = Field(description="the chain height the state was read at")
    encryption_key: dict[str, Any] | None
    records: list[ExportRecord]
    grants: list[dict[str, Any]] = Field(description="the grants of this page's records")
    access_log: list[AccessLogEntry] = Field(description="first page only, newest first")
    erasures: list[dict[str, Any]] = Field(description="of this page's records")
    next_cursor: str | None = Field(description="more records: ask again with this cursor")
    access_log_truncated: bool = Field(description="more accesses than the export holds "
                                                   "(/v1/privacy/me/access-log pages "
                                                   "them all)")
    truncated: bool = Field(description="this answer is not everything: more records "
                                        "(next_cursor) or more accesses")
