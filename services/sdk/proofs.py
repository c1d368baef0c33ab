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
   header's ``state_root``;
4. **block**: its body is the one its certified header commits to (the
   transactions' count and ``tx_root``, the parent's certificate's hash).

Validator-set changes are followed by :class:`ValidatorTrust` (a light client's
*sequential verification*): a header certified by an unknown set ``X`` is
accepted only after a chain of certified transitions from a trusted set to
``X`` has been checked — for each set, the block just before the first block
it certified, certified by the previous set, names it as
``next_validators_hash``. The gateway supplies the candidates
(``GET /v1/validators/sets/{hash}``, ``GET /v1/blocks/{height}``) but cannot
forge one: every link is checked against a set already trusted. As with every
light client, trusting a set that once validated the chain assumes its members
do not sign a fork later (the consortium's members are known and accountable;
pin a recent genesis or checkpoint to shorten the chain).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from services.ledger.core import merkle
from services.ledger.core.blocks import Block, BlockHeader, check_body
from services.ledger.core.certificate import CommitCertificate
from services.ledger.core.encoding import encode_unchecked
from services.ledger.core.errors import InvalidBlock, LedgerError
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


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _proof_errors(check: Callable[_P, _R]) -> Callable[_P, _R]:
    """Any malformed part of an answer (missing fields, wrong types) is a ProofError: a
    hostile gateway must not get past callers that catch ProofError."""
    import functools

    @functools.wraps(check)
    def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return check(*args, **kwargs)
        except ProofError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError,
                LedgerError) as exc:
            raise ProofError(f"malformed answer: {type(exc).__name__}: {exc}") from exc
    return guarded


#: the longest chain of validator-set transitions a client follows in one go
TRANSITIONS_MAX = 64


class ValidatorTrust:
    """Validator sets a client trusts: the genesis set, and each set a checked chain of
    certified transitions from it installed."""

    def __init__(self, genesis: Genesis | Mapping[str, Any]) -> None:
        g = genesis if isinstance(genesis, Genesis) else Genesis.from_wire(dict(genesis))
        self.chain_id = g.chain_id
        self._sets: dict[bytes, ValidatorSet] = {g.validators.hash: g.validators}

    def __contains__(self, validators_hash: bytes) -> bool:
        return validators_hash in self._sets

    @_proof_errors
    def follow(self, target: bytes,
               fetch_set: Callable[[str], Mapping[str, Any] | None],
               fetch_block: Callable[[int], Mapping[str, Any] | None]) -> ValidatorSet:
        """The set with hash ``target``, trusted after checking the transitions that lead
        to it. ``fetch_set(hex)`` answers like ``GET /v1/validators/sets/{hash}`` and
        ``fetch_block(height)`` like ``GET /v1/blocks/{height}`` (``None``: unknown)."""
        pending: list[tuple[ValidatorSet, Mapping[str, Any]]] = []
        seen: set[bytes] = set()
        wanted = target
        while wanted not in self._sets:
            if len(pending) >= TRANSITIONS_MAX:
                raise UntrustedValidators(f"more than {TRANSITIONS_MAX} validator-set "
                                          "changes since the trusted set: pin a newer one")
            record = fetch_set(wanted.hex())
            if record is None:
                raise UntrustedValidators(f"validator set {wanted.hex()[:16]} is unknown to "
                                          "the gateway")
            try:
                vset = ValidatorSet.from_wire(record["validators"])
                first = int(record["first_height"])
            except (LedgerError, KeyError, TypeError, ValueError) as exc:
                raise ProofError(f"malformed validator set: {exc}") from exc
            if vset.hash != wanted:
                raise ProofError("the validator set served does not have the asked hash")
            if first < 2:
                raise UntrustedValidators("the genesis names another validator set")
            block = fetch_block(first - 1)
            if block is None or not isinstance(block.get("block"), Mapping):
                raise UntrustedValidators(f"block {first - 1} is unavailable")
            header = block["block"].get("header")
            if not isinstance(header, Mapping):
                raise ProofError(f"block {first - 1} has no header")
            try:
                previous = bytes.fromhex(str(header["validators_hash"]))
                named = bytes.fromhex(str(header["next_validators_hash"]))
            except (KeyError, ValueError) as exc:
                raise ProofError(f"malformed header of block {first - 1}: {exc}") from exc
            if named != wanted or previous == wanted or previous in seen:
                raise ProofError(f"block {first - 1} does not install validator set "
                                 f"{wanted.hex()[:16]}")
            seen.add(wanted)
            pending.append((vset, block))
            wanted = previous
        for vset, block in reversed(pending):  # oldest transition first
            header_wire = block["block"]["header"]
            signer = self._sets[bytes.fromhex(str(header_wire["validators_hash"]))]
            header = verify_certified_header(header_wire, block["certificate"], signer,
                                             chain_id=self.chain_id)
            if header.next_validators_hash != vset.hash:
                raise ProofError(f"block {header.height} does not install the set")
            self._sets[vset.hash] = vset
        return self._sets[target]


def signing_set(result: Mapping[str, Any]) -> bytes:
    """The validator-set hash named by the header of a proof-carrying answer."""
    try:
        return bytes.fromhex(str(result["header"]["validators_hash"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProofError(f"the answer carries no header: {exc}") from exc


def trusted_validators(genesis: Genesis | Mapping[str, Any]) -> ValidatorSet:
    g = genesis if isinstance(genesis, Genesis) else Genesis.from_wire(dict(genesis))
    return g.validators


@_proof_errors
def verify_certified_header(header_wire: Mapping[str, Any],
                            certificate_wire: Mapping[str, Any],
                            trusted: ValidatorSet, *, chain_id: str | None = None
                            ) -> BlockHeader:
    """The header, once its certificate is checked against ``trusted``; ``chain_id``
    (the pinned genesis') must be the header's: the same validators may run other
    chains (staging, tests), whose blocks prove nothing about this one."""
    try:
        header = BlockHeader.from_wire(dict(header_wire))
        certificate = CommitCertificate.from_wire(dict(certificate_wire))
    except (LedgerError, KeyError, TypeError, ValueError) as exc:
        raise ProofError(f"malformed header or certificate: {exc}") from exc
    if chain_id is not None and header.chain_id != chain_id:
        raise ProofError(f"block {header.height} belongs to chain {header.chain_id!r}, "
                         f"not {chain_id!r}")
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


def verify_block(answer: Mapping[str, Any], trusted: ValidatorSet, *,
                 chain_id: str | None = None) -> BlockHeader:
    """Check a block as ``GET /v1/blocks/{height}`` answers it (``{"block": {header,
    txs, last_commit}, "certificate"}``): the certificate over its header against
    ``trusted``, then its body against the header. Returns the header."""
    try:
        return _verify_block(answer, trusted, chain_id=chain_id)
    except ProofError as exc:
        block = answer.get("block")
        header = block.get("header") if isinstance(block, Mapping) else None
        height = header.get("height") if isinstance(header, Mapping) else None
        raise type(exc)(f"block {height} did not verify: {exc}") from exc


@_proof_errors
def _verify_block(answer: Mapping[str, Any], trusted: ValidatorSet, *,
                  chain_id: str | None) -> BlockHeader:
    block_wire = answer["block"]
    header = verify_certified_header(block_wire["header"], answer["certificate"], trusted,
                                     chain_id=chain_id)
    try:
        block = Block.from_wire(dict(block_wire))
    except (LedgerError, KeyError, TypeError, ValueError) as exc:
        raise ProofError(f"malformed block body: {exc}") from exc
    try:
        check_body(block)
    except InvalidBlock as exc:
        raise ProofError(f"the body is not the one the certified header commits to: "
                         f"{exc}") from exc
    return header


@_proof_errors
def verify_transaction(result: Mapping[str, Any], trusted: ValidatorSet,
                       transaction: Mapping[str, Any] | Transaction, *,
                       expected_hash: str | None = None,
                       chain_id: str | None = None) -> BlockHeader:
    """Check a committed transaction (a ``wait=commit`` receipt, or the answer of
    ``GET /v1/transactions/{hash}``) against the trusted validators; with
    ``expected_hash``, that it is the transaction asked for (a gateway must not answer
    a question with the proof of another transaction)."""
    header = verify_certified_header(result["header"], result["certificate"], trusted,
                                     chain_id=chain_id)
    try:
        tx = transaction if isinstance(transaction, Transaction) else \
            Transaction.from_wire(dict(transaction))
    except (LedgerError, KeyError, TypeError, ValueError) as exc:
        raise ProofError(f"malformed transaction: {exc}") from exc
    if expected_hash is not None and tx.hash.hex() != expected_hash:
        raise ProofError(f"the answer proves transaction {tx.hash.hex()}, not "
                         f"{expected_hash}")
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


@_proof_errors
def verify_state_value(result: Mapping[str, Any], trusted: ValidatorSet, *,
                       expected_key: str | None = None, chain_id: str | None = None,
                       min_height: int | None = None) -> Any:
    """Check ``GET /v1/state/{key}``; returns the proven value (None: proven absent).

    ``expected_key``: the key asked for (an answer about another key is refused);
    ``min_height``: refuse a proof against an older block (a value can be proven at
    any height it held; ask for freshness when it matters)."""
    header = verify_certified_header(result["header"], result["certificate"], trusted,
                                     chain_id=chain_id)
    if expected_key is not None and result.get("key") != expected_key:
        raise ProofError(f"the answer is about {result.get('key')!r}, not {expected_key!r}")
    if min_height is not None and header.height < min_height:
        raise ProofError(f"the proof is against block {header.height}, older than "
                         f"{min_height}")
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
