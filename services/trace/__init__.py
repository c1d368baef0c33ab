"""Supply-chain traceability: GS1 EPCIS 2.0 events, product certificates and
anti-counterfeiting.

The pure part, run by every replica (no I/O, no clock, no randomness, no floats):

* the contract: ``contract`` (``TraceContract``, the state layout) dispatching to
  ``registry`` (accreditations, GS1 prefixes, products, locations), ``certificates``,
  ``capture`` (EPCIS events) and ``scans`` (secure tags, scans, clone verdicts), over
  ``items`` (agreements, deposits and penalties moved to the trade domain:
  docs/adr/0009-trade.md);
* EPCIS 2.0: ``epcis`` (events and documents), ``epcis_fields``, ``epcis_values``;
* the CBV 2.0 event hash: ``eventhash``, ``hashvalues``, ``cbv`` (the vocabularies);
* GS1 identifiers: ``identifiers``; calendar arithmetic: ``civil``;
* verifiable certificates: ``documents`` (the checks against the chain), ``wrapping``
  (the OpenAttestation construction), ``certificate_schema``.

The trace service's off-chain work and its HTTP endpoints sit at the edges (``edge``).
"""
