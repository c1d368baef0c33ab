"""Chaos through ``ecosphere up`` itself: kill -9 of its children and broker drops.

``up`` supervises: a child that dies is restarted with backoff and catches up
from its peers while the others go on (n = 4 tolerates one fault). Under load,
nothing a client was told is committed may be lost, and every transaction the
gateway accepted (``202 pending``) must commit once the broker is back —
re-gossiped by the gateway, so no sender stays wedged behind a lost batch.

Bounds stated here: after a kill, commits resume within ``RESUME_BOUND_S``; a
restarted replica is back at the tip within ``CATCHUP_BOUND_S``; every accepted
transaction commits within ``COMMIT_AFTER_BROKER_S`` of the broker's return
(re-gossip waits at most ``tx_resend_max_ms`` = 16 s, plus a gossip tick).
"""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

import pytest

from services.ledger.node import keys
from services.runtime.datadir import bench_client_key
from tests.integration.conftest import UpNet, tx_hashes_in_chain
from tests.integration.test_network_faults import VALIDATORS, Load, assert_same_chain

pytestmark = pytest.mark.functional
RESUME_BOUND_S = 6.0  # propose 1 s + idle wait 1 s in round 0, votes 0.5 s, round 1
CATCHUP_BOUND_S = 30.0
COMMIT_AFTER_BROKER_S = 40.0


def test_kill9_of_validators_the_leader_and_the_gateway_through_up(up_factory: Any) -> None:
    net: UpNet = up_factory()
    net.start()
    net.wait_ready()
    by_key = {keys.load(net.data.node_key(s)).key_id: s for s in VALIDATORS}
    figures: list[str] = []
    with Load(net) as load:
        time.sleep(1.5)
        for round_ in range(4):
            if round_ == 1:  # the validator leading the next height
                height = net.height("ledger")
                victim = by_key[net.genesis.validators.proposer(height + 1, 0).key_id]
            else:
                victim = ("credit", "", "customs", "gateway")[round_]
            watch = "ledger" if victim != "ledger" else "trace"
            before = net.height(watch)
            killed_at = time.monotonic()
            old = net.kill9(victim)
            net.wait_height(before + 1, service=watch, timeout=RESUME_BOUND_S)
            resumed = time.monotonic() - killed_at
            net.wait_restarted(victim, old)
            top = net.height(watch)
            catchup = net.wait_height(top, service=victim, timeout=CATCHUP_BOUND_S)
            figures.append(f"{victim}: commits resumed {resumed:.2f}s, restarted and at "
                           f"the tip {time.monotonic() - killed_at:.2f}s (catch-up {catchup:.2f}s)")
            time.sleep(1.0)
    print("\n".join(figures))
    top = net.height("ledger")
    for service in (*VALIDATORS, "gateway"):
        net.wait_height(top, service=service, timeout=CATCHUP_BOUND_S)
    assert_same_chain(net)
    assert load.committed, load.errors[:3]
    for service in VALIDATORS:
        assert load.committed <= tx_hashes_in_chain(net.data.store(service)), (
            f"a committed transaction is missing from {service}")
    status = net.status()["services"]
    restarted = {s for s, entry in status.items() if entry["restarts"] >= 1}
    assert {"credit", "customs", "gateway"} <= restarted, status
    assert net.metrics("credit").get("ecosphere_restarts_total") == 1.0
    assert "credit was killed by SIGKILL" in net.output()
    assert all(entry["running"] for entry in status.values()), status


class Senders:
    """``count`` senders each submitting single transactions without waiting (202
    pending), remembering every one the gateway accepted. After a refusal a sender
    takes its next usable nonce from the gateway, as the SDK does."""

    def __init__(self, net: UpNet, count: int) -> None:
        self.net = net
        self.keys = [bench_client_key(i) for i in range(count)]
        self.next = [0] * count
        self.accepted: dict[str, tuple[int, int]] = {}  # tx hash -> (sender, nonce)
        self.refused: dict[Any, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        turn = 0
        while not self._stop.is_set():
            i = turn % len(self.keys)
            turn += 1
            tx = self.net.tx("sender", key=self.keys[i], nonce=self.next[i])
            try:
                status, body = self.net.http("POST", "/v1/transactions", tx.to_wire(),
                                             timeout=5)
            except OSError as exc:
                status, body = 0, {"code": type(exc).__name__}
            if status in {200, 202}:
                self.accepted[tx.hash.hex()] = (i, tx.nonce)
                self.next[i] += 1
            else:
                code = body.get("code") if isinstance(body, dict) else status
                self.refused[code] = self.refused.get(code, 0) + 1
                self._resync(i)
                time.sleep(0.05)
            time.sleep(0.01)

    def _resync(self, i: int) -> None:
        try:
            status, info = self.net.http("GET", f"/v1/keys/{self.keys[i].key_id}", timeout=5)
        except OSError:
            return
        if status == 200:
            self.next[i] = int(info["next_usable_nonce"])

    def wedged(self) -> dict[int, tuple[int, int]]:
        """Senders whose accepted transactions are not all committed: (committed next
        nonce, highest accepted nonce + 1)."""
        out = {}
        for i, key in enumerate(self.keys):
            mine = [n for s, n in self.accepted.values() if s == i]
            if not mine:
                continue
            status, info = self.net.http("GET", f"/v1/keys/{key.key_id}", timeout=5)
            committed = int(info["next_nonce"]) if status == 200 else -1
            if committed < max(mine) + 1:
                out[i] = (committed, max(mine) + 1)
        return out

    def __enter__(self) -> Senders:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _drop_every_connection() -> None:
    out = subprocess.run(["rabbitmqctl", "close_all_connections", "test: broker drop"],
                         check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_broker_drops_under_load_leave_no_sender_wedged(up_factory: Any) -> None:
    net: UpNet = up_factory(senders=16)
    net.start()
    net.wait_ready()
    with Senders(net, 16) as senders:
        time.sleep(2)
        for _ in range(3):
            _drop_every_connection()
            time.sleep(3)
        returned = time.monotonic()
        time.sleep(2)
    wedged = senders.wedged()
    while wedged and time.monotonic() - returned < COMMIT_AFTER_BROKER_S:
        time.sleep(0.5)
        wedged = senders.wedged()
    waited = time.monotonic() - returned
    accepted = len(senders.accepted)
    print(f"broker drops: 3; accepted {accepted} transactions from 16 senders; "
          f"refused {senders.refused}; all committed {waited:.1f}s after the broker "
          f"returned; wedged senders {len(wedged)}")
    assert accepted > 100, senders.refused
    assert not wedged, f"senders wedged (committed, accepted): {wedged}"
    net.wait_height(net.height("gateway"), service="ledger", timeout=CATCHUP_BOUND_S)
    on_chain = tx_hashes_in_chain(net.data.store("ledger"))
    assert set(senders.accepted) <= on_chain
    assert_same_chain(net, VALIDATORS)
    regossiped = net.metrics("gateway").get("ecosphere_txs_regossiped_total", 0)
    for service in (*VALIDATORS, "gateway"):
        assert net.metrics(service).get("ecosphere_amqp_reconnects_total", 0) >= 1, service
    print(f"re-gossiped by the gateway: {regossiped:.0f}")
