"""No personal data on the chain, ever, and erasure that leaves the chain valid: the
demo's privacy steps run against a live embedded network, then every replica's store
is read block by block (and byte by byte) for the personal values the demo used, in
every encoding they could hide in.

Functional: real sockets, four validators and the gateway in-process (tests/live.py).
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import bson
import pytest
from pymongo import MongoClient
from pymongo.database import Database

from services.composition import build_application
from services.ledger.core.blocks import Block
from services.ledger.core.certificate import CommitCertificate
from services.ledger.core.contract import Event
from services.ledger.core.replica import ChainTip, Replica
from services.ledger.node import keys
from services.privacy.edge.vault import VAULT
from services.runtime.datadir import SERVICES
from services.runtime.demo import Demo
from services.sdk.privacy import Acting, PrivacyClient, PrivacyError
from services.sdk.vault import EncryptionKey
from tests.live import LiveNetwork

pytestmark = pytest.mark.functional

#: parts of a value long enough to mean something on their own ("Lindenstraße")
PART_CHARS_MIN = 7


# --- the encodings a value could hide in ----------------------------------------------------


def _b64_alignments(data: bytes, encode: Callable[[bytes], bytes]) -> list[bytes]:
    """The part of the base64 (or base64url) text of ``data`` that depends on ``data``
    alone, for each of the three alignments it can start at in a longer string."""
    out = []
    for lead in range(3):
        text = encode(bytes(lead) + data)
        start = -(-8 * lead // 6)  # the first character made of data bits only
        end = 8 * (lead + len(data)) // 6  # past the last one
        out.append(bytes(text[start:end]))
    return out


def encodings(value: str) -> dict[str, bytes]:
    """Every byte string ``value`` could appear as, named."""
    raw = value.encode()
    out: dict[str, bytes] = {}
    for case, text in (("", value), ("lower ", value.lower()), ("upper ", value.upper())):
        data = text.encode()
        out[f"{case}utf-8"] = data
        ascii_json = json.dumps(text)[1:-1].encode()
        out[f"{case}json \\uXXXX"] = ascii_json
        out[f"{case}json \\uXXXX upper"] = _upper_escapes(ascii_json)
        out[f"{case}json utf-8"] = json.dumps(text, ensure_ascii=False)[1:-1].encode()
        out[f"{case}utf-16-le"] = text.encode("utf-16-le")
        out[f"{case}utf-16-be"] = text.encode("utf-16-be")
        out[f"{case}url"] = quote(text, safe="").encode()
        out[f"{case}url lower"] = _lower_escapes(quote(text, safe="").encode())
        out[f"{case}url plus"] = quote_plus(text).encode()
        out[f"{case}url path"] = quote(text).encode()
    out["hex"] = raw.hex().encode()
    out["HEX"] = raw.hex().upper().encode()
    out["utf-16-le hex"] = value.encode("utf-16-le").hex().encode()
    for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
        for lead, part in enumerate(_b64_alignments(raw, encode)):
            out[f"{name} +{lead}"] = part
    return out


def _upper_escapes(text: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(text):
        if text[i:i + 2] == b"\\u":
            out += b"\\u" + text[i + 2:i + 6].upper()
            i += 6
        else:
            out.append(text[i])
            i += 1
    return bytes(out)


def _lower_escapes(text: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(text):
        if text[i:i + 1] == b"%":
            out += text[i:i + 3].lower()
            i += 3
        else:
            out.append(text[i])
            i += 1
    return bytes(out)


def parts(value: str) -> list[str]:
    words = [w.strip(",.;:") for w in value.split()]
    return [w for w in words if len(w) >= PART_CHARS_MIN]


def needles(values: list[str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for value in values:
        out.update({f"{value!r} as {name}": b for name, b in encodings(value).items()})
        for part in parts(value):
            out.update({f"part {part!r} as {name}": b for name, b in encodings(part).items()
                        if not name.startswith(("base64", "hex", "HEX"))})
    return out


def found_in(haystack: bytes, wanted: dict[str, bytes]) -> list[str]:
    return [name for name, needle in wanted.items() if needle and needle in haystack]


# --- the stores -------------------------------------------------------------------------------


@dataclass
class StoredChain:
    service: str
    blocks: list[tuple[int, bytes, bytes, bytes]]  # height, block, certificate, events
    other_rows: list[bytes]  # every cell of every other table (state, meta, WAL record)
    files: bytes  # the database's files, byte for byte (free pages and WAL included)


def _read_store(path: Path, service: str) -> StoredChain:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        blocks = [(int(h), bytes(b), bytes(c), bytes(e)) for h, b, c, e in db.execute(
            "SELECT height, block, certificate, events FROM blocks ORDER BY height")]
        cells: list[bytes] = []
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            if table == "blocks":
                continue
            for row in db.execute(f'SELECT * FROM "{table}"'):  # the file's own table names
                cells.extend(c if isinstance(c, bytes) else str(c).encode() for c in row)
    finally:
        db.close()
    files = b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*"))
                     if not p.name.endswith(".lock"))
    return StoredChain(service, blocks, cells, files)


def stores(live: LiveNetwork) -> Iterator[StoredChain]:
    for service in SERVICES:
        path = live.data.store(service)
        if path.exists():
            yield _read_store(path, service)


# --- the run ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(live: LiveNetwork) -> Demo:
    lines: list[str] = []
    run = Demo(live.url, live.data, out=lines.append)
    assert run.run() == 0, "\n".join(lines)
    assert lines[-1].startswith("demo: all ") and "steps proved" in lines[-1]
    assert any("nobody can read the address any more" in line for line in lines)
    assert run.personal_values and run.record_id
    return run


def test_the_scanner_finds_each_encoding() -> None:
    """The scan is not vacuous: each encoding of a value, buried in other bytes, is
    found, and an encoding of another value is not."""
    value = "Anna Schmidt, Lindenstraße 7, 10969 Berlin"
    wanted = needles([value])
    for name, data in encodings(value).items():
        for lead in range(3):
            assert found_in(b"\x00{}" * lead + data + b'"]}', wanted), name
    other = encodings("Jan Kowalski, ul. Polna 3, 00-001 Warszawa")
    assert not found_in(b"|".join(other.values()), wanted)


def test_no_personal_value_is_in_any_block_event_or_store(demo: Demo,
                                                          live: LiveNetwork) -> None:
    wanted = needles(demo.personal_values)
    control = {"the consumer's organisation id": f"consumer-{demo.run_id}".encode()}
    scanned = 0
    for chain in stores(live):
        assert chain.blocks, f"{chain.service}: no blocks"
        assert found_in(chain.files, control), f"{chain.service}: the scan reads nothing"
        for height, block, certificate, events in chain.blocks:
            for what, data in (("block", block), ("certificate", certificate),
                               ("events", events)):
                hits = found_in(data, wanted) + found_in(data.lower(), wanted)
                assert not hits, f"{chain.service} block {height} {what}: {hits}"
            decoded = Block.from_wire(json.loads(block))
            for tx in decoded.txs:
                assert not found_in(json.dumps(tx.to_wire()).encode(), wanted)
            for event in json.loads(events):
                Event.from_wire(event)  # every stored event is a well-formed event
            scanned += 1
        for cell in chain.other_rows:
            assert not found_in(cell, wanted), f"{chain.service}: a state or meta row"
        hits = found_in(chain.files, wanted) + found_in(chain.files.lower(), wanted)
        assert not hits, f"{chain.service}: its database files hold {hits}"
    assert scanned >= 4 * 10  # four validators' chains at least (the gateway's too)


def test_no_personal_value_is_in_the_views_or_the_vault(demo: Demo, live: LiveNetwork,
                                                       mongo_uri: str) -> None:
    """The gateway's MongoDB (its views, and the vault of ciphertexts) holds none
    either: what the vault keeps is sealed on the client."""
    wanted = needles(demo.personal_values)
    settings = live.network.nodes["gateway"].settings
    mongo: MongoClient[dict[str, Any]]
    with MongoClient(mongo_uri) as mongo:
        seen = 0
        for db_name in (settings.views.db_name, settings.privacy.vault_db_name):
            database: Database[dict[str, Any]] = mongo[db_name]
            for collection in database.list_collection_names():
                for doc in database[collection].find():
                    data = bson.encode(doc)
                    hits = found_in(data, wanted) + found_in(data.lower(), wanted)
                    assert not hits, f"{db_name}.{collection}: {hits}"
                    seen += 1
    assert seen > 100


def test_privacy_transactions_and_events_carry_ids_and_hashes_only(
        demo: Demo, live: LiveNetwork) -> None:
    chain = next(stores(live))
    kinds, types = set(), set()
    for _, block, _, events in chain.blocks:
        for tx in Block.from_wire(json.loads(block)).txs:
            if tx.kind.startswith("privacy."):
                kinds.add(tx.kind)
        types |= {e["type"] for e in json.loads(events) if e["type"].startswith("privacy.")}
    assert {"privacy.register_key", "privacy.create_record", "privacy.grant",
            "privacy.access", "privacy.request_erasure", "privacy.ack_erasure"} <= kinds
    assert {"privacy.record.created", "privacy.grant.created", "privacy.access.granted",
            "privacy.erasure.requested", "privacy.erasure.completed"} <= types


def test_after_erasure_no_vault_document_remains_and_nobody_can_decrypt(
        demo: Demo, live: LiveNetwork, mongo_uri: str) -> None:
    record_id = demo.record_id
    assert record_id is not None
    vault_db = live.network.nodes["gateway"].settings.privacy.vault_db_name
    mongo: MongoClient[dict[str, Any]]
    with MongoClient(mongo_uri) as mongo:
        # only its tombstone: no ciphertext, no wrap (and no write can store them again)
        left: dict[str, Any] = mongo[vault_db][VAULT].find_one({"_id": record_id}) or {}
        assert sorted(left) == ["_id", "at", "erased"] and left["erased"] is True
    # read as customs, a party of the record (its state is its parties' to read)
    record = live.client(live.admin_key("customs")).state(f"privacy/record/{record_id}",
                                                          verify=True, signed=True)
    assert record["status"] == "erased" and not record["erasure"]["pending"]
    assert {"vault", "org:customs-joint"} <= set(record["erasure"]["acknowledged"])
    run = live.data.root / "demo" / demo.run_id
    # who, with which signing key, acting as what, reading on what ground
    readers: list[tuple[str, Path, Acting, str, str]] = [
        ("consumer", run / "consumer.key", "self", "subject", "delivery"),
        ("customs", live.data.admin_key("customs"), "org", "legal_basis",
         "customs_clearance"),
        ("carrier", run / "carrier.key", "org", "grant", "delivery"),
    ]
    for name, signing, acting, basis, purpose in readers:
        reader = PrivacyClient(live.client(keys.load(signing)))
        with pytest.raises(PrivacyError) as refused:
            reader.read(record_id, purpose=purpose, basis=basis, as_=acting,
                        key=EncryptionKey.load(run / f"{name}.enc"))
        assert (refused.value.code, refused.value.reason) == ("access_refused",
                                                              "record_erased"), name
    consumer = PrivacyClient(live.client(keys.load(run / "consumer.key")))
    exported = consumer.export(EncryptionKey.load(run / "consumer.enc"))
    mine = [r for r in exported["records"] if r["record_id"] == record_id]
    assert mine and mine[0]["value"] is None and mine[0]["status"] == "erased"


def test_every_block_still_verifies_and_replays_after_the_erasure(
        demo: Demo, live: LiveNetwork) -> None:
    """Each replica's chain, replayed from the genesis: every certificate verified
    against the validators of its height, every block re-executed to its roots."""
    for chain in stores(live):
        replica = Replica(genesis=live.genesis, app=build_application(), key=None,
                          tip=ChainTip.genesis(live.genesis, build_application()))
        for height, block, certificate, _ in chain.blocks:
            replica.apply_certified(Block.from_wire(json.loads(block)),
                                    CommitCertificate.from_wire(json.loads(certificate)),
                                    now=0)
            assert replica.tip.height == height
        assert replica.tip.height == chain.blocks[-1][0] > 0
