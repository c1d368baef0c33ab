"""HTTP Message Signatures (RFC 9421) for clients: sign a request with an Ed25519 key.

Reads of private data through the gateway, and EPCIS captures, are
authenticated by signing the request with the caller's Ed25519 key, the one
registered on the chain under its key id. This module builds the headers that
carry the signature; the rules a server (the gateway) and the chain (the trace
contract) check them by are in :mod:`services.ledger.core.httpsig`, which this
module uses to compute exactly the signature base they will compute. Pure
functions: no I/O and no clock (callers pass ``now``, integer seconds since
the epoch).

Client::

    headers.update(sign_request(key, method="GET", url=url, headers=headers,
                                body=None, now=int(time.time()), nonce=nonce))

``sign_request`` raises :class:`HttpSigError` (code ``bad_signature_input``) for
arguments it cannot sign.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.httpsig import (
    ALG,
    DEFAULT_TAG,
    ERROR_BEHAVIOUR_HEADER,
    MAX_NONCE_LENGTH,
    HeaderInput,
    HttpSigError,
    SignatureParams,
    header_fields,
    signature_base,
)
from services.ledger.core.structured_fields import (
    StructuredFieldError,
    is_integer,
    serialize_key,
)

__all__ = [
    "DEFAULT_LABEL",
    "ERROR_BEHAVIOUR_HEADER",
    "HttpSigError",
    "content_digest",
    "sign_request",
]

DEFAULT_LABEL = "sig1"


def content_digest(body: bytes) -> str:
    """The Content-Digest field value (RFC 9530) for ``body``: ``sha-256=:<base64>:``."""
    digest = hashlib.sha256(body).digest()
    return "sha-256=:" + base64.b64encode(digest).decode("ascii") + ":"


def sign_request(
    key: PrivateKey,
    *,
    method: str,
    url: str,
    headers: HeaderInput,
    body: bytes | None,
    now: int,
    expires_in: int = 60,
    nonce: str,
    label: str = DEFAULT_LABEL,
    tag: str = DEFAULT_TAG,
    components: Sequence[str] | None = None,
) -> dict[str, str]:
    """The headers to add to a request so that ``verify_request`` accepts it.

    Returns ``Signature-Input`` and ``Signature``, and ``Content-Digest`` when
    there is a body (``body`` not None, even empty); set them on the request,
    replacing any of the same name. ``nonce`` must be unique per key within the
    server's window: use ``secrets.token_urlsafe(16)``.

    Covered by default: ``@method``, ``@target-uri``, ``@authority``,
    ``content-digest`` (with a body), ``content-type`` and the EPCIS
    ``gs1-capture-error-behaviour`` (when present).
    ``components`` replaces that list; ``content-digest`` is still added when
    there is a body.
    """
    if not is_integer(now) or not is_integer(expires_in) or expires_in <= 0:
        raise HttpSigError("bad_signature_input", "now and expires_in must be integers, "
                                                  "expires_in positive")
    if not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_NONCE_LENGTH:
        raise HttpSigError("bad_signature_input",
                           f"nonce must be 1 to {MAX_NONCE_LENGTH} characters")
    fields = header_fields(headers)
    added: dict[str, str] = {}
    if body is not None:
        digest = content_digest(body)
        added["Content-Digest"] = digest
        fields["content-digest"] = [digest]
    if components is None:
        covered = ["@method", "@target-uri", "@authority"]
        if body is not None:
            covered.append("content-digest")
        if "content-type" in fields:
            covered.append("content-type")
        if ERROR_BEHAVIOUR_HEADER in fields:
            covered.append(ERROR_BEHAVIOUR_HEADER)
    else:
        covered = list(components)
        if body is not None and "content-digest" not in covered:
            covered.append("content-digest")
    params = SignatureParams(
        components=tuple(covered), created=now, expires=now + expires_in,
        keyid=key.key_id, nonce=nonce, alg=ALG, tag=tag,
    )
    try:
        label = serialize_key(label)
    except StructuredFieldError as exc:
        raise HttpSigError("bad_signature_input", f"label: {exc}") from None
    base = signature_base(method=method, url=url, headers=_pairs(fields), params=params)
    signature = base64.b64encode(key.sign(base)).decode("ascii")
    added["Signature-Input"] = f"{label}={params.serialize()}"
    added["Signature"] = f"{label}=:{signature}:"
    return added


def _pairs(fields: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, values in fields.items() for value in values]

