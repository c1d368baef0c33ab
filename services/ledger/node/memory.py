"""An in-memory transport: the same interface as AMQP, for one process.

A :class:`MemoryHub` connects endpoints by node key id. Delivery is
asynchronous (the receiver's callback runs later, from the event loop or the
simulator's scheduler), so a replica never re-enters itself while handling
an action. Faults are not modelled here; the simulator's network adds them.
"""

from __future__ import annotations

from collections.abc import Callable

Deliver = Callable[[bytes], None]
Defer = Callable[[Callable[[], None]], None]


class MemoryHub:
    def __init__(self, defer: Defer) -> None:
        self._defer = defer
        self._endpoints: dict[str, Deliver] = {}
        self.sent = 0

    def attach(self, node_id: str, deliver: Deliver) -> MemoryTransport:
        self._endpoints[node_id] = deliver
        return MemoryTransport(self, node_id)

    def detach(self, node_id: str) -> None:
        self._endpoints.pop(node_id, None)

    def deliver(self, to: str, data: bytes) -> None:
        target = self._endpoints.get(to)
        if target is not None:
            self.sent += 1
            self._defer(lambda: target(data))

    def peers(self, of: str) -> list[str]:
        return sorted(n for n in self._endpoints if n != of)


class MemoryTransport:
    def __init__(self, hub: MemoryHub, node_id: str) -> None:
        self.hub = hub
        self.node_id = node_id

    def send(self, peer: str, data: bytes) -> None:
        self.hub.deliver(peer, data)

    def broadcast(self, data: bytes, kind: str) -> None:
        for peer in self.hub.peers(self.node_id):
            self.hub.deliver(peer, data)
