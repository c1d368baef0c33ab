"""The privacy domain: a personal-data vault with grants, an access log and erasure by
crypto-shredding, used by every domain that handles personal data.

No personal data is ever on the chain. The chain holds, per vault record, a salted
commitment (hiding: the salt never leaves the encrypted record; binding: SHA-256),
the hash of the ciphertext, who holds a wrapped copy of its data key, the grants
(party, purpose, until a block time), every access (granted or refused), and the
erasure workflow. The ciphertext and the wrapped data keys live off chain in the
gateway's vault (``edge/``); the client encrypts before it sends (``services.sdk.vault``).

Modules (the pure part: no I/O, clock, randomness or floats):

* :mod:`.vocabulary` — parties, categories, purposes, legal bases, limits;
* :mod:`.payloads` — the one shape of every field of every action's payload (static);
* :mod:`.keys` — organisations' and subjects' encryption keys (X25519) on chain;
* :mod:`.records` — records and their new versions (rectification);
* :mod:`.grants` — grants, and the judgement of every access;
* :mod:`.erasure` — erasure requests, acknowledgements, deadlines;
* :mod:`.matching` — "do two records name the same person or address?", attested by
  an entitled party, never disclosed (its ``normalize`` runs off chain only: it
  depends on Unicode tables);
* :mod:`.contract` — the contract and the domain's state layout.

The decisions are in docs/adr/0008-personal-data-vault.md.
"""
