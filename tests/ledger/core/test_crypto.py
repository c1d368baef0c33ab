"""Tests for Ed25519 keys, key ids, signing and strict verification (crypto.py)."""

from __future__ import annotations

import hashlib

import pytest

from services.ledger.core import crypto
from services.ledger.core.crypto import (
    KEY_ID_BYTES,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    PrivateKey,
    PublicKey,
    key_id_of,
    verify,
)
from services.ledger.core.encoding import tagged_hash
from services.ledger.core.errors import InvalidSignature

# Ed25519 group order.
L = 2**252 + 27742317777372353535851937790883648493

# RFC 8032 section 7.1, TEST 1 (empty message).
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46b"
    "d25bf5f0595bbe24655141438e7a100b"
)

# Pinned: derive() and key ids are part of the simulator's and the tests' fixtures.
VECTOR_KEY_ID = "a164ce11e0a742d7e38a5c2f40eebf25"
VECTOR_PUBLIC = "be4f6175a66c8cc08ef82a2919d7c3fd6dc2eb4a84a93cdcf44117311a55a3fb"

DIGEST = tagged_hash(b"ecosphere/test/v1", b"message")


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey.derive("vector")


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1 :]


def test_rfc8032_test1():
    k = PrivateKey.from_seed(RFC8032_SEED)
    assert k.public.raw == RFC8032_PUBLIC
    assert k.sign(b"") == RFC8032_SIGNATURE
    assert verify(RFC8032_PUBLIC, RFC8032_SIGNATURE, b"")
    assert not verify(RFC8032_PUBLIC, RFC8032_SIGNATURE, b"\x00")


def test_sign_verify(key):
    sig = key.sign(DIGEST)
    assert len(sig) == SIGNATURE_BYTES
    assert verify(key.public.raw, sig, DIGEST)
    assert key.public.verify(sig, DIGEST)


def test_signing_is_deterministic(key):
    assert key.sign(DIGEST) == key.sign(DIGEST)
    assert key.sign(DIGEST) != key.sign(flip(DIGEST, 0))


def test_flipping_any_signature_byte_fails(key):
    sig = key.sign(DIGEST)
    for i in range(SIGNATURE_BYTES):
        for mask in (0x01, 0x80):
            assert not verify(key.public.raw, flip(sig, i, mask), DIGEST), (i, mask)


def test_flipping_any_public_key_byte_fails(key):
    sig = key.sign(DIGEST)
    for i in range(PUBLIC_KEY_BYTES):
        for mask in (0x01, 0x80):
            assert not verify(flip(key.public.raw, i, mask), sig, DIGEST), (i, mask)


def test_flipping_any_digest_byte_fails(key):
    sig = key.sign(DIGEST)
    for i in range(len(DIGEST)):
        for mask in (0x01, 0x80):
            assert not verify(key.public.raw, sig, flip(DIGEST, i, mask)), (i, mask)


def test_truncated_or_extended_digest_fails(key):
    sig = key.sign(DIGEST)
    assert not verify(key.public.raw, sig, DIGEST[:-1])
    assert not verify(key.public.raw, sig, DIGEST + b"\x00")
    assert not verify(key.public.raw, sig, b"")


def test_wrong_lengths_are_false_not_errors(key):
    sig = key.sign(DIGEST)
    pub = key.public.raw
    assert not verify(pub[:-1], sig, DIGEST)
    assert not verify(pub + b"\x00", sig, DIGEST)
    assert not verify(pub, sig[:-1], DIGEST)
    assert not verify(pub, sig + b"\x00", DIGEST)
    assert not verify(b"", b"", DIGEST)


def test_other_key_fails(key):
    other = PrivateKey.derive("other")
    assert not verify(other.public.raw, key.sign(DIGEST), DIGEST)


def test_non_canonical_s_is_refused(key):
    """S + L verifies under lax Ed25519; strict verification must refuse it."""
    sig = key.sign(DIGEST)
    s = int.from_bytes(sig[32:], "little")
    assert s < L
    malleated = sig[:32] + (s + L).to_bytes(32, "little")
    assert malleated != sig
    assert not verify(key.public.raw, malleated, DIGEST)


def test_small_order_public_key_is_refused():
    """The identity point with R = identity, S = 0 'verifies' any message under lax rules."""
    identity = bytes([1]) + bytes(31)
    sig = identity + bytes(32)
    assert not verify(identity, sig, DIGEST)
    assert not verify(identity, sig, b"")


def test_key_id_definition_and_pin(key):
    assert key.key_id == VECTOR_KEY_ID
    assert key.public.hex() == VECTOR_PUBLIC
    assert key.public.key_id == key.key_id
    expected = hashlib.sha256(b"ecosphere/key-id\x00" + key.public.raw).digest()[:16].hex()
    assert key_id_of(key.public.raw) == expected
    assert len(key.key_id) == 2 * KEY_ID_BYTES


def test_derive_is_deterministic_and_label_sensitive():
    a1, a2 = PrivateKey.derive("alice"), PrivateKey.derive("alice")
    assert a1.seed == a2.seed
    assert a1.public == a2.public
    assert a1.key_id == a2.key_id
    assert PrivateKey.derive("alice").key_id != PrivateKey.derive("alicf").key_id
    expected_seed = hashlib.sha256(b"ecosphere/test-key\x00alice").digest()
    assert a1.seed == expected_seed
    assert PrivateKey.from_seed(expected_seed).public == a1.public


def test_from_seed_length():
    with pytest.raises(ValueError):
        PrivateKey.from_seed(bytes(31))
    with pytest.raises(ValueError):
        PrivateKey.from_seed(bytes(33))


def test_public_key_length():
    with pytest.raises(InvalidSignature) as info:
        PublicKey(bytes(31))
    assert info.value.code == "bad_signature"


def test_repr_does_not_leak_seed(key):
    text = repr(key)
    assert key.key_id in text
    assert key.seed.hex() not in text


def test_constants():
    assert (crypto.PUBLIC_KEY_BYTES, crypto.SIGNATURE_BYTES, crypto.SEED_BYTES) == (32, 64, 32)
