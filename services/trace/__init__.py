"""Supply-chain traceability: GS1 EPCIS 2.0 events, product certificates,
anti-counterfeiting and contract rules with automatic penalties.

The contract (``contract``) is pure and runs in every replica; ``epcis``,
``identifiers`` and ``eventhash`` are the pure GS1 building blocks it uses;
``documents`` builds and checks verifiable certificates; the trace service's
off-chain work and its HTTP endpoints sit at the edges.
"""
