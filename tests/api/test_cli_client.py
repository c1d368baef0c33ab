"""``ecosphere client`` against a live network: keys, send, get, offline verify."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from services.cli import main
from services.ledger.node import keys
from tests.api.conftest import LiveNetwork

pytestmark = pytest.mark.functional


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, object]:
    code = main(list(args))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_client_cli(live: LiveNetwork, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    keys_dir = str(tmp_path / "keys")
    base = ["client", "--gateway", live.url, "--keys-dir", keys_dir,
            "--genesis", str(live.data.genesis_path)]
    code, created = run(capsys, *base, "keys", "create", "--name", "alice")
    assert code == 0 and isinstance(created, dict) and len(created["key_id"]) == 32
    code, listed = run(capsys, *base, "keys", "list")
    assert code == 0 and isinstance(listed, list) and listed[0]["name"] == "alice"
    keys.save(live.demo_key, Path(keys_dir) / "demo.key")
    d = hashlib.sha256(b"cli anchor").hexdigest()
    code, result = run(capsys, *base, "send", "--key", "demo", "--kind", "notary.anchor",
                       "--payload", json.dumps({"digest": d}), "--verify")
    assert code == 0 and isinstance(result, dict)
    assert result["status"] == "committed" and result["verified"] is True
    code, state = run(capsys, *base, "get", "state", f"notary/anchor/{d}", "--verify")
    assert code == 0 and isinstance(state, dict) and state["value"]["digest"] == d
    # save an answer, check it offline against the genesis file only
    answer = live.client().call("GET", f"/v1/state/notary/anchor/{d}")
    saved = tmp_path / "answer.json"
    saved.write_text(json.dumps(answer))
    code, verified = run(capsys, "client", "verify", str(saved), "--genesis-file",
                         str(live.data.genesis_path))
    assert code == 0 and isinstance(verified, dict) and verified["verified"] is True
    answer["value"]["by"] = "0" * 32
    saved.write_text(json.dumps(answer))
    assert main(["client", "verify", str(saved), "--genesis-file",
                 str(live.data.genesis_path)]) == 1
    # a refused transaction is a clear error and a non-zero exit
    assert main([*base, "send", "--key", "alice", "--kind", "notary.anchor", "--payload",
                 json.dumps({"digest": d})]) == 1
    err = capsys.readouterr().err
    assert "unknown_sender" in err or "key_not_found" in err


def test_an_unreachable_gateway_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["client", "--gateway", "http://127.0.0.1:1", "get", "status"]) == 1
    assert json.loads(capsys.readouterr().err)["error"] == "gateway_unreachable"


def test_get_state_asks_for_exactly_the_key_given(live: LiveNetwork,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Found in review: '?' and '#' in a key cut it short and answered another key."""
    code, answer = run(capsys, "client", "--gateway", live.url, "get", "state",
                       "notary/anchor/x?y#z")
    assert code == 0 and isinstance(answer, dict) and answer["key"] == "notary/anchor/x?y#z"


def test_cli_details_found_in_review(live: LiveNetwork, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    keys_dir = str(tmp_path / "keys")
    genesis = str(live.data.genesis_path)
    base = ["client", "--gateway", live.url, "--keys-dir", keys_dir, "--genesis", genesis]
    # keys need a name
    assert main([*base, "keys", "create"]) == 2
    assert "needs --name" in capsys.readouterr().err
    # get block --verify checks the certificate against the pinned genesis
    code, block = run(capsys, *base, "get", "block", "1", "--verify")
    assert code == 0 and isinstance(block, dict) and block["verified"] is True
    # a receipt printed by send verifies offline, with the client's --genesis
    keys.save(live.demo_key, Path(keys_dir) / "demo.key")
    code, receipt = run(capsys, *base, "send", "--key", "demo", "--kind", "notary.anchor",
                        "--payload", json.dumps({"digest": hashlib.sha256(
                            b"receipt offline").hexdigest()}))
    assert code == 0 and isinstance(receipt, dict) and "transaction" in receipt
    saved = tmp_path / "receipt.json"
    saved.write_text(json.dumps(receipt))
    code, verified = run(capsys, "client", "--genesis", genesis, "verify", str(saved))
    assert code == 0 and isinstance(verified, dict) and verified["verified"] is True
