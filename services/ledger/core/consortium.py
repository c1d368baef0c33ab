"""The built-in consortium contract: organisations, member keys, governance and
the validator set.

State (namespace ``consortium``)::

    org/<org_id>        {id, name, roles[], status: active|suspended, since}
    key/<key_id>        {key_id, public_key, org, permissions[], status:
                         active|revoked|rotated, since, until, successor}
    validators          the validator set for the *next* height
    validators_pending  [{effective_height, validators}] in height order
    params              the chain parameters from genesis
    proposal/<id>       a governance proposal and its approvals
    composition         {version, since}: the composition of contracts the chain runs
                        (absent: version 1 since genesis)
    composition_pending {version, height, proposal}: the upgrade scheduled by governance

Who may do what:

* A key's *permissions* are ``admin`` (manage its organisation's keys and
  approve proposals), ``member`` (send transactions) and ``node`` (relay
  gossip and serve catch-up: validators and observers). Every key belongs to
  one organisation, which certifies it by adding it with an admin key.
* ``register_organisation``: an admin of an organisation with role
  ``platform`` (the operator onboards merchants, carriers, ...), for ordinary
  roles only.
* Privileged roles (``platform``, customs, credit centre, accreditor), suspending
  an organisation and changing the validator set are *governance*: a proposal
  that executes once admins of more than two thirds of the validator
  organisations approved it — no single member, the operator included, rules
  the consortium (the lesson of TradeLens). Proposals expire on block time.
* A validator-set change takes effect at a stated height at least
  ``validator_change_delay`` heights after the block that approves it, at a
  height boundary, never inside a round.
* An upgrade of the composition (``schedule_upgrade``: the contracts every
  replica runs, ``services.composition``) is governance too, always to the next
  version (N+1 while N runs: no version is skipped), and takes effect at a stated
  height at least ``upgrade_delay`` heights ahead: every replica runs version N
  below it and N+1 from it; a replica whose code lacks N+1 stops before that
  height (``UpgradeRequired``) instead of forking. A later schedule of the same
  version moves its height; ``cancel_upgrade`` withdraws it before it takes effect.

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.ledger.core import crypto, deadlines
from services.ledger.core.contract import (
    BlockContext,
    Contract,
    TxContext,
    payload_str,
    static_fail,
)
from services.ledger.core.encoding import from_hex
from services.ledger.core.errors import EncodingError, TransactionFailed
from services.ledger.core.genesis import ChainParams, Genesis
from services.ledger.core.state import StateView
from services.ledger.core.transactions import Transaction
from services.ledger.core.validators import Validator, ValidatorSet

NAME = "consortium"

ORG_ROLES = frozenset({
    "platform", "customs_cn", "customs_eu", "credit_center", "accreditor",
    "carrier", "certifier", "merchant", "marketplace", "consumer", "guarantor",
    "manufacturer", "supplier", "warehouse", "retailer", "payment", "observer",
})
PRIVILEGED_ROLES = frozenset({"platform", "customs_cn", "customs_eu", "credit_center",
                              "accreditor"})
PERMISSIONS = frozenset({"admin", "member", "node"})
ORG_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
PROPOSAL_ACTIONS = frozenset({"set_validators", "grant_roles", "revoke_roles",
                              "suspend_organisation", "reinstate_organisation",
                              "schedule_upgrade", "cancel_upgrade"})
COMPOSITION_VERSION_MAX = 1_000_000


def _k(kind: str, ident: str) -> str:
    return f"{NAME}/{kind}/{ident}"


# --- reading consortium state (used by the execution framework and by contracts) ---

def key_record(view: StateView, key_id: str) -> dict[str, Any] | None:
    value = view.get(_k("key", key_id))
    return value if isinstance(value, dict) else None


def org_record(view: StateView, org_id: str) -> dict[str, Any] | None:
    value = view.get(_k("org", org_id))
    return value if isinstance(value, dict) else None


def validator_set(view: StateView) -> ValidatorSet:
    """The validator set for the height after the state's last applied block."""
    return ValidatorSet.from_wire(view.get(f"{NAME}/validators"))


def chain_params(view: StateView) -> ChainParams:
    return ChainParams.from_wire(view.get(f"{NAME}/params") or {})


def active_composition(view: StateView) -> int:
    """The composition version the state's last applied block ran."""
    record = view.get(f"{NAME}/composition")
    return int(record["version"]) if isinstance(record, dict) else 1


def composition_version(view: StateView, height: int) -> int:
    """The composition version block ``height`` runs, from its parent's state: the
    scheduled one from its height on, else the active one."""
    pending = view.get(f"{NAME}/composition_pending")
    if isinstance(pending, dict) and height >= pending["height"]:
        return int(pending["version"])
    return active_composition(view)


# --- genesis ---------------------------------------------------------------------

def genesis_writes(genesis: Genesis) -> list[tuple[str, Any]]:
    """The key-value pairs of the state at height 0."""
    writes: dict[str, Any] = {f"{NAME}/params": genesis.params.to_wire()}
    for o in genesis.organisations:
        _check_org_id(o.id)
        if not set(o.roles) <= ORG_ROLES:
            raise EncodingError(f"organisation {o.id}: unknown roles "
                                f"{sorted(set(o.roles) - ORG_ROLES)}")
        writes[_k("org", o.id)] = {"id": o.id, "name": o.name, "roles": sorted(set(o.roles)),
                                   "status": "active", "since": 0}
    for k in genesis.keys:
        if not set(k.permissions) <= PERMISSIONS:
            raise EncodingError(f"key {k.key_id}: unknown permissions")
        writes[_k("key", k.key_id)] = _new_key(k.key_id, k.public_key, k.org,
                                               k.permissions, 0)
    for v in genesis.validators.validators:
        writes.setdefault(_k("key", v.key_id),
                          _new_key(v.key_id, v.public_key, v.org, ("node",), 0))
    writes[f"{NAME}/validators"] = genesis.validators.to_wire()
    writes[f"{NAME}/validators_pending"] = []
    if genesis.composition != 1:  # a chain born on a later composition records it
        writes[f"{NAME}/composition"] = {"version": genesis.composition, "since": 0}
    return sorted(writes.items())


def _new_key(key_id: str, public_key: bytes, org: str, permissions: Sequence[str],
             height: int) -> dict[str, Any]:
    return {"key_id": key_id, "public_key": public_key.hex(), "org": org,
            "permissions": sorted(set(permissions)), "status": "active", "since": height,
            "until": None, "successor": None}


def _check_org_id(org_id: str) -> None:
    if not 0 < len(org_id) <= 64 or not ORG_ID_CHARS.issuperset(org_id):
        raise EncodingError(f"organisation id {org_id!r} must be 1..64 of [a-z0-9-_.]")


# --- the contract ------------------------------------------------------------------

class ConsortiumContract(Contract):
    name = NAME
    actions: Mapping[str, frozenset[str] | None] = {
        "register_organisation": frozenset({"id", "name", "roles", "admin_key"}),
        "add_key": frozenset({"public_key", "permissions"}),
        "rotate_key": frozenset({"public_key"}),
        "revoke_key": frozenset({"key_id"}),
        "propose": frozenset({"action"}),
        "approve": frozenset({"proposal"}),
    }

    def check_static(self, tx: Transaction) -> None:
        super().check_static(tx)
        p = tx.payload
        for field in ("public_key", "admin_key"):
            if field in p:
                try:
                    from_hex(p[field], length=crypto.PUBLIC_KEY_BYTES, field=field)
                except EncodingError as exc:
                    static_fail(str(exc))
        if tx.action == "propose":
            action = p["action"]
            if not isinstance(action, dict) or not isinstance(action.get("type"), str) \
                    or action["type"] not in PROPOSAL_ACTIONS:
                static_fail(f"action.type must be one of {sorted(PROPOSAL_ACTIONS)}")

    def apply(self, ctx: TxContext) -> None:
        handler = getattr(self, "_" + ctx.tx.action)
        handler(ctx)

    # organisations and keys

    def _register_organisation(self, ctx: TxContext) -> None:
        ctx.require_org_role("platform")
        ctx.require_admin()
        org_id = payload_str(ctx, "id", size_max=64)
        try:
            _check_org_id(org_id)
        except EncodingError as exc:
            ctx.fail("bad_payload", str(exc))
        roles = _roles(ctx, ctx.payload.get("roles"))
        if roles & PRIVILEGED_ROLES:
            ctx.fail("forbidden", f"roles {sorted(roles & PRIVILEGED_ROLES)} are granted "
                     "only by governance")
        if ctx.has(f"org/{org_id}"):
            ctx.fail("conflict", f"organisation {org_id!r} already exists")
        admin_key = bytes.fromhex(payload_str(ctx, "admin_key"))
        admin_id = crypto.key_id_of(admin_key)
        if ctx.has(f"key/{admin_id}"):
            ctx.fail("conflict", f"key {admin_id} is already registered")
        name = payload_str(ctx, "name", size_max=256)
        ctx.put(f"org/{org_id}", {"id": org_id, "name": name, "roles": sorted(roles),
                                  "status": "active", "since": ctx.height})
        ctx.put(f"key/{admin_id}", _new_key(admin_id, admin_key, org_id, ("admin", "member"),
                                            ctx.height))
        ctx.emit("consortium.organisation.registered",
                 {"org": org_id, "name": name, "roles": sorted(roles), "admin_key": admin_id,
                  "by": ctx.sender_org})

    def _add_key(self, ctx: TxContext) -> None:
        ctx.require_admin()
        public_key = bytes.fromhex(payload_str(ctx, "public_key"))
        key_id = crypto.key_id_of(public_key)
        permissions = _permissions(ctx, ctx.payload.get("permissions"))
        if ctx.has(f"key/{key_id}"):
            ctx.fail("conflict", f"key {key_id} is already registered")
        ctx.put(f"key/{key_id}", _new_key(key_id, public_key, ctx.sender_org, sorted(permissions),
                                          ctx.height))
        ctx.emit("consortium.key.added", {"key_id": key_id, "org": ctx.sender_org,
                                          "permissions": sorted(permissions),
                                          "by": ctx.sender})

    def _rotate_key(self, ctx: TxContext) -> None:
        if _is_validator_key(ctx, ctx.sender):
            ctx.fail("forbidden", "a validator key changes only through set_validators")
        public_key = bytes.fromhex(payload_str(ctx, "public_key"))
        new_id = crypto.key_id_of(public_key)
        if ctx.has(f"key/{new_id}"):
            ctx.fail("conflict", f"key {new_id} is already registered")
        old = ctx.get(f"key/{ctx.sender}")
        if old is None:
            ctx.fail("not_found", "sender key is not registered")
        ctx.put(f"key/{new_id}", _new_key(new_id, public_key, old["org"], old["permissions"],
                                          ctx.height))
        old.update(status="rotated", until=ctx.height, successor=new_id)
        ctx.put(f"key/{ctx.sender}", old)
        ctx.emit("consortium.key.rotated", {"key_id": ctx.sender, "successor": new_id,
                                            "org": old["org"]})

    def _revoke_key(self, ctx: TxContext) -> None:
        key_id = payload_str(ctx, "key_id", size_max=32)
        record = ctx.get(f"key/{key_id}")
        if record is None:
            ctx.fail("not_found", f"key {key_id} is not registered")
        if key_id != ctx.sender:
            ctx.require_admin()
            if record["org"] != ctx.sender_org:
                ctx.fail("forbidden", "an admin revokes only its own organisation's keys")
        elif "admin" in record["permissions"]:
            # Only another admin of the organisation (who stays) revokes an admin key, so
            # an organisation never loses its last admin and its voice in governance.
            ctx.fail("forbidden", "an admin key is revoked by another admin of its "
                                  "organisation (or rotated), never by itself")
        if record["status"] != "active":
            ctx.fail("conflict", f"key {key_id} is already {record['status']}")
        if _is_validator_key(ctx, key_id):
            ctx.fail("forbidden", "a validator key changes only through set_validators")
        reason = ctx.payload.get("reason", "")
        if not isinstance(reason, str) or len(reason) > 256:
            ctx.fail("bad_payload", "reason must be a string of at most 256 characters")
        record.update(status="revoked", until=ctx.height)
        ctx.put(f"key/{key_id}", record)
        ctx.emit("consortium.key.revoked", {"key_id": key_id, "org": record["org"],
                                            "reason": reason, "by": ctx.sender})

    # governance

    def _propose(self, ctx: TxContext) -> None:
        ctx.require_admin()
        voters = _validator_orgs(ctx)
        if ctx.sender_org not in voters:
            ctx.fail("forbidden", "only validator organisations propose")
        action = dict(ctx.payload["action"])
        _check_action(ctx, action)
        proposal_id = ctx.tx.hash.hex()
        params = ChainParams.from_wire(ctx.get("params") or {})
        expires = ctx.time + params.proposal_ttl_ms
        bucket = deadlines.schedule(ctx, expires, proposal_id)
        proposal = {"id": proposal_id, "action": action, "proposer": ctx.sender_org,
                    "approvals": [ctx.sender_org], "status": "open", "created": ctx.time,
                    "expires": expires, "bucket": bucket}
        ctx.put(f"proposal/{proposal_id}", proposal)
        ctx.emit("consortium.proposal.submitted", {"proposal": proposal_id, "action": action,
                                                   "by": ctx.sender_org,
                                                   "expires": expires})
        self._maybe_execute(ctx, proposal, voters)

    def _approve(self, ctx: TxContext) -> None:
        ctx.require_admin()
        voters = _validator_orgs(ctx)
        if ctx.sender_org not in voters:
            ctx.fail("forbidden", "only validator organisations approve")
        proposal_id = payload_str(ctx, "proposal", size_max=64)
        proposal = ctx.get(f"proposal/{proposal_id}")
        if proposal is None:
            ctx.fail("not_found", f"proposal {proposal_id} does not exist")
        if proposal["status"] != "open":
            ctx.fail("conflict", f"proposal {proposal_id} is {proposal['status']}")
        if ctx.time > proposal["expires"]:
            # Its deadline may not have been walked yet (after a long pause the
            # walk is spread over several blocks): block time decides, not the walk.
            ctx.fail("expired", f"proposal {proposal_id} expired at {proposal['expires']}")
        if ctx.sender_org in proposal["approvals"]:
            # Already approved: the threshold may have been reached since (the voters
            # changed); re-evaluate instead of leaving the proposal stuck open.
            before = proposal["status"]
            self._maybe_execute(ctx, proposal, voters)
            if proposal["status"] == before:
                ctx.fail("conflict", f"{ctx.sender_org} already approved {proposal_id}")
            return
        proposal["approvals"] = sorted([*proposal["approvals"], ctx.sender_org])
        ctx.put(f"proposal/{proposal_id}", proposal)
        ctx.emit("consortium.proposal.approved", {"proposal": proposal_id,
                                                  "by": ctx.sender_org})
        self._maybe_execute(ctx, proposal, voters)

    def _maybe_execute(self, ctx: TxContext, proposal: dict[str, Any],
                       voters: frozenset[str]) -> None:
        approvals = {org for org in voters.intersection(proposal["approvals"])
                     if (ctx.get(f"org/{org}") or {}).get("status") == "active"}
        if len(approvals) < 2 * len(voters) // 3 + 1:
            return
        _check_action(ctx, proposal["action"])  # state may have changed since proposed
        _execute_action(ctx, proposal["action"], proposal["id"])
        deadlines.cancel(ctx, proposal["bucket"], proposal["id"])
        proposal["status"] = "executed"
        ctx.put(f"proposal/{proposal['id']}", proposal)
        ctx.emit("consortium.proposal.executed", {"proposal": proposal["id"],
                                                  "action": proposal["action"]})

    # block hooks

    def begin_block(self, ctx: BlockContext) -> None:
        pending = ctx.get("composition_pending")
        if pending is not None and ctx.height >= pending["height"]:
            ctx.put("composition", {"version": pending["version"], "since": ctx.height})
            ctx.delete("composition_pending")
            ctx.emit("consortium.composition.upgraded",
                     {"version": pending["version"], "height": ctx.height,
                      "proposal": pending["proposal"]})
        for _, proposal_id, _ in deadlines.due(ctx, ctx.time):
            proposal = ctx.get(f"proposal/{proposal_id}")
            if proposal is not None and proposal["status"] == "open":
                proposal["status"] = "expired"
                ctx.put(f"proposal/{proposal_id}", proposal)
                ctx.emit("consortium.proposal.expired", {"proposal": proposal_id})

    def end_block(self, ctx: BlockContext) -> None:
        """Install the validator set scheduled for the next height, if any."""
        pending = ctx.get("validators_pending") or []
        ready = [p for p in pending if p["effective_height"] <= ctx.height + 1]
        if not ready:
            return
        ctx.put("validators", ready[-1]["validators"])
        ctx.put("validators_pending", pending[len(ready):])
        ctx.emit("consortium.validators.changed",
                 {"effective_height": ctx.height + 1,
                  "validators": [v["key_id"] for v in ready[-1]["validators"]]})


def _roles(ctx: TxContext, value: object) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        ctx.fail("bad_payload", "roles must be an array of strings")
    roles = frozenset(value)
    if not roles or not roles <= ORG_ROLES:
        ctx.fail("bad_payload", f"roles must be a non-empty subset of {sorted(ORG_ROLES)}")
    return roles


def _permissions(ctx: TxContext, value: object) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        ctx.fail("bad_payload", "permissions must be an array of strings")
    perms = frozenset(value)
    if not perms or not perms <= PERMISSIONS:
        ctx.fail("bad_payload", f"permissions must be a non-empty subset of "
                 f"{sorted(PERMISSIONS)}")
    return perms


def _current_validators(ctx: TxContext | BlockContext) -> ValidatorSet:
    return ValidatorSet.from_wire(ctx.get("validators"))


def _validator_orgs(ctx: TxContext) -> frozenset[str]:
    return _current_validators(ctx).orgs


def _is_validator_key(ctx: TxContext, key_id: str) -> bool:
    if key_id in _current_validators(ctx).by_id:
        return True
    pending = ctx.get("validators_pending") or []
    return any(v["key_id"] == key_id for p in pending for v in p["validators"])


def _check_action(ctx: TxContext, action: dict[str, Any]) -> None:
    kind = action.get("type")
    if kind == "suspend_organisation" and (
            action.get("org") in _current_validators(ctx).orgs
            or any(v["org"] == action.get("org")
                   for p in ctx.get("validators_pending") or [] for v in p["validators"])):
        # a suspended validator would go on voting (or, muted, count as faulty): take
        # it out of the validator set first
        ctx.fail("forbidden", f"{action.get('org')} runs a validator: remove it with "
                              "set_validators before suspending the organisation")
    if kind == "schedule_upgrade":
        _check_upgrade(ctx, action)
        return
    if kind == "cancel_upgrade":
        if set(action) != {"type", "version"}:
            ctx.fail("bad_payload", "cancel_upgrade takes exactly type and version")
        pending = ctx.get("composition_pending")
        if pending is None or pending["version"] != action.get("version"):
            ctx.fail("not_found", f"no upgrade to version {action.get('version')!r} is "
                                  "scheduled")
        return
    if kind == "set_validators":
        params = ChainParams.from_wire(ctx.get("params") or {})
        height = action.get("effective_height")
        if not isinstance(height, int) or height < ctx.height + params.validator_change_delay:
            ctx.fail("bad_payload", "effective_height must be at least "
                     f"{ctx.height + params.validator_change_delay}")
        _parse_validators(ctx, action.get("validators"))
        return
    org = action.get("org")
    if not isinstance(org, str) or ctx.get(f"org/{org}") is None:
        ctx.fail("not_found", f"organisation {org!r} does not exist")
    if kind in ("grant_roles", "revoke_roles"):
        _roles(ctx, action.get("roles"))


def _check_upgrade(ctx: TxContext, action: dict[str, Any]) -> None:
    params = ChainParams.from_wire(ctx.get("params") or {})
    version, height = action.get("version"), action.get("height")
    record = ctx.get("composition")
    active = int(record["version"]) if isinstance(record, dict) else 1
    if not isinstance(version, int) or isinstance(version, bool) \
            or version != active + 1 or version > COMPOSITION_VERSION_MAX:
        ctx.fail("bad_payload", f"version must be {active + 1}, the one after the active "
                                f"composition {active} (no version is skipped)")
    earliest = ctx.height + params.upgrade_delay
    if not isinstance(height, int) or isinstance(height, bool) \
            or not earliest <= height <= 2**53 - 1:
        ctx.fail("bad_payload", f"height must be an integer of at least {earliest}: every "
                                "replica must learn of an upgrade before it takes effect")
    if set(action) != {"type", "version", "height"}:
        ctx.fail("bad_payload", "schedule_upgrade takes exactly type, version and height")


def _parse_validators(ctx: TxContext, value: object) -> ValidatorSet:
    if not isinstance(value, list) or not value:
        ctx.fail("bad_payload", "validators must be a non-empty array")
    out = []
    for item in value:
        if not isinstance(item, dict):
            ctx.fail("bad_payload", "each validator must be an object")
        try:
            pub = from_hex(item.get("public_key"), length=32, field="public_key")
        except EncodingError as exc:
            ctx.fail("bad_payload", str(exc))
        power = item.get("power")
        org = item.get("org")
        if not isinstance(power, int) or isinstance(power, bool) or not 1 <= power <= 1_000_000:
            ctx.fail("bad_payload", "power must be an integer in [1, 1000000]")
        org_record_ = ctx.get(f"org/{org}") if isinstance(org, str) else None
        if org_record_ is None:
            ctx.fail("not_found", f"validator organisation {org!r} does not exist")
        if org_record_["status"] != "active":
            ctx.fail("forbidden", f"validator organisation {org} is {org_record_['status']}")
        key_id = crypto.key_id_of(pub)
        known = ctx.get(f"key/{key_id}")
        if known is not None and (known["org"] != org or known["status"] != "active"
                                  or "node" not in known["permissions"]):
            # a key keeps one organisation and one record: a member key of another
            # organisation (or a revoked key) would be a validator nobody can hear
            ctx.fail("forbidden", f"key {key_id} is registered as {known['org']}'s "
                     f"{'/'.join(known['permissions'])} key ({known['status']}), not as an "
                     f"active node key of {org}")
        out.append(Validator(key_id, pub, power, str(org)))
    try:
        return ValidatorSet.of(out)
    except EncodingError as exc:
        raise TransactionFailed(str(exc), code="bad_payload") from exc


def _execute_action(ctx: TxContext, action: dict[str, Any], proposal_id: str) -> None:
    kind = action["type"]
    if kind == "set_validators":
        new_set = _parse_validators(ctx, action["validators"])
        for v in new_set.validators:
            if not ctx.has(f"key/{v.key_id}"):
                ctx.put(f"key/{v.key_id}", _new_key(v.key_id, v.public_key, v.org, ("node",),
                                                    ctx.height))
        pending = [p for p in ctx.get("validators_pending") or []
                   if p["effective_height"] != action["effective_height"]]
        pending.append({"effective_height": action["effective_height"],
                        "validators": new_set.to_wire()})
        pending.sort(key=lambda p: p["effective_height"])
        ctx.put("validators_pending", pending)
        return
    if kind == "cancel_upgrade":
        scheduled = ctx.get("composition_pending")
        if scheduled is None:  # _check_action found it; a bug if not
            ctx.fail("not_found", "no upgrade is scheduled")
        ctx.delete("composition_pending")
        ctx.emit("consortium.composition.cancelled", {"version": scheduled["version"],
                                                      "height": scheduled["height"],
                                                      "proposal": proposal_id})
        return
    if kind == "schedule_upgrade":
        # A later schedule (of the same version: _check_upgrade) moves the height of
        # one that has not taken effect yet.
        ctx.put("composition_pending", {"version": action["version"],
                                        "height": action["height"],
                                        "proposal": proposal_id})
        ctx.emit("consortium.composition.scheduled", {"version": action["version"],
                                                      "height": action["height"]})
        return
    org = ctx.get(f"org/{action['org']}")
    if org is None:
        ctx.fail("not_found", f"organisation {action['org']!r} does not exist")
    if kind == "grant_roles":
        org["roles"] = sorted(set(org["roles"]) | set(action["roles"]))
    elif kind == "revoke_roles":
        org["roles"] = sorted(set(org["roles"]) - set(action["roles"]))
    elif kind == "suspend_organisation":
        org["status"] = "suspended"
    elif kind == "reinstate_organisation":
        org["status"] = "active"
    ctx.put(f"org/{action['org']}", org)
