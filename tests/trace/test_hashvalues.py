"""The values of the CBV 2.0 event hash (services/trace/hashvalues.py): times, numbers
and GS1 identifiers in the canonical forms the reference implementation writes."""

from __future__ import annotations

import pytest

from services.trace import hashvalues
from services.trace.hashvalues import EventHashError


@pytest.mark.parametrize(("given", "expected"), [
    ("2023-02-02T11:04:03.1415Z", "2023-02-02T11:04:03.142Z"),
    ("2023-02-02T11:04:03.1414Z", "2023-02-02T11:04:03.141Z"),
    ("2023-02-02T11:04:03Z", "2023-02-02T11:04:03.000Z"),
    ("2023-02-02T11:04:03.1+01:00", "2023-02-02T10:04:03.100Z"),
    ("2023-12-31T23:59:59.9995-00:30", "2024-01-01T00:30:00.000Z"),
    ("2024-02-29T00:00:00.0004999999+14:00", "2024-02-28T10:00:00.000Z"),
    ("1970-01-01T00:00:00.000z", "1970-01-01T00:00:00.000Z"),
])
def test_canonical_time(given: str, expected: str) -> None:
    assert hashvalues.canonical_time(given) == expected


@pytest.mark.parametrize(("given", "expected"), [
    ("26.0", "26"), ("+026.50", "26.5"), ("0.10", "0.1"), ("-0", "-0"), ("1e3", "1E+3"),
    ("1.5e-3", "0.0015"), ("1_000", "1000"), ("12", "12"), ("abc", "abc"), ("NaN", "NaN"),
    ("12345678901234567890.5", "12345678901234567890.5"),
])
def test_canonical_number(given: str, expected: str) -> None:
    assert hashvalues.canonical_number(given) == expected


def test_huge_exponent_is_refused() -> None:
    with pytest.raises(EventHashError) as err:
        hashvalues.canonical_number("1e-999999")
    assert err.value.code == "number_out_of_range"


@pytest.mark.parametrize(("given", "expected"), [
    ("urn:epc:id:sgtin:0614141.107346.2018", "https://id.gs1.org/01/10614141073464/21/2018"),
    ("urn:epc:id:sgtin:0614141.812345.6789%2F%26%25%22!%3F()",
     "https://id.gs1.org/01/80614141123458/21/6789%2F%26%25%22%21%3F%28%29"),
    ("urn:epc:id:sscc:0614141.1234567890", "https://id.gs1.org/00/106141412345678908"),
    ("urn:epc:id:sgln:0614141.00777.0", "https://id.gs1.org/414/0614141007776"),
    ("urn:epc:id:sgln:4012345.00005.122", "https://id.gs1.org/414/4012345000054/254/122"),
    ("urn:epc:class:lgtin:4012345.012345.998877",
     "https://id.gs1.org/01/04012345123456/10/998877"),
    ("urn:epc:idpat:sgtin:4012345.098765.*", "https://id.gs1.org/01/04012345987652"),
    ("https://example.com/a/01/09506000134352/10/L1/21/S1?x=y",
     "https://id.gs1.org/01/09506000134352/21/S1"),
    ("https://id.gs1.org/gtin/9506000134352/lot/L1", "https://id.gs1.org/01/09506000134352/10/L1"),
    ("https://id.gs1.org/01/09506000134352/22/V1/21/S1",
     "https://id.gs1.org/01/09506000134352/21/S1"),
    ("geo:47.5,11.1", None), ("urn:epcglobal:cbv:bt:0614141000005:PO1", None), ("abc", None),
])
def test_canonical_digital_link(given: str, expected: str | None) -> None:
    assert hashvalues.canonical_digital_link(given) == expected
