"""The values of the CBV 2.0 event hash's pre-hash string, canonicalised as the reference
implementation writes them (step 4 of :mod:`services.trace.eventhash`): numbers without
leading ``+``/zeros or trailing zeros, times in UTC with exactly three fractional digits,
old CBV URNs as web URIs, and EPC URNs and GS1 Digital Link URIs as the constrained
canonical Digital Link on ``https://id.gs1.org``. Also :class:`EventHashError`, the one
error of the event hash.

This module is pure: it never does I/O, reads the clock, draws randomness or uses a
float (numbers are :class:`decimal.Decimal`).
"""

from __future__ import annotations

import re
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from typing import Any, cast

from services.trace.cbv import CBV
from services.trace.civil import civil_from_days, days_from_civil, days_in_month

__all__ = [
    "EventHashError",
    "canonical_digital_link",
    "canonical_number",
    "canonical_time",
    "canonical_value",
    "format_utc_millis",
    "gs1_check_digit",
    "time_to_utc_millis",
]

_NUMBER_EXPONENT_MAX = 4096


class EventHashError(ValueError):
    """An event the hash cannot be computed for; ``code`` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- #
# Value canonicalisation
# --------------------------------------------------------------------------- #

_DECIMAL = Context(prec=28, rounding=ROUND_HALF_EVEN, Emin=-999999, Emax=999999,
                   capitals=1, clamp=0, flags=[], traps=[InvalidOperation, DivisionByZero,
                                                          Overflow])
_CBV_URNS = (
    ("urn:epcglobal:cbv:bizstep:", CBV + "BizStep-"),
    ("urn:epcglobal:cbv:disp:", CBV + "Disp-"),
    ("urn:epcglobal:cbv:btt:", CBV + "BTT-"),
    ("urn:epcglobal:cbv:sdt:", CBV + "SDT-"),
    ("urn:epcglobal:cbv:er:", CBV + "ER-"),
)


def canonical_number(text: str) -> str:
    """The reference's number normalisation: ``"+026.50"`` -> ``"26.5"``, ``"1.0"`` -> ``"1"``.

    Text that is not a finite decimal number is returned unchanged. Exact
    (:class:`decimal.Decimal` with the default 28-digit context), never floats.
    """
    if not text.isascii():
        # Decimal() also reads other scripts' digits and Unicode spaces, by the Python
        # version's Unicode tables: such text is never a number of the hash
        return text
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        return text
    if not number.is_finite():
        return text
    if abs(number.adjusted()) > _NUMBER_EXPONENT_MAX or len(number.as_tuple().digits) > \
            _NUMBER_EXPONENT_MAX:
        raise EventHashError("number_out_of_range", f"number {text[:40]!r} is out of range")
    integral = number.to_integral_value(context=_DECIMAL)
    if number == integral:
        return str(integral)
    return format(number.normalize(_DECIMAL), "f")


def canonical_value(text: str) -> str:
    """A value of the pre-hash string: old CBV URNs as web URIs, numbers and GS1
    identifiers in their canonical forms, anything else as given."""
    for urn, uri in _CBV_URNS:
        text = text.replace(urn, uri)
    text = canonical_number(text)
    converted = canonical_digital_link(text)
    return converted if converted is not None else text


_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))", re.ASCII)


def time_to_utc_millis(text: str) -> int:
    """Milliseconds since 1970-01-01T00:00:00Z of an RFC 3339 time with an offset.

    Fractional seconds beyond microseconds are cut, then rounded half-up to
    milliseconds (what the reference does). Raises :class:`EventHashError` ``bad_time``.
    """
    match = _TIME.fullmatch(text)
    if match is None:
        raise EventHashError("bad_time", f"{text[:40]!r} is not an RFC 3339 time with offset")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if not (year >= 1 and 1 <= month <= 12 and 1 <= day <= days_in_month(year, month)
            and hour <= 23 and minute <= 59 and second <= 59):
        raise EventHashError("bad_time", f"{text[:40]!r} is not a valid time")
    micros = int((match.group(7) or "").ljust(6, "0")[:6])
    offset = 0
    if match.group(9):
        off_h, off_m = int(match.group(10)), int(match.group(11))
        if off_h > 23 or off_m > 59:
            raise EventHashError("bad_time", f"{text[:40]!r} has a bad offset")
        offset = (off_h * 60 + off_m) * (1 if match.group(9) == "+" else -1)
    seconds = (days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60
               + second - offset * 60)
    return seconds * 1000 + (micros + 500) // 1000


def format_utc_millis(millis: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.sssZ`` of a time in milliseconds since the epoch."""
    days, rest = divmod(millis, 86_400_000)
    year, month, day = civil_from_days(days)
    if not 1 <= year <= 9999:
        raise EventHashError("bad_time", "time outside the years 1..9999")
    hour, rest = divmod(rest, 3_600_000)
    minute, rest = divmod(rest, 60_000)
    second, ms = divmod(rest, 1000)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{ms:03d}Z"


def canonical_time(text: str) -> str:
    """The pre-hash form of a time: UTC, exactly three fractional digits, ``Z``."""
    return format_utc_millis(time_to_utc_millis(text))


# --------------------------------------------------------------------------- #
# Identifiers: the constrained canonical GS1 Digital Link of the reference
# --------------------------------------------------------------------------- #

# One character of an EPC URN serial (TDS GS3A3 component: raw or %-escaped).
_SER = (r"(?:%2[125-9A-Fa-f]|%3[0-9A-Fa-f]|%4[1-9A-Fa-f]|%5[0-9AaFf]|%6[1-9A-Fa-f]"
        r"|%7[0-9Aa]|[!')(*+,.0-9:;=A-Za-z_-])")
_CPI = r"(?:%2[3dfDF]|%3[0-9]|%4[1-9A-Fa-f]|%5[0-9Aa]|[0-9A-Z-])"
# A value character of the canonical Digital Link forms.
_DLC = r"[\x22\x27\x2D\x2E\x30-\x39\x3B-\x3F\x41-\x5A\x5F\x61-\x7A]"


def _split(total: int, last: str = "") -> str:
    """Company prefix (6..12 digits) '.' reference, together ``total`` digits."""
    alts = [rf"\d{{{k}}}\.\d{{{total - k}}}" for k in range(6, 12) if total - k > 0]
    alts.append(r"\d{12}\." + last if total == 12 else rf"\d{{12}}\.\d{{{total - 12}}}")
    return "(?:" + "|".join(alts) + ")"


def _varlen(char: str, total: int) -> str:
    return "(?:" + "|".join(rf"\d{{{k}}}\.{char}{{1,{total - k}}}" for k in range(6, 13)) + ")"


def _dl_escape(text: str) -> str:
    for char, escape in (("!", "%21"), ("(", "%28"), (")", "%29"), ("*", "%2A"),
                         ("+", "%2B"), (",", "%2C"), (":", "%3A")):
        text = text.replace(char, escape)
    return text


def gs1_check_digit(digits: str) -> int:
    """GS1 mod-10 check digit of a key without its check digit (weights 3,1 from the right)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        total += int(char) * (3 if position % 2 == 0 else 1)
    return (10 - total % 10) % 10


def _with_check(digits: str) -> str:
    return digits + str(gs1_check_digit(digits))


def _gtin(uri: str, start: int, dot: int) -> str:
    prefix = uri[start:dot]
    item = uri[dot + 1:dot + 1 + 13 - len(prefix)]
    return _with_check(item[:1] + prefix + item[1:])


def _ref12(uri: str, start: int, dot: int) -> str:
    prefix = uri[start:dot]
    return prefix + uri[dot + 1:dot + 1 + 12 - len(prefix)]


def _compile(pattern: str) -> re.Pattern[str]:
    """A pattern whose ``\\d`` is ASCII 0-9 only: Python's Unicode digit tables grow
    from version to version (a digit of a newly encoded script), and every replica must
    canonicalise, hence hash, every value alike."""
    return re.compile(pattern, re.ASCII)


_ID = "https://id.gs1.org/"
_EPC_RULES: list[tuple[re.Pattern[str], Any]] = [
    (_compile(r"^urn:epc:id:sgtin:" + _split(13) + r"\." + _SER + r"{1,20}$"),
     lambda u, d: _ID + "01/" + _gtin(u, 17, d) + "/21/" + _dl_escape(u[32:])),
    (_compile(r"^urn:epc:id:sscc:" + _split(17) + r"$"),
     lambda u, d: _ID + "00/" + _with_check(u[d + 1] + u[16:d] + u[d + 2:])),
    (_compile(r"^urn:epc:id:sgln:" + _split(12) + r"\." + _SER + r"{1,20}$"),
     lambda u, d: _ID + "414/" + _with_check(_ref12(u, 16, d)) + (
         "" if u[30:] == "0" else "/254/" + _dl_escape(u[30:]))),
    (_compile(r"^urn:epc:id:grai:" + _split(12, r"\.") + r"\." + _SER + r"{1,16}$"),
     lambda u, d: _ID + "8003/" + _with_check("0" + _ref12(u, 16, d)) + _dl_escape(u[30:])),
    (_compile(r"^urn:epc:id:giai:" + _varlen(_SER, 30) + r"$"),
     lambda u, d: _ID + "8004/" + u[16:d] + _dl_escape(u[d + 1:])),
    (_compile(r"^urn:epc:id:gsrn:" + _split(17) + r"$"),
     lambda u, d: _ID + "8018/" + _with_check(u[16:d] + u[d + 1:])),
    (_compile(r"^urn:epc:id:gsrnp:" + _split(17) + r"$"),
     lambda u, d: _ID + "8017/" + _with_check(u[17:d] + u[d + 1:])),
    (_compile(r"^urn:epc:id:gdti:" + _split(12, r"\.") + _SER + r"{1,20}$"),
     lambda u, d: _ID + "253/" + _with_check(_ref12(u, 16, d)) + _dl_escape(u[30:])),
    (_compile(r"^urn:epc:id:cpi:" + _varlen(_CPI, 30) + r"\.\d{1,12}$"),
     lambda u, d: _ID + "8010/" + _dl_escape(u[15:d] + u[d + 1:u.rfind(".")]) + "/8011/"
     + u[u.rfind(".") + 1:]),
    (_compile(r"^urn:epc:id:sgcn:" + _split(12) + r"\.\d{1,12}$"),
     lambda u, d: _ID + "255/" + _with_check(_ref12(u, 16, d)) + u[30:]),
    (_compile(r"^urn:epc:id:ginc:" + _varlen(_SER, 30) + r"$"),
     lambda u, d: _ID + "401/" + u[16:d] + _dl_escape(u[d + 1:])),
    (_compile(r"^urn:epc:id:gsin:" + _split(16) + r"$"),
     lambda u, d: _ID + "402/" + _with_check(u[16:d] + u[d + 1:])),
    (_compile(r"^urn:epc:id:itip:" + _split(13) + r"\.\d{2}\.\d{2}\." + _SER + r"{1,20}$"),
     lambda u, d: _ID + "8006/" + _gtin(u, 16, d) + u[31:33] + u[34:36] + "/21/"
     + _dl_escape(u[37:])),
    (_compile(r"^urn:epc:id:upui:" + _split(13) + r"\." + _SER + r"{1,28}$"),
     lambda u, d: _ID + "01/" + _gtin(u, 16, d) + "/235/" + _dl_escape(u[31:])),
    (_compile(r"^urn:epc:id:pgln:" + _split(12) + r"$"),
     lambda u, d: _ID + "417/" + _with_check(_ref12(u, 16, d))),
    (_compile(r"^urn:epc:class:lgtin:" + _split(13) + r"\." + _SER + r"{1,20}$"),
     lambda u, d: _ID + "01/" + _gtin(u, 20, d) + "/10/" + _dl_escape(u[35:])),
    (_compile(r"^urn:epc:idpat:sgtin:" + _split(13) + r"\.\*$"),
     lambda u, d: _ID + "01/" + _gtin(u, 20, d)),
    (_compile(r"^urn:epc:idpat:grai:" + _split(12, r"\.") + r"\.\*$"),
     lambda u, d: _ID + "8003/" + _with_check("0" + _ref12(u, 19, d))),
    (_compile(r"^urn:epc:idpat:gdti:" + _split(12, r"\.") + r"\.\*$"),
     lambda u, d: _ID + "253/" + _with_check(_ref12(u, 19, d))),
    (_compile(r"^urn:epc:idpat:sgcn:" + _split(12, r"\.") + r"\.\*$"),
     lambda u, d: _ID + "255/" + _with_check(_ref12(u, 19, d))),
    (_compile(r"^urn:epc:idpat:cpi:" + _varlen(_CPI, 30) + r"\.\*$"),
     lambda u, d: _ID + "8010/" + _dl_escape(u[18:d] + u[d + 1:u.rfind(".")])),
    (_compile(r"^urn:epc:idpat:itip:" + _split(13) + r"\.\d{2}\.\d{2}\.\*$"),
     lambda u, d: _ID + "8006/" + _gtin(u, 19, d) + u[34:36] + u[37:39]),
    (_compile(r"^urn:epc:idpat:upui:" + _split(13) + r"\.\*$"),
     lambda u, d: _ID + "01/" + _gtin(u, 19, d)),
]

_KEYS = ("01|gtin|8006|itip|8010|cpid|414|gln|417|party|8017|gsrnp|8018|gsrn|255|gcn|00|sscc"
         "|253|gdti|401|ginc|402|gsin|8003|grai|8004|giai")
_DL_SYNTAX = _compile(
    r"^https?:(//((([^/?#]*)@)?([^/?#:]*)(:([^/?#]*))?))?((([^?#]*)(/(" + _KEYS + r")/)"
    r"(\d{4}[^/]+)(/[^/]+/[^/]+)?[/]?(\?([^?\n]*))?(#([^\n]*))?)|(/[A-Za-z_-]{10}$))")
# NB: the host's dots are unescaped in the reference's patterns; kept so for equivalence.
_DL_HOST = "https://id.gs1.org"
_DL_CANONICAL = _compile(
    r"^https://id.gs1.org/(01|8006|8010|414|417|8017|8018|255|00|253|401|402|8003|8004)/"
    r"(\d{4}[^/]+)(/[^/]+/[^/]+)?[/]?(\?([^?\n]*))?(#([^\n]*))?|(/[A-Za-z_-]{10}$)")
_DL_SHORT_NAMES = (
    ("/gtin/", "/01/"), ("/itip/", "/8006/"), ("/cpid/", "/8010/"), ("/gln/", "/414/"),
    ("/party/", "/417/"), ("/gsrnp/", "/8017/"), ("/gsrn/", "/8018/"), ("/gcn/", "/255/"),
    ("/sscc/", "/00/"), ("/gdti/", "/253/"), ("/ginc/", "/401/"), ("/gsin/", "/402/"),
    ("/grai/", "/8003/"), ("/giai/", "/8004/"), ("/cpv/", "/22/"), ("/lot/", "/10/"),
    ("/ser/", "/21/"))
_DL_PRIMARY = ("/00/", "/01/", "/253/", "/255/", "/401/", "/402/", "/414/", "/417/",
               "/8003/", "/8004/", "/8006/", "/8010/", "/8017/", "/8018/")
_H = "https://id.gs1.org/"
_DL_CPV_LAST = [_compile(_H + r"8006/\d{18}/22/(" + _DLC + r"{0,20})$"),
                _compile(_H + r"01/\d{14}/22/(" + _DLC + r"{0,20})$")]
_DL_CPV_MID = [_compile(_H + r"8006/\d{18}/22/([\x2F" + _DLC[1:] + r"{0,20})$"),
               _compile(_H + r"01/\d{14}/22/([\x2F" + _DLC[1:] + r"{0,20})$")]
_DL_LOT_SERIAL = [
    _compile(_H + r"8006/\d{18}/10/(" + _DLC + r"{0,20})/21/(" + _DLC + r"{0,20})$"),
    _compile(_H + r"01/(\d{14})/10/(" + _DLC + r"{0,20})/21/(" + _DLC + r"{0,20})$")]
_DL_VALID = [_compile(_H + p + "$") for p in (
    r"00/(\d{18})", r"01/(\d{14})/21/(" + _DLC + r"{0,20})",
    r"01/(\d{14})/10/(" + _DLC + r"{0,20})", r"01/(\d{14})",
    r"01/(\d{14})/235/(" + _DLC + r"{0,28})", r"253/(\d{13})(" + _DLC + r"{0,17})",
    r"255/(\d{13})(\d{0,12})", r"401/(" + _DLC + r"{0,30})", r"402/(\d{17})",
    r"414/(\d{13})", r"414/(\d{13})/254/(" + _DLC + r"{0,20})", r"417/(\d{13})",
    r"8003/(\d{14})(" + _DLC + r"{0,16})", r"8004/(" + _DLC + r"{0,30})",
    r"8006/(\d{18})/21/(" + _DLC + r"{0,20})", r"8006/(\d{18})/10/(" + _DLC + r"{0,20})",
    r"8006/(\d{18})", r"8010/([\x23\x2D\x2F\x30-\x39\x41-\x5A]{0,30})/8011/(\d{0,12})",
    r"8010/([\x23\x2D\x2F\x30-\x39\x41-\x5A]{0,30})", r"8017/(\d{18})", r"8018/(\d{18})")]


def canonical_digital_link(text: str) -> str | None:
    """The constrained canonical GS1 Digital Link the event hash uses, or None.

    Accepts EPC URNs (``urn:epc:id:…``, ``urn:epc:class:lgtin:…``, ``urn:epc:idpat:…``)
    and GS1 Digital Link URIs (any host, short key names, query string); returns the form
    on ``https://id.gs1.org`` with only the finest identification level, or None when the
    text is not a GS1 identifier in a form the reference normalises. Note that the
    reference keeps URN %-escapes and additionally escapes ``!()*+,:``.
    """
    dot = text.find(".")
    if dot < 0:
        return None
    for pattern, convert in _EPC_RULES:
        if pattern.match(text):
            return cast(str, convert(text, dot))
    if _DL_SYNTAX.match(text) is None:
        return None
    uri = text.split("?", 1)[0]
    for short, ai in _DL_SHORT_NAMES:
        uri = uri.replace(short, ai)
    if _DL_CANONICAL.match(uri) is None:
        for key in _DL_PRIMARY:
            if key in uri:
                uri = _DL_HOST + uri[uri.find(key):]
                break
    if re.match(_H + r"01/\d{14}", uri, re.ASCII) is None:
        for digits, pad in ((13, "0"), (12, "00"), (8, "000000")):
            if re.match(_H + rf"01/\d{{{digits}}}", uri, re.ASCII):
                uri = uri.replace("/01/", "/01/" + pad)
                break
    after_cpv = uri[uri.find("/22/") + 4:]
    if any(p.match(uri) for p in _DL_CPV_LAST):
        uri = uri[:uri.find("/22/")] + after_cpv[after_cpv.find("/"):-1]
    if any(p.match(uri) for p in _DL_CPV_MID):
        uri = uri[:uri.find("/22/")] + after_cpv[after_cpv.find("/"):]
    if any(p.match(uri) for p in _DL_LOT_SERIAL):
        after_lot = uri[uri.find("/10/") + 4:]
        uri = uri[:uri.find("/10/")] + after_lot[after_lot.find("/"):]
    if any(p.match(uri) for p in _DL_VALID):
        return uri
    return None
