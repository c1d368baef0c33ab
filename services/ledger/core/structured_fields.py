"""Structured Field Values for HTTP (RFC 8941): parsing and serialisation.

The HTTP Message Signatures rules (:mod:`services.ledger.core.httpsig`) read
``Signature-Input``, ``Signature`` and ``Content-Digest`` with this module, and
consensus code runs them: every replica must parse the same bytes to the same
value, forever. So this is our own implementation of the RFC's algorithms,
never a third-party parser whose upgrade could change a verdict on one replica
and not another (docs/adr/0006-httpsig-ours-with-interop.md). Interoperability
with the maintained parser (``http-sfv``) is proven in
``tests/sdk/test_httpsig_interop.py``.

Values map to Python as follows: Integer ``int``, Decimal ``decimal.Decimal``,
String ``str``, Token :class:`Token` (a ``str`` subclass), Byte Sequence
``bytes``, Boolean ``bool``; an :class:`Item` or :class:`InnerList` carries its
parameters as an ordered ``dict``. Dates and Display Strings (added by RFC 9651)
are not understood and fail parsing.

Errors::

    ValueError
     └── StructuredFieldError   malformed input, or a value that cannot be serialised

This module never does I/O.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

__all__ = [
    "BareItem",
    "InnerList",
    "Item",
    "Member",
    "Params",
    "StructuredFieldError",
    "Token",
    "combine_field_lines",
    "is_integer",
    "is_string",
    "parse_dictionary",
    "parse_inner_list",
    "parse_item",
    "parse_list",
    "serialize_dictionary",
    "serialize_inner_list",
    "serialize_item",
    "serialize_key",
    "serialize_list",
    "serialize_params",
]


class StructuredFieldError(ValueError):
    """A structured field is malformed, or a value cannot be serialised as one."""


class Token(str):
    """An RFC 8941 Token (serialised unquoted), as opposed to a String."""

    __slots__ = ()


BareItem = bool | int | Decimal | str | bytes  # a Token is a str
Params = Mapping[str, BareItem]


@dataclass(frozen=True, slots=True)
class Item:
    value: BareItem
    params: Params


@dataclass(frozen=True, slots=True)
class InnerList:
    items: tuple[Item, ...]
    params: Params


Member = Item | InnerList

_DIGITS = frozenset("0123456789")
_LCALPHA = frozenset("abcdefghijklmnopqrstuvwxyz")
_ALPHA = _LCALPHA | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TCHAR = _ALPHA | _DIGITS | frozenset("!#$%&'*+-.^_`|~")
_KEY_FIRST = _LCALPHA | {"*"}
_KEY_REST = _LCALPHA | _DIGITS | frozenset("_-.*")
_TOKEN_REST = _TCHAR | frozenset(":/")
_BASE64 = _ALPHA | _DIGITS | frozenset("+/=")
_MAX_INTEGER = 999_999_999_999_999


def is_string(value: object) -> bool:
    """True for a String (a ``str`` that is not a :class:`Token`)."""
    return isinstance(value, str) and not isinstance(value, Token)


def is_integer(value: object) -> bool:
    """True for an Integer (an ``int`` that is not a ``bool``)."""
    return isinstance(value, int) and not isinstance(value, bool)


def combine_field_lines(lines: Sequence[str]) -> str:
    """Field lines combined for parsing (RFC 8941 section 4.2): trimmed, joined by ", "."""
    return ", ".join(line.strip(" \t") for line in lines if line.strip(" \t"))


# --------------------------------------------------------------------------
# Parsing (section 4.2)


class _Parser:
    """RFC 8941 section 4.2, over a str that must be ASCII."""

    def __init__(self, text: str) -> None:
        if not text.isascii():
            raise StructuredFieldError("structured field is not ASCII")
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        char = self.peek()
        if not char:
            raise StructuredFieldError("structured field ends too early")
        self.pos += 1
        return char

    def expect(self, char: str) -> None:
        if self.take() != char:
            raise StructuredFieldError(f"expected {char!r} at offset {self.pos - 1}")

    def skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:
            self.pos += 1

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def end(self) -> None:
        """Section 4.2 steps 6 and 7: trailing spaces, then nothing."""
        self.skip(" ")
        if not self.at_end():
            raise StructuredFieldError(f"unexpected {self.peek()!r} at offset {self.pos}")

    def next_member(self, kind: str) -> bool:
        """After a List or Dictionary member: True if another follows."""
        self.skip(" \t")
        if self.at_end():
            return False
        self.expect(",")
        self.skip(" \t")
        if self.at_end():
            raise StructuredFieldError(f"trailing comma in {kind}")
        return True

    def dictionary(self) -> dict[str, Member]:
        self.skip(" ")
        members: dict[str, Member] = {}
        while not self.at_end():
            key = self.key()
            member: Member
            if self.peek() == "=":
                self.pos += 1
                member = self.member()
            else:
                member = Item(True, self.params())
            members[key] = member
            if not self.next_member("dictionary"):
                break
        return members

    def list(self) -> list[Member]:
        self.skip(" ")
        members: list[Member] = []
        while not self.at_end():
            members.append(self.member())
            if not self.next_member("list"):
                break
        return members

    def member(self) -> Member:
        return self.inner_list() if self.peek() == "(" else self.item()

    def inner_list(self) -> InnerList:
        self.expect("(")
        items: list[Item] = []
        while True:
            self.skip(" ")
            if self.peek() == ")":
                self.pos += 1
                return InnerList(tuple(items), self.params())
            items.append(self.item())
            if self.peek() not in (" ", ")"):
                raise StructuredFieldError("inner list members must be separated by spaces")

    def item(self) -> Item:
        value = self.bare_item()
        return Item(value, self.params())

    def params(self) -> dict[str, BareItem]:
        params: dict[str, BareItem] = {}
        while self.peek() == ";":
            self.pos += 1
            self.skip(" ")
            key = self.key()
            value: BareItem = True
            if self.peek() == "=":
                self.pos += 1
                value = self.bare_item()
            params[key] = value
        return params

    def key(self) -> str:
        start = self.pos
        if not self.peek() or self.peek() not in _KEY_FIRST:
            raise StructuredFieldError(
                f"a key must start with a lowercase letter or '*' at {start}")
        while self.peek() and self.peek() in _KEY_REST:
            self.pos += 1
        return self.text[start : self.pos]

    def bare_item(self) -> BareItem:
        char = self.peek()
        if not char:
            raise StructuredFieldError("missing value")
        if char == "-" or char in _DIGITS:
            return self.number()
        if char == '"':
            return self.string()
        if char == ":":
            return self.byte_sequence()
        if char == "?":
            return self.boolean()
        if char in _ALPHA or char == "*":
            return self.token()
        raise StructuredFieldError(f"unexpected {char!r} at offset {self.pos}")

    def number(self) -> int | Decimal:
        sign = 1
        if self.peek() == "-":
            self.pos += 1
            sign = -1
        if not self.peek() or self.peek() not in _DIGITS:
            raise StructuredFieldError("a number needs digits")
        digits: list[str] = []
        decimal = False
        while self.peek():
            char = self.peek()
            if char in _DIGITS:
                digits.append(char)
            elif char == "." and not decimal:
                if len(digits) > 12:
                    raise StructuredFieldError("decimal has too many integer digits")
                digits.append(char)
                decimal = True
            else:
                break
            self.pos += 1
            if len(digits) > (16 if decimal else 15):
                raise StructuredFieldError("number is too long")
        text = "".join(digits)
        if not decimal:
            return sign * int(text)
        if text.endswith(".") or len(text) - text.index(".") - 1 > 3:
            raise StructuredFieldError("decimal needs 1 to 3 fractional digits")
        return sign * Decimal(text)

    def string(self) -> str:
        self.expect('"')
        chars: list[str] = []
        while True:
            char = self.take()
            if char == "\\":
                escaped = self.take()
                if escaped not in ('"', "\\"):
                    raise StructuredFieldError("only \\\" and \\\\ may be escaped in a string")
                chars.append(escaped)
            elif char == '"':
                return "".join(chars)
            elif not " " <= char <= "~":
                raise StructuredFieldError("strings hold printable ASCII only")
            else:
                chars.append(char)

    def token(self) -> Token:
        start = self.pos
        self.pos += 1
        while self.peek() and self.peek() in _TOKEN_REST:
            self.pos += 1
        return Token(self.text[start : self.pos])

    def byte_sequence(self) -> bytes:
        self.expect(":")
        end = self.text.find(":", self.pos)
        if end < 0:
            raise StructuredFieldError("byte sequence is not closed")
        encoded = self.text[self.pos : end]
        self.pos = end + 1
        if not set(encoded) <= _BASE64:
            raise StructuredFieldError("byte sequence is not base64")
        # RFC 8941 4.2.7: parsers SHOULD NOT fail on missing padding.
        padded = encoded.rstrip("=")
        padded += "=" * (-len(padded) % 4)
        try:
            return base64.b64decode(padded, validate=True)
        except binascii.Error as exc:
            raise StructuredFieldError(f"byte sequence is not base64: {exc}") from None

    def boolean(self) -> bool:
        self.expect("?")
        char = self.take()
        if char not in ("0", "1"):
            raise StructuredFieldError("a boolean is ?0 or ?1")
        return char == "1"


def parse_dictionary(text: str) -> dict[str, Member]:
    """A Dictionary field value (combine field lines first); duplicate keys: last wins."""
    return _Parser(text).dictionary()


def parse_list(text: str) -> list[Member]:
    """A List field value (combine field lines first)."""
    return _Parser(text).list()


def parse_item(text: str) -> Item:
    """An Item field value."""
    parser = _Parser(text)
    parser.skip(" ")
    item = parser.item()
    parser.end()
    return item


def parse_inner_list(text: str) -> InnerList:
    """One Inner List with its parameters, alone (as after ``label=`` in Signature-Input)."""
    parser = _Parser(text)
    parser.skip(" ")
    inner = parser.inner_list()
    parser.end()
    return inner


# --------------------------------------------------------------------------
# Serialisation (section 4.1)


def serialize_key(key: str) -> str:
    if not key or key[0] not in _KEY_FIRST or not set(key[1:]) <= _KEY_REST:
        raise StructuredFieldError(f"{key!r} is not a structured field key")
    return key


def _serialize_string(value: str) -> str:
    if not all(" " <= char <= "~" for char in value):
        raise StructuredFieldError("strings hold printable ASCII only")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _serialize_decimal(value: Decimal) -> str:
    if not value.is_finite():
        raise StructuredFieldError("a decimal must be finite")
    rounded = value.quantize(Decimal("0.001"), rounding=ROUND_HALF_EVEN)
    whole, _, fraction = f"{abs(rounded):f}".partition(".")
    if len(whole) > 12:
        raise StructuredFieldError("decimal out of range")
    return ("-" if rounded < 0 else "") + whole + "." + (fraction.rstrip("0") or "0")


def _serialize_bare(value: BareItem) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        if abs(value) > _MAX_INTEGER:
            raise StructuredFieldError("integer out of range")
        return str(value)
    if isinstance(value, Decimal):
        return _serialize_decimal(value)
    if isinstance(value, Token):
        if not value or (value[0] not in _ALPHA and value[0] != "*") or not (
            set(value[1:]) <= _TOKEN_REST
        ):
            raise StructuredFieldError(f"{value!r} is not a token")
        return str(value)
    if isinstance(value, str):
        return _serialize_string(value)
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    raise StructuredFieldError(f"{type(value).__name__} is not a structured field value")


def serialize_params(params: Params) -> str:
    return "".join(
        ";" + serialize_key(key) + ("" if value is True else "=" + _serialize_bare(value))
        for key, value in params.items()
    )


def serialize_item(item: Item) -> str:
    return _serialize_bare(item.value) + serialize_params(item.params)


def serialize_inner_list(inner: InnerList) -> str:
    members = " ".join(serialize_item(item) for item in inner.items)
    return f"({members})" + serialize_params(inner.params)


def _serialize_member(member: Member) -> str:
    if isinstance(member, InnerList):
        return serialize_inner_list(member)
    return serialize_item(member)


def serialize_list(members: Sequence[Member]) -> str:
    """A List field value; an empty list is "" (the field is then not sent)."""
    return ", ".join(_serialize_member(member) for member in members)


def serialize_dictionary(members: Mapping[str, Member]) -> str:
    """A Dictionary field value; a member whose value is ``True`` shows its key only."""
    return ", ".join(
        serialize_key(key) + (
            serialize_params(member.params)
            if isinstance(member, Item) and member.value is True
            else "=" + _serialize_member(member))
        for key, member in members.items()
    )
