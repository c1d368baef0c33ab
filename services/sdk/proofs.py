"""Checking the gateway's answers offline, trusting only a validator set.

A client pins the consortium's genesis (its hash, or the genesis document
itself) and from it the validator set. Everything else the gateway says can
then be checked without trusting the gateway:

1. **certified header**: the commit certificate holds precommits of more than
   two thirds of the validators' power for the header's hash (each a valid
   Ed25519 signature), and the header names that validator set;
2. **transaction**: the transaction's canonical bytes hash (RFC 6962 leaf) to
   a leaf whose audit path leads to the header's ``tx_root``;
3. **state value**: the value (or its absence) and the state proof lead to the
   header's ``state_root``.

A header signed by a validator set other than the trusted one raises
:class:`UntrustedValidators`: following validator-set changes needs the
certified blocks that installed them (not automated in this version).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from services.ledger.core import merkle
from services.ledger.core.blocks import BlockHeader
from services.ledger.core.certificate import CommitCertificate
from services.ledger.core.encoding import encode_unchecked
from services.ledger.core.errors import LedgerError
from services.ledger.core.genesis import Genesis
from services.ledger.core.state import state_key
from services.ledger.core.statetree import StateProof, verify_state_proof
from services.ledger.core.transactions import Transaction
from services.ledger.core.validators import ValidatorSet


class ProofError(Exception):
    """The gateway's answer does not prove what it claims."""

    code = "bad_proof"


class UntrustedValidators(ProofError):
    code = "untrusted_validators"


def trusted_validators(genesis: Genesis | Mapping[str, Any]) -> ValidatorSet:
    g = genesis if isinstance(genesis, Genesis) else Genesis.from_wire(dict(genesis))
    return g.validators


def verify_certified_header(header_wire: Mapping[str, Any],
                            certificate_wire: Mapping[str, Any],
                            trusted: ValidatorSet) -> BlockHeader:
    try:
        header = BlockHeader.from_wire(dict(header_wire))
        certificate = CommitCertificate.from_wire(dict(certificate_wire))
    except (LedgerError, KeyError, TypeError, ValueError) as exc:
        raise ProofError(f"malformed header or certificate: {exc}") from exc
    if header.validators_hash != trusted.hash:
        raise UntrustedValidators(
            f"block {header.height} was certified by validator set "
            f"{header.validators_hash.hex()[:16]}, not the trusted "
            f"{trusted.hash.hex()[:16]}")
    if certificate.block_hash != header.hash or certificate.height != header.height:
        raise ProofError("the certificate is for another block")
    try:
        certificate.verify(header.chain_id, trusted, block_time=header.time)
    except LedgerError as exc:
        raise ProofError(f"the certificate does not verify: {exc}") from exc
    return header


def verify_transaction(result: Mapping[str, Any], trusted: ValidatorSet,
                       transaction: Mapping[str, Any] | Transaction) -> BlockHeader:
    """Check a committed transaction (a ``wait=commit`` receipt, or the answer of
    ``GET /v1/transactions/{hash}``) against the trusted validators."""
    header = verify_certified_header(result["header"], result["certificate"], trusted)
    tx = transaction if isinstance(transaction, Transaction) else Transaction.from_wire(
        dict(transaction))
    try:
        proof = merkle.InclusionProof.from_wire(result["proof"])
    except ValueError as exc:
        raise ProofError(f"malformed inclusion proof: {exc}") from exc
    if proof.tree_size != header.tx_count:
        raise ProofError("the proof's tree size is not the block's transaction count")
    if not proof.verify(tx.wire_bytes, header.tx_root):
        raise ProofError("the transaction is not in the block")
    if result.get("tx_hash") not in (None, tx.hash.hex()):
        raise ProofError("the receipt names another transaction")
    return header


def verify_state_value(result: Mapping[str, Any], trusted: ValidatorSet) -> Any:
    """Check ``GET /v1/state/{key}``; returns the proven value (None: proven absent)."""
    header = verify_certified_header(result["header"], result["certificate"], trusted)
    try:
        proof = StateProof.from_wire(result["proof"])
        key = state_key(str(result["key"]))
    except ValueError as exc:
        raise ProofError(f"malformed state proof: {exc}") from exc
    value = result.get("value")
    raw = None if value is None else encode_unchecked(value)
    if not verify_state_proof(header.state_root, key, raw, proof):
        raise ProofError(f"the value of {result['key']!r} is not proven by block "
                         f"{header.height}")
    return value


def load_genesis_file(path: str) -> Genesis:
    with open(path, "rb") as f:
        return Genesis.from_wire(json.load(f))
