"""Two networks with one topology prefix on one broker would steal each other's
messages (a data directory copied with its genesis): the second is refused."""

from __future__ import annotations

import uuid

import pytest

from services.ledger.node.amqp import PrefixInUse, Topology, claim_prefix


@pytest.mark.asyncio
async def test_a_prefix_is_claimed_by_one_network_at_a_time(broker_url: str) -> None:
    topology = Topology(f"ecosphere-test-claim-{uuid.uuid4().hex[:8]}")
    first = await claim_prefix(broker_url, topology)
    try:
        with pytest.raises(PrefixInUse) as refused:
            await claim_prefix(broker_url, topology)
        assert topology.prefix in str(refused.value)
        other = await claim_prefix(broker_url, Topology(topology.prefix + "-b"))
        await other.close()  # another prefix is free
    finally:
        await first.close()
    again = await claim_prefix(broker_url, topology)  # released with its connection
    await again.close()
