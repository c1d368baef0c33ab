"""``ecosphere client`` against a live network: keys, send, get, offline verify."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import pytest

from services.cli import main
from services.ledger.node import keys
from services.runtime.datadir import DataDir, ensure_genesis
from tests.live import LiveNetwork

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


def test_a_new_key_sends_once_an_admin_ran_the_command_it_was_given(
        live: LiveNetwork, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 10: 'keys create' made a key that could not send, and nothing said so."""
    keys_dir = str(tmp_path / "keys")
    genesis = str(live.data.genesis_path)
    code, created = run(capsys, "client", "--keys-dir", keys_dir, "keys", "create",
                        "--name", "carol", "--genesis", genesis)
    assert code == 0 and isinstance(created, dict)
    steps = created["next_steps"]
    d = hashlib.sha256(b"carol's first anchor").hexdigest()
    send = ["client", "send", "--key", "carol", "--kind", "notary.anchor", "--payload",
            json.dumps({"digest": d}), "--keys-dir", keys_dir, "--gateway", live.url,
            "--genesis", genesis]
    # before: refused, and the error line carries the same steps
    assert main(send) == 1
    error = json.loads(capsys.readouterr().err)
    assert error["error"] in ("key_not_found", "unknown_sender")
    assert error["next_steps"] == steps
    # the admin runs the command as given (the gateway named after the subcommand)
    command = shlex.split(steps["admin_command"])
    assert command[:2] == ["ecosphere", "client"]
    code, registered = run(capsys, *command[1:], "--gateway", live.url)
    assert code == 0 and isinstance(registered, dict)
    assert registered["status"] == "committed"
    code, receipt = run(capsys, *send)
    assert code == 0 and isinstance(receipt, dict) and receipt["status"] == "committed"
    code, me = run(capsys, "client", "get", "me", "--key", "carol", "--keys-dir", keys_dir,
                   "--gateway", live.url)
    assert code == 0 and isinstance(me, dict) and me["organisation"]["id"] == "operator"
    # and the demo key of the data directory sends as the hint says
    demo = shlex.split(steps["try_now"].split("--key-file ", 1)[1])[0]
    code, receipt = run(capsys, "client", "send", "--key-file", demo, "--kind",
                        "notary.anchor", "--payload", json.dumps({"digest": d[::-1]}),
                        "--gateway", live.url)
    assert code == 0 and isinstance(receipt, dict) and receipt["status"] == "committed"


def test_send_verify_keeps_the_receipt_when_the_proof_does_not_verify(
        live: LiveNetwork, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 10: the receipt of a committed transaction was lost when --verify failed."""
    # the same chain id, other validators: the pin is wrong, the transaction is fine
    other = ensure_genesis(DataDir(tmp_path / "other"))
    assert other.chain_id == live.genesis.chain_id
    key_file = tmp_path / "demo.key"
    keys.save(live.demo_key, key_file)
    d = hashlib.sha256(b"verified against the wrong pin").hexdigest()
    code = main(["client", "send", "--gateway", live.url, "--genesis",
                 str(tmp_path / "other" / "genesis.json"), "--key-file", str(key_file),
                 "--kind", "notary.anchor", "--payload", json.dumps({"digest": d}),
                 "--verify"])
    captured = capsys.readouterr()
    receipt = json.loads(captured.out)
    assert code == 1 and receipt["status"] == "committed" and receipt["verified"] is False
    assert "transaction" in receipt and "certificate" in receipt
    error = json.loads(captured.err)
    assert error["error"] == "untrusted_validators"
    # the receipt kept verifies against the right genesis
    saved = tmp_path / "receipt.json"
    saved.write_text(captured.out)
    code, verified = run(capsys, "client", "verify", str(saved), "--genesis",
                         str(live.data.genesis_path))
    assert code == 0 and isinstance(verified, dict) and verified["verified"] is True


def test_a_block_saved_from_get_block_verifies_offline(
        live: LiveNetwork, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 10: 'client verify' answered "no header" for the output of 'get block'."""
    genesis = str(live.data.genesis_path)
    key_file = tmp_path / "demo.key"
    keys.save(live.demo_key, key_file)
    code, receipt = run(capsys, "client", "send", "--gateway", live.url, "--key-file",
                        str(key_file), "--kind", "notary.anchor", "--payload",
                        json.dumps({"digest": hashlib.sha256(b"in a block").hexdigest()}))
    assert code == 0 and isinstance(receipt, dict)
    height = str(receipt["height"])
    code, block = run(capsys, "client", "get", "block", height, "--gateway", live.url,
                      "--genesis", genesis, "--verify")
    assert code == 0 and isinstance(block, dict) and block["verified"] is True
    saved = tmp_path / "block.json"
    saved.write_text(json.dumps(block))
    code, verified = run(capsys, "client", "verify", str(saved), "--genesis", genesis)
    assert code == 0 and isinstance(verified, dict)
    assert verified == {"verified": True, "kind": "block", "height": int(height),
                        "block_hash": receipt["block_hash"],
                        "tx_count": block["block"]["header"]["tx_count"]}
    # a transaction's payload changed in the saved file
    block["block"]["txs"][receipt["index"]]["body"]["payload"]["digest"] = "0" * 64
    saved.write_text(json.dumps(block))
    assert main(["client", "verify", str(saved), "--genesis", genesis]) == 1
    error = json.loads(capsys.readouterr().err)
    assert error["error"] == "bad_proof" and f"block {height} did not verify" in \
        error["detail"]
