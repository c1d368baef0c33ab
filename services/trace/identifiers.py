"""GS1 identifiers as EPC URNs and GS1 Digital Link URIs.

Supported kinds (one frozen dataclass each):

============  ===========================================  ================================
kind          EPC URN (Tag Data Standard)                  GS1 Digital Link path
============  ===========================================  ================================
``Sgtin``     ``urn:epc:id:sgtin:CP.IndItemRef.Serial``    ``/01/{GTIN-14}/21/{serial}``
``Lgtin``     ``urn:epc:class:lgtin:CP.IndItemRef.Lot``    ``/01/{GTIN-14}/10/{lot}``
``GtinClass`` ``urn:epc:idpat:sgtin:CP.IndItemRef.*``      ``/01/{GTIN-14}``
``Sscc``      ``urn:epc:id:sscc:CP.ExtSerialRef``          ``/00/{SSCC-18}``
``Sgln``      ``urn:epc:id:sgln:CP.LocRef.Ext``            ``/414/{GLN}[/254/{ext}]``
``Pgln``      ``urn:epc:id:pgln:CP.PartyRef``              ``/417/{GLN}``
``Grai``      ``urn:epc:id:grai:CP.AssetType.Serial``      ``/8003/{0+GRAI-13}{serial}``
``Giai``      ``urn:epc:id:giai:CP.AssetRef``              ``/8004/{CP}{asset ref}``
============  ===========================================  ================================

Rules checked: the company prefix (CP) has 6 to 12 digits and together with the
reference part fills the key (13 digits for a GTIN without its check digit, 17 for an
SSCC, 12 for a GLN or GRAI); serials, lots, GLN extensions and GIAI asset references use
the GS1 AI encodable character set 82, at most 20 characters (16 for GRAI serials, 30 for
the whole GIAI), %-escaped in URNs where the TDS requires it (``"%&/<>?``); check digits
are the GS1 mod-10 digits.

**The company prefix length cannot be derived from a GTIN, SSCC or GLN**: GS1 allocates
prefixes of 6 to 12 digits and only the allocation registry knows where a prefix ends.
So a Digital Link parses into an identifier whose ``company_prefix_length`` is None unless
the caller supplies it — ``company_prefix_length=`` (e.g. from the product master data) or
``company_prefixes=`` (the GS1 company prefixes known to the platform; the key must start
with exactly one of them, the longest wins). ``to_urn()`` needs it and raises
``unknown_company_prefix`` otherwise; ``to_digital_link()`` never needs it.
``company_prefix_length`` does not take part in equality: an identifier parsed from a URN
equals the same identifier parsed from its Digital Link.

Digital Link output uses the canonical host ``https://id.gs1.org`` and %-escapes
``!"%&()*+,/:<>?`` in values (the escapes the GS1 Digital Link standard and the TDS
require, and exactly what the CBV event hash's normaliser produces from a URN).

Errors are :class:`IdentifierError` with a stable ``code``: ``bad_identifier`` (neither
form), ``bad_epc``, ``bad_digital_link``, ``bad_check_digit``, ``bad_gtin``,
``bad_serial``, ``bad_company_prefix``, ``unknown_company_prefix``,
``unsupported_identifier``.

This module is pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeAlias

DIGITAL_LINK_HOST = "https://id.gs1.org"

#: GS1 AI encodable character set 82.
CSET82 = frozenset("!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
                   "abcdefghijklmnopqrstuvwxyz")
_URN_ESCAPED = frozenset('"%&/<>?')
_DL_ESCAPED = frozenset('!"%&()*+,/:<>?')
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_DIGITS = re.compile(r"[0-9]+", re.ASCII)


class IdentifierError(ValueError):
    """A text that is not a valid GS1 identifier; ``code`` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- #
# Check digits and keys
# --------------------------------------------------------------------------- #

def check_digit(digits: str) -> str:
    """GS1 mod-10 check digit of ``digits`` (a key without its check digit)."""
    if not _DIGITS.fullmatch(digits):
        raise IdentifierError("bad_gtin", f"{digits!r} is not a digit string")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str((10 - total % 10) % 10)


def has_valid_check_digit(key: str) -> bool:
    """True when the last digit of the digit string ``key`` is its GS1 check digit."""
    return len(key) >= 2 and bool(_DIGITS.fullmatch(key)) and check_digit(key[:-1]) == key[-1]


def normalize_gtin(text: str) -> str:
    """A GTIN-8/12/13/14 as a validated 14-digit GTIN (left-padded with zeros)."""
    if not _DIGITS.fullmatch(text) or len(text) not in (8, 12, 13, 14):
        raise IdentifierError("bad_gtin", f"{text!r} is not a GTIN-8/12/13/14")
    if not has_valid_check_digit(text):
        raise IdentifierError("bad_check_digit", f"GTIN {text} has a wrong check digit")
    return text.rjust(14, "0")


def is_valid_gln(gln: str) -> bool:
    """True for a 13-digit GLN with a correct check digit."""
    return len(gln) == 13 and has_valid_check_digit(gln)


def _require_key(key: str, length: int, what: str) -> str:
    if not _DIGITS.fullmatch(key) or len(key) != length:
        raise IdentifierError("bad_gtin" if what == "GTIN" else "bad_identifier",
                              f"{what} must have {length} digits")
    if not has_valid_check_digit(key):
        raise IdentifierError("bad_check_digit", f"{what} {key} has a wrong check digit")
    return key


def _require_cpl(length: int | None) -> None:
    if length is not None and (isinstance(length, bool) or not 6 <= length <= 12):
        raise IdentifierError("bad_company_prefix", "company prefix length must be 6..12")


def _require_text(value: str, what: str, max_len: int) -> str:
    if not 1 <= len(value) <= max_len or not set(value) <= CSET82:
        raise IdentifierError("bad_serial", f"{what} must be 1..{max_len} characters of the "
                              "GS1 encodable character set 82")
    return value


def _escape(value: str, escaped: frozenset[str]) -> str:
    return "".join(f"%{ord(c):02X}" if c in escaped else c for c in value)


def _unescape(value: str, code: str) -> str:
    """Decode %XX escapes; a '%' that is not an escape is an error."""
    if re.search(r"%(?![0-9A-Fa-f]{2})", value):
        raise IdentifierError(code, f"bad %-escape in {value!r}")
    return _PERCENT.sub(lambda m: chr(int(m.group(1), 16)), value)


# --------------------------------------------------------------------------- #
# Identifier kinds
# --------------------------------------------------------------------------- #

def _split_cp(key_body: str, cpl: int | None, kind: str) -> tuple[str, str]:
    if cpl is None:
        raise IdentifierError("unknown_company_prefix",
                              f"the company prefix length of this {kind} is unknown "
                              "(supply company_prefix_length or company_prefixes)")
    return key_body[:cpl], key_body[cpl:]


def _dl(path: str) -> str:
    return DIGITAL_LINK_HOST + path


@dataclass(frozen=True, slots=True)
class Sgtin:
    """A serialised trade item: GTIN-14 + serial."""

    gtin: str
    serial: str
    company_prefix_length: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _require_key(self.gtin, 14, "GTIN")
        _require_text(self.serial, "serial", 20)
        _require_cpl(self.company_prefix_length)

    def to_urn(self) -> str:
        cp, ref = _split_cp(self.gtin[1:13], self.company_prefix_length, "GTIN")
        return f"urn:epc:id:sgtin:{cp}.{self.gtin[0]}{ref}.{_escape(self.serial, _URN_ESCAPED)}"

    def to_digital_link(self) -> str:
        return _dl(f"/01/{self.gtin}/21/{_escape(self.serial, _DL_ESCAPED)}")


@dataclass(frozen=True, slots=True)
class Lgtin:
    """A batch/lot of a trade item: GTIN-14 + lot (an EPC class)."""

    gtin: str
    lot: str
    company_prefix_length: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _require_key(self.gtin, 14, "GTIN")
        _require_text(self.lot, "lot", 20)
        _require_cpl(self.company_prefix_length)

    def to_urn(self) -> str:
        cp, ref = _split_cp(self.gtin[1:13], self.company_prefix_length, "GTIN")
        return f"urn:epc:class:lgtin:{cp}.{self.gtin[0]}{ref}.{_escape(self.lot, _URN_ESCAPED)}"

    def to_digital_link(self) -> str:
        return _dl(f"/01/{self.gtin}/10/{_escape(self.lot, _DL_ESCAPED)}")


@dataclass(frozen=True, slots=True)
class GtinClass:
    """All instances of a trade item (EPC pattern ``urn:epc:idpat:sgtin:CP.IR.*``)."""

    gtin: str
    company_prefix_length: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _require_key(self.gtin, 14, "GTIN")
        _require_cpl(self.company_prefix_length)

    def to_urn(self) -> str:
        cp, ref = _split_cp(self.gtin[1:13], self.company_prefix_length, "GTIN")
        return f"urn:epc:idpat:sgtin:{cp}.{self.gtin[0]}{ref}.*"

    def to_digital_link(self) -> str:
        return _dl(f"/01/{self.gtin}")


@dataclass(frozen=True, slots=True)
class Sscc:
    """A logistic unit (pallet, container): SSCC-18."""

    sscc: str
    company_prefix_length: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _require_key(self.sscc, 18, "SSCC")
        _require_cpl(self.company_prefix_length)

    def to_urn(self) -> str:
        cp, ref = _split_cp(self.sscc[1:17], self.company_prefix_length, "SSCC")
        return f"urn:epc:id:sscc:{cp}.{self.sscc[0]}{ref}"

    def to_digital_link(self) -> str:
        return _dl(f"/00/{self.sscc}")


@dataclass(frozen=True, slots=True)
class Sgln:
    """A location: GLN-13 + extension ("0" = the location itself)."""

    gln: str
    extension: str = "0"
    company_prefix_length: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _require_key(self.gln, 13, "GLN")
        _require_text(self.extension, "GLN extension", 20)
        _require_cpl(self.company_prefix_length)

    def to_urn(self) -> str:
        cp, ref = _split_cp(self.gln[:12], self.company_prefix_length, "GLN")
        return f"urn:epc:id:sgln:{cp}.{ref}.{_escape(self.extension, _URN_ESCAPED)}"

    def to_digital_link(self) -> str:
        if self.extension == "0":
            return _dl(f"/414/{self.gln}")
        return _dl(f"/414/{self.gln}/254/{_escape(self.extension, _DL_ESCAPED)}")


@dataclass(frozen=True, slots=True)
class Pgln:
    """A party (owner, possessor): GLN-13."""

    gln: str
    company_prefix_length: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _require_key(self.gln, 13, "GLN")
        _require_cpl(self.company_prefix_length)

    def to_urn(self) -> str:
        cp, ref = _split_cp(self.gln[:12], self.company_prefix_length, "GLN")
        return f"urn:epc:id:pgln:{cp}.{ref}"

    def to_digital_link(self) -> str:
        return _dl(f"/417/{self.gln}")


@dataclass(frozen=True, slots=True)
class Grai:
    """A returnable asset: GRAI (14 digits with the leading 0) + serial."""

    grai: str
    serial: str
    company_prefix_length: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _require_key(self.grai, 14, "GRAI")
        if self.grai[0] != "0":
            raise IdentifierError("bad_identifier", "a GRAI starts with 0")
        _require_text(self.serial, "GRAI serial", 16)
        _require_cpl(self.company_prefix_length)

    def to_urn(self) -> str:
        cp, ref = _split_cp(self.grai[1:13], self.company_prefix_length, "GRAI")
        return f"urn:epc:id:grai:{cp}.{ref}.{_escape(self.serial, _URN_ESCAPED)}"

    def to_digital_link(self) -> str:
        return _dl(f"/8003/{self.grai}{_escape(self.serial, _DL_ESCAPED)}")


@dataclass(frozen=True, slots=True)
class Giai:
    """An individual asset: company prefix + asset reference (at most 30 characters)."""

    giai: str
    company_prefix_length: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _require_text(self.giai, "GIAI", 30)
        _require_cpl(self.company_prefix_length)
        cpl = self.company_prefix_length
        if cpl is not None and (len(self.giai) <= cpl or not _DIGITS.fullmatch(self.giai[:cpl])):
            raise IdentifierError("bad_identifier", "a GIAI starts with its company prefix")

    def to_urn(self) -> str:
        cp, ref = _split_cp(self.giai, self.company_prefix_length, "GIAI")
        return f"urn:epc:id:giai:{cp}.{_escape(ref, _URN_ESCAPED)}"

    def to_digital_link(self) -> str:
        return _dl(f"/8004/{_escape(self.giai, _DL_ESCAPED)}")


Identifier: TypeAlias = Sgtin | Lgtin | GtinClass | Sscc | Sgln | Pgln | Grai | Giai


# --------------------------------------------------------------------------- #
# EPC URNs
# --------------------------------------------------------------------------- #

_URN = re.compile(r"urn:epc:(id|class|idpat):([a-z]+):(.+)", re.ASCII)
_URN_CHAR = re.compile(r"(?:%[0-9A-Fa-f]{2}|[!'()*+,.0-9:;=A-Za-z_-])+", re.ASCII)


def _urn_text(raw: str, what: str, max_len: int) -> str:
    if not _URN_CHAR.fullmatch(raw):
        raise IdentifierError("bad_epc", f"{what} {raw!r} has characters an EPC URN forbids")
    value = _unescape(raw, "bad_epc")
    try:
        return _require_text(value, what, max_len)
    except IdentifierError as exc:
        raise IdentifierError("bad_epc", exc.message) from None


def _cp_ref(cp: str, ref: str, total: int, kind: str) -> None:
    if not (_DIGITS.fullmatch(cp) and 6 <= len(cp) <= 12):
        raise IdentifierError("bad_epc", f"{kind}: company prefix must have 6..12 digits")
    if (ref and not _DIGITS.fullmatch(ref)) or len(cp) + len(ref) != total:
        raise IdentifierError("bad_epc", f"{kind}: company prefix and reference must have "
                              f"{total} digits together")


def parse_epc_urn(text: str) -> Identifier:
    """Parse an EPC pure-identity, class or pattern URN (kinds listed in the module doc)."""
    match = _URN.fullmatch(text)
    if match is None:
        raise IdentifierError("bad_epc", f"{text[:80]!r} is not an EPC URN")
    form, scheme, body = match.groups()
    parts = body.split(".")
    key = (form, scheme)
    if key == ("id", "sgtin") and len(parts) >= 3:
        cp, ref, serial = parts[0], parts[1], ".".join(parts[2:])
        _cp_ref(cp, ref, 13, "sgtin")
        body13 = ref[0] + cp + ref[1:]
        return Sgtin(body13 + check_digit(body13), _urn_text(serial, "serial", 20), len(cp))
    if key == ("class", "lgtin") and len(parts) >= 3:
        cp, ref, lot = parts[0], parts[1], ".".join(parts[2:])
        _cp_ref(cp, ref, 13, "lgtin")
        body13 = ref[0] + cp + ref[1:]
        return Lgtin(body13 + check_digit(body13), _urn_text(lot, "lot", 20), len(cp))
    if key == ("idpat", "sgtin") and len(parts) == 3 and parts[2] == "*":
        cp, ref = parts[0], parts[1]
        _cp_ref(cp, ref, 13, "sgtin pattern")
        body13 = ref[0] + cp + ref[1:]
        return GtinClass(body13 + check_digit(body13), len(cp))
    if key == ("id", "sscc") and len(parts) == 2:
        cp, ref = parts
        _cp_ref(cp, ref, 17, "sscc")
        body17 = ref[0] + cp + ref[1:]
        return Sscc(body17 + check_digit(body17), len(cp))
    if key == ("id", "sgln") and len(parts) >= 3:
        cp, ref, ext = parts[0], parts[1], ".".join(parts[2:])
        _cp_ref(cp, ref, 12, "sgln")
        return Sgln(cp + ref + check_digit(cp + ref), _urn_text(ext, "GLN extension", 20),
                    len(cp))
    if key == ("id", "pgln") and len(parts) == 2:
        cp, ref = parts
        _cp_ref(cp, ref, 12, "pgln")
        return Pgln(cp + ref + check_digit(cp + ref), len(cp))
    if key == ("id", "grai") and len(parts) >= 3:
        cp, ref, serial = parts[0], parts[1], ".".join(parts[2:])
        _cp_ref(cp, ref, 12, "grai")
        body13 = "0" + cp + ref
        return Grai(body13 + check_digit(body13), _urn_text(serial, "GRAI serial", 16),
                    len(cp))
    if key == ("id", "giai") and len(parts) >= 2:
        cp, ref = parts[0], ".".join(parts[1:])
        if not (_DIGITS.fullmatch(cp) and 6 <= len(cp) <= 12):
            raise IdentifierError("bad_epc", "giai: company prefix must have 6..12 digits")
        asset = _urn_text(ref, "GIAI asset reference", 30 - len(cp))
        return Giai(cp + asset, len(cp))
    if scheme in ("sgtin", "lgtin", "sscc", "sgln", "pgln", "grai", "giai"):
        raise IdentifierError("bad_epc", f"{text[:80]!r} is not a valid {scheme} URN")
    raise IdentifierError("unsupported_identifier", f"EPC scheme {form}:{scheme} is not "
                          "supported")


# --------------------------------------------------------------------------- #
# GS1 Digital Link
# --------------------------------------------------------------------------- #

_DL = re.compile(r"https?://[^/?#\s]+(/[^?#\s]*)(?:\?[^#\s]*)?(?:#\S*)?", re.ASCII)
_SHORT_NAMES = {"gtin": "01", "sscc": "00", "gln": "414", "party": "417", "grai": "8003",
                "giai": "8004", "lot": "10", "ser": "21", "cpv": "22"}
_PRIMARY = ("01", "00", "414", "417", "8003", "8004")
_QUALIFIERS = {"01": ("22", "10", "21"), "414": ("254",)}


def _dl_value(raw: str, what: str, max_len: int) -> str:
    value = _unescape(raw, "bad_digital_link")
    try:
        return _require_text(value, what, max_len)
    except IdentifierError as exc:
        raise IdentifierError("bad_digital_link", exc.message) from None


def _infer_cpl(key_body: str, cpl: int | None, prefixes: Iterable[str] | None) -> int | None:
    if cpl is not None:
        _require_cpl(cpl)
        return cpl
    if prefixes is None:
        return None
    matches = [p for p in prefixes if 6 <= len(p) <= 12 and key_body.startswith(p)]
    if not matches:
        raise IdentifierError("unknown_company_prefix",
                              "no known company prefix matches this key")
    return max(len(p) for p in matches)


def parse_digital_link(text: str, *, company_prefix_length: int | None = None,
                       company_prefixes: Iterable[str] | None = None) -> Identifier:
    """Parse a GS1 Digital Link URI (any host; query string and fragment ignored).

    ``/01/{gtin}`` (with ``/10/`` lot and/or ``/21/`` serial; with both the serial wins, as
    in the constrained canonical form), ``/00/``, ``/414/`` (``/254/``), ``/417/``,
    ``/8003/`` (with serial), ``/8004/``. GTIN-8/12/13 are padded to 14 digits. The path
    may have a prefix before the primary key. Short names (``gtin``, ``ser``…) are read.
    """
    match = _DL.fullmatch(text)
    if match is None:
        raise IdentifierError("bad_digital_link", f"{text[:80]!r} is not a GS1 Digital Link")
    segments = [_SHORT_NAMES.get(s, s) for s in match.group(1).strip("/").split("/")]
    start = next((i for i in range(0, len(segments) - 1) if segments[i] in _PRIMARY), None)
    if start is None:
        raise IdentifierError("bad_digital_link", "no GS1 primary key in the path")
    ai, raw_key = segments[start], segments[start + 1]
    # Decode %-escapes exactly once: GIAI and GRAI keys are text (decoded by _dl_value),
    # the other keys digits.
    key = raw_key if ai in ("8003", "8004") else _unescape(raw_key, "bad_digital_link")
    rest = segments[start + 2:]
    if len(rest) % 2:
        raise IdentifierError("bad_digital_link", "key qualifiers come in pairs")
    qualifiers: dict[str, str] = {}
    allowed = _QUALIFIERS.get(ai, ())
    for q_ai, q_value in zip(rest[::2], rest[1::2], strict=True):
        if q_ai not in allowed or q_ai in qualifiers or allowed.index(q_ai) < max(
                (allowed.index(k) for k in qualifiers), default=-1):
            raise IdentifierError("bad_digital_link", f"qualifier {q_ai} not allowed here")
        qualifiers[q_ai] = q_value
    cpl, prefixes = company_prefix_length, company_prefixes
    try:
        if ai == "01":
            gtin = normalize_gtin(key)
            length = _infer_cpl(gtin[1:13], cpl, prefixes)
            if "21" in qualifiers:
                return Sgtin(gtin, _dl_value(qualifiers["21"], "serial", 20), length)
            if "10" in qualifiers:
                return Lgtin(gtin, _dl_value(qualifiers["10"], "lot", 20), length)
            return GtinClass(gtin, length)
        if ai == "00":
            sscc = _require_key(key, 18, "SSCC")
            return Sscc(sscc, _infer_cpl(sscc[1:17], cpl, prefixes))
        if ai in ("414", "417"):
            gln = _require_key(key, 13, "GLN")
            length = _infer_cpl(gln[:12], cpl, prefixes)
            if ai == "417":
                return Pgln(gln, length)
            ext = _dl_value(qualifiers["254"], "GLN extension", 20) if "254" in qualifiers \
                else "0"
            return Sgln(gln, ext, length)
        if ai == "8003":
            if len(key) <= 14:
                raise IdentifierError("unsupported_identifier",
                                      "a GRAI without serial is not supported")
            grai = _require_key(key[:14], 14, "GRAI")
            return Grai(grai, _dl_value(key[14:], "GRAI serial", 16),
                        _infer_cpl(grai[1:13], cpl, prefixes))
        giai = _dl_value(key, "GIAI", 30)
        return Giai(giai, _infer_cpl(giai, cpl, prefixes))
    except IdentifierError as exc:
        if exc.code in ("bad_serial", "bad_identifier"):
            raise IdentifierError("bad_digital_link", exc.message) from None
        raise


def parse_identifier(text: str, *, company_prefix_length: int | None = None,
                     company_prefixes: Iterable[str] | None = None) -> Identifier:
    """Parse an EPC URN or a GS1 Digital Link URI into an :data:`Identifier`."""
    if not isinstance(text, str):
        raise IdentifierError("bad_identifier", "an identifier is a string")
    if text.startswith("urn:epc:"):
        return parse_epc_urn(text)
    if text.startswith(("https://", "http://")):
        return parse_digital_link(text, company_prefix_length=company_prefix_length,
                                  company_prefixes=company_prefixes)
    raise IdentifierError("bad_identifier",
                          f"{text[:80]!r} is neither an EPC URN nor a GS1 Digital Link")


def to_urn(text: str, *, company_prefix_length: int | None = None,
           company_prefixes: Iterable[str] | None = None) -> str:
    """The EPC URN of an identifier given in either form."""
    return parse_identifier(text, company_prefix_length=company_prefix_length,
                            company_prefixes=company_prefixes).to_urn()


def to_digital_link(text: str) -> str:
    """The canonical GS1 Digital Link (``https://id.gs1.org/…``) of an identifier."""
    return parse_identifier(text).to_digital_link()


def sgtin_from_gtin(gtin: str, serial: str, company_prefix_length: int) -> Sgtin:
    """The SGTIN of a GTIN (8/12/13/14 digits) and a serial; the prefix length is needed
    for the URN form (from the product master data)."""
    _require_cpl(company_prefix_length)
    return Sgtin(normalize_gtin(gtin), serial, company_prefix_length)


def gtin_from_sgtin(sgtin: Sgtin | str) -> str:
    """The GTIN-14 of an SGTIN (an :class:`Sgtin`, its URN or its Digital Link)."""
    value = parse_identifier(sgtin) if isinstance(sgtin, str) else sgtin
    if not isinstance(value, Sgtin | Lgtin | GtinClass):
        raise IdentifierError("bad_identifier", "not a GTIN-based identifier")
    return value.gtin


__all__ = [
    "CSET82",
    "DIGITAL_LINK_HOST",
    "Giai",
    "Grai",
    "GtinClass",
    "Identifier",
    "IdentifierError",
    "Lgtin",
    "Pgln",
    "Sgln",
    "Sgtin",
    "Sscc",
    "check_digit",
    "gtin_from_sgtin",
    "has_valid_check_digit",
    "is_valid_gln",
    "normalize_gtin",
    "parse_digital_link",
    "parse_epc_urn",
    "parse_identifier",
    "sgtin_from_gtin",
    "to_digital_link",
    "to_urn",
]
