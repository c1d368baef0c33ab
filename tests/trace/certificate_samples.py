"""Sample certificate data and deterministic salts, shared by the tests of verifiable
documents (tests/trace/test_documents.py) and of the certificate schema
(tests/trace/test_certificate_schema.py)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from services.trace.certificate_schema import rfc3339_to_ms


def salt_number(n: int) -> str:
    """The n-th deterministic test salt: UUID-shaped, unique, not random."""
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def counter_salt(start: int = 0) -> Callable[[], str]:
    counter = itertools.count(start)
    return lambda: salt_number(next(counter))


def ms(text: str) -> int:
    return rfc3339_to_ms(text)


def certificate(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "$template": {"type": "ecosphere.certificate/v1", "name": "CE_DOC"},
        "id": "CE-2025-0042",
        "type": "CE",
        "issuer": {"id": "tuv-sud", "name": "TÜV SÜD Product Service"},
        "subject": {"kind": "product", "id": "4006381333931", "name": "Desk lamp L-200"},
        "scope": "EA-19/LVD",
        "validFrom": "2025-01-01T00:00:00Z",
        "validUntil": "2028-01-01T00:00:00+01:00",
        "attachments": [
            {"filename": "report.pdf", "type": "application/pdf", "sha256": "ab" * 32},
            {"filename": "photo.jpg", "type": "image/jpeg"},
        ],
        "standards": ["EN 60598-1:2015", "EN 62471:2008"],
        "ratedPowerW": 12,
        "priceEur": "19.90",
    }
    data.update(changes)
    return data
