"""``ecosphere client`` on a newcomer's mistakes (issue 10, item 5): no traceback, one
JSON error line on stderr naming what is wrong, exit 2 for a usage or operator error and
1 for a refused operation. None of these needs a network: where a command would reach a
gateway, it is pointed at a closed port, so a check that runs too late shows up as
``gateway_unreachable``."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.cli import build_parser, main
from services.ledger.core.blocks import Block
from services.ledger.core.transactions import Transaction
from services.ledger.node import keys
from services.sdk import cli as client_cli
from tests.sdk.test_proofs_hostile import anchor, chain

NOWHERE = "http://127.0.0.1:1"  # nothing listens there
ROOT = Path(__file__).resolve().parents[2]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, dict[str, Any]]:
    """Run ``ecosphere client ...``: (exit code, stdout as JSON, the error line)."""
    code = main(["client", *args])
    captured = capsys.readouterr()
    out = json.loads(captured.out) if captured.out.strip() else None
    lines = captured.err.strip().splitlines()
    assert len(lines) <= 1, captured.err
    return code, out, json.loads(lines[0]) if lines else {}


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "me.key"
    keys.save(keys.generate(), path)
    return path


def test_a_payload_that_is_not_json_says_which_argument_and_where(
        capsys: pytest.CaptureFixture[str], key_file: Path,
        saved_block: tuple[Path, Path, dict[str, Any]]) -> None:
    base = ["--gateway", NOWHERE, "send", "--key-file", str(key_file),
            "--kind", "notary.anchor"]
    code, _, error = cli(capsys, *base, "--payload", "{'digest': 'ab'}")
    assert code == 2 and error["error"] == "bad_payload"
    assert "--payload is not JSON" in error["detail"]
    assert "line 1, column 2" in error["detail"]
    code, _, error = cli(capsys, *base, "--payload", "[1, 2]")
    assert code == 2 and error["error"] == "bad_payload"
    assert "JSON object" in error["detail"]
    # JSON, but not canonical JSON (no floats on the chain): said before sending
    genesis = str(saved_block[0])
    code, _, error = cli(capsys, *base, "--payload", '{"amount": 1.5}', "--dry-run",
                         "--nonce", "0", "--genesis", genesis)
    assert code == 2 and error["error"] == "bad_transaction" and "float" in error["detail"]
    code, signed, _ = cli(capsys, *base, "--payload", '{"amount": 15}', "--dry-run",
                          "--nonce", "0", "--genesis", genesis)
    assert code == 0 and signed["body"]["payload"] == {"amount": 15}
    code, _, error = cli(capsys, *base, "--payload", "{}", "--genesis", "/nope/g.json")
    assert code == 2 and error["error"] == "genesis_file_missing"


def test_a_missing_or_damaged_key_file_is_named_never_a_gateway_problem(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    send = ["send", "--kind", "notary.anchor", "--payload", "{}"]
    code, _, error = cli(capsys, "--gateway", NOWHERE, *send, "--key-file", "/nope/x.key")
    assert code == 2 and error["error"] == "key_file_missing"
    assert "/nope/x.key" in error["detail"]
    keys_dir = tmp_path / "keys"
    code, _, error = cli(capsys, "--gateway", NOWHERE, "--keys-dir", str(keys_dir),
                         *send, "--key", "ghost")
    assert code == 2 and error["error"] == "key_file_missing"
    assert str(keys_dir / "ghost.key") in error["detail"]
    damaged = tmp_path / "damaged.key"
    damaged.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n")
    damaged.chmod(0o600)
    code, _, error = cli(capsys, "--gateway", NOWHERE, *send, "--key-file", str(damaged))
    assert code == 2 and error["error"] == "bad_key_file"
    assert str(damaged) in error["detail"] and "PEM" in error["detail"]
    damaged.chmod(0o644)
    code, _, error = cli(capsys, "--gateway", NOWHERE, "get", "me", "--key-file",
                         str(damaged))
    assert code == 2 and error["error"] == "bad_key_file" and "chmod 600" in error["detail"]
    code, _, error = cli(capsys, "keys", "import", "--name", "x", "--file", "/nope/y.key",
                         "--keys-dir", str(keys_dir))
    assert code == 2 and error["error"] == "key_file_missing"


def test_a_signed_read_without_a_key_asks_for_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, error = cli(capsys, "--gateway", NOWHERE, "get", "me")
    assert code == 2 and error["error"] == "key_required"
    assert "needs --key or --key-file" in error["detail"]
    code, _, error = cli(capsys, "--gateway", NOWHERE, "send", "--kind", "notary.anchor",
                         "--payload", "{}")
    assert code == 2 and error["error"] == "key_required"
    for what in ("tx", "state"):
        code, _, error = cli(capsys, "--gateway", NOWHERE, "get", what)
        assert code == 2 and error["error"] == "argument_required", what


def test_a_created_key_says_how_it_can_send(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    code, created, _ = cli(capsys, "--keys-dir", str(tmp_path / "keys"), "keys", "create",
                           "--name", "alice")
    assert code == 0
    steps = created["next_steps"]
    assert "consortium.add_key" in steps["register"]
    command = shlex.split(steps["admin_command"])
    assert command[:3] == ["ecosphere", "client", "send"]
    assert command[command.index("--key-file") + 1] == "data/ledger/admin.key"
    assert command[command.index("--kind") + 1] == "consortium.add_key"
    payload = json.loads(command[command.index("--payload") + 1])
    assert payload == {"public_key": created["public_key"], "permissions": ["member"]}
    assert "--key-file data/client/demo.key" in steps["try_now"]
    # with a pinned genesis, the hint names that data directory
    data = tmp_path / "net"
    code, created, _ = cli(capsys, "--keys-dir", str(tmp_path / "keys"), "keys", "create",
                           "--name", "bob", "--genesis", str(data / "genesis.json"))
    assert code == 0 and f"--key-file {data}/ledger/admin.key" in \
        created["next_steps"]["admin_command"]
    assert f"{data}/client/demo.key" in created["next_steps"]["try_now"]
    code, _, error = cli(capsys, "--keys-dir", str(tmp_path / "keys"), "keys", "create",
                         "--name", "../escape")
    assert code == 2 and error["error"] == "bad_key_name"


def test_the_common_options_work_before_and_after_the_subcommand(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    parser = build_parser()
    after = parser.parse_args(["client", "get", "status", "--gateway", "http://a",
                               "--genesis", "g.json", "--keys-dir", "k"])
    assert (after.gateway, after.genesis, after.keys_dir) == ("http://a", "g.json", "k")
    before = parser.parse_args(["client", "--gateway", "http://a", "get", "status"])
    assert before.gateway == "http://a" and before.genesis is None
    both = parser.parse_args(["client", "--gateway", "http://a", "--keys-dir", "k",
                              "keys", "list", "--gateway", "http://b"])
    assert (both.gateway, both.keys_dir) == ("http://b", "k")  # the later one wins
    code, _, error = cli(capsys, "get", "status", "--gateway", NOWHERE)
    assert code == 1 and error["error"] == "gateway_unreachable" and NOWHERE in error["detail"]
    code, listed, _ = cli(capsys, "keys", "list", "--keys-dir", str(tmp_path / "none"))
    assert code == 0 and listed == []


def test_send_verify_without_a_genesis_sends_nothing(capsys: pytest.CaptureFixture[str],
                                                      key_file: Path) -> None:
    send = ["--gateway", NOWHERE, "send", "--key-file", str(key_file), "--kind",
            "notary.anchor", "--payload", "{}", "--verify"]
    code, out, error = cli(capsys, *send)
    assert code == 2 and out is None and error["error"] == "genesis_required"
    assert "--genesis FILE" in error["detail"] and "nothing was sent" in error["detail"]
    code, _, error = cli(capsys, "--gateway", NOWHERE, "get", "block", "1", "--verify")
    assert code == 2 and error["error"] == "genesis_required"


@pytest.fixture
def saved_block(tmp_path: Path) -> tuple[Path, Path, dict[str, Any]]:
    """A certified block with two transactions as ``client get block N`` prints it, and
    its chain's genesis file."""
    net = chain()[0]
    net, _, block, certificate = chain(txs=(anchor(net, 0), anchor(net, 1)))
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps(net.genesis.to_wire()))
    answer = {"block": block.to_wire(), "certificate": certificate.to_wire()}
    return genesis, tmp_path / "block.json", answer


def test_a_saved_block_verifies_offline_and_a_tampered_one_says_what_failed(
        capsys: pytest.CaptureFixture[str],
        saved_block: tuple[Path, Path, dict[str, Any]]) -> None:
    genesis, path, answer = saved_block
    assert len(answer["block"]["txs"]) == 2
    path.write_text(json.dumps(answer))
    code, out, _ = cli(capsys, "verify", str(path), "--genesis", str(genesis))
    assert code == 0 and out["verified"] is True and out["kind"] == "block"
    assert out["height"] == 1 and out["tx_count"] == 2
    assert out["block_hash"] == Block.from_wire(answer["block"]).hash.hex()
    # a transaction swapped for another (the header and its certificate are intact)
    other = Transaction.from_wire(answer["block"]["txs"][0])
    tampered = json.loads(json.dumps(answer))
    tampered["block"]["txs"][1] = other.to_wire()
    path.write_text(json.dumps(tampered))
    code, _, error = cli(capsys, "verify", str(path), "--genesis", str(genesis))
    assert code == 1 and error["error"] == "bad_proof"
    assert "block 1" in error["detail"] and "tx_root" in error["detail"]
    # a header changed under its certificate
    tampered = json.loads(json.dumps(answer))
    tampered["block"]["header"]["time"] += 1
    path.write_text(json.dumps(tampered))
    code, _, error = cli(capsys, "verify", str(path), "--genesis", str(genesis))
    assert code == 1 and "certificate" in error["detail"]


def test_files_that_cannot_be_read_are_named(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path,
                                            saved_block: tuple[Path, Path, dict[str, Any]]
                                            ) -> None:
    genesis = saved_block[0]
    code, _, error = cli(capsys, "verify", "/nope/answer.json", "--genesis", str(genesis))
    assert code == 2 and error["error"] == "answer_file_missing"
    not_json = tmp_path / "answer.txt"
    not_json.write_text("height: 3\n")
    code, _, error = cli(capsys, "verify", str(not_json), "--genesis", str(genesis))
    assert code == 2 and error["error"] == "bad_answer_file" and str(not_json) in \
        error["detail"]
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"height": 3}))
    code, _, error = cli(capsys, "verify", str(other), "--genesis", str(genesis))
    assert code == 2 and error["error"] == "bad_answer_file"
    assert "get block" in error["detail"]  # says what it can check
    code, _, error = cli(capsys, "verify", str(other), "--genesis", str(not_json))
    assert code == 2 and error["error"] == "bad_genesis_file"
    code, _, error = cli(capsys, "verify", str(other))
    assert code == 2 and error["error"] == "genesis_required"


def test_the_registration_hint_names_the_key_and_the_data_directory() -> None:
    key = keys.generate()
    steps = client_cli.registration_steps(key, Path("/srv/net"))
    assert key.public.hex() in steps["admin_command"]
    assert "/srv/net/ledger/admin.key" in steps["admin_command"]


@pytest.mark.parametrize("argv", [
    ["get", "status", "--gateway", NOWHERE],
    ["send", "--kind", "notary.anchor", "--payload", "{nope", "--key-file", "/nope"],
    ["send", "--kind", "notary.anchor", "--payload", "{}", "--key-file", "/nope"],
    ["get", "me"],
    ["get", "state"],
    ["--genesis", "/nope.json", "get", "status"],
    ["verify", "/nope.json", "--genesis", "/nope.json"],
    ["keys", "import", "--name", "x", "--file", "/nope"],
])
def test_no_command_answers_with_a_traceback(argv: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "ECOSPHERE_KEYS_DIR": str(tmp_path / "keys"),
           "ECOSPHERE_GATEWAY": NOWHERE}
    done = subprocess.run([sys.executable, "-m", "services.cli", "client", *argv],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
                          check=False)
    assert "Traceback" not in done.stderr
    assert done.returncode in (1, 2) and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["error"]
