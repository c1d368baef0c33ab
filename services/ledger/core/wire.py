"""The replica-to-replica message envelope.

Every message between replicas is one canonical-JSON object::

    {"chain_id", "type", "from", "body", "signature"}

``from`` is the sending node's key id and ``signature`` its Ed25519 signature
over ``SHA-256("ecosphere/msg/v1" ‖ 0x00 ‖ canonical({chain_id, type, from,
body}))``. The sender must hold a registered, active key with the ``node``
permission. Bodies that are themselves signed (proposals, votes, certified
blocks, transactions) are verified again on their own: the envelope
authenticates the relayer, the body its author. The broker carrying these
bytes is never trusted.

Message types: ``proposal`` (with the whole block), ``compact_proposal`` (the
block's transactions named by their leaf hashes: replicas already hold them
from gossip), ``block_request`` (ask a peer for the whole proposal when some
transactions are unknown), ``vote``, ``txs`` (a batch of transactions),
``status`` (height and round, for catch-up), ``sync_request``,
``sync_response`` (certified blocks).

This module never does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.ledger.core import crypto
from services.ledger.core.encoding import (
    decode,
    encode_unchecked,
    from_hex,
    get_str,
    require_keys,
    tagged_hash,
)
from services.ledger.core.errors import EncodingError, InvalidMessage

MSG_TAG = b"ecosphere/msg/v1"
MESSAGE_TYPES = frozenset({"proposal", "compact_proposal", "block_request", "vote", "txs",
                           "status", "sync_request",
                           "sync_response"})
_KEYS = frozenset({"chain_id", "type", "from", "body", "signature"})


@dataclass(frozen=True, slots=True)
class Envelope:
    chain_id: str
    type: str
    sender: str
    body: Any
    signature: bytes
    digest: bytes
    size: int


def seal(key: crypto.PrivateKey, chain_id: str, msg_type: str, body: Any) -> bytes:
    return seal_bytes(key, chain_id, msg_type, encode_unchecked(body))


def seal_bytes(key: crypto.PrivateKey, chain_id: str, msg_type: str, body: bytes) -> bytes:
    """Seal a body given as canonical bytes (spliced, not re-encoded: blocks are large).

    With keys sorted, the signed object is ``{"body","chain_id","from","type"}`` and
    the envelope is the same object with ``"signature"`` between ``from`` and ``type``.
    """
    head = b"".join((b'{"body":', body, b',"chain_id":', encode_unchecked(chain_id),
                     b',"from":"', key.key_id.encode(), b'",'))
    tail = b'"type":' + encode_unchecked(msg_type) + b"}"
    signature = key.sign(tagged_hash(MSG_TAG, head + tail))
    return b"".join((head, b'"signature":"', signature.hex().encode(), b'",', tail))


def open_envelope(data: bytes, *, chain_id: str, size_max: int) -> Envelope:
    """Parse and check the envelope's shape; the caller verifies the signature."""
    try:
        obj = decode(data, size_max=size_max)
        d = require_keys(obj, _KEYS, "message")
        msg_type = get_str(d, "type", size_max=32)
        sender = get_str(d, "from", size_max=32)
        signature = from_hex(d["signature"], length=crypto.SIGNATURE_BYTES, field="signature")
        msg_chain = get_str(d, "chain_id", size_max=64)
    except EncodingError as exc:
        raise InvalidMessage(str(exc), code="malformed") from exc
    if msg_chain != chain_id:
        raise InvalidMessage("message for another chain", code="wrong_chain")
    if msg_type not in MESSAGE_TYPES:
        raise InvalidMessage(f"unknown message type {msg_type!r}", code="unknown_type")
    # The signed bytes are the envelope without its signature field (canonical
    # bytes, sorted keys): cut it out rather than re-encode a large body.
    start = data.rfind(b',"signature":"')
    signed = data[:start + 1] + data[start + len(b',"signature":"') + 2 * 64 + 2:]
    return Envelope(msg_chain, msg_type, sender, d["body"], signature,
                    tagged_hash(MSG_TAG, signed), len(data))
