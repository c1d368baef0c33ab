"""The ecosphere client SDK for callers of the gateway."""
