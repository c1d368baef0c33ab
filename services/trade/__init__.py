"""The trade domain: money, the marketplace, orders in escrow, logistics, disputes and
returns (docs/adr/0009-trade.md).

Its pure part (these modules: the ``trade`` contract and its rules) runs in every
replica from composition version 3 and never does I/O; ``edge/`` serves it through the
gateway. It depends on the trace domain (products, certificates, tracking events) and
the privacy domain (trader information, delivery addresses), through their pure
functions only.
"""
