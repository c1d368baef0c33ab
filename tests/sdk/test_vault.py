"""The vault's client-side cryptography (services/sdk/vault.py): round trips, and every
tampering refused with a stable code."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from services.ledger.core.encoding import encode
from services.privacy.keys import is_exchange_key
from services.sdk import vault
from services.sdk.vault import EncryptionKey, VaultError

ADDRESS = "Lindenstraße 12, 10969 Berlin"


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def _code(excinfo: pytest.ExceptionInfo[VaultError]) -> str:
    return excinfo.value.code


# --- sealing -----------------------------------------------------------------------------


def test_seal_then_open_gives_the_value_back() -> None:
    sealed = vault.seal("address", ADDRESS)
    opened = vault.open_sealed(sealed.ciphertext, sealed.data_key, sealed.commitment)
    assert (opened.category, opened.value, opened.salt) == ("address", ADDRESS, sealed.salt)
    assert sealed.ciphertext_hash == hashlib.sha256(sealed.ciphertext).hexdigest()
    assert len(sealed.salt) == 32 and len(sealed.data_key) == 32


def test_the_commitment_is_the_tagged_sha256_of_salt_category_and_value() -> None:
    salt = bytes(range(32))
    expected = hashlib.sha256(b"ecosphere/privacy/commitment/v1\x00" + salt + b"address\x00"
                              + ADDRESS.encode()).hexdigest()
    assert vault.commitment_of(salt, "address", ADDRESS) == expected
    sealed = vault.seal("address", ADDRESS)
    assert sealed.commitment == vault.commitment_of(sealed.salt, "address", ADDRESS)


def test_sealing_twice_hides_equal_values() -> None:
    a, b = vault.seal("name", "Anna Schmidt"), vault.seal("name", "Anna Schmidt")
    assert a.commitment != b.commitment and a.ciphertext != b.ciphertext
    assert a.data_key != b.data_key


def test_the_ciphertext_is_the_nonce_and_chacha20poly1305_over_the_canonical_plaintext(
        ) -> None:
    sealed = vault.seal("phone", "+49 30 1234567")
    nonce, body = sealed.ciphertext[:12], sealed.ciphertext[12:]
    plaintext = ChaCha20Poly1305(sealed.data_key).decrypt(
        nonce, body, bytes.fromhex(sealed.commitment))
    assert plaintext == encode({"category": "phone", "salt": sealed.salt.hex(), "v": 1,
                                "value": "+49 30 1234567"})


def test_reprs_show_no_secret() -> None:
    sealed = vault.seal("address", ADDRESS)
    opened = vault.open_sealed(sealed.ciphertext, sealed.data_key, sealed.commitment)
    for text in (repr(sealed), repr(opened)):
        assert ADDRESS not in text and sealed.data_key.hex() not in text
        assert sealed.salt.hex() not in text


@pytest.mark.parametrize("at", [0, 11, 12, 20, -1])
def test_a_tampered_ciphertext_is_refused(at: int) -> None:
    sealed = vault.seal("address", ADDRESS)
    with pytest.raises(VaultError) as refused:
        vault.open_sealed(_flip(sealed.ciphertext, at % len(sealed.ciphertext)),
                          sealed.data_key, sealed.commitment)
    assert _code(refused) == "bad_ciphertext"


def test_truncated_or_empty_ciphertexts_are_refused() -> None:
    sealed = vault.seal("address", ADDRESS)
    for ciphertext in (b"", sealed.ciphertext[:28], sealed.ciphertext[:-1]):
        with pytest.raises(VaultError) as refused:
            vault.open_sealed(ciphertext, sealed.data_key, sealed.commitment)
        assert _code(refused) == "bad_ciphertext"


def test_another_commitment_or_data_key_is_refused() -> None:
    sealed = vault.seal("address", ADDRESS)
    other = vault.seal("address", ADDRESS)
    with pytest.raises(VaultError) as wrong_commitment:
        vault.open_sealed(sealed.ciphertext, sealed.data_key, other.commitment)
    assert _code(wrong_commitment) == "bad_ciphertext"
    with pytest.raises(VaultError) as wrong_key:
        vault.open_sealed(sealed.ciphertext, other.data_key, sealed.commitment)
    assert _code(wrong_key) == "bad_ciphertext"
    with pytest.raises(VaultError) as malformed:
        vault.open_sealed(sealed.ciphertext, sealed.data_key, sealed.commitment.upper())
    assert _code(malformed) == "bad_commitment"


def test_a_vault_cannot_swap_one_records_ciphertext_for_anothers() -> None:
    mine, theirs = vault.seal("address", ADDRESS), vault.seal("address", "Rue de Rivoli 1")
    with pytest.raises(VaultError) as swapped:
        vault.open_sealed(theirs.ciphertext, mine.data_key, mine.commitment)
    assert _code(swapped) == "bad_ciphertext"


def test_a_ciphertext_its_commitment_does_not_name_is_refused() -> None:
    """A sender who encrypts one value under the AAD of another's commitment (the AEAD
    alone would accept it) is caught by recomputing the commitment."""
    honest = vault.seal("address", ADDRESS)
    data_key, nonce = os.urandom(32), os.urandom(12)
    plaintext = encode({"category": "address", "salt": honest.salt.hex(), "v": 1,
                        "value": "somewhere else"})
    forged = nonce + ChaCha20Poly1305(data_key).encrypt(
        nonce, plaintext, bytes.fromhex(honest.commitment))
    with pytest.raises(VaultError) as refused:
        vault.open_sealed(forged, data_key, honest.commitment)
    assert _code(refused) == "commitment_mismatch"
    not_json = nonce + ChaCha20Poly1305(data_key).encrypt(
        nonce, b"not json", bytes.fromhex(honest.commitment))
    with pytest.raises(VaultError) as garbage:
        vault.open_sealed(not_json, data_key, honest.commitment)
    assert _code(garbage) == "commitment_mismatch"


@pytest.mark.parametrize(("category", "value"), [
    ("", "x"), ("address", ""), ("add\x00ress", "x"), ("address", "x" * 4097),
    ("address", "\ud800"),
])
def test_values_that_cannot_be_sealed(category: str, value: str) -> None:
    with pytest.raises(VaultError) as refused:
        vault.seal(category, value)
    assert _code(refused) == "bad_value"
    assert not value or value[:16] not in str(refused.value)


# --- wrapping ----------------------------------------------------------------------------


def test_wrap_then_unwrap_with_the_recipients_key() -> None:
    sealed = vault.seal("address", ADDRESS)
    reader = EncryptionKey.generate()
    wrapped = vault.wrap(sealed.data_key, reader.public_hex, sealed.commitment)
    assert len(wrapped) == 80  # enc (32) || data key (32) || tag (16)
    assert vault.unwrap(wrapped, reader, sealed.commitment) == sealed.data_key
    assert vault.unwrap(wrapped, reader.private, sealed.commitment) == sealed.data_key


def test_the_wrap_is_rfc9180_hpke_with_the_records_info() -> None:
    sealed = vault.seal("address", ADDRESS)
    reader = EncryptionKey.generate()
    wrapped = vault.wrap(sealed.data_key, reader.public_hex, sealed.commitment)
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
    info = b"ecosphere/privacy/wrap/v1\x00" + bytes.fromhex(sealed.commitment)
    assert suite.decrypt(wrapped, reader.private, info=info) == sealed.data_key


def test_a_wrap_for_one_key_does_not_unwrap_with_another() -> None:
    sealed = vault.seal("address", ADDRESS)
    reader, other = EncryptionKey.generate(), EncryptionKey.generate()
    wrapped = vault.wrap(sealed.data_key, reader.public_hex, sealed.commitment)
    with pytest.raises(VaultError) as refused:
        vault.unwrap(wrapped, other, sealed.commitment)
    assert _code(refused) == "unwrap_failed"


def test_a_wrap_is_bound_to_its_records_commitment() -> None:
    sealed, other = vault.seal("address", ADDRESS), vault.seal("address", ADDRESS)
    reader = EncryptionKey.generate()
    wrapped = vault.wrap(sealed.data_key, reader.public_hex, sealed.commitment)
    with pytest.raises(VaultError) as refused:
        vault.unwrap(wrapped, reader, other.commitment)
    assert _code(refused) == "unwrap_failed"


@pytest.mark.parametrize("at", [0, 31, 32, 63, 64, 79])
def test_a_tampered_wrap_is_refused(at: int) -> None:
    sealed = vault.seal("address", ADDRESS)
    reader = EncryptionKey.generate()
    wrapped = vault.wrap(sealed.data_key, reader.public_hex, sealed.commitment)
    with pytest.raises(VaultError) as refused:
        vault.unwrap(_flip(wrapped, at), reader, sealed.commitment)
    assert _code(refused) == "unwrap_failed"
    with pytest.raises(VaultError) as short:
        vault.unwrap(wrapped[:-1], reader, sealed.commitment)
    assert _code(short) == "unwrap_failed"


SMALL_ORDER = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000080",  # high bit set
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
]


@pytest.mark.parametrize("public_hex", SMALL_ORDER)
def test_a_small_order_public_key_is_refused_before_use(public_hex: str) -> None:
    assert not is_exchange_key(bytes.fromhex(public_hex))
    sealed = vault.seal("address", ADDRESS)
    with pytest.raises(VaultError) as refused:
        vault.wrap(sealed.data_key, public_hex, sealed.commitment)
    assert _code(refused) == "bad_public_key"


@pytest.mark.parametrize("public_hex", ["", "00" * 31, "zz" * 32, "00" * 33])
def test_a_malformed_public_key_is_refused(public_hex: str) -> None:
    sealed = vault.seal("address", ADDRESS)
    with pytest.raises(VaultError) as refused:
        vault.wrap(sealed.data_key, public_hex, sealed.commitment)
    assert _code(refused) == "bad_public_key"


def test_the_whole_path_subject_to_reader() -> None:
    """Seal, wrap for a reader, unwrap, open: what put_record and read do."""
    subject, reader = EncryptionKey.generate(), EncryptionKey.generate()
    sealed = vault.seal("address", ADDRESS)
    copies = {k.key_id: vault.wrap(sealed.data_key, k.public_hex, sealed.commitment)
              for k in (subject, reader)}
    key = vault.unwrap(copies[reader.key_id], reader, sealed.commitment)
    assert vault.open_sealed(sealed.ciphertext, key, sealed.commitment).value == ADDRESS


# --- key files ---------------------------------------------------------------------------


def test_the_key_id_is_what_the_contract_computes() -> None:
    key = EncryptionKey.generate()
    assert key.key_id == hashlib.sha256(bytes.fromhex(key.public_hex)).hexdigest()[:32]
    assert len(key.public_hex) == 64 and key.key_id in repr(key)


def test_a_key_file_round_trips_with_mode_0600(tmp_path: Path) -> None:
    key = EncryptionKey.generate()
    path = tmp_path / "dir" / "me.enc"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert EncryptionKey.load(path).public_hex == key.public_hex
    assert [p.name for p in path.parent.iterdir()] == ["me.enc"]  # no temporary left


def test_key_files_that_are_refused(tmp_path: Path) -> None:
    key = EncryptionKey.generate()
    open_to_others = tmp_path / "open.enc"
    key.save(open_to_others)
    open_to_others.chmod(0o644)
    not_a_key = tmp_path / "junk.enc"
    not_a_key.write_bytes(b"junk")
    not_a_key.chmod(0o600)
    signing = tmp_path / "signing.key"
    from services.ledger.node import keys

    keys.save(keys.generate(), signing)
    for path in (open_to_others, not_a_key, signing, tmp_path / "missing.enc"):
        with pytest.raises(VaultError) as refused:
            EncryptionKey.load(path)
        assert _code(refused) == "bad_key_file"


def test_a_key_from_its_private_bytes() -> None:
    private = X25519PrivateKey.generate()
    assert EncryptionKey(private).public_bytes == private.public_key().public_bytes_raw()
