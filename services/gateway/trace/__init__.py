"""The trace domain at the gateway: its views, HTTP endpoints (the EPCIS 2.0 REST
binding, provenance, anti-counterfeit verification, certificates) and webhooks."""

from services.gateway.trace import event_schemas as _event_schemas  # noqa: F401  registers
