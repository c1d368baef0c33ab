"""GS1 identifiers: check digits, EPC URNs, Digital Links and round trips between them."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.trace import hashvalues
from services.trace.identifiers import (
    CSET82,
    Giai,
    Grai,
    GtinClass,
    IdentifierError,
    Lgtin,
    Pgln,
    Sgln,
    Sgtin,
    Sscc,
    check_digit,
    gtin_from_sgtin,
    has_valid_check_digit,
    is_valid_gln,
    normalize_gtin,
    parse_digital_link,
    parse_epc_urn,
    parse_identifier,
    sgtin_from_gtin,
    to_digital_link,
    to_urn,
)


@pytest.mark.parametrize("key", ["09506000134352", "4006381333931", "0614141007776",
                                 "106141412345678908", "96385074", "036000291452"])
def test_valid_check_digits(key: str) -> None:
    assert has_valid_check_digit(key)
    assert check_digit(key[:-1]) == key[-1]


def test_invalid_check_digits() -> None:
    assert not has_valid_check_digit("09506000134353")
    assert not has_valid_check_digit("1")
    assert not has_valid_check_digit("95060001343x2")
    assert is_valid_gln("0614141007776") and not is_valid_gln("0614141007777")
    with pytest.raises(IdentifierError) as err:
        check_digit("12a")
    assert err.value.code == "bad_gtin"


def test_normalize_gtin() -> None:
    assert normalize_gtin("9506000134352") == "09506000134352"
    assert normalize_gtin("96385074") == "00000096385074"
    with pytest.raises(IdentifierError) as err:
        normalize_gtin("9506000134353")
    assert err.value.code == "bad_check_digit"
    with pytest.raises(IdentifierError) as err:
        normalize_gtin("95060001343")
    assert err.value.code == "bad_gtin"


CASES = [
    ("urn:epc:id:sgtin:0614141.107346.2018", "https://id.gs1.org/01/10614141073464/21/2018",
     Sgtin("10614141073464", "2018")),
    ("urn:epc:id:sgtin:0614141.812345.6789%2F%26%25%22!%3F()",
     "https://id.gs1.org/01/80614141123458/21/6789%2F%26%25%22%21%3F%28%29",
     Sgtin("80614141123458", '6789/&%"!?()')),
    ("urn:epc:class:lgtin:4012345.012345.998877",
     "https://id.gs1.org/01/04012345123456/10/998877", Lgtin("04012345123456", "998877")),
    ("urn:epc:idpat:sgtin:4012345.098765.*", "https://id.gs1.org/01/04012345987652",
     GtinClass("04012345987652")),
    ("urn:epc:id:sscc:0614141.1234567890", "https://id.gs1.org/00/106141412345678908",
     Sscc("106141412345678908")),
    ("urn:epc:id:sgln:0614141.00777.0", "https://id.gs1.org/414/0614141007776",
     Sgln("0614141007776")),
    ("urn:epc:id:sgln:4012345.00005.122", "https://id.gs1.org/414/4012345000054/254/122",
     Sgln("4012345000054", "122")),
    ("urn:epc:id:pgln:4012345.00225", "https://id.gs1.org/417/4012345002256",
     Pgln("4012345002256")),
    ("urn:epc:id:grai:4012345.66666.87", "https://id.gs1.org/8003/0401234566666387",
     Grai("04012345666663", "87")),
    ("urn:epc:id:giai:4012345.AA(b)", "https://id.gs1.org/8004/4012345AA%28b%29",
     Giai("4012345AA(b)")),
]


@pytest.mark.parametrize(("urn", "dl", "expected"), CASES, ids=[c[0] for c in CASES])
def test_urn_and_digital_link_round_trip(urn: str, dl: str, expected: object) -> None:
    parsed = parse_identifier(urn)
    assert parsed == expected
    assert parsed.to_urn() == urn
    assert parsed.to_digital_link() == dl
    assert to_digital_link(urn) == dl
    # the event hash normaliser gives the same canonical Digital Link
    assert hashvalues.canonical_digital_link(urn) == dl
    back = parse_identifier(dl, company_prefix_length=parsed.company_prefix_length)
    assert back == parsed
    assert back.to_urn() == urn
    assert to_urn(dl, company_prefix_length=parsed.company_prefix_length) == urn


def test_digital_link_variants() -> None:
    assert parse_identifier("https://brand.example/p/01/9506000134352/21/X1?utm=1#frag") == \
        Sgtin("09506000134352", "X1")
    assert parse_identifier("http://id.gs1.org/gtin/09506000134352/ser/X1") == \
        Sgtin("09506000134352", "X1")
    # lot and serial: the serial is the finest level
    assert parse_identifier("https://id.gs1.org/01/09506000134352/10/L1/21/S1") == \
        Sgtin("09506000134352", "S1")
    assert parse_identifier("https://id.gs1.org/01/09506000134352/22/V2/10/L1") == \
        Lgtin("09506000134352", "L1")
    assert parse_identifier("https://id.gs1.org/01/09506000134352/21/a%2Fb") == \
        Sgtin("09506000134352", "a/b")


def test_company_prefix_from_master_data() -> None:
    dl = "https://id.gs1.org/01/10614141073464/21/2018"
    assert parse_identifier(dl).company_prefix_length is None
    with pytest.raises(IdentifierError) as err:
        parse_identifier(dl).to_urn()
    assert err.value.code == "unknown_company_prefix"
    found = parse_identifier(dl, company_prefixes=["0614", "061414", "0614141", "999999"])
    assert found.company_prefix_length == 7
    assert found.to_urn() == "urn:epc:id:sgtin:0614141.107346.2018"
    with pytest.raises(IdentifierError) as err:
        parse_identifier(dl, company_prefixes=["4012345"])
    assert err.value.code == "unknown_company_prefix"
    with pytest.raises(IdentifierError) as err:
        parse_identifier(dl, company_prefix_length=13)
    assert err.value.code == "bad_company_prefix"


def test_sgtin_gtin_helpers() -> None:
    sgtin = sgtin_from_gtin("10614141073464", "2018", 7)
    assert sgtin.to_urn() == "urn:epc:id:sgtin:0614141.107346.2018"
    assert gtin_from_sgtin(sgtin) == "10614141073464"
    assert gtin_from_sgtin("urn:epc:id:sgtin:0614141.107346.2018") == "10614141073464"
    assert gtin_from_sgtin("https://id.gs1.org/01/10614141073464/21/2018") == "10614141073464"
    assert sgtin_from_gtin("9506000134352", "1", 7).gtin == "09506000134352"
    with pytest.raises(IdentifierError):
        gtin_from_sgtin("urn:epc:id:sscc:0614141.1234567890")


@pytest.mark.parametrize(("text", "code"), [
    ("hello", "bad_identifier"),
    ("urn:epc:id:sgtin:0614141.10734.2018", "bad_epc"),  # 12 digits, not 13
    ("urn:epc:id:sgtin:06141.1073460.2018", "bad_epc"),  # 5-digit company prefix
    ("urn:epc:id:sgtin:0614141.107346.", "bad_epc"),
    ("urn:epc:id:sgtin:0614141.107346.a/b", "bad_epc"),
    ("urn:epc:id:sgtin:0614141.107346.%20", "bad_epc"),  # space is not in CSET 82
    ("urn:epc:id:sgtin:0614141.107346.%2", "bad_epc"),
    ("urn:epc:id:sgtin:0614141.107346.123456789012345678901", "bad_epc"),
    ("urn:epc:id:sscc:0614141.123456789", "bad_epc"),
    ("urn:epc:id:gsrn:0614141.1234567890", "unsupported_identifier"),
    ("https://id.gs1.org/01/10614141073465/21/2018", "bad_check_digit"),
    ("https://id.gs1.org/414/0614141007777", "bad_check_digit"),
    ("https://id.gs1.org/00/106141412345678909", "bad_check_digit"),
    ("https://id.gs1.org/01/1061414107346/21/2018", "bad_check_digit"),
    ("https://id.gs1.org/01/123/21/2018", "bad_gtin"),
    ("https://id.gs1.org/02/10614141073464", "bad_digital_link"),
    ("https://id.gs1.org/01/10614141073464/21", "bad_digital_link"),
    ("https://id.gs1.org/01/10614141073464/254/x", "bad_digital_link"),
    ("https://id.gs1.org/01/10614141073464/21/" + "x" * 21, "bad_digital_link"),
    ("https://id.gs1.org/8003/04012345666663", "unsupported_identifier"),
    ("ftp://id.gs1.org/01/10614141073464", "bad_identifier"),
])
def test_errors(text: str, code: str) -> None:
    with pytest.raises(IdentifierError) as err:
        parse_identifier(text)
    assert err.value.code == code


def test_dataclass_validation() -> None:
    with pytest.raises(IdentifierError) as err:
        Sgtin("10614141073464", "")
    assert err.value.code == "bad_serial"
    with pytest.raises(IdentifierError):
        Grai("14012345666663", "1")
    with pytest.raises(IdentifierError):
        Giai("ab12345678", 7)
    with pytest.raises(IdentifierError):
        parse_epc_urn("urn:epc:id:sgtin")
    with pytest.raises(IdentifierError):
        parse_digital_link("not a link")


serials = st.text(alphabet=sorted(CSET82), min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.integers(6, 12), st.data(), serials)
def test_sgtin_round_trips(cpl: int, data: st.DataObject, serial: str) -> None:
    body = data.draw(st.from_regex(r"[0-9]{13}", fullmatch=True))
    gtin = body + check_digit(body)
    sgtin = Sgtin(gtin, serial, cpl)
    urn = sgtin.to_urn()
    dl = sgtin.to_digital_link()
    assert parse_identifier(urn) == sgtin
    assert parse_identifier(urn).company_prefix_length == cpl
    assert parse_identifier(dl) == sgtin
    assert parse_identifier(dl, company_prefix_length=cpl).to_urn() == urn
    assert hashvalues.canonical_digital_link(urn) == dl


@settings(max_examples=200, deadline=None)
@given(st.integers(6, 12), st.data(), serials)
def test_sgln_and_sscc_round_trips(cpl: int, data: st.DataObject, ext: str) -> None:
    body12 = data.draw(st.from_regex(r"[0-9]{12}", fullmatch=True))
    sgln = Sgln(body12 + check_digit(body12), ext, cpl)
    assert parse_identifier(sgln.to_urn()) == sgln
    assert parse_identifier(sgln.to_digital_link(), company_prefix_length=cpl) == sgln
    assert hashvalues.canonical_digital_link(sgln.to_urn()) == sgln.to_digital_link()
    body17 = data.draw(st.from_regex(r"[0-9]{17}", fullmatch=True))
    sscc = Sscc(body17 + check_digit(body17), cpl)
    assert parse_identifier(sscc.to_urn()) == sscc
    assert parse_identifier(sscc.to_digital_link(), company_prefix_length=cpl).to_urn() == \
        sscc.to_urn()
    assert hashvalues.canonical_digital_link(sscc.to_urn()) == sscc.to_digital_link()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_parse_never_raises_anything_else(text: str) -> None:
    with contextlib.suppress(IdentifierError):
        parse_identifier(text)


def test_giai_and_grai_digital_links_are_unescaped_once() -> None:
    """``%2541`` in a Digital Link is the text ``%41``, never ``A``: two assets must not
    share an identity, and URN -> Digital Link -> URN is stable."""
    from services.trace import identifiers

    escaped = identifiers.parse_identifier("https://id.gs1.org/8004/6901234%2541",
                                           company_prefix_length=7)
    plain = identifiers.parse_identifier("https://id.gs1.org/8004/6901234A",
                                         company_prefix_length=7)
    assert escaped != plain and escaped.to_urn() == "urn:epc:id:giai:6901234.%2541"
    urn = "urn:epc:id:giai:6901234.%2541"
    link = identifiers.to_digital_link(urn)
    assert identifiers.parse_identifier(link, company_prefix_length=7).to_urn() == urn
