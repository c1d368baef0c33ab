"""What a client of the vault does, written with ``cryptography`` directly (the SDK's
helpers are written alongside): seal a value under a fresh data key, wrap the key for a
party with HPKE, open an envelope; and the parties of the tests, onboarded on a live
network with real signed transactions."""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.ledger.core.crypto import PrivateKey
from services.privacy.edge.plugin import PrivacyPlugin
from services.sdk.client import Client
from tests.live import LiveNetwork

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
SALT_BYTES = 16
NONCE_BYTES = 12
HOUR_MS = 3_600_000


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Sealed:
    value: bytes
    data_key: bytes
    commitment: bytes
    ciphertext: bytes

    @property
    def ciphertext_hash(self) -> str:
        return hashlib.sha256(self.ciphertext).hexdigest()


def seal(category: str, value: bytes) -> Sealed:
    """salt ‖ value under a fresh data key; the commitment (salted SHA-256) is the AAD."""
    salt = os.urandom(SALT_BYTES)
    commitment = hashlib.sha256(salt + category.encode() + b"\x00" + value).digest()
    data_key = ChaCha20Poly1305.generate_key()
    nonce = os.urandom(NONCE_BYTES)
    sealed = ChaCha20Poly1305(data_key).encrypt(nonce, salt + value, commitment)
    return Sealed(value, data_key, commitment, nonce + sealed)


def wrap(data_key: bytes, public: X25519PublicKey) -> bytes:
    return SUITE.encrypt(data_key, public)


def open_envelope(envelope: dict[str, Any], private: X25519PrivateKey) -> bytes:
    data_key = SUITE.decrypt(unb64(envelope["wrapped_key"]), private)
    raw = unb64(envelope["ciphertext"])
    plain = ChaCha20Poly1305(data_key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                                bytes.fromhex(envelope["commitment"]))
    return plain[SALT_BYTES:]


@dataclass
class Party:
    """A signing key (its client) and an X25519 encryption key registered for ``party``."""

    client: Client
    exchange: X25519PrivateKey
    party: str

    @property
    def key(self) -> PrivateKey:
        if self.client.key is None:
            raise ValueError("a party's client has a key")
        return self.client.key

    @property
    def public(self) -> X25519PublicKey:
        return self.exchange.public_key()

    @property
    def public_hex(self) -> str:
        return self.public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    def send(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        result = self.client.send(kind, payload)
        assert result["status"] == "committed", result
        return result

    def call(self, method: str, path: str, **kw: Any) -> Any:
        return self.client.call(method, path, signed=True, **kw)


@dataclass
class World:
    live: LiveNetwork
    operator: Client
    subject: Party  # a person, with their own key (key:<id>)
    carrier: Party  # an organisation's admin (org:<id>)
    carrier_member: Client  # another key of the carrier
    shop: Party  # an organisation with no grant

    @property
    def plugin(self) -> PrivacyPlugin:
        node = self.live.network.nodes["gateway"]
        assert node.gateway is not None
        return cast(PrivacyPlugin, node.gateway.plugins["privacy"])

    def record(self, category: str = "address", value: bytes = b"12 Rue de Rivoli, Paris",
               holders: list[str] | None = None) -> tuple[str, Sealed]:
        """A new record of the subject (not yet in the vault): its id and sealed value."""
        sealed = seal(category, value)
        result = self.subject.send("privacy.create_record", {
            "category": category, "commitment": sealed.commitment.hex(),
            "ciphertext_hash": sealed.ciphertext_hash, "jurisdiction": "FR",
            "holders": holders or [self.subject.party]})
        return str(result["tx_hash"]), sealed

    def stored_record(self, value: bytes = b"12 Rue de Rivoli, Paris") -> tuple[str, Sealed]:
        """A record of the subject whose ciphertext and own wrap are in the vault."""
        record_id, sealed = self.record(value=value)
        self.subject.call("PUT", f"/v1/privacy/records/{record_id}/ciphertext", body={
            "ciphertext": b64(sealed.ciphertext),
            "wraps": {self.subject.party: b64(wrap(sealed.data_key, self.subject.public))}})
        return record_id, sealed

    def grant(self, record_id: str, sealed: Sealed, grantee: Party, *,
              purpose: str = "delivery", until: int | None = None,
              upload: bool = True) -> bytes:
        """The subject grants ``grantee`` (and uploads its wrap); the wrapped key."""
        wrapped = wrap(sealed.data_key, grantee.public)
        self.subject.send("privacy.grant", {
            "record_id": record_id, "grantee": grantee.party, "purpose": purpose,
            "until": until or now_ms() + HOUR_MS,
            "wrap_hash": hashlib.sha256(wrapped).hexdigest()})
        if upload:
            self.subject.call("PUT", f"/v1/privacy/records/{record_id}/wraps/{grantee.party}",
                              body={"wrapped_key": b64(wrapped)})
        return wrapped

    @staticmethod
    def access(reader: Party | Client, record_id: str, *, purpose: str = "delivery",
               basis: str = "grant", acting: str = "org") -> str:
        """A ``privacy.access`` (committed, granted or refused): its transaction hash."""
        client = reader.client if isinstance(reader, Party) else reader
        result = client.send("privacy.access", {"record_id": record_id, "purpose": purpose,
                                                "basis": basis, "as": acting})
        assert result["status"] == "committed", result
        return str(result["tx_hash"])

    @staticmethod
    def envelope(reader: Party | Client, record_id: str, access: str) -> dict[str, Any]:
        client = reader.client if isinstance(reader, Party) else reader
        return dict(client.call("GET", f"/v1/privacy/records/{record_id}/envelope",
                                query={"access": access}, signed=True))


def onboard(live: LiveNetwork) -> World:
    """An operator-registered person, carrier and shop, each with an encryption key."""
    operator = live.client(live.admin_key("ledger"))
    run = uuid.uuid4().hex[:8]

    def organisation(name: str, role: str) -> Client:
        client = live.client(PrivateKey.from_seed(os.urandom(32)))
        assert client.key is not None
        result = operator.send("consortium.register_organisation", {
            "id": f"{name}-{run}", "name": name, "roles": [role],
            "admin_key": client.key.public.raw.hex()})
        assert result["status"] == "committed", result
        return client

    def party(client: Client, scope: str, org: str | None = None) -> Party:
        assert client.key is not None
        name = f"org:{org}-{run}" if scope == "org" else f"key:{client.key.key_id}"
        found = Party(client, X25519PrivateKey.generate(), name)
        found.send("privacy.register_key", {"scope": scope, "public_key": found.public_hex,
                                            "country": "FR"})
        return found

    subject = party(organisation("people", "consumer"), "self")
    carrier = party(organisation("carrier", "carrier"), "org", "carrier")
    shop = party(organisation("shop", "retailer"), "org", "shop")
    member = live.client(PrivateKey.from_seed(os.urandom(32)))
    assert member.key is not None
    carrier.send("consortium.add_key", {"public_key": member.key.public.raw.hex(),
                                        "permissions": ["member"]})
    return World(live, operator, subject, carrier, member, shop)


def eventually(check: Callable[[], Any], *, timeout_s: float = 20.0,
               what: str = "condition") -> Any:
    """``check()``'s first truthy answer, polled until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s (last: {answer!r})")
        time.sleep(0.1)
