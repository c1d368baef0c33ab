"""Key files: generating keys from the operating system's randomness and keeping
them on disk.

A key file is the Ed25519 private key in PKCS#8 PEM, created with mode 0600
and written atomically (temporary file, fsync, rename), so a crash never
leaves half a key. Loading refuses a key file that others can read.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.ledger.core.crypto import PrivateKey


class KeyFileError(Exception):
    code = "bad_key_file"


def generate() -> PrivateKey:
    return PrivateKey(Ed25519PrivateKey.generate())


def save(key: PrivateKey, path: Path) -> None:
    """Write ``key`` to ``path`` atomically: a fresh temporary file of its own (never a
    stale or planted one: ``mkstemp`` creates it exclusively, mode 0600), fsynced,
    renamed over ``path``, and the directory fsynced so the rename survives a crash."""
    pem = to_pem(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, pem)
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


def to_pem(key: PrivateKey) -> bytes:
    raw = Ed25519PrivateKey.from_private_bytes(key.seed)
    return raw.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load(path: Path) -> PrivateKey:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is readable by others (mode {oct(mode & 0o777)}); "
                           "chmod 600 it")
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path} is not an unencrypted PKCS#8 PEM private key "
                           f"({type(exc).__name__})") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise KeyFileError(f"{path} does not hold an Ed25519 key")
    return PrivateKey(loaded)


def load_or_create(path: Path) -> PrivateKey:
    if path.exists():
        return load(path)
    key = generate()
    save(key, path)
    return key
