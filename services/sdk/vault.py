"""The personal-data vault's cryptography, on the client: a value is encrypted before
it leaves the client, and only a commitment and a hash of it ever reach the chain.

Construction (docs/adr/0008-personal-data-vault.md), every primitive from the
``cryptography`` package (no home-made crypto):

* **commitment** — ``SHA-256(COMMITMENT_TAG || salt || category || 0x00 || value)``,
  hex; ``salt`` is 32 random bytes (``secrets``) kept only inside the ciphertext, so
  the commitment hides the value (nobody can test guesses without the salt) and binds
  it (SHA-256 collision resistance);
* **ciphertext** — ``nonce || ChaCha20-Poly1305(data_key).encrypt(nonce, plaintext,
  aad=commitment bytes)``: a fresh random 32-byte data key per record, a random 12-byte
  nonce, the plaintext the canonical JSON ``{"category", "salt" (hex), "v": 1,
  "value"}``. The commitment as associated data ties the ciphertext to its record;
  :func:`open_sealed` also recomputes the commitment from what it decrypted and
  refuses a mismatch, so a vault cannot hand out one record's ciphertext for
  another's, nor a sender seal a value its commitment does not name;
* **wrapped data key** — HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256),
  HKDF-SHA256, ChaCha20-Poly1305, ``info = WRAP_INFO_TAG || commitment bytes``: one
  copy per party allowed to read (the subject, holders, grantees), made for the
  party's X25519 key registered on the chain. A small-order public key is refused
  before use (the contract's own list: :func:`services.privacy.keys.is_exchange_key`).

Erasure is crypto-shredding: once every wrapped copy of the data key is destroyed,
the ciphertext is noise and the commitment names nothing.

Errors: :class:`VaultError`, with a stable ``code``:

    VaultError
      bad_key_file        an encryption key file is missing, unreadable, open to others
                          or not an X25519 private key
      bad_public_key      not 64 hex digits of an X25519 key, or a small-order point
      bad_value           a category or value that cannot be sealed (empty, too long)
      bad_commitment      a commitment that is not 64 lowercase hex digits
      bad_ciphertext      the ciphertext does not decrypt under the data key and the
                          commitment (tampered, truncated, or another record's)
      commitment_mismatch it decrypts, but to something its commitment does not name
      unwrap_failed       the wrapped key does not open with this key and commitment

Messages never contain a value, a salt or a key.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from services.ledger.core.encoding import decode, encode
from services.ledger.core.errors import EncodingError
from services.privacy.keys import is_exchange_key

__all__ = [
    "COMMITMENT_TAG",
    "DATA_KEY_BYTES",
    "SALT_BYTES",
    "VALUE_CHARS_MAX",
    "WRAP_INFO_TAG",
    "EncryptionKey",
    "Opened",
    "Sealed",
    "VaultError",
    "commitment_of",
    "open_sealed",
    "seal",
    "unwrap",
    "wrap",
]

COMMITMENT_TAG: Final = b"ecosphere/privacy/commitment/v1\x00"
WRAP_INFO_TAG: Final = b"ecosphere/privacy/wrap/v1\x00"
SALT_BYTES: Final = 32
DATA_KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
PLAINTEXT_VERSION: Final = 1
VALUE_CHARS_MAX: Final = 4_096  # one name, address, document number: never a file
CATEGORY_CHARS_MAX: Final = 64
#: the largest plaintext a value can make (UTF-8: 4 bytes a character, JSON escapes
#: at most 6), and so the largest ciphertext worth decrypting
PLAINTEXT_BYTES_MAX: Final = 6 * (VALUE_CHARS_MAX + CATEGORY_CHARS_MAX) + 256
CIPHERTEXT_BYTES_MAX: Final = NONCE_BYTES + PLAINTEXT_BYTES_MAX + TAG_BYTES
_X25519_ENC_BYTES: Final = 32
WRAPPED_KEY_BYTES: Final = _X25519_ENC_BYTES + DATA_KEY_BYTES + TAG_BYTES

_SUITE: Final = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


class VaultError(Exception):
    """A vault operation refused: ``code`` is stable, the message says why (never
    with the value, salt or key in it)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


# --- keys ----------------------------------------------------------------------------------


class EncryptionKey:
    """An X25519 key pair: a party's key that data keys are wrapped for."""

    __slots__ = ("_private", "_public")

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private
        self._public = private.public_key().public_bytes(serialization.Encoding.Raw,
                                                         serialization.PublicFormat.Raw)

    @classmethod
    def generate(cls) -> EncryptionKey:
        return cls(X25519PrivateKey.generate())

    @property
    def private(self) -> X25519PrivateKey:
        return self._private

    @property
    def public_bytes(self) -> bytes:
        return self._public

    @property
    def public_hex(self) -> str:
        return self._public.hex()

    @property
    def key_id(self) -> str:
        """What the contract names this key by: SHA-256 of the public key, 32 hex."""
        return hashlib.sha256(self._public).hexdigest()[:32]

    def __repr__(self) -> str:
        return f"EncryptionKey(key_id={self.key_id})"

    def to_pem(self) -> bytes:
        return self._private.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())

    def save(self, path: Path) -> None:
        """Write the private key to ``path`` (PKCS#8 PEM, 0600) atomically, as
        :func:`services.ledger.node.keys.save` does for signing keys: a fresh temporary
        file of its own, fsynced, renamed over ``path``, the directory fsynced."""
        _write_private(path, self.to_pem())

    @classmethod
    def load(cls, path: Path) -> EncryptionKey:
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise VaultError("bad_key_file", f"cannot read {path}: "
                             f"{exc.strerror or exc}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise VaultError("bad_key_file", f"{path} is readable by others (mode "
                             f"{oct(mode & 0o777)}); chmod 600 it")
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise VaultError("bad_key_file", f"cannot read {path}: "
                             f"{exc.strerror or exc}") from None
        except (ValueError, TypeError) as exc:
            raise VaultError("bad_key_file", f"{path} is not an unencrypted PKCS#8 PEM "
                             f"private key ({type(exc).__name__})") from None
        if not isinstance(loaded, X25519PrivateKey):
            raise VaultError("bad_key_file", f"{path} does not hold an X25519 key")
        return cls(loaded)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def public_key_from_hex(public_hex: str) -> X25519PublicKey:
    """A usable X25519 public key, or :class:`VaultError` ``bad_public_key`` (refused
    before any use: wrong length, not hex, or a small-order point)."""
    if not isinstance(public_hex, str) or len(public_hex) != 64:
        raise VaultError("bad_public_key", "a public key is 64 hex digits (X25519)")
    try:
        raw = bytes.fromhex(public_hex)
    except ValueError:
        raise VaultError("bad_public_key", "a public key is 64 hex digits (X25519)") from None
    if not is_exchange_key(raw):
        raise VaultError("bad_public_key", "the public key is a small-order point: every "
                         "secret made with it would be predictable")
    return X25519PublicKey.from_public_bytes(raw)


# --- sealing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed value: what goes to the chain (``commitment``, ``ciphertext_hash``), to
    the vault (``ciphertext``), and what stays with the client (``data_key``, to wrap
    for each reader; ``salt``, inside the ciphertext too)."""

    category: str
    commitment: str
    ciphertext: bytes = field(repr=False)
    ciphertext_hash: str
    data_key: bytes = field(repr=False)
    salt: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Opened:
    category: str
    value: str = field(repr=False)
    salt: bytes = field(repr=False)


def _checked_commitment(commitment: str) -> bytes:
    if not isinstance(commitment, str) or len(commitment) != 64 \
            or commitment.lower() != commitment:
        raise VaultError("bad_commitment", "a commitment is 64 lowercase hex digits")
    try:
        return bytes.fromhex(commitment)
    except ValueError:
        raise VaultError("bad_commitment", "a commitment is 64 lowercase hex digits") from None


def _check_text(category: str, value: str) -> None:
    if not isinstance(category, str) or not 0 < len(category) <= CATEGORY_CHARS_MAX \
            or "\x00" in category:
        raise VaultError("bad_value", f"a category is 1..{CATEGORY_CHARS_MAX} characters "
                         "without NUL")
    if not isinstance(value, str) or not 0 < len(value) <= VALUE_CHARS_MAX:
        raise VaultError("bad_value", f"a value is 1..{VALUE_CHARS_MAX} characters")


def commitment_of(salt: bytes, category: str, value: str) -> str:
    """The commitment to ``value`` of ``category`` under ``salt`` (hex), as the chain
    records it. The category holds no NUL (checked), so the separator is unambiguous."""
    _check_text(category, value)
    if len(salt) != SALT_BYTES:
        raise VaultError("bad_value", f"a salt is {SALT_BYTES} bytes")
    try:
        data = category.encode("utf-8") + b"\x00" + value.encode("utf-8")
    except UnicodeEncodeError:
        raise VaultError("bad_value", "the value is not valid Unicode") from None
    return hashlib.sha256(COMMITMENT_TAG + salt + data).hexdigest()


def seal(category: str, value: str) -> Sealed:
    """Encrypt ``value`` under a fresh data key and commit to it."""
    salt = secrets.token_bytes(SALT_BYTES)
    commitment = commitment_of(salt, category, value)
    try:
        plaintext = encode({"category": category, "salt": salt.hex(),
                            "v": PLAINTEXT_VERSION, "value": value})
    except EncodingError:
        raise VaultError("bad_value", "the value is not valid Unicode") from None
    data_key = secrets.token_bytes(DATA_KEY_BYTES)
    nonce = secrets.token_bytes(NONCE_BYTES)
    ciphertext = nonce + ChaCha20Poly1305(data_key).encrypt(nonce, plaintext,
                                                           bytes.fromhex(commitment))
    return Sealed(category=category, commitment=commitment, ciphertext=ciphertext,
                  ciphertext_hash=hashlib.sha256(ciphertext).hexdigest(),
                  data_key=data_key, salt=salt)


def open_sealed(ciphertext: bytes, data_key: bytes, commitment: str) -> Opened:
    """Decrypt a record's ciphertext with its data key, and check it is the value the
    record's ``commitment`` (read from the chain) names."""
    aad = _checked_commitment(commitment)
    if len(data_key) != DATA_KEY_BYTES:
        raise VaultError("bad_ciphertext", f"a data key is {DATA_KEY_BYTES} bytes")
    if not NONCE_BYTES + TAG_BYTES < len(ciphertext) <= CIPHERTEXT_BYTES_MAX:
        raise VaultError("bad_ciphertext", "the ciphertext has an impossible length")
    nonce, body = ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:]
    try:
        plaintext = ChaCha20Poly1305(data_key).decrypt(nonce, body, aad)
    except InvalidTag:
        raise VaultError("bad_ciphertext", "the ciphertext does not decrypt under this data "
                         "key for this commitment (tampered, or another record's)") from None
    opened = _parse_plaintext(plaintext)
    try:
        recomputed = commitment_of(opened.salt, opened.category, opened.value)
    except VaultError:
        recomputed = ""
    if not hmac.compare_digest(recomputed, commitment):
        raise VaultError("commitment_mismatch", "the ciphertext decrypts to a value its "
                         "record's commitment does not name")
    return opened


def _parse_plaintext(plaintext: bytes) -> Opened:
    try:
        obj: Any = decode(plaintext, size_max=PLAINTEXT_BYTES_MAX)
    except (EncodingError, ValueError):
        raise VaultError("commitment_mismatch", "the plaintext is not a sealed value") from None
    if not isinstance(obj, dict) or set(obj) != {"category", "salt", "v", "value"} \
            or obj["v"] != PLAINTEXT_VERSION or not isinstance(obj["salt"], str) \
            or not isinstance(obj["category"], str) or not isinstance(obj["value"], str):
        raise VaultError("commitment_mismatch", "the plaintext is not a sealed value (v1)")
    try:
        salt = bytes.fromhex(obj["salt"])
    except ValueError:
        raise VaultError("commitment_mismatch", "the plaintext's salt is not hex") from None
    return Opened(category=obj["category"], value=obj["value"], salt=salt)


# --- wrapping the data key -------------------------------------------------------------------


def wrap(data_key: bytes, recipient_public_hex: str, commitment: str) -> bytes:
    """The data key encrypted for one reader (HPKE base mode, bound to the record by
    its commitment): ``enc || ciphertext`` as RFC 9180 single-shot makes it."""
    if len(data_key) != DATA_KEY_BYTES:
        raise VaultError("bad_value", f"a data key is {DATA_KEY_BYTES} bytes")
    info = WRAP_INFO_TAG + _checked_commitment(commitment)
    return _SUITE.encrypt(data_key, public_key_from_hex(recipient_public_hex), info=info)


def unwrap(wrapped: bytes, private_key: EncryptionKey | X25519PrivateKey,
           commitment: str) -> bytes:
    """The data key from a copy wrapped for ``private_key``'s public key and this
    record's commitment."""
    info = WRAP_INFO_TAG + _checked_commitment(commitment)
    key = private_key.private if isinstance(private_key, EncryptionKey) else private_key
    if len(wrapped) != WRAPPED_KEY_BYTES:
        raise VaultError("unwrap_failed", f"a wrapped key is {WRAPPED_KEY_BYTES} bytes")
    try:
        data_key = _SUITE.decrypt(wrapped, key, info=info)
    except (InvalidTag, ValueError):
        raise VaultError("unwrap_failed", "the wrapped key does not open with this key for "
                         "this record (made for another key, or tampered)") from None
    if len(data_key) != DATA_KEY_BYTES:
        raise VaultError("unwrap_failed", "the wrapped key does not hold a data key")
    return data_key
