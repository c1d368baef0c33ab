"""Key files: private (0600), atomic, and clear about what is wrong with them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from services.ledger.node import keys


def test_a_saved_key_is_private_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    key = keys.generate()
    keys.save(key, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.load(path).key_id == key.key_id
    assert [p.name for p in tmp_path.iterdir()] == ["node.key"]  # no temporary left


def test_a_stale_or_planted_temporary_file_does_not_weaken_the_key(tmp_path: Path) -> None:
    """Found in review: an existing world-readable node.key.tmp kept its mode (and a
    symlink there was followed)."""
    path = tmp_path / "node.key"
    (tmp_path / "node.key.tmp").write_text("stale")
    os.chmod(tmp_path / "node.key.tmp", 0o644)
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    os.symlink(target, tmp_path / ".node.key.planted.tmp")
    keys.save(keys.generate(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert target.read_text() == "untouched"
    keys.load(path)


@pytest.mark.parametrize("content", [b"", b"-----BEGIN PRIVATE KEY-----\nAAAA",
                                     b"not a key at all"])
def test_a_damaged_key_file_is_named_in_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "admin.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(keys.KeyFileError, match=r"admin\.key is not"):
        keys.load(path)


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    keys.save(keys.generate(), path)
    os.chmod(path, 0o644)
    with pytest.raises(keys.KeyFileError, match="readable by others"):
        keys.load(path)
