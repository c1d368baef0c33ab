"""Fixtures of the privacy tests: the live embedded network (tests/live.py)."""

from tests.live import live

__all__ = ["live"]
