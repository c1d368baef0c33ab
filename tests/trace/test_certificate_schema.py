"""The data of a certificate (services/trace/certificate_schema.py): its schema, each
refusal with its code, and the RFC 3339 times of its validity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.trace.certificate_schema import (
    check_certificate_data,
    ms_to_rfc3339,
    rfc3339_to_ms,
)
from services.trace.wrapping import DocumentError
from tests.trace.certificate_samples import certificate, ms

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- certificate schema


def test_certificate_data_is_checked() -> None:
    check_certificate_data(certificate())
    check_certificate_data({k: v for k, v in certificate().items() if k != "attachments"})
    check_certificate_data(certificate(subject={"kind": "batch", "id": "LOT 7"}))
    check_certificate_data(certificate(subject={"kind": "organisation", "id": "cqc"}))
    check_certificate_data(certificate(subject={"kind": "product", "id": "96385074"}))


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in certificate().items() if k != key}


@pytest.mark.parametrize(("data", "code"), [
    ([], "not_object"),
    (certificate(priceEur=19.9), "float_not_allowed"),
    (certificate(**{"a.b": 1}), "bad_key"),
    (without("$template"), "missing_field"),
    (certificate(**{"$template": {"type": "https://schema.openattestation.com/2.0"}}),
     "bad_template"),
    (certificate(**{"$template": "ecosphere.certificate/v1"}), "bad_template"),
    (without("id"), "missing_field"),
    (certificate(id=""), "bad_field"),
    (certificate(id="x" * 129), "bad_field"),
    (certificate(id="a\nb"), "bad_field"),
    (certificate(type="ce"), "unknown_certificate_type"),
    (certificate(type=["CE"]), "unknown_certificate_type"),
    (without("issuer"), "missing_field"),
    (certificate(issuer="tuv-sud"), "bad_field"),
    (certificate(issuer={"id": "TÜV", "name": "x"}), "bad_field"),
    (certificate(issuer={"id": "tuv-sud"}), "bad_field"),
    (without("subject"), "missing_field"),
    (certificate(subject={"kind": "product", "id": "4006381333932"}), "bad_subject"),
    (certificate(subject={"kind": "product", "id": "40063813339"}), "bad_subject"),
    (certificate(subject={"kind": "shipment", "id": "x"}), "bad_subject"),
    (certificate(subject={"kind": "batch", "id": ""}), "bad_subject"),
    (certificate(subject={"kind": "batch", "id": 7}), "bad_subject"),
    (certificate(subject={"kind": "organisation", "id": "Shenzhen Lighting"}), "bad_subject"),
    (certificate(subject={"kind": "batch", "id": "L1", "owner": "x"}), "bad_subject"),
    (certificate(subject=["product"]), "bad_subject"),
    (without("scope"), "missing_field"),
    (certificate(scope=" "), "bad_field"),
    (without("validFrom"), "missing_field"),
    (without("validUntil"), "missing_field"),
    (certificate(validFrom="2025-01-01"), "bad_validity"),
    (certificate(validUntil="2024-12-31T23:59:59Z"), "bad_validity"),
    (certificate(validUntil="2025-01-01T00:00:00Z"), "bad_validity"),
    (certificate(attachments={"filename": "a"}), "bad_attachments"),
    (certificate(attachments=["a.pdf"]), "bad_attachments"),
    (certificate(attachments=[{"filename": "a.pdf"}]), "bad_attachments"),
])
def test_certificate_data_codes(data: Any, code: str) -> None:
    with pytest.raises(DocumentError) as info:
        check_certificate_data(data)
    assert info.value.code == code, info.value


# --------------------------------------------------------------------------- RFC 3339


@SETTINGS
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
       st.integers(-23 * 60 - 59, 23 * 60 + 59), st.sampled_from([0, 1, 3, 6, 9]))
def test_rfc3339_agrees_with_datetime(moment: datetime, offset_minutes: int,
                                      digits: int) -> None:
    zone = timedelta(minutes=offset_minutes)
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    fraction = f"{moment.microsecond:06d}000"[:digits]
    text = (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
            f"{moment.minute:02d}:{moment.second:02d}" + (f".{fraction}" if digits else "")
            + f"{sign}{hours:02d}:{minutes:02d}")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    aware = moment.replace(microsecond=0, tzinfo=UTC) - zone
    expected = (aware - epoch) // timedelta(milliseconds=1)
    if digits:
        expected += int((fraction + "00")[:3])
    assert rfc3339_to_ms(text) == expected


@SETTINGS
@given(st.integers(rfc3339_to_ms("0000-01-01T00:00:00Z"),
                   rfc3339_to_ms("9999-12-31T23:59:59.999Z")))
def test_ms_to_rfc3339_round_trips(value: int) -> None:
    assert rfc3339_to_ms(ms_to_rfc3339(value)) == value


def test_rfc3339_examples() -> None:
    assert rfc3339_to_ms("1970-01-01T00:00:00Z") == 0
    assert rfc3339_to_ms("1970-01-01t08:00:00.5+08:00") == 500
    assert rfc3339_to_ms("1969-12-31T23:59:59.999Z") == -1
    assert rfc3339_to_ms("2024-02-29T12:00:00-00:00") == ms("2024-02-29T12:00:00Z")
    assert ms_to_rfc3339(0) == "1970-01-01T00:00:00.000Z"
    with pytest.raises(DocumentError):
        ms_to_rfc3339(rfc3339_to_ms("9999-12-31T23:59:59.999Z") + 1)


@pytest.mark.parametrize("text", [
    "2025-01-01", "2025-01-01T00:00:00", "2025-01-01 00:00:00Z", "20250101T000000Z",
    "2025-13-01T00:00:00Z", "2025-02-29T00:00:00Z", "2025-01-32T00:00:00Z",
    "2025-01-01T24:00:00Z", "2025-01-01T00:60:00Z", "2016-12-31T23:59:60Z",
    "2025-01-01T00:00:00+24:00", "2025-01-01T00:00:00+01:60", "2025-01-01T00:00:00.Z",
    "2025-01-01T00:00:00.1234567890Z", "２０２５-01-01T00:00:00Z", 20250101, None,
])
def test_rfc3339_refuses(text: Any) -> None:
    with pytest.raises(DocumentError) as info:
        rfc3339_to_ms(text)
    assert info.value.code == "bad_time"
