"""Key files: generating keys from the operating system's randomness and keeping
them on disk.

A key file is the Ed25519 private key in PKCS#8 PEM, created with mode 0600
and written atomically (temporary file, fsync, rename), so a crash never
leaves half a key. Loading refuses a key file that others can read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.ledger.core.crypto import PrivateKey


class KeyFileError(Exception):
    code = "bad_key_file"


def generate() -> PrivateKey:
    return PrivateKey(Ed25519PrivateKey.generate())


def save(key: PrivateKey, path: Path) -> None:
    pem = to_pem(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def to_pem(key: PrivateKey) -> bytes:
    raw = Ed25519PrivateKey.from_private_bytes(key.seed)
    return raw.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load(path: Path) -> PrivateKey:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is readable by others (mode {oct(mode & 0o777)}); "
                           "chmod 600 it")
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise KeyFileError(f"{path} does not hold an Ed25519 key")
    return PrivateKey(loaded)


def load_or_create(path: Path) -> PrivateKey:
    if path.exists():
        return load(path)
    key = generate()
    save(key, path)
    return key
