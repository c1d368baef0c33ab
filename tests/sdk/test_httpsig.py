"""Tests for HTTP Message Signatures and Content-Digest: the rules
(services/ledger/core/httpsig.py) and the client (services/sdk/httpsig.py).

The published vectors come first, taken verbatim from the RFCs (line wrapping
per RFC 8792 undone; nothing here is invented):

* RFC 9421 Appendix B.1.4 "Example Ed25519 Test Key" (``test-key-ed25519``);
* RFC 9421 Appendix B.2 ``test-request`` and B.2.6 "Signing a Request Using
  ed25519" (signature base, Signature-Input and Signature, label ``sig-b26``);
* RFC 9421 Appendix B.4 "HTTP Message Transformations" (label ``transform``);
* RFC 9530 Appendix B (and RFC 9421 B.2): the sha-256 and sha-512 digests of
  the content ``{"hello": "world"}``.

Then the ecosphere profile: round trips, every single-character tampering,
time windows, replay, keys, policy, and hypothesis fuzzing of all inputs.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.httpsig import (
    ALG,
    DEFAULT_TAG,
    MAX_REPLAY_ENTRIES,
    STATUS,
    HttpSigError,
    ReplayCache,
    SignatureParams,
    signature_base,
    verify_content_digest,
    verify_request,
)
from services.sdk.httpsig import content_digest, sign_request


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---------------------------------------------------------------------------
# RFC 9421 Appendix B.1.4: Example Ed25519 Test Key, as PEM and as JWK.

RFC_PUBLIC_PEM = (
    b"-----BEGIN PUBLIC KEY-----\n"
    b"MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n"
    b"-----END PUBLIC KEY-----\n"
)
RFC_PRIVATE_PEM = (
    b"-----BEGIN PRIVATE KEY-----\n"
    b"MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n"
    b"-----END PRIVATE KEY-----\n"
)
RFC_JWK = {
    "kty": "OKP",
    "crv": "Ed25519",
    "kid": "test-key-ed25519",
    "d": "n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU",
    "x": "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs",
}
RFC_KEYID = RFC_JWK["kid"]
RFC_PUBLIC = b64url(RFC_JWK["x"])
RFC_SEED = b64url(RFC_JWK["d"])

# RFC 9421 Appendix B.2: the test-request message. The RFC shows it as
# "POST /foo?param=Value&Pet=dog" with "Host: example.com"; it does not name
# the scheme, and no B.2.6 component depends on it.
RFC_METHOD = "POST"
RFC_URL = "https://example.com/foo?param=Value&Pet=dog"
RFC_HEADERS = [
    ("Host", "example.com"),
    ("Date", "Tue, 20 Apr 2021 02:07:55 GMT"),
    ("Content-Type", "application/json"),
    ("Content-Digest",
     "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"),
    ("Content-Length", "18"),
]
RFC_BODY = b'{"hello": "world"}'

# RFC 9421 Appendix B.2.6: Signing a Request Using ed25519.
B26_BASE = (
    b'"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    b'"@method": POST\n'
    b'"@path": /foo\n'
    b'"@authority": example.com\n'
    b'"content-type": application/json\n'
    b'"content-length": 18\n'
    b'"@signature-params": ("date" "@method" "@path" "@authority" "content-type" '
    b'"content-length");created=1618884473;keyid="test-key-ed25519"'
)
B26_PARAMS = (
    '("date" "@method" "@path" "@authority" "content-type" "content-length")'
    ';created=1618884473;keyid="test-key-ed25519"'
)
B26_SIGNATURE_INPUT = "sig-b26=" + B26_PARAMS
B26_SIGNATURE_B64 = (
    "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw=="
)
B26_SIGNATURE = f"sig-b26=:{B26_SIGNATURE_B64}:"
B26_CREATED = 1618884473

# RFC 9421 Appendix B.4: HTTP Message Transformations (test-key-ed25519).
B4_SIGNATURE_INPUT = (
    'transform=("@method" "@path" "@authority" "accept");created=1618884473'
    ';keyid="test-key-ed25519"'
)
B4_SIGNATURE = (
    "transform=:ZT1kooQsEHpZ0I1IjCqtQppOmIqlJPeo7DHR3SoMn0s5JZ1eRGS0A+vyYP9t/LXlh5QMFFQ6cpL"
    "t2m0pmj3NDA==:"
)
B4_BASE = (
    b'"@method": GET\n'
    b'"@path": /demo\n'
    b'"@authority": example.org\n'
    b'"accept": application/json, */*\n'
    b'"@signature-params": ("@method" "@path" "@authority" "accept");created=1618884473'
    b';keyid="test-key-ed25519"'
)
B4_SIGNED = [("Signature-Input", B4_SIGNATURE_INPUT), ("Signature", B4_SIGNATURE)]

# RFC 9530 Appendix B (examples; read from its source, draft-ietf-httpbis-
# digest-headers in github.com/httpwg/http-extensions): the sha-256 digest of
# the content {"hello": "world"}. The sha-512 one is the Content-Digest of
# RFC 9421's test-request above (Appendix B.2).
RFC9530_SHA256 = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
RFC9421_SHA512 = dict(RFC_HEADERS)["Content-Digest"]


def rfc_resolve(keyid: str) -> bytes | None:
    return RFC_PUBLIC if keyid == RFC_KEYID else None


def verify_foreign(method: str, url: str, headers: Any, body: bytes | None,
                   **overrides: Any) -> str:
    """verify_request with the profile relaxed to what the RFC's examples carry."""
    options: dict[str, Any] = {
        "now": B26_CREATED + 5, "resolve_key": rfc_resolve, "replay": ReplayCache(),
        "required_components": frozenset({"@method", "@path", "@authority"}),
        "tag": None, "require_nonce": False, "require_content_digest": False,
    }
    options.update(overrides)
    return verify_request(method=method, url=url, headers=headers, body=body, **options)


class TestRfcVectors:
    def test_b14_jwk_and_pem_are_the_same_key(self) -> None:
        private = serialization.load_pem_private_key(RFC_PRIVATE_PEM, password=None)
        public = serialization.load_pem_public_key(RFC_PUBLIC_PEM)
        assert isinstance(private, Ed25519PrivateKey)
        assert isinstance(public, Ed25519PublicKey)
        assert private.private_bytes_raw() == RFC_SEED
        assert public.public_bytes_raw() == RFC_PUBLIC
        assert PrivateKey.from_seed(RFC_SEED).public.raw == RFC_PUBLIC

    def test_b26_signature_base_from_the_signature_input(self) -> None:
        base = signature_base(method=RFC_METHOD, url=RFC_URL, headers=RFC_HEADERS,
                              params=B26_PARAMS)
        assert base == B26_BASE

    def test_b26_signature_base_from_signature_params(self) -> None:
        params = SignatureParams(
            components=("date", "@method", "@path", "@authority", "content-type",
                        "content-length"),
            created=B26_CREATED, keyid=RFC_KEYID,
        )
        assert params.serialize() == B26_PARAMS
        base = signature_base(method=RFC_METHOD, url=RFC_URL, headers=RFC_HEADERS,
                              params=params)
        assert base == B26_BASE

    def test_b26_ed25519_is_deterministic_so_signing_reproduces_the_rfc(self) -> None:
        signature = PrivateKey.from_seed(RFC_SEED).sign(B26_BASE)
        assert base64.b64encode(signature).decode() == B26_SIGNATURE_B64

    def test_b26_the_rfc_request_verifies(self) -> None:
        headers = [*RFC_HEADERS, ("Signature-Input", B26_SIGNATURE_INPUT),
                   ("Signature", B26_SIGNATURE)]
        assert verify_foreign(RFC_METHOD, RFC_URL, headers, RFC_BODY) == RFC_KEYID

    def test_b26_the_rfc_request_does_not_meet_the_ecosphere_profile(self) -> None:
        # No tag, no nonce, no @target-uri, content not covered by content-digest.
        headers = [*RFC_HEADERS, ("Signature-Input", B26_SIGNATURE_INPUT),
                   ("Signature", B26_SIGNATURE)]
        with pytest.raises(HttpSigError) as caught:
            verify_request(method=RFC_METHOD, url=RFC_URL, headers=headers, body=RFC_BODY,
                           now=B26_CREATED, resolve_key=rfc_resolve, replay=ReplayCache())
        assert caught.value.code == "bad_signature_input"

    def test_b26_a_changed_covered_field_fails(self) -> None:
        headers = [(n, "Tue, 20 Apr 2021 02:07:56 GMT" if n == "Date" else v)
                   for n, v in RFC_HEADERS]
        headers += [("Signature-Input", B26_SIGNATURE_INPUT), ("Signature", B26_SIGNATURE)]
        assert code_of(lambda: verify_foreign(RFC_METHOD, RFC_URL, headers, RFC_BODY)) == (
            "bad_signature")

    def test_b26_the_uncovered_sha512_content_digest_is_still_checked(self) -> None:
        headers = [*RFC_HEADERS, ("Signature-Input", B26_SIGNATURE_INPUT),
                   ("Signature", B26_SIGNATURE)]
        assert code_of(lambda: verify_foreign(RFC_METHOD, RFC_URL, headers,
                                              b'{"hello": "World"}')) == "bad_digest"

    def test_b4_signature_base_and_signature(self) -> None:
        headers = [("Host", "example.org"), ("Date", "Fri, 15 Jul 2022 14:24:55 GMT"),
                   ("Accept", "application/json"), ("Accept", "*/*")]
        params = B4_SIGNATURE_INPUT.removeprefix("transform=")
        base = signature_base(method="GET", url="https://example.org/demo?name1=Value1&Name2=value2",
                              headers=headers, params=params)
        assert base == B4_BASE
        signature = PrivateKey.from_seed(RFC_SEED).sign(base)
        assert f"transform=:{base64.b64encode(signature).decode()}:" == B4_SIGNATURE

    @pytest.mark.parametrize(("method", "url", "headers", "valid"), [
        ("GET", "https://example.org/demo?name1=Value1&Name2=value2",
         [("Host", "example.org"), ("Date", "Fri, 15 Jul 2022 14:24:55 GMT"),
          ("Accept", "application/json"), ("Accept", "*/*")], True),
        ("GET", "https://example.org/demo?name1=Value1&Name2=value2&param=added",
         [("Host", "example.org"), ("Date", "Fri, 15 Jul 2022 14:24:55 GMT"),
          ("Accept", "application/json"), ("Accept", "*/*"),
          ("Accept-Language", "en-US,en;q=0.5")], True),
        ("GET", "https://example.org/demo?name1=Value1&Name2=value2",
         [("Host", "example.org"), ("Referer", "https://developer.example.org/demo"),
          ("Accept", "application/json, */*")], True),
        ("GET", "https://example.org/demo?name1=Value1&Name2=value2",
         [("Accept", "application/json"), ("Accept", "*/*"),
          ("Date", "Fri, 15 Jul 2022 14:24:55 GMT"), ("Host", "example.org")], True),
        ("POST", "https://example.com/demo?name1=Value1&Name2=value2",
         [("Host", "example.com"), ("Date", "Fri, 15 Jul 2022 14:24:55 GMT"),
          ("Accept", "application/json"), ("Accept", "*/*")], False),
        ("GET", "https://example.org/demo?name1=Value1&Name2=value2",
         [("Host", "example.org"), ("Date", "Fri, 15 Jul 2022 14:24:55 GMT"),
          ("Accept", "*/*"), ("Accept", "application/json")], False),
    ], ids=["original", "added-field-and-query", "collapsed-accept", "reordered-fields",
            "changed-method-and-authority", "swapped-accept-lines"])
    def test_b4_transformations(self, method: str, url: str, headers: list[tuple[str, str]],
                                valid: bool) -> None:
        def run() -> str:
            return verify_foreign(method, url, headers + B4_SIGNED, None)

        if valid:
            assert run() == RFC_KEYID
        else:
            assert code_of(run) == "bad_signature"

    def test_rfc9530_sha256_content_digest(self) -> None:
        assert content_digest(RFC_BODY) == RFC9530_SHA256
        verify_content_digest(RFC9530_SHA256, RFC_BODY)

    def test_rfc9421_sha512_content_digest_and_both_together(self) -> None:
        verify_content_digest(RFC9421_SHA512, RFC_BODY)
        verify_content_digest(f"{RFC9530_SHA256}, {RFC9421_SHA512}", RFC_BODY)

    @pytest.mark.parametrize("value", [
        RFC9530_SHA256.replace("X48", "Y48"),
        f"{RFC9530_SHA256}, sha-512=:AAAA:",
        "md5=:AAAA:",
        "sha-256=AAAA",
        "sha-256=:not base64!:",
        "",
        "sha-256",
    ])
    def test_content_digest_mismatch_or_malformed(self, value: str) -> None:
        assert code_of(lambda: verify_content_digest(value, RFC_BODY)) == "bad_digest"


# ---------------------------------------------------------------------------
# The ecosphere profile

KEY = PrivateKey.derive("httpsig/alice")
OTHER = PrivateKey.derive("httpsig/mallory")
KEYS = {KEY.key_id: KEY.public.raw, OTHER.key_id: OTHER.public.raw}
NOW = 1_767_225_600
GET_URL = "https://gateway.example:8443/v1/private/records/42?fields=a,b"
POST_URL = "https://gateway.example:8443/v1/private/query"
BODY = b'{"owner": "org-3", "limit": 10}'
JSON = {"Content-Type": "application/json", "Accept": "application/json"}


def code_of(call: Callable[[], object]) -> str:
    with pytest.raises(HttpSigError) as caught:
        call()
    return caught.value.code


def signed(method: str, url: str, headers: Mapping[str, str], body: bytes | None, *,
           key: PrivateKey = KEY, nonce: str = "n-0001", **options: Any) -> dict[str, str]:
    options.setdefault("now", NOW)
    added = sign_request(key, method=method, url=url, headers=headers, body=body,
                         nonce=nonce, **options)
    return {**headers, **added}


def verify(method: str, url: str, headers: Any, body: bytes | None, **options: Any) -> str:
    options.setdefault("now", NOW)
    options.setdefault("resolve_key", KEYS.get)
    options.setdefault("replay", ReplayCache())
    return verify_request(method=method, url=url, headers=headers, body=body, **options)


def refusal(method: str, url: str, headers: Any, body: bytes | None, **options: Any) -> str:
    """The code verify_request refuses this request with."""
    return code_of(lambda: verify(method, url, headers, body, **options))


def with_header(headers: Mapping[str, str], name: str, value: str | None) -> dict[str, str]:
    out = {k: v for k, v in headers.items() if k.lower() != name.lower()}
    if value is not None:
        out[name] = value
    return out


def mutations(text: str) -> Iterator[str]:
    """Every distinct single-character substitution and deletion of ``text``."""
    seen = {text}
    for i, char in enumerate(text):
        for variant in (text[:i] + ("Y" if char in "Xx" else "X") + text[i + 1:],
                        text[:i] + text[i + 1:]):
            if variant not in seen:
                seen.add(variant)
                yield variant


def digests(value: str, body: bytes) -> bool:
    try:
        verify_content_digest(value, body)
    except HttpSigError:
        return False
    return True


def unsigned(params: SignatureParams, label: str = "sig1") -> dict[str, str]:
    """Signature fields over ``params`` with a signature that cannot verify."""
    return {"Accept": "*/*", "Signature-Input": f"{label}={params.serialize()}",
            "Signature": f"{label}=:{base64.b64encode(bytes(64)).decode()}:"}


def craft(params: SignatureParams, *, method: str = "GET", url: str = GET_URL,
          headers: Mapping[str, str] | None = None, key: PrivateKey = KEY,
          label: str = "sig1") -> dict[str, str]:
    """A request signed over arbitrary parameters, bypassing sign_request's choices."""
    headers = dict(headers or {})
    base = signature_base(method=method, url=url, headers=headers, params=params)
    signature = base64.b64encode(key.sign(base)).decode()
    return {**headers, "Signature-Input": f"{label}={params.serialize()}",
            "Signature": f"{label}=:{signature}:"}


def ecosphere(components: tuple[str, ...] = ("@method", "@target-uri"), **fields: Any
              ) -> SignatureParams:
    values: dict[str, Any] = {"created": NOW, "expires": NOW + 60, "keyid": KEY.key_id,
                              "nonce": "n-crafted", "alg": ALG, "tag": DEFAULT_TAG}
    values.update(fields)
    return SignatureParams(components=components, **values)


class TestRoundTrip:
    def test_get(self) -> None:
        headers = signed("GET", GET_URL, {"Accept": "application/json"}, None)
        assert set(headers) == {"Accept", "Signature-Input", "Signature"}
        assert headers["Signature-Input"] == (
            f'sig1=("@method" "@target-uri" "@authority");created={NOW};expires={NOW + 60}'
            f';keyid="{KEY.key_id}";nonce="n-0001";alg="ed25519";tag="ecosphere"'
        )
        assert verify("GET", GET_URL, headers, b"") == KEY.key_id
        assert verify("GET", GET_URL, headers, None) == KEY.key_id

    def test_post_with_body(self) -> None:
        headers = signed("POST", POST_URL, JSON, BODY)
        assert headers["Content-Digest"] == content_digest(BODY)
        assert '("@method" "@target-uri" "@authority" "content-digest" "content-type")' in (
            headers["Signature-Input"])
        assert verify("POST", POST_URL, headers, BODY) == KEY.key_id

    def test_empty_body_is_bound_too(self) -> None:
        headers = signed("POST", POST_URL, {}, b"")
        assert headers["Content-Digest"] == content_digest(b"")
        assert verify("POST", POST_URL, headers, b"") == KEY.key_id
        assert code_of(lambda: verify("POST", POST_URL, headers, b"x")) == "bad_digest"

    def test_the_signature_base_is_what_was_signed(self) -> None:
        headers = signed("POST", POST_URL, JSON, BODY)
        params = headers["Signature-Input"].removeprefix("sig1=")
        base = signature_base(method="POST", url=POST_URL, headers=headers, params=params)
        assert base.decode().splitlines() == [
            '"@method": POST',
            f'"@target-uri": {POST_URL}',
            '"@authority": gateway.example:8443',
            f'"content-digest": {content_digest(BODY)}',
            '"content-type": application/json',
            f'"@signature-params": {params}',
        ]

    def test_header_names_are_case_insensitive(self) -> None:
        headers = signed("POST", POST_URL, {"CONTENT-type": "application/json"}, BODY)
        shouted = {name.upper(): value for name, value in headers.items()}
        assert verify("POST", POST_URL, shouted, BODY) == KEY.key_id
        lowered = [(name.lower(), value) for name, value in headers.items()]
        assert verify("POST", POST_URL, lowered, BODY) == KEY.key_id

    def test_only_ascii_header_names_are_case_folded(self) -> None:
        headers = signed("POST", POST_URL, {"X-Kind": "a"}, BODY,
                         components=["@method", "@target-uri", "x-kind"])
        kelvin = {("X-\u212aind" if name == "X-Kind" else name): value
                  for name, value in headers.items()}
        assert refusal("POST", POST_URL, kelvin, BODY) == "bad_signature"

    def test_safe_transformations_keep_the_signature(self) -> None:
        url = "https://gateway.example/v1/private/records"
        headers = signed("POST", url, {"Content-Type": "application/json"}, BODY)
        headers = with_header(headers, "content-type", "  application/json\t")
        headers["X-Added-By-Proxy"] = "yes"
        for variant in ("HTTPS://Gateway.EXAMPLE:443/v1/private/records",
                        "https://gateway.example/v1/private/records#fragment"):
            assert verify("POST", variant, headers, BODY) == KEY.key_id

    def test_multiple_field_lines_are_combined(self) -> None:
        url = "https://gateway.example/"
        params = ecosphere(("@method", "@target-uri", "x-list"))
        headers = craft(params, url=url, headers={"x-list": "a, b"})
        lines = [(n, v) for n, v in headers.items() if n != "x-list"]
        assert verify("GET", url, [*lines, ("X-List", "a"), ("x-list", " b ")], None) == (
            KEY.key_id)
        assert verify("GET", url, [*lines, ("X-List", "a,\r\n b")], None) == KEY.key_id
        assert code_of(lambda: verify("GET", url, [*lines, ("X-List", "b"), ("x-list", "a")],
                                      None)) == "bad_signature"

    @pytest.mark.parametrize("folded", ["a \r\n b", "a\t \r\n\t b", "a\r\n b", "a \n b"])
    def test_obsolete_line_folding_with_the_whitespace_before_it(self, folded: str) -> None:
        """Regression (found by tests/sdk/test_httpsig_interop.py): obs-fold is
        OWS CRLF RWS (RFC 9112 section 5.2), so "a \\r\\n b" is "a b", not "a  b"."""
        url = "https://gateway.example/"
        params = ecosphere(("@method", "@target-uri", "x-folded"))
        headers = craft(params, url=url, headers={"x-folded": "a b"})
        assert verify("GET", url, with_header(headers, "x-folded", folded), None) == KEY.key_id
        base = signature_base(method="GET", url=url, headers={"X-Folded": folded},
                              params=params)
        assert b'"x-folded": a b\n' in base

    def test_a_zero_padded_default_port_is_dropped(self) -> None:
        """Regression (found by tests/sdk/test_httpsig_interop.py): a port is a decimal
        number, so ":0443" is https's default port and leaves @authority (RFC 9421 2.2.3)."""
        params = ecosphere(("@authority", "@target-uri"))
        for url, authority in [("https://gateway.example:0443/x", "gateway.example"),
                               ("http://gateway.example:00080/x", "gateway.example"),
                               ("https://gateway.example:08443/x", "gateway.example:08443"),
                               ("https://gateway.example:0/x", "gateway.example:0")]:
            base = signature_base(method="GET", url=url, headers={}, params=params)
            assert base.decode().splitlines()[:2] == [
                f'"@authority": {authority}', f'"@target-uri": https://{authority}/x'
                if url.startswith("https") else f'"@target-uri": http://{authority}/x']

    def test_a_custom_component_list(self) -> None:
        headers = signed("POST", POST_URL, {"X-Request-Id": "r-7"}, BODY,
                         components=["@method", "@target-uri", "@scheme", "@path", "@query",
                                     "x-request-id"])
        assert '"x-request-id" "content-digest")' in headers["Signature-Input"]
        assert verify("POST", POST_URL, headers, BODY) == KEY.key_id
        tampered = with_header(headers, "x-request-id", "r-8")
        assert code_of(lambda: verify("POST", POST_URL, tampered, BODY)) == "bad_signature"

    def test_other_signatures_with_other_tags_are_ignored(self) -> None:
        ours = signed("GET", GET_URL, {}, None)
        theirs = signed("GET", GET_URL, {}, None, key=OTHER, label="proxy", tag="edge")
        merged = [(n, v) for n, v in ours.items()] + [
            ("Signature-Input", theirs["Signature-Input"]), ("Signature", theirs["Signature"])]
        assert verify("GET", GET_URL, merged, None) == KEY.key_id
        assert verify("GET", GET_URL, merged, None, tag="edge") == OTHER.key_id
        assert verify("GET", GET_URL, merged, None, tag=None, label="proxy") == OTHER.key_id
        assert code_of(lambda: verify("GET", GET_URL, merged, None, tag=None)) == (
            "bad_signature_input")


class TestTampering:
    """Every single-character change of a signed part fails, with the right code."""

    def test_method(self) -> None:
        headers = signed("GET", GET_URL, {}, None)
        for method in mutations("GET"):
            assert refusal(method, GET_URL, headers, None) == (
                "bad_signature"), method

    def test_url(self) -> None:
        headers = signed("GET", GET_URL, {}, None)
        for url in mutations(GET_URL):
            assert refusal("GET", url, headers, None) == (
                "bad_signature"), url

    def test_covered_header(self) -> None:
        headers = signed("POST", POST_URL, JSON, BODY)
        for value in mutations(JSON["Content-Type"]):
            tampered = with_header(headers, "content-type", value)
            assert refusal("POST", POST_URL, tampered, BODY) == (
                "bad_signature"), value

    def test_uncovered_header_does_not_matter(self) -> None:
        headers = signed("POST", POST_URL, JSON, BODY)
        for value in mutations(JSON["Accept"]):
            changed = with_header(headers, "accept", value)
            assert verify("POST", POST_URL, changed, BODY) == KEY.key_id

    def test_body(self) -> None:
        headers = signed("POST", POST_URL, JSON, BODY)
        for body in mutations(BODY.decode()):
            assert refusal("POST", POST_URL, headers, body.encode()) == (
                "bad_digest"), body
        assert code_of(lambda: verify("POST", POST_URL, headers, b"")) == "bad_digest"

    def test_content_digest_header(self) -> None:
        headers = signed("POST", POST_URL, JSON, BODY)
        for value in mutations(headers["Content-Digest"]):
            tampered = with_header(headers, "content-digest", value)
            # Dropping the "=" padding still digests the body (RFC 8941 4.2.7:
            # parsers tolerate it), but then the covered field value has changed.
            expected = "bad_signature" if digests(value, BODY) else "bad_digest"
            assert refusal("POST", POST_URL, tampered, BODY) == (
                expected), value

    def test_signature_bytes(self) -> None:
        headers = signed("POST", POST_URL, JSON, BODY)
        signature = base64.b64decode(headers["Signature"].removeprefix("sig1=:")[:-1])
        assert len(signature) == 64
        for i in range(len(signature)):
            for bit in (0x01, 0x80):
                flipped = bytearray(signature)
                flipped[i] ^= bit
                value = f"sig1=:{base64.b64encode(bytes(flipped)).decode()}:"
                tampered = with_header(headers, "signature", value)
                assert refusal("POST", POST_URL, tampered, BODY) == (
                    "bad_signature"), (i, bit)

    @pytest.mark.parametrize("value", [
        "sig1=:AAAA:", "sig1=::", "sig1=:" + "A" * 88 + ":", "sig1=:" + "A" * 128 + ":",
    ])
    def test_signature_of_the_wrong_length(self, value: str) -> None:
        headers = with_header(signed("GET", GET_URL, {}, None), "signature", value)
        assert code_of(lambda: verify("GET", GET_URL, headers, None)) == "bad_signature"

    def test_signature_input_changes_never_verify(self) -> None:
        headers = signed("POST", POST_URL, JSON, BODY)
        expected = {"bad_signature_input", "bad_signature", "unknown_key", "expired"}
        for value in mutations(headers["Signature-Input"]):
            tampered = with_header(headers, "signature-input", value)
            assert refusal("POST", POST_URL, tampered, BODY) in expected, (
                value)

    def test_specific_signature_input_changes(self) -> None:
        headers = signed("GET", GET_URL, {}, None)
        text = headers["Signature-Input"]

        def run(new: str) -> str:
            tampered = with_header(headers, "signature-input", new)
            return code_of(lambda: verify("GET", GET_URL, tampered, None))

        assert run(text.replace(KEY.key_id, OTHER.key_id)) == "bad_signature"
        assert run(text.replace(KEY.key_id, "f" * 32)) == "unknown_key"
        assert run(text.replace("n-0001", "n-0002")) == "bad_signature"
        assert run(text.replace(f"created={NOW}", f"created={NOW - 1}")) == "bad_signature"
        assert run(text.replace('"@target-uri" ', "")) == "bad_signature_input"
        assert run(text.replace("sig1=", "sig2=")) == "bad_signature_input"
        assert run(text.replace('tag="ecosphere"', 'tag="other"')) == "bad_signature_input"

    def test_removed_covered_headers(self) -> None:
        headers = signed("POST", POST_URL, JSON, BODY)
        no_type = with_header(headers, "content-type", None)
        assert code_of(lambda: verify("POST", POST_URL, no_type, BODY)) == "bad_signature"
        no_digest = with_header(headers, "content-digest", None)
        assert code_of(lambda: verify("POST", POST_URL, no_digest, BODY)) == "bad_signature"


class TestTime:
    def test_within_the_window(self) -> None:
        headers = signed("GET", GET_URL, {}, None)
        for now in (NOW - 30, NOW, NOW + 60):
            assert verify("GET", GET_URL, headers, None, now=now) == KEY.key_id

    def test_past_expires(self) -> None:
        headers = signed("GET", GET_URL, {}, None)
        assert code_of(lambda: verify("GET", GET_URL, headers, None, now=NOW + 61)) == "expired"

    def test_created_too_long_ago(self) -> None:
        headers = signed("GET", GET_URL, {}, None, expires_in=10_000)
        assert verify("GET", GET_URL, headers, None, now=NOW + 300) == KEY.key_id
        assert code_of(lambda: verify("GET", GET_URL, headers, None, now=NOW + 301)) == "expired"
        assert code_of(lambda: verify("GET", GET_URL, headers, None, now=NOW + 101,
                                      max_age_s=100)) == "expired"

    def test_created_in_the_future(self) -> None:
        headers = signed("GET", GET_URL, {}, None, now=NOW + 31)
        assert code_of(lambda: verify("GET", GET_URL, headers, None)) == "expired"
        headers = signed("GET", GET_URL, {}, None, now=NOW + 30)
        assert verify("GET", GET_URL, headers, None) == KEY.key_id
        assert code_of(lambda: verify("GET", GET_URL, headers, None, skew_s=5)) == "expired"

    def test_without_expires(self) -> None:
        headers = craft(ecosphere(expires=None))
        assert verify("GET", GET_URL, headers, None, now=NOW + 300) == KEY.key_id
        assert code_of(lambda: verify("GET", GET_URL, headers, None, now=NOW + 301)) == "expired"


class TestReplay:
    def test_same_nonce_is_refused_within_the_window(self) -> None:
        cache = ReplayCache()
        headers = signed("GET", GET_URL, {}, None)
        assert verify("GET", GET_URL, headers, None, replay=cache) == KEY.key_id
        assert code_of(lambda: verify("GET", GET_URL, headers, None, replay=cache,
                                      now=NOW + 59)) == "replayed"
        fresh = signed("GET", GET_URL, {}, None, nonce="n-0002")
        assert verify("GET", GET_URL, fresh, None, replay=cache) == KEY.key_id

    def test_same_nonce_with_another_key_is_distinct(self) -> None:
        cache = ReplayCache()
        assert verify("GET", GET_URL, signed("GET", GET_URL, {}, None), None,
                      replay=cache) == KEY.key_id
        other = signed("GET", GET_URL, {}, None, key=OTHER)
        assert verify("GET", GET_URL, other, None, replay=cache) == OTHER.key_id

    def test_a_forgery_does_not_burn_the_nonce(self) -> None:
        cache = ReplayCache()
        headers = signed("POST", POST_URL, JSON, BODY)
        forged = with_header(headers, "content-type", "text/plain")
        assert code_of(lambda: verify("POST", POST_URL, forged, BODY, replay=cache)) == (
            "bad_signature")
        assert verify("POST", POST_URL, headers, BODY, replay=cache) == KEY.key_id

    def test_the_cache_remembers_until_the_signature_dies(self) -> None:
        cache = ReplayCache()
        headers = signed("GET", GET_URL, {}, None, expires_in=10)
        verify("GET", GET_URL, headers, None, replay=cache)
        assert len(cache) == 1
        assert cache.seen(KEY.key_id, "n-0001", until=NOW + 10, now=NOW + 10)
        assert not cache.seen(KEY.key_id, "other", until=NOW + 100, now=NOW + 11)
        assert len(cache) == 1  # the first pair was forgotten once expired


class TestReplayCache:
    def test_seen_records_and_answers(self) -> None:
        cache = ReplayCache(max_entries=10)
        assert not cache.seen("k", "a", until=100, now=0)
        assert cache.seen("k", "a", until=100, now=100)
        assert not cache.seen("k2", "a", until=100, now=0)
        assert not cache.seen("k", "a", until=300, now=101)  # both pairs expired at 101
        assert len(cache) == 1

    def test_bounded_evicting_the_oldest(self) -> None:
        cache = ReplayCache(max_entries=3)
        for nonce in "abcd":
            assert not cache.seen("k", nonce, until=1_000, now=0)
        assert len(cache) == 3
        assert cache.evictions == 1
        assert not cache.seen("k", "a", until=1_000, now=0)  # "a" was evicted
        assert cache.seen("k", "d", until=1_000, now=0)

    def test_expired_entries_go_first(self) -> None:
        cache = ReplayCache(max_entries=3)
        cache.seen("k", "old", until=5, now=0)
        cache.seen("k", "b", until=1_000, now=0)
        cache.seen("k", "c", until=1_000, now=0)
        cache.seen("k", "d", until=1_000, now=10)  # "old" expired: nothing live evicted
        assert cache.evictions == 0
        assert cache.seen("k", "b", until=1_000, now=10)
        assert cache.seen("k", "c", until=1_000, now=10)

    def test_memory_stays_bounded(self) -> None:
        cache = ReplayCache(max_entries=50)
        for i in range(2_000):
            cache.seen("k", str(i), until=10**9, now=i)
        assert len(cache) == 50
        assert len(cache._expiry) <= 2 * 50 + 1

    def test_defaults(self) -> None:
        assert ReplayCache().max_entries == MAX_REPLAY_ENTRIES
        with pytest.raises(ValueError):
            ReplayCache(max_entries=0)


class TestPolicy:
    def test_unknown_key(self) -> None:
        headers = signed("GET", GET_URL, {}, None)
        assert code_of(lambda: verify("GET", GET_URL, headers, None,
                                      resolve_key=lambda _: None)) == "unknown_key"

    def test_wrong_key_material(self) -> None:
        headers = signed("GET", GET_URL, {}, None)
        assert code_of(lambda: verify("GET", GET_URL, headers, None,
                                      resolve_key=lambda _: OTHER.public.raw)) == "bad_signature"
        assert code_of(lambda: verify("GET", GET_URL, headers, None,
                                      resolve_key=lambda _: b"short")) == "bad_signature"

    def test_body_without_covered_content_digest(self) -> None:
        headers = signed("POST", POST_URL, JSON, None)
        assert code_of(lambda: verify("POST", POST_URL, headers, BODY)) == "bad_signature_input"
        assert verify("POST", POST_URL, headers, BODY,
                      require_content_digest=False) == KEY.key_id

    def test_required_components(self) -> None:
        headers = signed("GET", GET_URL, {}, None, components=["@method", "@path"])
        assert code_of(lambda: verify("GET", GET_URL, headers, None)) == "bad_signature_input"
        assert verify("GET", GET_URL, headers, None,
                      required_components=frozenset({"@path"})) == KEY.key_id

    @pytest.mark.parametrize("params", [
        ecosphere(nonce=None),
        ecosphere(created=None),
        ecosphere(keyid=None),
        ecosphere(alg="rsa-pss-sha512"),
        ecosphere(alg="Ed25519"),
        ecosphere(tag=None),
        ecosphere(expires=NOW - 1),
        ecosphere(nonce=""),
        ecosphere(keyid="k" * 300),
        ecosphere(("@method", "@method", "@target-uri")),
        ecosphere(("@method", "@target-uri", "@request-target")),
        ecosphere(("@method", "@target-uri", "@status")),
        ecosphere(("@method", "@target-uri", "Accept")),
    ], ids=["no-nonce", "no-created", "no-keyid", "rsa", "alg-case", "no-tag",
            "expires-before-created", "empty-nonce", "long-keyid", "duplicate-component",
            "request-target", "status", "uppercase-field"])
    def test_refused_parameters(self, params: SignatureParams) -> None:
        # Refused as malformed before any key is looked up or signature checked.
        headers = unsigned(params)
        assert code_of(lambda: verify("GET", GET_URL, headers, None)) == "bad_signature_input"

    def test_alg_may_be_omitted(self) -> None:
        headers = craft(ecosphere(alg=None))
        assert verify("GET", GET_URL, headers, None) == KEY.key_id

    @pytest.mark.parametrize(("old", "new"), [
        (f'keyid="{KEY.key_id}"', f"keyid=k{KEY.key_id}"),
        (f"created={NOW}", f'created="{NOW}"'),
        (f"created={NOW}", f"created={NOW}.5"),
        ('nonce="n-0001"', "nonce=:AAAA:"),
        ('alg="ed25519"', "alg=ed25519"),
        ('tag="ecosphere"', "tag=ecosphere"),
        ('"@method"', '"@method";req'),
        ('"@method"', '"@method";sf'),
        ('"@method"', "@method"),
        ("sig1=(", "sig1=?1;x=("),
    ])
    def test_refused_structured_values(self, old: str, new: str) -> None:
        headers = signed("GET", GET_URL, {}, None)
        assert old in headers["Signature-Input"]
        tampered = with_header(headers, "signature-input",
                               headers["Signature-Input"].replace(old, new, 1))
        assert code_of(lambda: verify("GET", GET_URL, tampered, None)) == "bad_signature_input"

    def test_non_canonical_but_valid_structured_fields_are_reserialised(self) -> None:
        headers = signed("GET", GET_URL, {}, None)
        loose = (headers["Signature-Input"].replace("(", "(  ").replace(")", " )")
                 .replace(";", "; "))
        assert verify("GET", GET_URL, with_header(headers, "signature-input", loose),
                      None) == KEY.key_id

    @pytest.mark.parametrize("drop", [["Signature"], ["Signature-Input"],
                                      ["Signature", "Signature-Input"]])
    def test_missing_signature(self, drop: list[str]) -> None:
        headers = signed("GET", GET_URL, {}, None)
        for name in drop:
            headers = with_header(headers, name, None)
        assert code_of(lambda: verify("GET", GET_URL, headers, None)) == "missing_signature"

    def test_empty_signature_fields(self) -> None:
        headers = {"Signature": " ", "Signature-Input": ""}
        assert code_of(lambda: verify("GET", GET_URL, headers, None)) == "missing_signature"

    def test_signature_label_without_value(self) -> None:
        headers = signed("GET", GET_URL, {}, None)
        tampered = with_header(headers, "signature",
                               headers["Signature"].replace("sig1=", "other="))
        assert code_of(lambda: verify("GET", GET_URL, tampered, None)) == "bad_signature_input"

    @pytest.mark.parametrize("value", ["sig1=:AAAA", "sig1=AAAA", "sig1=(:AAAA:)",
                                       "sig1=:AA!A:", "sig1=:A:", "SIG1=:AAAA:"])
    def test_malformed_signature_field(self, value: str) -> None:
        headers = with_header(signed("GET", GET_URL, {}, None), "signature", value)
        assert code_of(lambda: verify("GET", GET_URL, headers, None)) == "bad_signature_input"

    def test_two_signatures_with_our_tag_are_ambiguous(self) -> None:
        one = signed("GET", GET_URL, {}, None)
        two = signed("GET", GET_URL, {}, None, label="sig2", nonce="n-0002")
        merged = {"Signature-Input": f"{one['Signature-Input']}, {two['Signature-Input']}",
                  "Signature": f"{one['Signature']}, {two['Signature']}"}
        assert code_of(lambda: verify("GET", GET_URL, merged, None)) == "bad_signature_input"
        assert verify("GET", GET_URL, merged, None, label="sig2") == KEY.key_id

    def test_covered_values_that_cannot_be_signed(self) -> None:
        with pytest.raises(HttpSigError) as caught:
            sign_request(KEY, method="GET", url=GET_URL, headers={"Content-Type": "tëxt"},
                         body=None, now=NOW, nonce="n")
        assert caught.value.code == "bad_signature_input"
        headers = signed("POST", POST_URL, JSON, BODY)
        for value in ("application/jsön", "application/json\nX: y", "application/\x00json"):
            tampered = with_header(headers, "content-type", value)
            assert refusal("POST", POST_URL, tampered, BODY) == (
                "bad_signature")

    @pytest.mark.parametrize("options", [
        {"nonce": ""}, {"nonce": "nönce"}, {"nonce": "n" * 300}, {"label": "Sig"},
        {"label": ""}, {"tag": 'a"\n'}, {"expires_in": 0}, {"url": "/relative"},
        {"url": "https://user@host/"}, {"method": "GE T"}, {"headers": {"a": 1}},
        {"headers": [("a",)]}, {"components": ["@nope"]}, {"components": ["Upper"]},
    ])
    def test_sign_request_refuses_bad_arguments(self, options: dict[str, Any]) -> None:
        arguments: dict[str, Any] = {"method": "GET", "url": GET_URL, "headers": {},
                                     "body": None, "now": NOW, "nonce": "n"}
        arguments.update(options)
        with pytest.raises(HttpSigError) as caught:
            sign_request(KEY, **arguments)
        assert caught.value.code == "bad_signature_input"


class TestErrors:
    def test_every_code_has_a_4xx_status(self) -> None:
        assert set(STATUS) == {"missing_signature", "bad_signature_input", "bad_digest",
                               "unknown_key", "expired", "replayed", "bad_signature"}
        assert {code for code, status in STATUS.items() if status == 400} == {
            "bad_signature_input", "bad_digest"}
        assert all(status in (400, 401) for status in STATUS.values())

    def test_error_carries_code_message_and_status(self) -> None:
        error = HttpSigError("expired", "too old")
        assert (error.code, error.message, error.status) == ("expired", "too old", 401)
        assert str(error) == "expired: too old"
        with pytest.raises(ValueError):
            HttpSigError("nonsense", "x")


# ---------------------------------------------------------------------------
# Fuzzing: malformed input only ever gives HttpSigError, or success.

FIELD_NAMES = st.sampled_from(["Signature", "Signature-Input", "signature", "Content-Digest",
                               "Content-Type", "Accept", "X-Any"])
TEXT = st.text(max_size=200)
SF_TEXT = st.text(alphabet=st.sampled_from(list('sig1=()"@;:,*?- \tabcdefxyz0189AZ+/\\.\n')),
                  max_size=200)
VALID = signed("POST", POST_URL, JSON, BODY)


def verify_or_refuse(method: Any, url: Any, headers: Any, body: Any) -> None:
    try:
        assert verify(method, url, headers, body) == KEY.key_id
    except HttpSigError as error:
        assert error.code in STATUS


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(FIELD_NAMES, st.one_of(TEXT, SF_TEXT), max_size=6))
def test_fuzz_random_header_values(headers: dict[str, str]) -> None:
    verify_or_refuse("POST", POST_URL, headers, BODY)


@settings(max_examples=300, deadline=None)
@given(FIELD_NAMES, st.one_of(TEXT, SF_TEXT))
def test_fuzz_one_header_of_a_valid_request(name: str, value: str) -> None:
    verify_or_refuse("POST", POST_URL, with_header(VALID, name, value), BODY)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["Signature-Input", "Signature", "Content-Digest"]),
       st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=3),
       st.characters())
def test_fuzz_edits_of_valid_structured_fields(name: str, at: int, cut: int,
                                               char: str) -> None:
    value = VALID[name]
    at %= len(value) + 1
    verify_or_refuse("POST", POST_URL, with_header(VALID, name, value[:at] + char +
                                                   value[at + cut:]), BODY)


@settings(max_examples=300, deadline=None)
@given(TEXT, TEXT, st.lists(st.tuples(TEXT, TEXT), max_size=5), st.one_of(st.none(),
                                                                            st.binary()))
def test_fuzz_method_url_headers_and_body(method: str, url: str,
                                         extra: list[tuple[str, str]],
                                         body: bytes | None) -> None:
    verify_or_refuse(method, url, [*VALID.items(), *extra], body)


@settings(max_examples=100, deadline=None)
@given(st.from_type(object))
def test_fuzz_header_containers_of_any_shape(headers: object) -> None:
    verify_or_refuse("GET", GET_URL, headers, None)
