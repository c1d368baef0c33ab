"""``ecosphere client privacy``: usage errors said before anything is sent, and one
person's record through the whole flow against a live network — a value given on the
command line is never printed back except by ``read`` and ``export``. Then the SDK's
flows under it (services/sdk/privacy.py) against a gateway that lies."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from services.cli import main
from services.ledger.core.crypto import PrivateKey
from services.ledger.node import keys
from services.ledger.sim.testnet import make_testnet
from services.sdk import vault
from services.sdk.client import Client
from services.sdk.privacy import PrivacyClient, PrivacyError, b64url, from_b64url
from services.sdk.vault import EncryptionKey
from tests.live import LiveNetwork, live

__all__ = ["live"]  # the live embedded network (tests/live.py), for the functional test

NOWHERE = "http://127.0.0.1:1"  # nothing listens there
SECRET = "Marie Curie-Skłodowska, ul. Freta 16, 00-227 Warszawa"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, dict[str, Any]]:
    code = main(["client", *args])
    captured = capsys.readouterr()
    out = json.loads(captured.out) if captured.out.strip() else None
    lines = captured.err.strip().splitlines()
    assert len(lines) <= 1, captured.err
    return code, out, json.loads(lines[0]) if lines else {}


def test_keys_new_writes_a_0600_key_and_never_overwrites(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "me.enc"
    code, out, _ = cli(capsys, "privacy", "keys", "new", "--out", str(path))
    assert code == 0 and stat.S_IMODE(path.stat().st_mode) == 0o600
    key = EncryptionKey.load(path)
    assert (out["key_id"], out["public_key"]) == (key.key_id, key.public_hex)
    assert "privacy keys register" in out["next_steps"]["register"]
    code, _, error = cli(capsys, "privacy", "keys", "new", "--out", str(path))
    assert code == 2 and error["error"] == "key_exists"
    assert EncryptionKey.load(path).public_hex == key.public_hex


def test_usage_errors_are_said_before_anything_is_sent(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    signing = tmp_path / "me.key"
    keys.save(keys.generate(), signing)
    base = ["--gateway", NOWHERE, "privacy"]
    code, _, error = cli(capsys, *base, "put", "--key-file", str(signing), "--enc-key",
                         str(tmp_path / "none.enc"), "--category", "address",
                         "--value", SECRET, "--jurisdiction", "DE")
    assert code == 2 and error["error"] == "enc_key_file_missing"
    assert SECRET not in json.dumps(error)
    junk = tmp_path / "junk.enc"
    junk.write_bytes(b"junk")
    junk.chmod(0o600)
    code, _, error = cli(capsys, *base, "read", "ab" * 32, "--key-file", str(signing),
                         "--enc-key", str(junk), "--purpose", "delivery", "--basis", "grant")
    assert code == 2 and error["error"] == "bad_key_file"
    enc = tmp_path / "me.enc"
    EncryptionKey.generate().save(enc)
    code, _, error = cli(capsys, *base, "put", "--enc-key", str(enc), "--category",
                         "address", "--value", SECRET, "--jurisdiction", "DE")
    assert code == 2 and error["error"] == "key_required"
    code, _, error = cli(capsys, *base, "put", "--key-file", str(signing), "--enc-key",
                         str(enc), "--category", "address", "--jurisdiction", "DE")
    assert code == 2 and error["error"] == "usage"
    code, _, error = cli(capsys, *base, "grant", "ab" * 32, "--key-file", str(signing),
                         "--enc-key", str(enc), "--to", "org:x", "--purpose", "delivery",
                         "--days", "400")
    assert code == 2 and error["error"] == "usage"
    code, _, error = cli(capsys, *base, "erase", "ab" * 32, "--key-file", str(signing))
    assert code == 1 and error["error"] == "gateway_unreachable"


def _org(live: LiveNetwork, name: str, roles: list[str]) -> tuple[str, Path]:
    """A new organisation whose admin key is a fresh key file: (org id, key file)."""
    key = keys.generate()
    path = live.data.root / "cli-test" / f"{name}.key"
    keys.save(key, path)
    org = f"{name}-{uuid.uuid4().hex[:6]}"
    receipt = live.client(live.admin_key()).send(
        "consortium.register_organisation",
        {"id": org, "name": org, "roles": roles, "admin_key": key.public.raw.hex()})
    assert receipt["status"] == "committed"
    return org, path


@pytest.mark.functional
def test_a_record_through_the_cli(capsys: pytest.CaptureFixture[str], live: LiveNetwork,
                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, person = _org(live, "person", ["consumer"])
    carrier_org, carrier = _org(live, "carrier", ["carrier"])
    net = ["--gateway", live.url, "--genesis", str(live.data.genesis_path), "privacy"]
    enc = {who: tmp_path / f"{who}.enc" for who in ("person", "carrier")}
    for who, signing, scope, country in (("person", person, "self", "DE"),
                                         ("carrier", carrier, "org", "PL")):
        assert cli(capsys, "privacy", "keys", "new", "--out", str(enc[who]))[0] == 0
        code, out, error = cli(capsys, *net, "keys", "register", "--key-file", str(signing),
                               "--enc-key", str(enc[who]), "--scope", scope,
                               "--country", country)
        assert code == 0, error
    assert out["party"] == f"org:{carrier_org}" and out["height"] > 0

    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
    code, put, error = cli(capsys, *net, "put", "--key-file", str(person), "--enc-key",
                           str(enc["person"]), "--category", "address", "--value-file", "-",
                           "--jurisdiction", "DE")
    assert code == 0, error
    record = put["record_id"]
    code, granted, error = cli(capsys, *net, "grant", record, "--key-file", str(person),
                               "--enc-key", str(enc["person"]), "--to",
                               f"org:{carrier_org}", "--purpose", "delivery", "--days", "7")
    assert code == 0, error
    for answer in (put, granted):
        assert SECRET not in json.dumps(answer)

    code, read, error = cli(capsys, *net, "read", record, "--key-file", str(carrier),
                            "--enc-key", str(enc["carrier"]), "--purpose", "delivery",
                            "--basis", "grant")
    assert code == 0 and read["value"] == SECRET, error
    code, _, refused = cli(capsys, *net, "read", record, "--key-file", str(carrier),
                           "--enc-key", str(enc["carrier"]), "--purpose", "returns",
                           "--basis", "grant")
    assert code == 1 and (refused["error"], refused["reason"]) == ("access_refused",
                                                                   "no_grant")
    code, exported, error = cli(capsys, *net, "export", "--key-file", str(person),
                                "--enc-key", str(enc["person"]))
    assert code == 0, error
    assert [r["value"] for r in exported["records"]] == [SECRET]
    assert any(g["grantee"] == f"org:{carrier_org}" for g in exported["grants"])

    code, erased, error = cli(capsys, *net, "erase", record, "--key-file", str(person))
    assert code == 0 and erased["status"] == "erasing", error
    code, _, gone = cli(capsys, *net, "read", record, "--key-file", str(carrier),
                        "--enc-key", str(enc["carrier"]), "--purpose", "delivery",
                        "--basis", "grant")
    assert code == 1 and gone["reason"] == "record_erasing"
    assert SECRET not in json.dumps([erased, gone, refused])


# --- the SDK's flows against a gateway that lies ------------------------------------------
#
# An in-process stand-in for the gateway at the SDK's boundary (``Client``): the chain's
# state is what the test says, the gateway's answers can be swapped. What must hold:
# a flow trusts the chain (proven state), never the gateway's word.


class FakeGateway(Client):
    def __init__(self, key: PrivateKey, *, pinned: bool = True) -> None:
        super().__init__("http://gateway.invalid", key=key,
                         genesis=make_testnet().genesis if pinned else None)
        self.chain: dict[str, Any] = {}  # state key -> value (what a proof would show)
        self.keys: dict[str, str] = {}  # party -> public key the gateway answers
        self.envelope: dict[str, Any] | None = None
        self.refusal: str | None = None  # the reason the chain refuses accesses for
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.uploads: list[tuple[str, Any]] = []

    def register(self, party: str, key: EncryptionKey) -> None:
        self.keys[party] = key.public_hex
        self.chain[f"privacy/enckey/{party}"] = {"public_key": key.public_hex,
                                                 "key_id": key.key_id, "status": "active"}

    def send(self, kind: str, payload: Mapping[str, Any], *, wait: bool = True,
             verify: bool = False) -> dict[str, Any]:
        self.sent.append((kind, dict(payload)))
        return {"status": "committed", "tx_hash": f"{len(self.sent):064x}", "height": 7}

    def state(self, key: str, *, verify: bool = False, min_height: int | None = None,
              signed: bool = False) -> Any:
        return self.chain.get(key)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        if path.startswith("/v1/privacy/keys/"):
            party = path.rsplit("/", 1)[1]
            public = self.keys[party]
            return {"party": party, "public_key": public,
                    "key_id": hashlib.sha256(bytes.fromhex(public)).hexdigest()[:32]}
        if path == "/v1/events/replay":
            refused = self.refusal is not None
            return {"items": [{"height": 7, "txhash": f"{len(self.sent):064x}",
                               "type": "privacy.access.refused" if refused
                               else "privacy.access.granted",
                               "data": {"reason": self.refusal}}], "next_cursor": None}
        if path.endswith("/envelope"):
            return self.envelope
        if method == "PUT":
            self.uploads.append((path, kw.get("body")))
            return {"stored": True}
        raise AssertionError(f"unexpected {method} {path}")


@pytest.fixture
def world() -> tuple[FakeGateway, PrivacyClient, EncryptionKey, EncryptionKey]:
    """A subject's client and key, and customs' key, on a fake gateway."""
    gateway = FakeGateway(keys.generate())
    subject = PrivacyClient(gateway)
    mine, customs = EncryptionKey.generate(), EncryptionKey.generate()
    gateway.register(subject.me, mine)
    gateway.register("org:customs-joint", customs)
    return gateway, subject, mine, customs


def _stored(gateway: FakeGateway, subject: PrivacyClient, key: EncryptionKey,
            value: str = SECRET) -> tuple[str, dict[str, Any]]:
    """Put a record; return its id and the upload, and put the record on 'the chain'."""
    ref = subject.put_record("address", value, jurisdiction="DE", key=key,
                             holders=["org:customs-joint"])
    kind, payload = gateway.sent[-1]
    assert kind == "privacy.create_record"
    gateway.chain[f"privacy/record/{ref.record_id}"] = {**payload, "record_id": ref.record_id}
    return ref.record_id, gateway.uploads[-1][1]


def test_put_record_sends_the_contracts_fields_and_no_value(world: Any) -> None:
    gateway, subject, mine, customs = world
    _, upload = _stored(gateway, subject, mine)
    _, payload = gateway.sent[-1]
    assert set(payload) == {"category", "commitment", "ciphertext_hash", "jurisdiction",
                            "holders", "wrap_hashes"}
    assert payload["holders"] == [subject.me, "org:customs-joint"]
    # the chain binds each holder's wrap: the vault stores no other
    assert payload["wrap_hashes"] == {
        party: hashlib.sha256(from_b64url(text)).hexdigest()
        for party, text in upload["wraps"].items()}
    assert set(payload["wrap_hashes"]) == set(payload["holders"])
    assert SECRET not in json.dumps(gateway.sent) + json.dumps(gateway.uploads)
    ciphertext = from_b64url(upload["ciphertext"])
    assert hashlib.sha256(ciphertext).hexdigest() == payload["ciphertext_hash"]
    for party, key in ((subject.me, mine), ("org:customs-joint", customs)):
        data_key = vault.unwrap(from_b64url(upload["wraps"][party]), key,
                                payload["commitment"])
        assert vault.open_sealed(ciphertext, data_key, payload["commitment"]).value == SECRET


def _envelope(record_id: str, record: Mapping[str, Any], upload: Mapping[str, Any],
              party: str) -> dict[str, Any]:
    return {"record_id": record_id, "category": "address",
            "commitment": record["commitment"], "ciphertext": upload["ciphertext"],
            "wrapped_key": upload["wraps"][party], "party": party}


def test_read_opens_only_what_the_chain_names(world: Any) -> None:
    gateway, subject, mine, customs = world
    record_id, upload = _stored(gateway, subject, mine)
    record = gateway.chain[f"privacy/record/{record_id}"]
    gateway.envelope = _envelope(record_id, record, upload, "org:customs-joint")
    assert subject.read(record_id, purpose="customs_clearance", basis="legal_basis",
                        key=customs) == SECRET
    # The gateway hands out another record's ciphertext and wrap under this record's id:
    other_id, other = _stored(gateway, subject, mine, "Rue de Rivoli 1, 75001 Paris")
    gateway.envelope = {**_envelope(record_id, record, other, "org:customs-joint")}
    with pytest.raises(PrivacyError) as swapped:
        subject.read(record_id, purpose="customs_clearance", basis="legal_basis",
                     key=customs)
    assert swapped.value.code == "record_mismatch"
    # ... and with the other record's commitment too: the chain's is what counts.
    other_record = gateway.chain[f"privacy/record/{other_id}"]
    gateway.envelope = {**_envelope(record_id, other_record, other, "org:customs-joint")}
    with pytest.raises(PrivacyError) as relabelled:
        subject.read(record_id, purpose="customs_clearance", basis="legal_basis",
                     key=customs)
    assert relabelled.value.code == "record_mismatch"
    # A wrap made for someone else does not open with customs' key.
    gateway.envelope = _envelope(record_id, record, upload, subject.me)
    with pytest.raises(PrivacyError) as not_mine:
        subject.read(record_id, purpose="customs_clearance", basis="legal_basis",
                     key=customs)
    assert not_mine.value.code == "unwrap_failed"


def test_a_refused_access_carries_the_contracts_reason(world: Any) -> None:
    gateway, subject, mine, _ = world
    record_id, _ = _stored(gateway, subject, mine)
    gateway.refusal = "no_grant"
    with pytest.raises(PrivacyError) as refused:
        subject.read(record_id, purpose="delivery", basis="grant", key=mine)
    assert (refused.value.code, refused.value.reason) == ("access_refused", "no_grant")
    assert refused.value.tx_hash == f"{len(gateway.sent):064x}"


def test_a_key_the_gateway_substitutes_is_refused(world: Any) -> None:
    gateway, subject, mine, _ = world
    gateway.keys["org:customs-joint"] = EncryptionKey.generate().public_hex  # its own
    with pytest.raises(PrivacyError) as substituted:
        subject.put_record("address", SECRET, jurisdiction="DE", key=mine,
                           holders=["org:customs-joint"])
    assert substituted.value.code == "key_mismatch"
    gateway.keys["org:customs-joint"] = "00" * 32  # a small-order point
    with pytest.raises(PrivacyError) as small:
        subject.put_record("address", SECRET, jurisdiction="DE", key=mine,
                           holders=["org:customs-joint"])
    assert small.value.code == "bad_public_key"
    with pytest.raises(PrivacyError) as not_registered:
        subject.put_record("address", SECRET, jurisdiction="DE",
                           key=EncryptionKey.generate())
    assert not_registered.value.code == "key_not_registered"
    assert not [k for k, _ in gateway.sent if k == "privacy.create_record"]


def test_grant_wraps_for_the_grantee_and_binds_the_wrap_hash(world: Any) -> None:
    gateway, subject, mine, _ = world
    record_id, upload = _stored(gateway, subject, mine)
    record = gateway.chain[f"privacy/record/{record_id}"]
    carrier = EncryptionKey.generate()
    gateway.register("org:rail", carrier)
    gateway.envelope = _envelope(record_id, record, upload, subject.me)
    subject.grant(record_id, "org:rail", "delivery", 10**13, key=mine)
    access, grant = gateway.sent[-2:]
    assert access == ("privacy.access", {"record_id": record_id, "purpose": "delivery",
                                         "basis": "subject", "as": "self"})
    path, body = gateway.uploads[-1]
    wrapped = from_b64url(body["wrapped_key"])
    assert path.endswith("/wraps/org:rail") and grant[0] == "privacy.grant"
    assert grant[1]["wrap_hash"] == hashlib.sha256(wrapped).hexdigest()
    data_key = vault.unwrap(wrapped, carrier, record["commitment"])
    ciphertext = from_b64url(upload["ciphertext"])
    assert vault.open_sealed(ciphertext, data_key, record["commitment"]).value == SECRET


# --- without a pinned genesis, nothing is wrapped and nothing is opened --------------------


def test_an_unpinned_client_wraps_and_opens_nothing() -> None:
    """Unpinned, a party's key is the gateway's word: a gateway answering its own key for
    a holder or a grantee would unwrap the copy made for it. Every flow that wraps or
    opens refuses before sending anything."""
    gateway = FakeGateway(keys.generate(), pinned=False)
    privacy = PrivacyClient(gateway)
    mine, attacker = EncryptionKey.generate(), EncryptionKey.generate()
    gateway.register(privacy.me, mine)
    gateway.register("org:customs-joint", attacker)  # what a lying gateway would answer
    record_id = "ab" * 32
    flows: dict[str, Callable[[], Any]] = {
        "put_record": lambda: privacy.put_record("address", SECRET, jurisdiction="DE",
                                                 key=mine, holders=["org:customs-joint"]),
        "grant": lambda: privacy.grant(record_id, "org:customs-joint", "delivery", 10**13,
                                       key=mine, data_key=bytes(32)),
        "read": lambda: privacy.read(record_id, purpose="delivery", basis="grant",
                                     key=mine),
        "export": lambda: privacy.export(mine),
        "attest_match": lambda: privacy.attest_match(record_id, "cd" * 32,
                                                     purpose="customs_clearance",
                                                     key=mine),
    }
    for name, flow in flows.items():
        with pytest.raises(PrivacyError) as refused:
            flow()
        assert refused.value.code == "genesis_required", name
    assert gateway.sent == [] and gateway.uploads == []


def test_the_cli_wraps_and_reads_only_against_a_pinned_genesis(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    signing, enc = tmp_path / "me.key", tmp_path / "me.enc"
    keys.save(keys.generate(), signing)
    EncryptionKey.generate().save(enc)
    monkeypatch.chdir(tmp_path)  # no data/genesis.json here
    monkeypatch.delenv("ECOSPHERE_DATA_DIR", raising=False)
    me = ["--key-file", str(signing), "--enc-key", str(enc)]
    commands = {
        "put": ["put", *me, "--category", "address", "--value", SECRET,
                "--jurisdiction", "DE", "--holder", "org:customs-joint"],
        "grant": ["grant", "ab" * 32, *me, "--to", "org:x", "--purpose", "delivery",
                  "--days", "7"],
        "read": ["read", "ab" * 32, *me, "--purpose", "delivery", "--basis", "grant"],
        "export": ["export", *me],
    }
    for name, command in commands.items():
        code, _, error = cli(capsys, "--gateway", NOWHERE, "privacy", *command)
        assert (code, error["error"]) == (2, "genesis_required"), name
        assert SECRET not in json.dumps(error)
    # the data directory's genesis pins them (here: $ECOSPHERE_DATA_DIR, then ./data)
    testnet = make_testnet()
    data = tmp_path / "net"
    data.mkdir()
    (data / "genesis.json").write_text(json.dumps(testnet.genesis.to_wire()))
    monkeypatch.setenv("ECOSPHERE_DATA_DIR", str(data))
    for name, command in commands.items():
        code, _, error = cli(capsys, "--gateway", NOWHERE, "privacy", *command)
        assert (code, error["error"]) == (1, "gateway_unreachable"), name
    monkeypatch.delenv("ECOSPHERE_DATA_DIR")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "genesis.json").write_text("not a genesis")
    code, _, error = cli(capsys, "--gateway", NOWHERE, "privacy", *commands["read"])
    assert (code, error["error"]) == (2, "bad_genesis_file")
    # erasing wraps nothing and opens nothing: no genesis needed
    code, _, error = cli(capsys, "--gateway", NOWHERE, "privacy", "erase", "ab" * 32,
                         "--key-file", str(signing))
    assert (code, error["error"]) == (1, "gateway_unreachable")


# --- the subject re-wraps only a data key that opens the record ----------------------------


def test_grant_refuses_a_data_key_that_does_not_open_the_record(world: Any) -> None:
    gateway, subject, mine, _ = world
    record_id, upload = _stored(gateway, subject, mine)
    record = gateway.chain[f"privacy/record/{record_id}"]
    gateway.register("org:rail", EncryptionKey.generate())
    # the gateway hands the subject a wrap of a key of its choosing (it knows the
    # subject's public key): re-wrapped and bound on chain, it would be useless — or
    # the gateway's own
    bogus = vault.wrap(bytes(range(32)), mine.public_hex, record["commitment"])
    gateway.envelope = {**_envelope(record_id, record, upload, subject.me),
                        "wrapped_key": b64url(bogus)}
    with pytest.raises(PrivacyError) as refused:
        subject.grant(record_id, "org:rail", "delivery", 10**13, key=mine)
    assert refused.value.code == "bad_ciphertext"
    assert not [k for k, _ in gateway.sent if k == "privacy.grant"]
    assert not [p for p, _ in gateway.uploads if "/wraps/" in p]


# --- the export, page by page ----------------------------------------------------------------


def test_export_follows_every_page_and_refuses_pages_that_do_not_move_on(
        world: Any) -> None:
    gateway, subject, mine, _ = world
    values = {}
    for n in range(3):
        record_id, upload = _stored(gateway, subject, mine, f"value {n}")
        values[record_id] = (f"value {n}", upload)
    order = sorted(values)
    pages: dict[str | None, dict[str, Any]] = {}
    for n, record_id in enumerate(order):  # one record a page, in record id order
        upload = values[record_id][1]
        pages[order[n - 1] if n else None] = {
            "subject": subject.key_id, "access_log": [], "grants": [], "erasures": [],
            "access_log_truncated": False, "truncated": n < 2,
            "records": [{**gateway.chain[f"privacy/record/{record_id}"],
                         "ciphertext": upload["ciphertext"],
                         "wrapped_key": upload["wraps"][subject.me]}],
            "next_cursor": record_id if n < 2 else None}
    asked: list[str | None] = []

    def call(method: str, path: str, **kw: Any) -> Any:
        if path == "/v1/privacy/me/export":
            cursor = (kw.get("query") or {}).get("cursor")
            asked.append(cursor)
            return pages[cursor]
        return FakeGateway.call(gateway, method, path, **kw)

    gateway.call = call
    exported = subject.export(mine)
    assert asked == [None, *order[:2]]
    assert [(r["record_id"], r["value"]) for r in exported["records"]] == [
        (record_id, values[record_id][0]) for record_id in order]
    assert exported["next_cursor"] is None and not exported["truncated"]
    pages[order[0]]["next_cursor"] = order[0]  # a gateway sending the client round
    with pytest.raises(PrivacyError) as looping:
        subject.export(mine)
    assert looping.value.code == "bad_envelope"
