"""``ecosphere client``: keys, transactions, queries, offline proof checks, events.

Keys live in a directory (``--keys-dir``, ``$ECOSPHERE_KEYS_DIR``, default
``~/.ecosphere/keys``) as ``<name>.key`` (PKCS#8 PEM, 0600); ``--key-file FILE``
names one anywhere. The gateway is ``--gateway`` / ``$ECOSPHERE_GATEWAY`` (default
``http://127.0.0.1:8080``). A pinned genesis (``--genesis FILE``) lets ``--verify``
and ``verify`` check proofs without trusting the gateway. ``--gateway``,
``--genesis`` and ``--keys-dir`` go before or after the subcommand (after wins).

Output contract: every answer is JSON on stdout. Every error is one line of JSON on
stderr, ``{"error": code, "detail": sentence, ...}`` (``status`` for the gateway's
problems; ``next_steps`` where there is something to do) and never a traceback. Exit
codes: 0 done; 1 refused or failed (the gateway said no, a proof does not verify, no
gateway answers, a transaction was rejected); 2 a usage or operator error found
before anything was sent (bad arguments, a missing or damaged file, a missing key or
genesis); argparse's own usage errors also exit 2. ``send`` prints its receipt even
when a later step fails (``"verified": false`` on stdout, the error on stderr).

A key made by ``keys create`` cannot send until an organisation's admin registers it
on the chain (``consortium.add_key``); ``keys create`` and a refused send say how.

``privacy`` is the personal-data vault (services/sdk/privacy.py): ``keys new|register``
(an X25519 encryption key, ``--enc-key FILE``, besides the signing key), ``put``,
``grant``, ``read``, ``export``, ``erase``. Values are encrypted here before anything
is sent; a value given to ``put`` is never printed back (only ``read`` and ``export``
print values), and ``--value-file -`` keeps it off the command line. ``put``, ``grant``,
``read`` and ``export`` need a pinned genesis — ``--genesis FILE``, else the data
directory's (``$ECOSPHERE_DATA_DIR/genesis.json``, else ``data/genesis.json``): they
wrap data keys for the keys the chain names, or open values against the records the
chain holds, and without proofs a gateway could name its own key and read the value.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shlex
import sys
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.errors import LedgerError
from services.ledger.core.genesis import Genesis
from services.ledger.core.transactions import Transaction
from services.ledger.node import keys
from services.privacy.vocabulary import ACCESS_BASES, CATEGORIES, PURPOSES
from services.sdk import proofs
from services.sdk.client import ApiError, Client
from services.sdk.privacy import PrivacyClient, PrivacyError
from services.sdk.vault import EncryptionKey, VaultError

__all__ = ["DEFAULT_GATEWAY", "CliError", "add_parser", "registration_steps", "run"]

DEFAULT_GATEWAY = "http://127.0.0.1:8080"
USAGE = 2  # a usage or operator error: nothing was sent
REFUSED = 1  # the gateway, a proof or the network said no
#: the gateway's codes for a key the chain does not know
UNREGISTERED = frozenset({"key_not_found", "unknown_sender", "unknown_key"})
KEY_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")
#: errors of the HTTP exchange itself (a file's OSError is not one of them)
UNREACHABLE = (urllib.error.URLError, TimeoutError, ConnectionError,
               http.client.HTTPException)


class CliError(Exception):
    """A command stopped with one clear line: ``code``, ``detail``, exit ``exit_code``;
    ``extra`` fields go into the error line."""

    def __init__(self, code: str, detail: str, *, exit_code: int = USAGE,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.exit_code = exit_code
        self.extra = extra


# --- what the options name ---------------------------------------------------------

def _keys_dir(args: argparse.Namespace) -> Path:
    return Path(args.keys_dir or os.environ.get("ECOSPHERE_KEYS_DIR")
                or Path.home() / ".ecosphere" / "keys")


def _gateway(args: argparse.Namespace) -> str:
    return str(args.gateway or os.environ.get("ECOSPHERE_GATEWAY", DEFAULT_GATEWAY))


def _load_key(path: Path, source: str) -> PrivateKey:
    if not path.is_file():
        raise CliError("key_file_missing", f"{source}: no key file at {path}")
    try:
        return keys.load(path)
    except keys.KeyFileError as exc:
        raise CliError("bad_key_file", f"{source}: {exc}") from None
    except OSError as exc:
        raise CliError("bad_key_file", f"{source}: cannot read {path}: "
                       f"{exc.strerror or exc}") from None


def _key(args: argparse.Namespace) -> PrivateKey | None:
    key_file, name = getattr(args, "key_file", None), getattr(args, "key", None)
    if key_file and name:
        raise CliError("usage", "--key and --key-file name two keys: give one")
    if key_file:
        return _load_key(Path(key_file), "--key-file")
    if not name:
        return None
    directory = _keys_dir(args)
    path = directory / f"{name}.key"
    if not path.is_file():
        raise CliError("key_file_missing",
                       f"--key {name}: no key file at {path} ('client keys list' shows the "
                       f"keys in {directory}; --keys-dir or $ECOSPHERE_KEYS_DIR picks another "
                       "directory, --key-file FILE any file)")
    return _load_key(path, f"--key {name}")


def _require_key(args: argparse.Namespace, what: str) -> PrivateKey:
    key = _key(args)
    if key is None:
        raise CliError("key_required", f"{what} needs --key or --key-file: it is signed "
                       "with your key ('client keys create --name NAME' makes one)")
    return key


def _genesis(args: argparse.Namespace, path: str | None = None,
             source: str = "--genesis") -> Genesis | None:
    path = path or args.genesis
    if not path:
        return None
    try:
        return proofs.load_genesis_file(path)
    except FileNotFoundError:
        raise CliError("genesis_file_missing", f"{source}: no file at {path}") from None
    except OSError as exc:
        raise CliError("bad_genesis_file", f"{source}: cannot read {path}: "
                       f"{exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError, LedgerError) as exc:
        raise CliError("bad_genesis_file", f"{source}: {path} is not a genesis "
                       f"(the genesis.json of the data directory): {exc}") from None


def _require_genesis(args: argparse.Namespace, what: str) -> Genesis:
    genesis = _genesis(args)
    if genesis is None:
        raise CliError("genesis_required", f"{what} checks proofs against a pinned "
                       "genesis: add --genesis FILE (e.g. data/genesis.json of "
                       "'ecosphere up'); nothing was sent to the gateway")
    return genesis


def _data_dir(args: argparse.Namespace) -> Path:
    """Where the hints look for ``ecosphere up``'s keys: beside a pinned genesis."""
    return Path(args.genesis).parent if args.genesis else Path("data")


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


# --- keys ----------------------------------------------------------------------------

def registration_steps(key: PrivateKey, data: Path) -> dict[str, str]:
    """How a new key gets to send: an admin registers it on the chain."""
    payload = json.dumps({"public_key": key.public.hex(), "permissions": ["member"]})
    command = shlex.join(["ecosphere", "client", "send", "--key-file",
                          str(data / "ledger" / "admin.key"), "--kind",
                          "consortium.add_key", "--payload", payload])
    return {
        "register": "this key cannot send until an admin of an organisation registers "
                    "it on the chain with a consortium.add_key transaction (it then "
                    "belongs to that organisation); with 'ecosphere up', the platform "
                    "operator's admin does it with admin_command",
        "admin_command": command,
        "try_now": f"{data / 'client' / 'demo.key'} is a registered member key of "
                   f"'demo-merchants', ready to send: --key-file "
                   f"{data / 'client' / 'demo.key'} (data: the directory of "
                   "'ecosphere up')",
    }


def _key_path(args: argparse.Namespace) -> Path:
    if not args.name:
        raise CliError("usage", f"keys {args.keys_action} needs --name")
    if not KEY_NAME.match(args.name):
        raise CliError("bad_key_name", f"--name {args.name!r}: a key name is 1..64 of "
                       "[A-Za-z0-9._-], not starting with '.'")
    path = _keys_dir(args) / f"{args.name}.key"
    if path.exists():
        raise CliError("key_exists", f"key {args.name!r} exists ({path})")
    return path


def _save_key(key: PrivateKey, path: Path) -> None:
    try:
        keys.save(key, path)
    except OSError as exc:
        raise CliError("keys_dir_unwritable", f"cannot write {path}: "
                       f"{exc.strerror or exc}") from None


def cmd_keys(args: argparse.Namespace) -> int:
    if args.keys_action == "list":
        _print(_list_keys(_keys_dir(args)))
        return 0
    if args.keys_action == "import" and not args.file:
        raise CliError("usage", "keys import needs --file")
    path = _key_path(args)
    if args.keys_action == "create":
        key = keys.generate()
    else:
        key = _load_key(Path(args.file), "--file")
    _save_key(key, path)
    out: dict[str, Any] = {"name": args.name, "key_id": key.key_id,
                           "public_key": key.public.hex(), "file": str(path)}
    if args.keys_action == "create":
        out["next_steps"] = registration_steps(key, _data_dir(args))
    _print(out)
    return 0


def _list_keys(directory: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.key")) if directory.is_dir() else []:
        try:
            key = _load_key(path, path.stem)
        except CliError as exc:  # one damaged file does not hide the others
            out.append({"name": path.stem, "error": exc.code, "detail": exc.detail})
            continue
        out.append({"name": path.stem, "key_id": key.key_id,
                    "public_key": key.public.hex()})
    return out


# --- send ----------------------------------------------------------------------------

def _payload(text: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        near = text[max(0, exc.pos - 12):exc.pos + 12]
        raise CliError("bad_payload", f"--payload is not JSON: {exc.msg} at line "
                       f"{exc.lineno}, column {exc.colno} (near {near!r}); quote it "
                       """for the shell, e.g. --payload '{"digest": "..."}'""") from None
    if not isinstance(payload, dict):
        raise CliError("bad_payload", f"--payload must be a JSON object, not "
                       f"{type(payload).__name__}")
    return payload


def _unregistered(exc: ApiError, args: argparse.Namespace, key: PrivateKey) -> CliError:
    return CliError(exc.code, f"{exc.detail}: an admin of an organisation registers "
                    "the key on the chain first (next_steps)", exit_code=REFUSED,
                    status=exc.status,
                    next_steps=registration_steps(key, _data_dir(args)))


def cmd_send(args: argparse.Namespace) -> int:
    payload = _payload(args.payload)
    key = _require_key(args, "send")
    if args.verify and args.no_wait:
        raise CliError("usage", "--verify checks the commit: drop --no-wait "
                       "(nothing was sent)")
    genesis = _require_genesis(args, "--verify") if args.verify else _genesis(args)
    client = Client(_gateway(args), key=key, genesis=genesis)
    try:
        tx = client.tx(args.kind, payload, nonce=args.nonce)
        if args.dry_run:
            _print(tx.to_wire())
            return 0
        result = client.submit(tx, wait=not args.no_wait)
    except LedgerError as exc:
        raise CliError("bad_transaction", f"cannot build the transaction: {exc} "
                       "(nothing was sent)") from None
    except ApiError as exc:
        if exc.code in UNREGISTERED:
            raise _unregistered(exc, args, key) from None
        raise
    result.setdefault("transaction", tx.to_wire())  # so the receipt verifies offline later
    return _finish_send(args, client, tx, result)


def _finish_send(args: argparse.Namespace, client: Client, tx: Transaction,
                 result: dict[str, Any]) -> int:
    """Print the receipt whatever happens next; then say what did not work."""
    status = result.get("status")
    if args.verify and status == "committed":
        try:
            proofs.verify_transaction(result, client.trusted_for(result), tx,
                                      expected_hash=tx.hash.hex(),
                                      chain_id=client.genesis.chain_id if client.genesis
                                      else None)
        except BaseException:  # a proof, the gateway or an interrupt: keep the receipt
            result["verified"] = False
            _print(result)
            raise
        result["verified"] = True
    _print(result)
    if status == "rejected":
        raise CliError(str(result.get("code", "rejected")), str(result.get("detail", "")),
                       exit_code=REFUSED)
    if args.verify and status != "committed":
        raise CliError("not_verified", f"transaction {tx.hash.hex()} is {status}, not "
                       "committed: nothing to verify yet; later: ecosphere client get tx "
                       f"{tx.hash.hex()} --genesis FILE --verify", exit_code=REFUSED)
    return 0 if status in ("committed", "pending") else REFUSED


# --- get -------------------------------------------------------------------------------

def _arg(args: argparse.Namespace, example: str) -> str:
    if not args.arg:
        raise CliError("argument_required", f"get {args.what} needs {example}")
    return str(args.arg)


def cmd_get(args: argparse.Namespace) -> int:
    what = args.what
    key = _key(args)
    if what == "me" and key is None:
        raise CliError("key_required", "get me needs --key or --key-file: a signed read "
                       "proves who asks, so it needs your key")
    if what == "key" and key is None:
        _arg(args, "a key id, or --key / --key-file")
    genesis = _require_genesis(args, "--verify") if args.verify else _genesis(args)
    client = Client(_gateway(args), key=key, genesis=genesis)
    if what == "status":
        _print(client.status())
    elif what == "block":
        answer = client.block(args.arg or "latest")
        if args.verify:
            proofs.verify_block(answer, client.trusted_for(_block_header(answer)),
                                chain_id=client.genesis.chain_id if client.genesis else None)
            answer["verified"] = True
        _print(answer)
    elif what == "tx":
        result = client.transaction(_arg(args, "a transaction hash"), verify=args.verify)
        if args.verify:
            result["verified"] = True
        _print(result)
    elif what == "state":
        _print(_get_state(client, _arg(args, "a state key, e.g. notary/anchor/DIGEST"),
                          verify=args.verify))
    elif what == "key":
        _print(_own_key(client, args, lambda: client.key_info(args.arg)))
    elif what == "me":
        _print(_own_key(client, args, client.me))
    elif what == "validators":
        _print(client.validators())
    return 0


def _get_state(client: Client, key: str, *, verify: bool) -> dict[str, Any]:
    """The whole answer (with its proof, so it verifies offline later)."""
    answer = dict(client.call("GET", f"/v1/state/{quote(key, safe='/')}"))
    if verify:
        answer["value"] = proofs.verify_state_value(
            answer, client.trusted_for(answer), expected_key=key,
            chain_id=client.genesis.chain_id if client.genesis else None)
        answer["verified"] = True
    return answer


def _own_key(client: Client, args: argparse.Namespace,
             ask: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``ask`` about the client's own key: if the chain does not know it, say how it
    gets registered."""
    try:
        return ask()
    except ApiError as exc:
        own = client.key is not None and args.arg in (None, client.key.key_id)
        if exc.code in UNREGISTERED and client.key is not None and own:
            raise _unregistered(exc, args, client.key) from None
        raise


# --- verify ----------------------------------------------------------------------------

def _block_header(answer: dict[str, Any]) -> dict[str, Any]:
    block = answer.get("block")
    return {"header": block.get("header") if isinstance(block, dict) else None}


def _read_answer(path: str) -> dict[str, Any]:
    try:
        answer = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CliError("answer_file_missing", f"no file at {path}") from None
    except OSError as exc:
        raise CliError("bad_answer_file", f"cannot read {path}: "
                       f"{exc.strerror or exc}") from None
    except ValueError as exc:
        raise CliError("bad_answer_file", f"{path} is not JSON: {exc}") from None
    if not isinstance(answer, dict):
        raise CliError("bad_answer_file", f"{path} holds no JSON object")
    return answer


def _kind_of(answer: dict[str, Any], path: str) -> str:
    if isinstance(answer.get("block"), dict) and "certificate" in answer:
        return "block"
    proof = answer.get("proof")
    if isinstance(proof, dict) and "siblings" in proof:
        return "state"
    if "header" in answer and "certificate" in answer:
        if answer.get("transaction") is None:
            raise CliError("bad_answer_file", f"{path}: a receipt needs the transaction: "
                           "pass the answer of 'get tx' or add a 'transaction' field")
        return "transaction"
    raise CliError("bad_answer_file", f"{path} is not an answer this command checks: a "
                   "block ('client get block N'), a transaction ('client get tx HASH' or "
                   "the receipt of 'client send') or a state value ('client get state "
                   "KEY'), as printed")


def cmd_verify(args: argparse.Namespace) -> int:
    """Check a saved answer (block, receipt, transaction or state value) against a
    genesis, offline unless the answer was certified by a later validator set."""
    genesis = _genesis(args, args.genesis_file,
                       "--genesis-file" if args.genesis_file else "--genesis")
    if genesis is None:
        raise CliError("genesis_required", "verify needs a genesis: --genesis FILE "
                       "(or --genesis-file FILE)")
    answer = _read_answer(args.file)
    kind = _kind_of(answer, args.file)
    certified = _block_header(answer) if kind == "block" else answer
    trusted = genesis.validators
    if proofs.signing_set(certified) != trusted.hash:
        # Certified by a later validator set: follow the changes from the genesis set
        # (each transition checked; the gateway only supplies the candidates).
        gateway = args.gateway or os.environ.get("ECOSPHERE_GATEWAY")
        if not gateway:
            raise proofs.UntrustedValidators(
                "the answer is certified by a later validator set: pass --gateway to "
                "follow the validator-set changes from the genesis (each one is checked)")
        trusted = Client(gateway, genesis=genesis).trusted_for(certified)
    if kind == "block":
        header = proofs.verify_block(answer, trusted, chain_id=genesis.chain_id)
        _print({"verified": True, "kind": "block", "height": header.height,
                "block_hash": header.hash.hex(), "tx_count": header.tx_count})
    elif kind == "state":
        value = proofs.verify_state_value(answer, trusted, chain_id=genesis.chain_id)
        _print({"verified": True, "kind": "state", "key": answer["key"], "value": value})
    else:
        header = proofs.verify_transaction(answer, trusted, answer["transaction"],
                                           chain_id=genesis.chain_id)
        _print({"verified": True, "kind": "transaction", "height": header.height})
    return 0


# --- subscribe -------------------------------------------------------------------------

def cmd_subscribe(args: argparse.Namespace) -> int:
    client = Client(_gateway(args), genesis=_genesis(args))
    printed = 0
    for event in client.follow(from_height=args.from_height):
        if args.type and not str(event.get("type", "")).startswith(args.type):
            continue
        print(json.dumps(event, sort_keys=True), flush=True)
        printed += 1
        if args.max and printed >= args.max:
            break
    return 0


# --- privacy ---------------------------------------------------------------------------

DAY_MS = 86_400_000
GRANT_DAYS_MAX = 365


def _enc_key(args: argparse.Namespace) -> EncryptionKey:
    path = Path(args.enc_key)
    if not path.is_file():
        raise CliError("enc_key_file_missing", f"--enc-key: no key file at {path} ('client "
                       "privacy keys new --out FILE' makes one)")
    try:
        return EncryptionKey.load(path)
    except VaultError as exc:
        raise CliError(exc.code, f"--enc-key: {exc.detail}") from None


def _privacy_client(args: argparse.Namespace, what: str, *,
                    pinned: bool = False) -> PrivacyClient:
    """``pinned``: the command wraps data keys or opens values, so it runs only against a
    pinned genesis (:func:`_privacy_genesis`)."""
    key = _require_key(args, f"privacy {what}")
    genesis = _privacy_genesis(args, what) if pinned else _genesis(args)
    return PrivacyClient(Client(_gateway(args), key=key, genesis=genesis))


def _privacy_genesis(args: argparse.Namespace, what: str) -> Genesis:
    """``--genesis``, else the data directory's genesis (``$ECOSPHERE_DATA_DIR``, else
    ``data``: where ``ecosphere up`` writes it), else ``genesis_required``."""
    if args.genesis:
        return _require_genesis(args, f"privacy {what}")
    path = Path(os.environ.get("ECOSPHERE_DATA_DIR") or "data") / "genesis.json"
    if path.is_file():
        found = _genesis(args, str(path), f"the data directory's genesis ({path})")
        if found is not None:
            return found
    raise CliError("genesis_required", f"privacy {what} checks the parties' encryption "
                   "keys and the record against the chain with proofs, so that the "
                   "gateway cannot name its own key and read the value: add --genesis "
                   f"FILE (e.g. data/genesis.json of 'ecosphere up'; {path} does not "
                   "exist); nothing was sent to the gateway")


def _value(args: argparse.Namespace) -> str:
    """The value to store, from --value or --value-file (``-``: standard input); it is
    never echoed, not even in an error."""
    if (args.value is None) == (args.value_file is None):
        raise CliError("usage", "put needs one of --value V or --value-file FILE ('-' reads "
                       "standard input)")
    if args.value is not None:
        return str(args.value)
    try:
        text = sys.stdin.read() if args.value_file == "-" else \
            Path(args.value_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError("bad_value_file", f"--value-file: cannot read {args.value_file} "
                       f"({type(exc).__name__})") from None
    return text.removesuffix("\n")


def _receipt(result: dict[str, Any]) -> dict[str, Any]:
    return {"tx_hash": result.get("tx_hash"), "height": result.get("height")}


def _privacy_keys(args: argparse.Namespace) -> dict[str, Any]:
    if args.keys_step == "new":
        path = Path(args.out)
        if path.exists():
            raise CliError("key_exists", f"--out {path} exists: an encryption key is never "
                           "overwritten (its records would become unreadable)")
        key = EncryptionKey.generate()
        try:
            key.save(path)
        except OSError as exc:
            raise CliError("keys_dir_unwritable", f"cannot write {path}: "
                           f"{exc.strerror or exc}") from None
        return {"key_id": key.key_id, "public_key": key.public_hex, "file": str(path),
                "next_steps": {"register": "ecosphere client privacy keys register "
                               f"--enc-key {shlex.quote(str(path))} --scope self|org "
                               "--country CC --key-file YOUR_SIGNING_KEY"}}
    key = _enc_key(args)
    privacy = _privacy_client(args, "keys register")
    result = privacy.register_key(key, scope=args.scope, country=args.country)
    party = privacy.me if args.scope == "self" else \
        f"org:{privacy.client.key_info().get('org')}"
    return {"party": party, "key_id": key.key_id, "country": args.country, **_receipt(result)}


def _privacy_put(args: argparse.Namespace) -> dict[str, Any]:
    value = _value(args)
    key = _enc_key(args)
    ref = _privacy_client(args, "put", pinned=True).put_record(
        args.category, value, jurisdiction=args.jurisdiction, key=key,
        holders=args.holder or (), cross_border_consent=args.cross_border_consent)
    return {"record_id": ref.record_id, "category": ref.category,
            "commitment": ref.commitment, "holders": list(ref.holders), "height": ref.height}


def _privacy_grant(args: argparse.Namespace) -> dict[str, Any]:
    if not 0 < args.days <= GRANT_DAYS_MAX:
        raise CliError("usage", f"--days is 1..{GRANT_DAYS_MAX} (a grant is renewable)")
    key = _enc_key(args)
    until = int(time.time() * 1000) + args.days * DAY_MS
    result = _privacy_client(args, "grant", pinned=True).grant(
        args.record, args.to, args.purpose, until, key=key,
        cross_border_consent=args.cross_border_consent)
    return {"record_id": args.record, "grantee": args.to, "purpose": args.purpose,
            "until": until, **_receipt(result)}


def _privacy_read(args: argparse.Namespace) -> dict[str, Any]:
    key = _enc_key(args)
    privacy = _privacy_client(args, "read", pinned=True)
    value = privacy.read(args.record, purpose=args.purpose, basis=args.basis, key=key,
                         as_=args.as_)
    return {"record_id": args.record, "purpose": args.purpose, "basis": args.basis,
            "value": value}


def _privacy_export(args: argparse.Namespace) -> dict[str, Any]:
    key = _enc_key(args)
    return _privacy_client(args, "export", pinned=True).export(key)


def _privacy_erase(args: argparse.Namespace) -> dict[str, Any]:
    result = _privacy_client(args, "erase").erase(args.record)
    return {"record_id": args.record, "status": "erasing", **_receipt(result)}


_PRIVACY: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "keys": _privacy_keys, "put": _privacy_put, "grant": _privacy_grant,
    "read": _privacy_read, "export": _privacy_export, "erase": _privacy_erase,
}


def cmd_privacy(args: argparse.Namespace) -> int:
    try:
        out = _PRIVACY[args.privacy_command](args)
    except PrivacyError as exc:
        extra: dict[str, Any] = {k: v for k, v in (("status", exc.status),
                                                   ("reason", exc.reason),
                                                   ("tx_hash", exc.tx_hash)) if v}
        if exc.code in UNREGISTERED:
            extra["next_steps"] = registration_steps(_require_key(args, "privacy"),
                                                     _data_dir(args))
        raise CliError(exc.code, exc.detail, exit_code=REFUSED, **extra) from None
    _print(out)
    return 0


def _add_privacy(csub: Any, common: list[argparse.ArgumentParser]) -> None:
    p = csub.add_parser("privacy", help="the personal-data vault: encrypted records, "
                        "grants, reads, export, erasure", parents=common)
    psub = p.add_subparsers(dest="privacy_command", required=True)
    signer = argparse.ArgumentParser(add_help=False)
    signer.add_argument("--key", help="signing key name in the keys directory")
    signer.add_argument("--key-file", help="a signing key file")
    enc = argparse.ArgumentParser(add_help=False)
    enc.add_argument("--enc-key", required=True, help="your X25519 encryption key file")
    consent = argparse.ArgumentParser(add_help=False)
    consent.add_argument("--cross-border-consent", action="store_true",
                         help="the subject consents to a transfer out of CN (PIPL)")
    purposes, bases = sorted(PURPOSES), sorted(ACCESS_BASES)

    k = psub.add_parser("keys", help="encryption keys", parents=common)
    ksub = k.add_subparsers(dest="keys_step", required=True)
    new = ksub.add_parser("new", help="make an X25519 key file (0600)", parents=common)
    new.add_argument("--out", required=True, help="where to write the key")
    reg = ksub.add_parser("register", help="register the key on the chain",
                          parents=[*common, signer, enc])
    reg.add_argument("--scope", required=True, choices=["org", "self"])
    reg.add_argument("--country", required=True, help="ISO 3166-1 alpha-2, e.g. DE")

    put = psub.add_parser("put", help="encrypt a value and store it as a record",
                          parents=[*common, signer, enc, consent])
    put.add_argument("--category", required=True, choices=sorted(CATEGORIES))
    put.add_argument("--value", help="the value (visible to the machine's other users "
                                     "while the command runs: --value-file - avoids that)")
    put.add_argument("--value-file", help="read the value from FILE ('-': standard input)")
    put.add_argument("--jurisdiction", required=True, help="your country, e.g. DE")
    put.add_argument("--holder", action="append", help="a party to wrap the key for "
                                                      "(org:<id> or key:<key id>), repeatable")

    grant = psub.add_parser("grant", help="let a party read a record for a purpose",
                            parents=[*common, signer, enc, consent])
    grant.add_argument("record")
    grant.add_argument("--to", required=True, help="the grantee: org:<id> or key:<key id>")
    grant.add_argument("--purpose", required=True, choices=purposes)
    grant.add_argument("--days", required=True, type=int)

    read = psub.add_parser("read", help="read a record (the access is logged on chain)",
                           parents=[*common, signer, enc])
    read.add_argument("record")
    read.add_argument("--purpose", required=True, choices=purposes)
    read.add_argument("--basis", required=True, choices=bases)
    read.add_argument("--as", dest="as_", choices=["org", "self"], default="org")

    psub.add_parser("export", help="everything about you, decrypted",
                    parents=[*common, signer, enc])
    erase = psub.add_parser("erase", help="ask for a record's erasure",
                            parents=[*common, signer])
    erase.add_argument("record")
    p.set_defaults(func=cmd_privacy)


# --- the command line ------------------------------------------------------------------

def _common(*, after: bool) -> argparse.ArgumentParser:
    """The options every subcommand takes, before it (``default=None``) or after it
    (``SUPPRESS``: absent after the subcommand, the value before it stays)."""
    default = argparse.SUPPRESS if after else None
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--gateway", default=default,
                        help=f"gateway URL (else $ECOSPHERE_GATEWAY, else {DEFAULT_GATEWAY})")
    common.add_argument("--keys-dir", default=default,
                        help="key directory (else $ECOSPHERE_KEYS_DIR, else "
                             "~/.ecosphere/keys)")
    common.add_argument("--genesis", default=default,
                        help="genesis file to verify proofs against (data/genesis.json)")
    return common


def add_parser(sub: Any) -> None:
    client = sub.add_parser("client", help="talk to a gateway (SDK)",
                            parents=[_common(after=False)],
                            description=(__doc__ or "").replace("``", ""),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    csub = client.add_subparsers(dest="client_command", required=True)
    common = [_common(after=True)]

    k = csub.add_parser("keys", help="key management", parents=common)
    k.add_argument("keys_action", choices=["create", "import", "list"])
    k.add_argument("--name", help="create and import: the key's name (required)")
    k.add_argument("--file", help="import: the key file")
    k.set_defaults(func=cmd_keys)

    s = csub.add_parser("send", help="build, sign and submit a transaction", parents=common)
    s.add_argument("--key", help="key name in the keys directory")
    s.add_argument("--key-file", help="a key file, e.g. data/client/demo.key")
    s.add_argument("--kind", required=True, help="e.g. notary.anchor")
    s.add_argument("--payload", required=True, help="JSON object")
    s.add_argument("--nonce", type=int)
    s.add_argument("--no-wait", action="store_true")
    s.add_argument("--verify", action="store_true",
                   help="check the receipt against --genesis (refused without it)")
    s.add_argument("--dry-run", action="store_true", help="print the signed tx only")
    s.set_defaults(func=cmd_send)

    g = csub.add_parser("get", help="query the chain", parents=common)
    g.add_argument("what", choices=["status", "block", "tx", "state", "key", "me",
                                    "validators"])
    g.add_argument("arg", nargs="?", help="block: height|latest; tx: hash; state: key; "
                                          "key: key id")
    g.add_argument("--key")
    g.add_argument("--key-file")
    g.add_argument("--verify", action="store_true",
                   help="check the answer against --genesis (block, tx, state)")
    g.set_defaults(func=cmd_get)

    v = csub.add_parser("verify", help="check a saved answer offline", parents=common)
    v.add_argument("file", help="an answer printed by get block|tx|state or send")
    v.add_argument("--genesis-file", help="the genesis to check against (same as --genesis)")
    v.set_defaults(func=cmd_verify)

    e = csub.add_parser("subscribe", help="follow partner events from a height",
                        parents=common)
    e.add_argument("--from-height", type=int, default=1)
    e.add_argument("--type", help="prefix of the event type, e.g. notary.")
    e.add_argument("--max", type=int, default=0)
    e.set_defaults(func=cmd_subscribe)

    _add_privacy(csub, common)


def _error(code: str, detail: str, **extra: Any) -> None:
    print(json.dumps({"error": code, "detail": detail, **extra}), file=sys.stderr,
          flush=True)


def run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except CliError as exc:
        _error(exc.code, exc.detail, **exc.extra)
        return exc.exit_code
    except ApiError as exc:
        _error(exc.code, exc.detail, status=exc.status)
        return REFUSED
    except proofs.ProofError as exc:
        _error(exc.code, str(exc))
        return REFUSED
    except BrokenPipeError:  # stdout closed early (| head): nothing more to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit's flush does not fail again
        return REFUSED
    except UNREACHABLE as exc:
        reason = getattr(exc, "reason", None) or exc
        _error("gateway_unreachable", f"no answer from the gateway at {_gateway(args)}: "
               f"{reason} (is 'ecosphere up' running? --gateway URL or $ECOSPHERE_GATEWAY "
               "names another)")
        return REFUSED
    except OSError as exc:  # a file the checks above did not expect
        _error("io_error", str(exc))
        return USAGE
    except KeyboardInterrupt:  # subscribe runs until interrupted
        return 130
