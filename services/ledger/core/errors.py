"""The ledger core's exception tree.

Every error carries a stable ``code`` (a short snake_case string) that edges
map to HTTP problems, metrics labels and log fields. Rejections are bad input
and are never retried; ``InvariantViolation`` means this replica's own state is
corrupt and the replica must stop rather than spread it.

::

    LedgerError
    ├── Rejected                  bad input: never retried
    │   ├── EncodingError         bytes are not canonical / schema is wrong
    │   ├── InvalidSignature      signature or key does not verify
    │   ├── InvalidTransaction    static check failed (sizes, chain id, kind)
    │   ├── TransactionFailed     dynamic check failed (nonce, authorisation, rules)
    │   ├── InvalidBlock          a block or its certificate does not verify
    │   ├── InvalidMessage        a consensus or sync message is malformed or forged
    │   └── MempoolRejected       the mempool will not take the transaction
    ├── UpgradeRequired           the chain runs a composition this code lacks: stop
    ├── Unavailable               this replica has stopped: try another, or later
    └── InvariantViolation        our own state is corrupt: stop the replica
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of the ledger core's errors."""

    code = "ledger_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class Rejected(LedgerError):
    """Input is invalid; retrying the same input gives the same answer."""

    code = "rejected"


class EncodingError(Rejected):
    code = "bad_encoding"


class InvalidSignature(Rejected):
    code = "bad_signature"


class InvalidTransaction(Rejected):
    code = "invalid_transaction"


class TransactionFailed(Rejected):
    """A transaction that is well formed but not valid against the current state."""

    code = "transaction_failed"


class InvalidBlock(Rejected):
    code = "invalid_block"


class InvalidMessage(Rejected):
    code = "invalid_message"


class MempoolRejected(Rejected):
    code = "mempool_rejected"


class UpgradeRequired(LedgerError):
    """From ``height`` the chain runs composition ``version``, which this code does not
    have: the replica stops before executing that height rather than fork (it resumes,
    catching up from its peers, once its code is upgraded)."""

    code = "upgrade_required"

    def __init__(self, version: int, height: int, known: tuple[int, ...]) -> None:
        super().__init__(f"from height {height} the chain runs composition version "
                         f"{version}; this code knows versions {list(known)}: upgrade it, "
                         f"then restart (the replica catches up from its peers)")
        self.version = version
        self.height = height


class Unavailable(LedgerError):
    """This replica takes no work now (it stopped); nothing about the input is wrong."""

    code = "replica_stopped"


class InvariantViolation(LedgerError):
    """A safety invariant does not hold for our own state: the replica must stop."""

    code = "invariant_violation"
