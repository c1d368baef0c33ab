"""What a client of the vault does, with the SDK's own construction
(:mod:`services.sdk.vault`: a 32-byte salt, the tagged commitment, HPKE bound to the
commitment): seal a value under a fresh data key, wrap the key for a party, open an
envelope; and the parties of the tests, onboarded on a live network with real signed
transactions."""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.ledger.core.crypto import PrivateKey
from services.privacy.edge.plugin import PrivacyPlugin
from services.sdk import vault
from services.sdk.client import Client
from tests.live import LiveNetwork

HOUR_MS = 3_600_000
#: data key -> the commitment it was sealed under (what a wrap of it is bound to)
_COMMITMENTS: dict[bytes, str] = {}
#: (data key, recipient's public key) -> the one wrap a party made of it
_WRAPS: dict[tuple[bytes, bytes], bytes] = {}


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
    """``value`` (UTF-8) sealed by the SDK (:func:`services.sdk.vault.seal`)."""
    sealed = vault.seal(category, value.decode("utf-8"))
    _COMMITMENTS[sealed.data_key] = sealed.commitment
    return Sealed(value, sealed.data_key, bytes.fromhex(sealed.commitment), sealed.ciphertext)


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def wrap(data_key: bytes, public: X25519PublicKey, *, fresh: bool = False) -> bytes:
    """``data_key`` wrapped for ``public`` by the SDK (:func:`services.sdk.vault.wrap`,
    bound to the commitment :func:`seal` made with it). Wrapping is randomised and the
    chain binds one wrap per holder and grantee (its SHA-256): like a client keeping
    what it wrapped, this returns the wrap it made before for the same key and
    recipient (``fresh``: another one, which the chain binds nowhere)."""
    memo = (data_key, _raw(public))
    if fresh or memo not in _WRAPS:
        wrapped = vault.wrap(data_key, _raw(public).hex(), _COMMITMENTS[data_key])
        if fresh:
            return wrapped
        _WRAPS[memo] = wrapped
    return _WRAPS[memo]


def open_envelope(envelope: dict[str, Any], private: X25519PrivateKey) -> bytes:
    """The value an envelope (or an export's record) holds, opened by the SDK and checked
    against its commitment."""
    commitment = envelope["commitment"]
    data_key = vault.unwrap(unb64(envelope["wrapped_key"]), private, commitment)
    opened = vault.open_sealed(unb64(envelope["ciphertext"]), data_key, commitment)
    return opened.value.encode("utf-8")


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
        return _raw(self.public).hex()

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

    def public_of(self, party: str) -> X25519PublicKey:
        """``party``'s registered encryption key (read from the gateway)."""
        answer = self.live.client().call("GET", f"/v1/privacy/keys/{party}")
        return X25519PublicKey.from_public_bytes(bytes.fromhex(answer["public_key"]))

    def wrap_hashes(self, sealed: Sealed, holders: list[str]) -> dict[str, str]:
        """holder -> the SHA-256 of the wrap :func:`wrap` makes for it (what the chain
        binds, and so what the vault accepts)."""
        return {party: hashlib.sha256(wrap(sealed.data_key, self.public_of(party)))
                .hexdigest() for party in holders}

    def record(self, category: str = "address", value: bytes = b"12 Rue de Rivoli, Paris",
               holders: list[str] | None = None) -> tuple[str, Sealed]:
        """A new record of the subject (not yet in the vault): its id and sealed value."""
        sealed = seal(category, value)
        holders = holders or [self.subject.party]
        result = self.subject.send("privacy.create_record", {
            "category": category, "commitment": sealed.commitment.hex(),
            "ciphertext_hash": sealed.ciphertext_hash, "jurisdiction": "FR",
            "holders": holders, "wrap_hashes": self.wrap_hashes(sealed, holders)})
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

    def organisation(self, name: str, role: str) -> Party:
        """A new organisation (its admin's client) with its own encryption key."""
        client = self.live.client(PrivateKey.from_seed(os.urandom(32)))
        assert client.key is not None
        org = f"{name}-{uuid.uuid4().hex[:8]}"
        result = self.operator.send("consortium.register_organisation", {
            "id": org, "name": name, "roles": [role],
            "admin_key": client.key.public.raw.hex()})
        assert result["status"] == "committed", result
        found = Party(client, X25519PrivateKey.generate(), f"org:{org}")
        found.send("privacy.register_key", {"scope": "org", "public_key": found.public_hex,
                                            "country": "FR"})
        return found

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
