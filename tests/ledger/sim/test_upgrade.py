"""A running chain upgrades its composition at a governed height, under load.

The consortium schedules composition version 2 (version 1 plus a test contract)
at a height; every replica runs version 1 below it and version 2 from it. A
replica left on old code (version 1 only) halts cleanly before that height —
it never forks — and, once its code is upgraded, catches up from its peers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from services.ledger.core import consortium
from services.ledger.core.contract import Contract, TxContext, payload_str
from services.ledger.core.errors import UpgradeRequired
from services.ledger.core.execution import Application
from services.ledger.core.notary import NotaryContract
from services.ledger.core.replica import Action, ChainTip, Commit, Halt, Replica
from services.ledger.core.state import StateView
from services.ledger.core.transactions import Transaction, sign_transaction
from services.ledger.sim.simulator import SimConfig, SimNode, Simulation

RUN_MS = 60_000
UPGRADE_HEIGHT = 56  # the proposal commits at height 1 or 2; the lead is 50 heights


class EchoContract(Contract):
    """The extra contract of version 2."""

    name = "echo"
    actions: Mapping[str, frozenset[str] | None] = {"say": frozenset({"text"})}

    def apply(self, ctx: TxContext) -> None:
        text = payload_str(ctx, "text", size_max=64)
        ctx.put(f"said/{ctx.tx.hash.hex()}", text)
        ctx.emit("echo.text.said", {"text": text})


def halted(node: SimNode) -> bool:
    return node.halted is not None


def old_code() -> Application:
    return Application([NotaryContract()])


def new_code() -> Application:
    return Application.versioned({1: [NotaryContract()], 2: [NotaryContract(), EchoContract()]})


class Upgrade:
    def __init__(self) -> None:
        self.sim = Simulation(5, SimConfig(replicas=4, byzantine=0, faults=False, txs=0),
                              app=new_code())
        self.laggard = self.sim.nodes[3]
        self.laggard.app = old_code()
        self.admin_nonces = [0, 0, 0]
        self.echoes: list[Transaction] = []

    def admin_tx(self, i: int, kind: str, payload: dict[str, Any]) -> Transaction:
        net = self.sim.testnet
        nonce = self.admin_nonces[i]
        self.admin_nonces[i] += 1
        return sign_transaction(net.admin_keys[i], chain_id=net.genesis.chain_id, kind=kind,
                                nonce=nonce, payload=payload,
                                created_at=self.sim.genesis_time + self.sim.scheduler.now)

    def to_all(self, tx: Transaction) -> None:
        for node in self.sim.nodes[:3]:
            self.sim._submit(tx, node)

    def load(self) -> None:
        """A notary transaction every 100 ms (simulated), for ever."""
        tx = self.sim._make_tx()
        self.sim.txs.append(tx)
        self.to_all(tx)
        self.sim.scheduler.after(100, self.load)

    def schedule_upgrade(self) -> None:
        action = {"type": "schedule_upgrade", "version": 2, "height": UPGRADE_HEIGHT}
        proposal = self.admin_tx(0, "consortium.propose", {"action": action})
        self.to_all(proposal)
        for i in (1, 2):
            self.to_all(self.admin_tx(i, "consortium.approve",
                                      {"proposal": proposal.hash.hex()}))

    def echo(self, text: str) -> None:
        net = self.sim.testnet
        # the fourth organisation's admin: no other transaction uses its nonces
        tx = sign_transaction(net.admin_keys[3], chain_id=net.genesis.chain_id,
                              kind="echo.say", nonce=len(self.echoes), payload={"text": text},
                              created_at=self.sim.genesis_time + self.sim.scheduler.now)
        self.echoes.append(tx)
        self.to_all(tx)

    def height(self, index: int) -> int:
        return self.sim.nodes[index].store.height()


def test_old_code_halts_at_the_upgrade_height_and_resumes_once_upgraded() -> None:
    up = Upgrade()
    sim = up.sim
    for node in sim.nodes:
        node.boot()
    sim.scheduler.at(0, up.load)
    sim.scheduler.at(500, up.schedule_upgrade)
    sim.scheduler.run_until(RUN_MS)
    assert sim.result.safety_violations == 0, sim.trace[-20:]
    assert isinstance(up.laggard.halted, UpgradeRequired)
    assert up.laggard.halted.version == 2 and up.laggard.halted.height == UPGRADE_HEIGHT
    assert up.height(3) == UPGRADE_HEIGHT - 1  # it stopped before the height, not after
    assert min(up.height(i) for i in range(3)) > UPGRADE_HEIGHT + 5  # three go on
    state = StateView(sim.nodes[0].host.replica.tip.state)  # type: ignore[union-attr]
    assert consortium.active_composition(state) == 2
    assert state.get("consortium/composition") == {"version": 2, "since": UPGRADE_HEIGHT}

    up.echo("from version 2")  # a kind of the new composition commits after the upgrade
    sim.scheduler.run_until(RUN_MS + 4_000)
    assert up.echoes[0].hash in sim.tx_heights

    up.laggard.boot()  # restarted on the same old code: it halts again, at once
    assert isinstance(up.laggard.halted, UpgradeRequired) and not up.laggard.up
    up.laggard.app = new_code()  # the operator upgrades its code and restarts it
    up.laggard.boot()
    sim.scheduler.run_until(2 * RUN_MS)
    assert not halted(up.laggard)
    assert up.height(3) >= min(up.height(i) for i in range(3)) - 1
    assert sim.result.safety_violations == 0, sim.trace[-20:]
    sim.check_validity()
    assert sim.result.safety_violations == 0, sim.trace[-20:]


def test_a_kind_of_the_next_composition_is_refused_before_its_height() -> None:
    up = Upgrade()
    sim = up.sim
    for node in sim.nodes:
        node.boot()
    sim.scheduler.at(0, up.load)
    sim.scheduler.at(300, lambda: up.echo("too early"))
    sim.scheduler.run_until(3_000)
    assert up.echoes[0].hash not in sim.tx_heights
    assert up.laggard.halted is None  # no upgrade scheduled: old code runs fine


def test_an_upgrade_is_governance_and_needs_lead_time() -> None:
    up = Upgrade()
    sim = up.sim
    app = new_code()
    state = app.genesis_state(sim.testnet.genesis)

    def run(txs: list[Transaction], height: int = 1) -> tuple[list[str], Any]:
        ex = app.execute(state, height=height, time=sim.genesis_time, txs=txs,
                         skip_failed=True)
        return [r.code for r in ex.rejected], ex

    too_soon = up.admin_tx(0, "consortium.propose", {"action": {
        "type": "schedule_upgrade", "version": 2, "height": 50}})  # 1 + 50 at the soonest
    codes, _ = run([too_soon])
    assert codes == ["bad_payload"]
    up.admin_nonces[0] = 0
    same = up.admin_tx(0, "consortium.propose", {"action": {
        "type": "schedule_upgrade", "version": 1, "height": 100}})
    assert run([same])[0] == ["bad_payload"]  # not above the active version
    up.admin_nonces[0] = 0
    extra = up.admin_tx(0, "consortium.propose", {"action": {
        "type": "schedule_upgrade", "version": 2, "height": 51, "note": "x"}})
    assert run([extra])[0] == ["bad_payload"]
    merchant = sign_transaction(sim.testnet.client_keys[0], chain_id=sim.testnet.genesis.chain_id,
                                kind="consortium.propose", nonce=0,
                                payload={"action": {"type": "schedule_upgrade", "version": 2,
                                                    "height": 100}},
                                created_at=sim.genesis_time)
    assert run([merchant])[0] == ["forbidden"]
    up.admin_nonces[0] = 0
    alone = up.admin_tx(0, "consortium.propose", {"action": {
        "type": "schedule_upgrade", "version": 2, "height": 51}})
    codes, ex = run([alone])
    assert codes == []  # proposed, not executed: one validator organisation of four
    assert StateView(ex.state).get("consortium/composition_pending") is None


@pytest.mark.parametrize("versions", [{2: []}, {1: [], 3: []}])
def test_composition_versions_have_no_gaps(versions: dict[int, list[Contract]]) -> None:
    with pytest.raises(ValueError):
        Application.versioned(versions)


def test_the_last_block_before_an_unknown_composition_is_committed_then_the_replica_halts(
) -> None:
    """Catching up on old code: the block right below the upgrade height is handed to the
    host (Commit) before the Halt, not lost with the exception."""
    up = Upgrade()
    sim = up.sim
    for node in sim.nodes[:3]:
        node.boot()
    sim.scheduler.at(0, up.load)
    sim.scheduler.at(500, up.schedule_upgrade)
    sim.scheduler.run_until(RUN_MS)
    source = sim.nodes[0].store
    assert source.height() > UPGRADE_HEIGHT
    net = sim.testnet
    app = old_code()
    replica = Replica(genesis=net.genesis, app=app, key=None,
                      tip=ChainTip.genesis(net.genesis, app))
    actions: list[Action] = []
    for height in range(1, UPGRADE_HEIGHT):
        stored = source.block(height)
        assert stored is not None
        actions = replica.apply_certified(stored.block, stored.certificate, 10**12)
        if height < UPGRADE_HEIGHT - 1:
            assert not any(isinstance(a, Halt) for a in actions)
    commits = [a for a in actions if isinstance(a, Commit)]
    assert [c.block.height for c in commits] == [UPGRADE_HEIGHT - 1]
    assert isinstance(actions[-1], Halt)
    assert (actions[-1].error.version, actions[-1].error.height) == (2, UPGRADE_HEIGHT)
    restarted = replica.start(10**12)  # and on a restart with the same code, at once
    assert len(restarted) == 1 and isinstance(restarted[0], Halt)


def test_an_upgrade_goes_to_the_next_version_and_can_be_moved_or_cancelled() -> None:
    from services.ledger.sim.testnet import make_testnet
    from tests.ledger.core.conftest import Chain, event_types, rejected_codes

    net = make_testnet()
    app = Application.versioned({1: [NotaryContract()], 2: [NotaryContract()],
                                 3: [NotaryContract()]})
    chain = Chain(net.genesis, app)
    admins = net.admin_keys

    def govern(action: dict[str, Any]) -> list[str]:
        """Propose and have two more validator organisations approve: the events."""
        proposal = chain.tx(admins[0], "consortium.propose", {"action": action})
        result = chain.block([proposal])
        assert rejected_codes(result) == []
        result = chain.block([chain.tx(k, "consortium.approve",
                                       {"proposal": proposal.hash.hex()})
                              for k in admins[1:3]])
        assert rejected_codes(result) == []
        return event_types(result)

    def refused(action: dict[str, Any]) -> list[str]:
        tx = chain.tx(admins[0], "consortium.propose", {"action": action},
                      nonce=chain.next_nonce(admins[0].key_id))
        return rejected_codes(chain.execute([tx]))

    def pending() -> Any:
        return chain.get("consortium/composition_pending")

    assert refused({"type": "schedule_upgrade", "version": 3, "height": 100}) == [
        "bad_payload"]  # version 2 is not skipped
    assert refused({"type": "cancel_upgrade", "version": 2}) == ["not_found"]
    assert "consortium.composition.scheduled" in govern(
        {"type": "schedule_upgrade", "version": 2, "height": 100})
    assert pending()["height"] == 100
    govern({"type": "schedule_upgrade", "version": 2, "height": 120})  # moved
    assert pending()["version"] == 2 and pending()["height"] == 120
    assert refused({"type": "schedule_upgrade", "version": 3, "height": 200}) == [
        "bad_payload"]  # not while 2 is the next one
    assert refused({"type": "cancel_upgrade", "version": 3}) == ["not_found"]
    assert refused({"type": "cancel_upgrade", "version": 2, "why": "x"}) == ["bad_payload"]
    assert "consortium.composition.cancelled" in govern({"type": "cancel_upgrade",
                                                         "version": 2})
    assert pending() is None
    while chain.height < 125:
        chain.block([])
    assert consortium.active_composition(chain.view()) == 1  # it never took effect
