"""The trace domain at the gateway: its views, HTTP endpoints (the EPCIS 2.0 REST
binding, provenance, anti-counterfeit verification, certificates) and webhooks."""
