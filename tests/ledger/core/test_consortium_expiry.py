"""Regression: an expired proposal could still be approved and executed after a long
pause, because the deadline walk of one block covers a bounded span of time."""

from services.ledger.core import consortium
from services.ledger.sim.testnet import make_testnet
from tests.ledger.core.conftest import Chain, rejected_codes
from tests.ledger.core.test_consortium import SUSPEND, approve, proposal_of, propose


def test_proposal_past_its_expiry_cannot_execute_after_a_long_pause():
    tn = make_testnet()  # default proposal_ttl_ms: 7 days
    chain = Chain(tn.genesis)
    a = tn.admin_keys
    pid = proposal_of(chain.block([propose(chain, a[0], SUSPEND)]))
    created = chain.time
    chain.block([approve(chain, a[1], pid)])
    # the chain was idle; the next block comes after the proposal's expiry time
    t = created + tn.genesis.params.proposal_ttl_ms + 1
    tx = chain.tx(a[2], "consortium.approve", {"proposal": pid}, created_at=t)
    result = chain.block([tx], time=t)
    assert rejected_codes(result) == ["expired"]
    assert "consortium.proposal.executed" not in [e.type for e in result.events]
    record = consortium.org_record(chain.view(), "merchants")
    assert record is not None
    assert record["status"] == "active"
    # the walk catches up over the next blocks and records the expiry
    for step in range(1, 12):
        chain.block([], time=t + step)
        if chain.get(f"consortium/proposal/{pid}")["status"] == "expired":
            break
    assert chain.get(f"consortium/proposal/{pid}")["status"] == "expired"
