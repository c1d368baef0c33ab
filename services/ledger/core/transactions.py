"""The transaction envelope and its static validation.

A transaction is what a client signs: ``{chain_id, kind, sender, nonce,
payload, created_at}`` (the *body*), plus the sender's public key and an
Ed25519 signature. Its identity is

    tx_hash = SHA-256("ecosphere/tx/v1" ‖ 0x00 ‖ canonical(body))

and the signature is over ``tx_hash``. The signature is *not* part of the hash,
so a transaction has one identity whatever bytes carried it; it *is* part of
the block's transaction Merkle leaf (the leaf is the canonical wire form), so a
block commits to the signatures it was validated with.

Validation has two stages (indy-plenum's split):

* **static** (:func:`check_static`): needs no state — schema, sizes, chain id,
  kind syntax, key id matches the public key, signature. Safe to run anywhere,
  in any order, and cacheable by hash.
* **dynamic** (``execution``): needs state — the sender key is active, the
  nonce is the next one for the sender (which rejects replays), the creation
  time is within the window around block time, and the contract's own rules.

This module never does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.ledger.core import crypto, merkle
from services.ledger.core.encoding import (
    check_value,
    encode_unchecked,
    from_hex,
    get_int,
    get_map,
    get_str,
    require_keys,
    tagged_hash,
)
from services.ledger.core.errors import EncodingError, InvalidSignature, InvalidTransaction

TX_TAG = b"ecosphere/tx/v1"
KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}\.[a-z][a-z0-9_.]{0,63}$")
CHAIN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
KEY_ID_RE = re.compile(r"^[0-9a-f]{32}$")

_BODY_KEYS = frozenset({"chain_id", "kind", "sender", "nonce", "payload", "created_at"})
_WIRE_KEYS = frozenset({"body", "public_key", "signature"})


@dataclass(frozen=True, slots=True)
class TxLimits:
    """Static limits on one transaction (carried in genesis, so every replica agrees)."""

    tx_bytes_max: int = 256 * 1024
    payload_depth_max: int = 16


@dataclass(frozen=True, slots=True, eq=False)
class Transaction:
    chain_id: str
    kind: str
    sender: str
    nonce: int
    payload: Mapping[str, Any]
    created_at: int
    public_key: bytes
    signature: bytes
    hash: bytes = field(repr=False)
    wire_bytes: bytes = field(repr=False)
    leaf: bytes = field(repr=False, default=b"")  # RFC 6962 leaf hash of ``wire_bytes``

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Transaction) and other.wire_bytes == self.wire_bytes

    def __hash__(self) -> int:
        return hash(self.hash)

    @property
    def contract(self) -> str:
        return self.kind.split(".", 1)[0]

    @property
    def action(self) -> str:
        return self.kind.split(".", 1)[1]

    def body(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "kind": self.kind,
            "sender": self.sender,
            "nonce": self.nonce,
            "payload": self.payload,
            "created_at": self.created_at,
        }

    def to_wire(self) -> dict[str, Any]:
        return {
            "body": self.body(),
            "public_key": self.public_key.hex(),
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_wire(cls, obj: object, *, checked: bool = False) -> Transaction:
        """Parse the wire form (schema only: no signature check; see :func:`check_static`).

        ``checked``: the value came from :func:`~services.ledger.core.encoding.decode`,
        which already checked it is inside the canonical profile.
        """
        wire = require_keys(obj, _WIRE_KEYS, "transaction")
        body = require_keys(wire["body"], _BODY_KEYS, "transaction body")
        payload = get_map(body, "payload")
        if not checked:
            check_value(payload)
        public_key = from_hex(wire["public_key"], length=crypto.PUBLIC_KEY_BYTES,
                              field="public_key")
        signature = from_hex(wire["signature"], length=crypto.SIGNATURE_BYTES,
                             field="signature")
        tx = cls(
            chain_id=get_str(body, "chain_id", size_max=64),
            kind=get_str(body, "kind", size_max=97),
            sender=get_str(body, "sender", size_max=32),
            nonce=get_int(body, "nonce"),
            payload=payload,
            created_at=get_int(body, "created_at"),
            public_key=public_key,
            signature=signature,
            hash=b"",
            wire_bytes=b"",
        )
        body_bytes = encode_unchecked(body)
        # The canonical wire form is {"body","public_key","signature"} in that
        # (sorted) order, so it is the body's bytes spliced in: one encoding, not two.
        wire_bytes = b"".join((b'{"body":', body_bytes, b',"public_key":"', public_key.hex()
                               .encode(), b'","signature":"', signature.hex().encode(), b'"}'))
        object.__setattr__(tx, "hash", tagged_hash(TX_TAG, body_bytes))
        object.__setattr__(tx, "wire_bytes", wire_bytes)
        object.__setattr__(tx, "leaf", merkle.leaf_hash(wire_bytes))
        return tx


def tx_hash_of(body: Mapping[str, Any]) -> bytes:
    return tagged_hash(TX_TAG, encode_unchecked(body))


def sign_transaction(
    key: crypto.PrivateKey,
    *,
    chain_id: str,
    kind: str,
    nonce: int,
    payload: Mapping[str, Any],
    created_at: int,
) -> Transaction:
    """Build and sign a transaction (the SDK's job; the core uses it in tests and the sim)."""
    body = {
        "chain_id": chain_id,
        "kind": kind,
        "sender": key.key_id,
        "nonce": nonce,
        "payload": dict(payload),
        "created_at": created_at,
    }
    check_value(body)
    digest = tx_hash_of(body)
    wire = {
        "body": body,
        "public_key": key.public.raw.hex(),
        "signature": key.sign(digest).hex(),
    }
    return Transaction.from_wire(wire)


def check_static(
    tx: Transaction, *, chain_id: str, limits: TxLimits, verify_signature: bool = True
) -> None:
    """Raise unless ``tx`` passes every check that needs no state."""
    if tx.chain_id != chain_id:
        raise InvalidTransaction(f"chain id {tx.chain_id!r} is not {chain_id!r}",
                                 code="wrong_chain")
    if len(tx.wire_bytes) > limits.tx_bytes_max:
        raise InvalidTransaction(
            f"transaction of {len(tx.wire_bytes)} bytes exceeds {limits.tx_bytes_max}",
            code="tx_too_large",
        )
    if not KIND_RE.match(tx.kind):
        raise InvalidTransaction(f"kind {tx.kind!r} is not '<contract>.<action>'",
                                 code="bad_kind")
    if not KEY_ID_RE.match(tx.sender):
        raise InvalidTransaction("sender must be a 32-hex-digit key id", code="bad_sender")
    if crypto.key_id_of(tx.public_key) != tx.sender:
        raise InvalidSignature("sender key id does not match the public key",
                               code="key_mismatch")
    try:
        check_value(tx.payload, depth_max=limits.payload_depth_max)
    except EncodingError as exc:
        raise InvalidTransaction(f"payload: {exc}", code="bad_payload") from exc
    if verify_signature and not crypto.verify(tx.public_key, tx.signature, tx.hash):
        raise InvalidSignature("transaction signature does not verify")
