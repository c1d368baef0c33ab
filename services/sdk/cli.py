"""``ecosphere client``: keys, transactions, queries, offline proof checks, events.

Keys live in a directory (``--keys-dir``, ``$ECOSPHERE_KEYS_DIR``, default
``~/.ecosphere/keys``) as ``<name>.key`` (PKCS#8 PEM, 0600). The gateway is
``--gateway`` / ``$ECOSPHERE_GATEWAY`` (default ``http://127.0.0.1:8080``). A
pinned genesis (``--genesis FILE``) lets ``--verify`` check proofs without
trusting the gateway. Every command prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
from pathlib import Path
from typing import Any
from urllib.parse import quote

from services.ledger.core.crypto import PrivateKey
from services.ledger.node import keys
from services.sdk import proofs
from services.sdk.client import ApiError, Client

DEFAULT_GATEWAY = "http://127.0.0.1:8080"


def _keys_dir(args: argparse.Namespace) -> Path:
    return Path(args.keys_dir or os.environ.get("ECOSPHERE_KEYS_DIR")
                or Path.home() / ".ecosphere" / "keys")


def _key(args: argparse.Namespace) -> PrivateKey | None:
    if getattr(args, "key_file", None):
        return keys.load(Path(args.key_file))
    name = getattr(args, "key", None)
    return keys.load(_keys_dir(args) / f"{name}.key") if name else None


def _client(args: argparse.Namespace) -> Client:
    genesis = proofs.load_genesis_file(args.genesis) if args.genesis else None
    return Client(args.gateway or os.environ.get("ECOSPHERE_GATEWAY", DEFAULT_GATEWAY),
                  key=_key(args), genesis=genesis)


def genesis_chain(client: Client) -> str | None:
    return None if client.genesis is None else client.genesis.chain_id


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def cmd_keys(args: argparse.Namespace) -> int:
    directory = _keys_dir(args)
    if args.keys_action in ("create", "import") and not args.name:
        print(f"client: keys {args.keys_action} needs --name", file=sys.stderr)
        return 2
    if args.keys_action == "import" and not args.file:
        print("client: keys import needs --file", file=sys.stderr)
        return 2
    if args.keys_action == "create":
        path = directory / f"{args.name}.key"
        if path.exists():
            print(f"client: key {args.name!r} exists", file=sys.stderr)
            return 2
        key = keys.generate()
        keys.save(key, path)
        _print({"name": args.name, "key_id": key.key_id, "public_key": key.public.hex()})
    elif args.keys_action == "import":
        key = keys.load(Path(args.file))
        path = directory / f"{args.name}.key"
        if path.exists():
            print(f"client: key {args.name!r} exists", file=sys.stderr)
            return 2
        keys.save(key, path)
        _print({"name": args.name, "key_id": key.key_id, "public_key": key.public.hex()})
    else:
        out = []
        for path in sorted(directory.glob("*.key")) if directory.exists() else []:
            key = keys.load(path)
            out.append({"name": path.stem, "key_id": key.key_id,
                        "public_key": key.public.hex()})
        _print(out)
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    client = _client(args)
    payload = json.loads(args.payload)
    tx = client.tx(args.kind, payload, nonce=args.nonce)
    if args.dry_run:
        _print(tx.to_wire())
        return 0
    result = client.submit(tx, wait=not args.no_wait)
    result.setdefault("transaction", tx.to_wire())  # so the receipt verifies offline later
    if args.verify and result.get("status") == "committed":
        proofs.verify_transaction(result, client.trusted_for(result), tx,
                                  expected_hash=tx.hash.hex(), chain_id=genesis_chain(client))
        result["verified"] = True
    _print(result)
    return 0 if result.get("status") in ("committed", "pending") else 1


def cmd_get(args: argparse.Namespace) -> int:
    client = _client(args)
    what = args.what
    if what == "status":
        _print(client.status())
    elif what == "block":
        answer = client.block(args.arg or "latest")
        if args.verify:
            header = answer["block"]["header"]
            proofs.verify_certified_header(header, answer["certificate"],
                                           client.trusted_for({"header": header}),
                                           chain_id=genesis_chain(client))
            answer["verified"] = True
        _print(answer)
    elif what == "tx":
        result = client.transaction(args.arg, verify=args.verify)
        if args.verify:
            result["verified"] = True
        _print(result)
    elif what == "state":
        if args.verify:
            _print({"key": args.arg, "value": client.state(args.arg, verify=True),
                    "verified": True})
        else:
            _print(client.call("GET", f"/v1/state/{quote(args.arg, safe='/')}"))
    elif what == "key":
        _print(client.key_info(args.arg))
    elif what == "me":
        _print(client.me())
    elif what == "validators":
        _print(client.validators())
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check a saved answer (receipt, transaction or state value) against a genesis."""
    genesis_file = args.genesis_file or args.genesis
    if not genesis_file:
        print("client: verify needs a genesis (--genesis-file, or client --genesis)",
              file=sys.stderr)
        return 2
    genesis = proofs.load_genesis_file(genesis_file)
    answer = json.loads(Path(args.file).read_text())
    trusted = genesis.validators
    if proofs.signing_set(answer) != trusted.hash:
        # Certified by a later validator set: follow the changes from the genesis set
        # (each transition checked; the gateway only supplies the candidates).
        gateway = args.gateway or os.environ.get("ECOSPHERE_GATEWAY")
        if not gateway:
            raise proofs.UntrustedValidators(
                "the answer is certified by a later validator set: pass --gateway to "
                "follow the validator-set changes from the genesis (each one is checked)")
        trusted = Client(gateway, genesis=genesis).trusted_for(answer)
    if "proof" in answer and "siblings" in answer["proof"]:
        value = proofs.verify_state_value(answer, trusted, chain_id=genesis.chain_id)
        _print({"verified": True, "kind": "state", "key": answer["key"], "value": value})
    else:
        tx = answer.get("transaction")
        if tx is None:
            print("client: a receipt needs the transaction: pass the answer of "
                  "'get tx' or add a 'transaction' field", file=sys.stderr)
            return 2
        header = proofs.verify_transaction(answer, trusted, tx, chain_id=genesis.chain_id)
        _print({"verified": True, "kind": "transaction", "height": header.height})
    return 0


def cmd_subscribe(args: argparse.Namespace) -> int:
    client = _client(args)
    printed = 0
    for event in client.follow(from_height=args.from_height):
        if args.type and not str(event.get("type", "")).startswith(args.type):
            continue
        print(json.dumps(event, sort_keys=True), flush=True)
        printed += 1
        if args.max and printed >= args.max:
            break
    return 0


def add_parser(sub: Any) -> None:
    client = sub.add_parser("client", help="talk to a gateway (SDK)")
    client.add_argument("--gateway", help=f"gateway URL (default {DEFAULT_GATEWAY})")
    client.add_argument("--keys-dir")
    client.add_argument("--genesis", help="genesis file to verify proofs against")
    csub = client.add_subparsers(dest="client_command", required=True)

    k = csub.add_parser("keys", help="key management")
    k.add_argument("keys_action", choices=["create", "import", "list"])
    k.add_argument("--name", help="create and import: the key's name (required)")
    k.add_argument("--file", help="import: the key file")
    k.set_defaults(func=cmd_keys)

    s = csub.add_parser("send", help="build, sign and submit a transaction")
    s.add_argument("--key", help="key name in the keys directory")
    s.add_argument("--key-file")
    s.add_argument("--kind", required=True, help="e.g. notary.anchor")
    s.add_argument("--payload", required=True, help="JSON object")
    s.add_argument("--nonce", type=int)
    s.add_argument("--no-wait", action="store_true")
    s.add_argument("--verify", action="store_true", help="check the receipt offline")
    s.add_argument("--dry-run", action="store_true", help="print the signed tx only")
    s.set_defaults(func=cmd_send)

    g = csub.add_parser("get", help="query the chain")
    g.add_argument("what", choices=["status", "block", "tx", "state", "key", "me",
                                    "validators"])
    g.add_argument("arg", nargs="?")
    g.add_argument("--key")
    g.add_argument("--key-file")
    g.add_argument("--verify", action="store_true")
    g.set_defaults(func=cmd_get)

    v = csub.add_parser("verify", help="check a saved answer offline")
    v.add_argument("file")
    v.add_argument("--genesis-file", help="the genesis to check against (default: the "
                                          "client's --genesis)")
    v.set_defaults(func=cmd_verify)

    e = csub.add_parser("subscribe", help="follow partner events from a height")
    e.add_argument("--from-height", type=int, default=1)
    e.add_argument("--type", help="prefix of the event type, e.g. notary.")
    e.add_argument("--max", type=int, default=0)
    e.set_defaults(func=cmd_subscribe)


def run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except ApiError as exc:
        print(json.dumps({"error": exc.code, "status": exc.status, "detail": exc.detail}),
              file=sys.stderr)
        return 1
    except proofs.ProofError as exc:
        print(json.dumps({"error": exc.code, "detail": str(exc)}), file=sys.stderr)
        return 1
    except (urllib.error.URLError, TimeoutError, OSError) as exc:  # gateway unreachable
        reason = getattr(exc, "reason", None) or exc
        print(json.dumps({"error": "gateway_unreachable", "detail": str(reason)}),
              file=sys.stderr)
        return 1
