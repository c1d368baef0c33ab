"""The notary contract: anchor a document's hash on the chain.

The smallest useful contract and the simulator's and benchmarks' workload:
any member anchors a 32-byte digest (of an invoice, a certificate, a bill of
lading) with a short label; the chain then proves who anchored it and when
(block height and BFT time), and refuses a second anchor of the same digest.

State: ``notary/anchor/<digest hex>`` → ``{digest, by, org, height, time, label}``.
Event: ``notary.document.anchored``.

This module never does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.ledger.core.contract import Contract, TxContext, payload_str, static_fail
from services.ledger.core.encoding import from_hex
from services.ledger.core.errors import EncodingError
from services.ledger.core.transactions import Transaction

LABEL_CHARS_MAX = 128


class NotaryContract(Contract):
    name = "notary"
    actions: Mapping[str, frozenset[str] | None] = {"anchor": frozenset({"digest"})}

    def check_static(self, tx: Transaction) -> None:
        super().check_static(tx)
        try:
            from_hex(tx.payload["digest"], length=32, field="digest")
        except EncodingError as exc:
            static_fail(str(exc))
        label = tx.payload.get("label", "")
        if not isinstance(label, str) or len(label) > LABEL_CHARS_MAX:
            static_fail(f"label must be a string of at most {LABEL_CHARS_MAX} characters")
        if set(tx.payload) - {"digest", "label"}:
            static_fail("anchor takes only digest and label")

    def apply(self, ctx: TxContext) -> None:
        digest = payload_str(ctx, "digest", size_max=64)
        key = f"anchor/{digest}"
        existing = ctx.get(key)
        if existing is not None:
            ctx.fail("conflict", f"digest already anchored at height {existing['height']}")
        label = ctx.payload.get("label", "")
        ctx.put(key, {"digest": digest, "by": ctx.sender, "org": ctx.sender_org,
                      "height": ctx.height, "time": ctx.time, "label": label})
        ctx.emit("notary.document.anchored", {"digest": digest, "by": ctx.sender,
                                              "org": ctx.sender_org, "label": label})
