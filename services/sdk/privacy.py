"""The personal-data vault's flows, over a gateway: store a value, share it, read it,
export everything about oneself, erase it.

:class:`PrivacyClient` wraps a :class:`services.sdk.client.Client` (its signing key is
the acting party's: the subject's own key, or a key of the organisation that reads).
Values are sealed and opened here, with :mod:`services.sdk.vault`; the gateway and the
chain only ever see ciphertexts, wrapped data keys, commitments and hashes.

What is trusted: a pinned genesis. Every transaction's receipt is checked offline and
the chain facts a flow relies on — a party's registered encryption key, a record's
commitment and ciphertext hash — are read with a state proof, so a gateway cannot
substitute its own key for a reader's, nor hand out one record's ciphertext for
another's (:func:`services.sdk.vault.open_sealed` recomputes the commitment). Without
one the gateway's word is all there is, and a gateway answering its own X25519 key for
a holder or grantee would read the value: every flow that wraps a data key
(:meth:`PrivacyClient.put_record`, :meth:`PrivacyClient.grant`) or opens a value
(:meth:`PrivacyClient.read`, :meth:`PrivacyClient.export`,
:meth:`PrivacyClient.attest_match`) refuses to run unpinned (``genesis_required``),
before anything is sent. A data key the gateway hands the subject to re-wrap for a
grantee is first checked to open the record's ciphertext to a value its on-chain
commitment names.

Wire: ``/v1/privacy/...`` (the gateway's privacy plugin); bytes are unpadded base64url;
transactions are ``privacy.<action>`` with the payloads of
:class:`services.privacy.contract.PrivacyContract`.

Errors: :class:`PrivacyError`, one class with a stable ``code``: the gateway's problem
codes (``status`` set), a rejected transaction's contract code, the vault's codes
(:class:`services.sdk.vault.VaultError`), a proof's (``bad_proof``, ...: an answer
that does not verify against the pinned genesis), and these:

    genesis_required      a flow that wraps or opens values, on a client with no pinned
                          genesis (nothing was sent)
    access_refused        the chain judged the access and refused it (``reason``: the
                          contract's, e.g. ``no_grant``, ``record_erased``)
    access_unknown        the access committed but its judgement was not found
    not_committed         a transaction did not commit
    key_not_registered    the local encryption key is not the party's registered one
    key_mismatch          the gateway's answer for a party's key differs from the chain's
    record_mismatch       the vault's envelope does not match the record on the chain
    bad_envelope          the gateway's envelope is malformed
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import quote

from services.privacy.matching import normalize
from services.privacy.vocabulary import self_party
from services.sdk import proofs, vault
from services.sdk.client import ApiError, Client
from services.sdk.vault import EncryptionKey, VaultError

__all__ = ["Acting", "PrivacyClient", "PrivacyError", "RecordRef", "b64url", "from_b64url"]

Acting = Literal["org", "self"]
#: how long a committed access may take to show in the gateway's vault
ENVELOPE_WAIT_S: Final = 10.0
ENVELOPE_RETRY_CODES: Final = frozenset({"access_not_found", "vault_unavailable"})
EVENTS_PAGE: Final = 100
#: pages of one export followed at most (a page holds up to 1,000 records; a subject
#: has at most 1,000 records not yet erased, and its erased ones)
EXPORT_PAGES_MAX: Final = 1_000


class PrivacyError(Exception):
    """A privacy flow stopped: ``code`` is stable; ``status`` is the gateway's HTTP
    status when it said no; ``reason`` the contract's reason for a refused access."""

    def __init__(self, code: str, detail: str, *, status: int | None = None,
                 reason: str | None = None, tx_hash: str | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.status = status
        self.reason = reason
        self.tx_hash = tx_hash


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_b64url(text: object, what: str = "value") -> bytes:
    if not isinstance(text, str) or not text.isascii() or "=" in text:
        raise PrivacyError("bad_envelope", f"{what} is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise PrivacyError("bad_envelope", f"{what} is not unpadded base64url") from None


@dataclass(frozen=True)
class RecordRef:
    """A record just stored: its id (its transaction's hash), commitment, and — only if
    asked (``keep_data_key``) — its data key, in memory."""

    record_id: str
    category: str
    commitment: str
    holders: tuple[str, ...]
    height: int
    data_key: bytes | None = field(default=None, repr=False)


class PrivacyClient:
    def __init__(self, client: Client) -> None:
        if client.key is None:
            raise ValueError("a privacy client acts with a signing key")
        self.client = client
        self.key_id = client.key.key_id
        #: the hash of this client's last granted access (what its envelope is asked with)
        self.last_access: str | None = None

    @property
    def me(self) -> str:
        """This client's own party (a person acting with their signing key)."""
        return self_party(self.key_id)

    @property
    def _pinned(self) -> bool:
        return self.client.genesis is not None

    def _require_pinned(self, what: str) -> None:
        """Refuse ``what`` (a flow wrapping a data key or opening a value) without a
        pinned genesis: the keys and records it relies on would be the gateway's word."""
        if not self._pinned:
            raise PrivacyError("genesis_required", f"{what} checks the parties' keys and "
                               "the record against the chain with proofs: pin a genesis "
                               "(Client(..., genesis=...)); nothing was sent")

    # --- plumbing --------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            return self.client.call(method, path, **kw)
        except ApiError as exc:
            raise PrivacyError(exc.code, exc.detail, status=exc.status) from None

    def send(self, action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Send ``privacy.<action>`` and wait for its commit (receipt checked offline
        when a genesis is pinned)."""
        kind = f"privacy.{action}"
        try:
            result = self.client.send(kind, payload, verify=self._pinned)
        except ApiError as exc:
            raise PrivacyError(exc.code, exc.detail, status=exc.status) from None
        except proofs.ProofError as exc:
            raise PrivacyError(exc.code, f"the receipt of {kind} does not verify: {exc}") \
                from None
        if result.get("status") != "committed":
            raise PrivacyError(str(result.get("code", "not_committed")),
                               str(result.get("detail") or f"{kind} did not commit: "
                                   f"{result.get('status')}"),
                               tx_hash=result.get("tx_hash"))
        return result

    def _state(self, key: str) -> Any:
        """A chain state value: proven against the pinned genesis when there is one."""
        try:
            # signed: the gateway answers a privacy key to its parties only
            return self.client.state(key, verify=self._pinned, signed=True)
        except ApiError as exc:
            raise PrivacyError(exc.code, exc.detail, status=exc.status) from None
        except proofs.ProofError as exc:
            raise PrivacyError(exc.code, f"the chain's {key} does not verify: {exc}") \
                from None

    def record_on_chain(self, record_id: str) -> dict[str, Any]:
        record = self._state(f"privacy/record/{record_id}")
        if not isinstance(record, dict):
            raise PrivacyError("record_not_found", f"no record {record_id} on the chain")
        return record

    # --- keys ------------------------------------------------------------------------------

    def register_key(self, key: EncryptionKey, *, scope: Acting,
                     country: str) -> dict[str, Any]:
        """Register ``key`` for this client's organisation (``org``: an admin key) or for
        the person holding the signing key (``self``)."""
        return self.send("register_key", {"scope": scope, "public_key": key.public_hex,
                                          "country": country})

    def public_key(self, party: str) -> dict[str, Any]:
        """``party``'s active encryption key ``{party, key_id, public_key, country,
        since}``; with a pinned genesis, checked against the chain's (proven) record."""
        answer = self._call("GET", f"/v1/privacy/keys/{quote(party, safe=':')}")
        if not isinstance(answer, dict) or not isinstance(answer.get("public_key"), str):
            raise PrivacyError("bad_envelope", f"the gateway's key of {party} is malformed")
        public_hex = answer["public_key"]
        try:
            vault.public_key_from_hex(public_hex)  # a small-order key is refused before use
        except VaultError as exc:
            raise PrivacyError(exc.code, f"{party}'s key: {exc.detail}") from None
        if hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()[:32] != answer.get("key_id"):
            raise PrivacyError("key_mismatch", f"the key id of {party}'s key is not its hash")
        if self._pinned:
            proven = self._state(f"privacy/enckey/{party}")
            if not isinstance(proven, dict) or proven.get("status") != "active" \
                    or proven.get("public_key") != public_hex:
                raise PrivacyError("key_mismatch", f"the gateway's key for {party} is not "
                                   "the one registered on the chain")
        return answer

    def _check_own_key(self, key: EncryptionKey) -> None:
        registered = self.public_key(self.me)
        if registered["public_key"] != key.public_hex:
            raise PrivacyError("key_not_registered", f"this encryption key ({key.key_id}) "
                               f"is not the one registered for {self.me} "
                               f"({registered.get('key_id')})")

    # --- records ---------------------------------------------------------------------------

    def put_record(self, category: str, value: str, *, jurisdiction: str,
                   key: EncryptionKey, holders: Iterable[str] = (),
                   cross_border_consent: bool = False,
                   keep_data_key: bool = False) -> RecordRef:
        """Seal ``value``, wrap its data key for this subject and each holder, create the
        record on chain (binding each holder's wrap by its SHA-256), and upload the
        ciphertext and wraps to the vault."""
        self._require_pinned("put_record")
        self._check_own_key(key)
        parties = [self.me, *(p for p in dict.fromkeys(holders) if p != self.me)]
        publics = {self.me: key.public_hex}
        publics.update({p: self.public_key(p)["public_key"] for p in parties[1:]})
        try:
            sealed = vault.seal(category, value)
            wraps = {p: vault.wrap(sealed.data_key, publics[p], sealed.commitment)
                     for p in parties}
        except VaultError as exc:
            raise PrivacyError(exc.code, exc.detail) from None
        payload: dict[str, Any] = {"category": category, "commitment": sealed.commitment,
                                   "ciphertext_hash": sealed.ciphertext_hash,
                                   "jurisdiction": jurisdiction, "holders": parties,
                                   "wrap_hashes": {p: hashlib.sha256(w).hexdigest()
                                                   for p, w in wraps.items()}}
        if cross_border_consent:
            payload["cross_border_consent"] = True
        receipt = self.send("create_record", payload)
        record_id = str(receipt["tx_hash"])
        self._call("PUT", f"/v1/privacy/records/{record_id}/ciphertext", signed=True,
                   body={"ciphertext": b64url(sealed.ciphertext),
                         "wraps": {p: b64url(w) for p, w in wraps.items()}})
        return RecordRef(record_id=record_id, category=category,
                         commitment=sealed.commitment, holders=tuple(parties),
                         height=int(receipt["height"]),
                         data_key=sealed.data_key if keep_data_key else None)

    def record(self, record_id: str) -> dict[str, Any]:
        """A record's metadata, from the gateway (signed: a subject or a party of it)."""
        return dict(self._call("GET", f"/v1/privacy/records/{record_id}", signed=True))

    def my_records(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/privacy/me/records", signed=True))

    def access_log(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/privacy/me/access-log", signed=True))

    # --- grants ------------------------------------------------------------------------------

    def grant(self, record_id: str, grantee: str, purpose: str, until_ms: int, *,
              key: EncryptionKey, cross_border_consent: bool = False,
              data_key: bytes | None = None) -> dict[str, Any]:
        """Let ``grantee`` read the record for ``purpose`` until block time ``until_ms``:
        recover the data key (the subject's own access, unless ``data_key`` is given) and
        check it opens the record to a value its commitment names, wrap it for the
        grantee's registered key, grant on chain, upload the wrap."""
        self._require_pinned("grant")
        record = self.record_on_chain(record_id)
        if data_key is None:
            data_key, ciphertext = self._fetch(record_id, record, purpose=purpose,
                                               basis="subject", key=key, acting="self")
            self._opened(record_id, record, ciphertext, data_key)
        grantee_key = self.public_key(grantee)
        try:
            wrapped = vault.wrap(data_key, grantee_key["public_key"], record["commitment"])
        except VaultError as exc:
            raise PrivacyError(exc.code, exc.detail) from None
        payload: dict[str, Any] = {"record_id": record_id, "grantee": grantee,
                                   "purpose": purpose, "until": until_ms,
                                   "wrap_hash": hashlib.sha256(wrapped).hexdigest()}
        if cross_border_consent:
            payload["cross_border_consent"] = True
        receipt = self.send("grant", payload)
        self._call("PUT", f"/v1/privacy/records/{record_id}/wraps/{quote(grantee, safe=':')}",
                   signed=True, body={"wrapped_key": b64url(wrapped)})
        return receipt

    def revoke(self, record_id: str, grantee: str, purpose: str) -> dict[str, Any]:
        return self.send("revoke_grant", {"record_id": record_id, "grantee": grantee,
                                          "purpose": purpose})

    # --- reading -------------------------------------------------------------------------------

    def access(self, record_id: str, *, purpose: str, basis: str,
               acting: Acting = "org") -> str:
        """Ask the chain to read: the access transaction's hash if granted, else
        :class:`PrivacyError` ``access_refused`` with the contract's reason."""
        receipt = self.send("access", {"record_id": record_id, "purpose": purpose,
                                       "basis": basis, "as": acting})
        tx_hash = str(receipt["tx_hash"])
        outcome = self._judgement(tx_hash, int(receipt["height"]))
        if outcome["type"] == "privacy.access.refused":
            reason = str(outcome.get("data", {}).get("reason", "refused"))
            raise PrivacyError("access_refused", f"the chain refused the access to "
                               f"{record_id} for {purpose} on {basis}: {reason}",
                               reason=reason, tx_hash=tx_hash)
        self.last_access = tx_hash
        return tx_hash

    def _judgement(self, tx_hash: str, height: int) -> dict[str, Any]:
        """The access event of ``tx_hash`` (committed at ``height``), from the chain's
        events (the store, not the views: there as soon as the block is)."""
        after: str | None = None
        while True:
            page = self._call("GET", "/v1/events/replay", signed=True, query={
                "from_height": height, "after": after, "limit": EVENTS_PAGE})
            items = page.get("items", [])
            for item in items:
                if int(item.get("height", 0)) > height:
                    break
                if item.get("txhash") == tx_hash \
                        and str(item.get("type", "")).startswith("privacy.access."):
                    return dict(item)
            else:
                after = page.get("next_cursor")
                if len(items) == EVENTS_PAGE and after:
                    continue  # the block has more events than a page
            raise PrivacyError("access_unknown", f"no judgement of access {tx_hash} among "
                               f"the events of block {height}", tx_hash=tx_hash)

    def envelope(self, record_id: str, access_tx: str) -> dict[str, Any]:
        """The vault's envelope for a granted access: ``{record_id, category, commitment,
        ciphertext, wrapped_key, party}`` (410 once the record is erased)."""
        deadline = time.monotonic() + ENVELOPE_WAIT_S
        while True:
            try:
                return dict(self.client.call(
                    "GET", f"/v1/privacy/records/{record_id}/envelope",
                    query={"access": access_tx}, signed=True))
            except ApiError as exc:
                # The gateway may not have seen the access's block yet, or its vault is
                # away for a moment: brief retries; any other answer is final.
                if exc.code in ENVELOPE_RETRY_CODES and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                raise PrivacyError(exc.code, exc.detail, status=exc.status) from None

    def _fetch(self, record_id: str, record: Mapping[str, Any], *, purpose: str,
               basis: str, key: EncryptionKey, acting: Acting) -> tuple[bytes, bytes]:
        """(data key, ciphertext) of a record, through a granted access."""
        access_tx = self.access(record_id, purpose=purpose, basis=basis, acting=acting)
        env = self.envelope(record_id, access_tx)
        ciphertext = self._check_envelope(env, record_id, record)
        try:
            data_key = vault.unwrap(from_b64url(env.get("wrapped_key"), "wrapped_key"),
                                    key, record["commitment"])
        except VaultError as exc:
            raise PrivacyError(exc.code, exc.detail) from None
        return data_key, ciphertext

    @staticmethod
    def _check_envelope(env: Mapping[str, Any], record_id: str,
                        record: Mapping[str, Any]) -> bytes:
        if env.get("record_id") != record_id or env.get("commitment") != record["commitment"]:
            raise PrivacyError("record_mismatch", f"the vault's envelope is not that of "
                               f"record {record_id} on the chain")
        ciphertext = from_b64url(env.get("ciphertext"), "ciphertext")
        if hashlib.sha256(ciphertext).hexdigest() != record["ciphertext_hash"]:
            raise PrivacyError("record_mismatch", "the vault's ciphertext is not the one "
                               f"record {record_id} names on the chain")
        return ciphertext

    def read(self, record_id: str, *, purpose: str, basis: str, key: EncryptionKey,
             as_: Acting = "org") -> str:
        """Read a record's value: ask the chain (judged and logged), fetch the envelope,
        unwrap the data key, decrypt, and check the value against the commitment."""
        self._require_pinned("read")
        record = self.record_on_chain(record_id)
        data_key, ciphertext = self._fetch(record_id, record, purpose=purpose, basis=basis,
                                           key=key, acting=as_)
        return self._opened(record_id, record, ciphertext, data_key)

    @staticmethod
    def _opened(record_id: str, record: Mapping[str, Any], ciphertext: bytes,
                data_key: bytes) -> str:
        """The value ``ciphertext`` holds under ``data_key``, checked against the record's
        commitment and category on chain."""
        try:
            opened = vault.open_sealed(ciphertext, data_key, record["commitment"])
        except VaultError as exc:
            raise PrivacyError(exc.code, exc.detail) from None
        if opened.category != record["category"]:
            raise PrivacyError("record_mismatch", f"record {record_id} is a "
                               f"{record['category']}, the sealed value a {opened.category}")
        return opened.value

    # --- the subject's rights -----------------------------------------------------------------

    def export(self, key: EncryptionKey) -> dict[str, Any]:
        """Everything the platform holds about this subject, machine-readable, with
        every record's value decrypted (``value`` None: erased, its keys are gone; or
        ``unreadable``: wrapped for a key other than ``key``, e.g. before a rotation).
        Each record is checked against the chain's (proven) record; a ciphertext that
        does not match its record is refused. Every page is fetched (``next_cursor``)
        and merged: records, grants and erasures; the access log is the first page's."""
        self._require_pinned("export")
        answer = dict(self._call("GET", "/v1/privacy/me/export", signed=True))
        items = list(answer.get("records", []))
        grants, erasures = list(answer.get("grants", [])), list(answer.get("erasures", []))
        cursor = answer.get("next_cursor")
        pages = 1
        while cursor is not None:
            if pages >= EXPORT_PAGES_MAX:
                raise PrivacyError("bad_envelope", f"the export has more than "
                                   f"{EXPORT_PAGES_MAX} pages")
            pages += 1
            page = dict(self._call("GET", "/v1/privacy/me/export", signed=True,
                                   query={"cursor": cursor}))
            items += page.get("records", [])
            grants += page.get("grants", [])
            erasures += page.get("erasures", [])
            following = page.get("next_cursor")
            if following is not None and (not isinstance(following, str)
                                          or following <= str(cursor)):
                raise PrivacyError("bad_envelope", "the export's pages do not move on")
            cursor = following
        records = [self._exported(dict(item), key) for item in items]
        return {**answer, "records": records, "grants": grants, "erasures": erasures,
                "next_cursor": None,
                "truncated": bool(answer.get("access_log_truncated", False))}

    def _exported(self, item: dict[str, Any], key: EncryptionKey) -> dict[str, Any]:
        ciphertext_b64 = item.pop("ciphertext", None)
        wrapped_b64 = item.pop("wrapped_key", None)
        if not ciphertext_b64 or not wrapped_b64:
            return {**item, "value": None}
        record_id = str(item.get("record_id"))
        record = self.record_on_chain(record_id)
        ciphertext = self._check_envelope(
            {"record_id": item.get("record_id"), "commitment": item.get("commitment"),
             "ciphertext": ciphertext_b64}, record_id, record)
        try:
            data_key = vault.unwrap(from_b64url(wrapped_b64, "wrapped_key"), key,
                                    record["commitment"])
        except VaultError as exc:
            # Wrapped for a key this subject has since rotated away from: the record is
            # theirs, the key that opens it is another (keys.py keeps it in ``previous``).
            return {**item, "value": None, "unreadable": exc.code}
        try:
            opened = vault.open_sealed(ciphertext, data_key, record["commitment"])
        except VaultError as exc:
            raise PrivacyError(exc.code, f"record {record_id}: {exc.detail}") from None
        return {**item, "value": opened.value}

    def erase(self, record_id: str) -> dict[str, Any]:
        """Ask for the record's erasure (its subject only): unreadable from that block."""
        return self.send("request_erasure", {"record_id": record_id})

    def acknowledge_erasure(self, record_id: str, as_: Acting = "org") -> dict[str, Any]:
        """Acknowledge, on chain, that this party destroyed its copy of the data key."""
        return self.send("ack_erasure", {"record_id": record_id, "as": as_})

    # --- matching --------------------------------------------------------------------------------

    def attest_match(self, record_a: str, record_b: str, *, purpose: str,
                     key: EncryptionKey, basis: str = "grant") -> bool:
        """Read both records for ``purpose`` (each access judged and logged), compare
        their normalised values, and attest the verdict on chain (for the organisation)."""
        self._require_pinned("attest_match")
        values, categories = [], set()
        for record_id in (record_a, record_b):
            categories.add(self.record_on_chain(record_id)["category"])
            values.append(self.read(record_id, purpose=purpose, basis=basis, key=key,
                                    as_="org"))
        if len(categories) != 1:
            raise PrivacyError("bad_payload", "only records of one category are compared")
        category = categories.pop()
        equal = normalize(category, values[0]) == normalize(category, values[1])
        self.send("attest_match", {"record_a": record_a, "record_b": record_b,
                                   "purpose": purpose, "equal": equal})
        return equal
