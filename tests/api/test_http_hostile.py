"""The gateway against a client that does not play by the rules, over raw sockets: bodies
whose Content-Encoding lies, clients that leave mid-request, ``Expect: 100-continue``
with a body too large to take, methods a resource does not have (issue 10, item 4).

Each answer must be a problem (``application/problem+json`` with a stable code), and
nothing a client does may be logged as an error of the gateway.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import socket
import time
import urllib.parse
import zlib
from typing import Any

import pytest

from services.ledger.core.crypto import PrivateKey
from services.ledger.core.transactions import sign_transaction
from tests.live import LiveNetwork

pytestmark = pytest.mark.functional

#: every route that reads a body: the core API, EPCIS capture, the trace domain
BODY_ROUTES = ("/v1/transactions", "/epcis/capture", "/v1/trace/certificates/verify")


def address(live: LiveNetwork) -> tuple[str, int]:
    url = urllib.parse.urlsplit(live.url)
    return url.hostname or "127.0.0.1", url.port or 80


def exchange(live: LiveNetwork, head: str, body: bytes = b"", *,
             timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` (request line and fields, without the blank line) and ``body`` on a
    fresh connection; the status, fields and body of the (final) answer."""
    with socket.create_connection(address(live), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        return read_answer(sock)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before an answer: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    length = int(fields.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, fields, rest[:length]


def post_head(path: str, length: int, *extra: str,
              content_type: str = "application/json") -> str:
    return "\r\n".join([f"POST {path} HTTP/1.1", "Host: gateway", "Connection: close",
                        f"Content-Type: {content_type}", f"Content-Length: {length}",
                        *extra])


def problem(status: int, fields: dict[str, str], body: bytes) -> dict[str, Any]:
    assert fields.get("content-type", "").startswith("application/problem+json"), \
        (status, fields, body[:300])
    answer = json.loads(body)
    assert answer["status"] == status
    for member in ("type", "title", "status", "detail", "code"):
        assert member in answer, (member, answer)
    return dict(answer)


def body_limit(live: LiveNetwork) -> int:
    return int(live.network.nodes["gateway"].settings.gateway.body_bytes_max)


def metric(live: LiveNetwork, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(live.url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = re.search(rf"^{name}(?:_total)? ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


# --- Content-Encoding ----------------------------------------------------------------------

@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize("coding", ["deflate", "gzip", "x-gzip", "gzip, deflate"])
def test_a_body_that_does_not_decode_is_a_400_problem(live: LiveNetwork, path: str,
                                                      coding: str) -> None:
    """Found by attack: garbage under deflate or gzip was a 500 (aiohttp's decoding
    error reached the catch-all)."""
    body = b"this is not compressed at all" * 3
    status, fields, answer = exchange(live, post_head(path, len(body),
                                                      f"Content-Encoding: {coding}"), body)
    assert status == 400, (path, coding, status, answer[:300])
    assert problem(status, fields, answer)["code"] == "bad_content_encoding"


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "bogus",
                                    "gzip, gzip, gzip"])
def test_an_unsupported_content_encoding_is_a_415_problem(live: LiveNetwork, path: str,
                                                          coding: str) -> None:
    """``br`` and ``zstd`` were a plain-text 400 from aiohttp's parser (no decoder
    installed), ``compress`` went to the handler undecoded."""
    body = b'{"transactions": []}'
    status, fields, answer = exchange(live, post_head(path, len(body),
                                                      f"Content-Encoding: {coding}"), body)
    assert status == 415, (path, coding, status, answer[:300])
    assert problem(status, fields, answer)["code"] == "unsupported_content_encoding"
    assert fields.get("accept-encoding") == "gzip, deflate"


@pytest.mark.parametrize("coding", ["gzip", "deflate", "identity"])
def test_a_coded_body_reaches_every_handler_decoded(live: LiveNetwork, coding: str) -> None:
    """One decoding path for every handler: the trace domain's handler reads
    ``request.read()`` and gets the decoded body like the core API's."""
    document = json.dumps({"document": {"not": "a certificate"}}).encode()
    coded = {"gzip": gzip.compress, "deflate": zlib.compress,
             "identity": lambda b: b}[coding](document)
    status, _, answer = exchange(
        live, post_head("/v1/trace/certificates/verify", len(coded),
                        f"Content-Encoding: {coding}"), coded)
    plain_status, _, plain = exchange(
        live, post_head("/v1/trace/certificates/verify", len(document)), document)
    assert status == plain_status, (status, answer[:300], plain[:300])
    assert json.loads(answer).get("code") == json.loads(plain).get("code")
    assert json.loads(answer).get("code") not in ("bad_json", "bad_content_encoding")


def test_a_decompression_bomb_is_refused_at_the_body_limit(live: LiveNetwork) -> None:
    limit = body_limit(live)
    bomb = gzip.compress(b"[" * (limit + 1024 * 1024), compresslevel=9)
    assert len(bomb) < limit
    status, fields, answer = exchange(live, post_head("/v1/transactions", len(bomb),
                                                      "Content-Encoding: gzip"), bomb)
    assert status == 413, (status, answer[:300])
    assert problem(status, fields, answer)["code"] == "body_too_large"


# --- clients that leave ------------------------------------------------------------------

def test_a_client_leaving_mid_body_is_not_an_error(live: LiveNetwork,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """Found by attack: headers, part of the body, then a closed socket was logged as an
    unhandled ConnectionResetError and a 500."""
    caplog.set_level(logging.DEBUG, logger="ecosphere.gateway")
    before = metric(live, "ecosphere_http_client_disconnects")
    # each of these reads its body (an unsigned capture is refused before the read)
    heads = [post_head("/v1/transactions", 10_000),
             post_head("/v1/trace/certificates/verify", 10_000),
             post_head("/v1/transactions", 10_000, "Content-Encoding: gzip"),
             "\r\n".join(["POST /v1/transactions HTTP/1.1", "Host: gateway",
                          "Content-Type: application/json", "Transfer-Encoding: chunked"])]
    partial = {3: b"400\r\n" + b'{"transactions": ['}
    for n, head in enumerate([*heads, post_head("/epcis/capture", 10_000)]):
        with socket.create_connection(address(live), timeout=10) as sock:
            sock.sendall(head.encode() + b"\r\n\r\n" + partial.get(n, b'{"body": {"cha'))
            time.sleep(0.2)  # the handler is reading the body
    deadline = time.monotonic() + 10
    while metric(live, "ecosphere_http_client_disconnects") < before + len(heads):
        assert time.monotonic() < deadline, "the disconnects were not counted"
        time.sleep(0.1)
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING
              and (r.name.startswith("ecosphere") or r.name.startswith("aiohttp"))]
    assert not errors, [(r.name, r.getMessage()) for r in errors]
    assert any("client went away" in r.getMessage() for r in caplog.records
               if r.name == "ecosphere.gateway" and r.levelno == logging.DEBUG)


# --- Expect: 100-continue ------------------------------------------------------------------

@pytest.mark.parametrize("path", BODY_ROUTES)
def test_expect_100_continue_with_a_body_too_large_is_413(live: LiveNetwork,
                                                          path: str) -> None:
    """Found by attack: a 1 GB Content-Length with Expect: 100-continue got 100 Continue;
    it must be refused before the client sends the body."""
    status, fields, answer = exchange(live, post_head(path, 1_000_000_000,
                                                      "Expect: 100-continue"))
    assert status == 413, (path, status, answer[:300])
    found = problem(status, fields, answer)
    assert found["code"] == "body_too_large"
    assert str(body_limit(live)) in found["detail"], found["detail"]  # the limit


def test_expect_other_than_100_continue_is_417(live: LiveNetwork) -> None:
    status, fields, answer = exchange(live, post_head("/v1/transactions", 2,
                                                      "Expect: something-else"), b"{}")
    assert status == 417, (status, answer[:300])
    assert problem(status, fields, answer)["code"] == "expectation_failed"


def test_expect_100_continue_with_a_fitting_body_continues(live: LiveNetwork) -> None:
    body = b'{"transactions": []}'
    with socket.create_connection(address(live), timeout=10) as sock:
        sock.sendall(post_head("/v1/transactions", len(body),
                               "Expect: 100-continue").encode() + b"\r\n\r\n")
        interim = sock.recv(len(b"HTTP/1.1 100 Continue\r\n\r\n"))
        assert interim.startswith(b"HTTP/1.1 100"), interim
        sock.sendall(body)
        status, fields, answer = read_answer(sock)
    assert status == 422 and problem(status, fields, answer)["code"] == "bad_payload"


# --- 405 ------------------------------------------------------------------------------

def test_every_405_lists_the_methods_of_its_path(live: LiveNetwork) -> None:
    """RFC 9110 section 15.5.6: a 405 carries Allow. Every documented path, with every
    method it does not document."""
    status, _, raw_doc = exchange(live, "GET /openapi.json HTTP/1.1\r\nHost: gateway\r\n"
                                        "Connection: close")
    assert status == 200
    doc = json.loads(raw_doc)
    checked = 0
    for template, operations in doc["paths"].items():
        path = re.sub(r"\{[^}]+\}", "x", template)
        documented = {m.upper() for m in operations}
        for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - documented):
            status, fields, answer = exchange(
                live, f"{method} {path} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n"
                      "Content-Length: 0")
            assert status == 405, (method, path, status, answer[:200])
            assert problem(status, fields, answer)["code"] == "method_not_allowed"
            allowed = {m.strip() for m in fields.get("allow", "").split(",") if m.strip()}
            assert allowed - {"HEAD"} == documented, (method, path, fields.get("allow"))
            checked += 1
    assert checked > 40


# --- batches --------------------------------------------------------------------------

def test_a_batch_refused_entirely_is_a_422_problem_with_each_result(
        live: LiveNetwork) -> None:
    """Found by attack: a batch of which nothing was taken answered 202 Accepted."""
    stranger = PrivateKey.derive("hostile batch")
    txs = [sign_transaction(stranger, chain_id=live.genesis.chain_id, kind="notary.anchor",
                            nonce=n, payload={"digest": f"{n:064x}"},
                            created_at=int(time.time() * 1000)).to_wire() for n in range(3)]
    body = json.dumps({"transactions": [*txs, {"not": "a transaction"}]}).encode()
    status, fields, answer = exchange(live, post_head("/v1/transactions", len(body)), body)
    assert status == 422, (status, answer[:300])
    found = problem(status, fields, answer)
    assert found["code"] == "batch_rejected"
    results = found["transactions"]
    assert [r["status"] for r in results] == ["rejected"] * 4
    assert [r["code"] for r in results[:3]] == ["unknown_sender"] * 3
    assert all(r["tx_hash"] for r in results[:3]) and "tx_hash" not in results[3]


def test_a_batch_partly_taken_is_still_accepted(live: LiveNetwork) -> None:
    client = live.client(live.demo_key)
    good = client.tx("notary.anchor", {"digest": f"{int(time.time() * 1e6):064x}"})
    stranger = PrivateKey.derive("hostile batch, partly")
    bad = sign_transaction(stranger, chain_id=live.genesis.chain_id, kind="notary.anchor",
                           nonce=0, payload={"digest": "0" * 64},
                           created_at=int(time.time() * 1000))
    body = json.dumps({"transactions": [good.to_wire(), bad.to_wire()]}).encode()
    status, _, answer = exchange(live, post_head("/v1/transactions", len(body)), body)
    assert status == 202, (status, answer[:300])
    results = json.loads(answer)["transactions"]
    assert [r["status"] for r in results] == ["pending", "rejected"]
