"""Endpoints declared once, served by aiohttp and described by OpenAPI 3.1.

Every route is an :class:`Endpoint`: method, path, handler, the pydantic
models of its query, body and responses, and whether it needs an RFC 9421
signature. :func:`openapi_document` turns the list into an OpenAPI 3.1
document whose schemas come from the same models (``model_json_schema``), so
the document cannot drift from the code. ``/docs`` is a small, self-contained
page that renders the document (no CDN: it works offline).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.gateway.models import IDEMPOTENCY_KEY, ProblemDetails

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"\{([a-z_]+)(?::[^}]*)?\}")
ProblemDoc = tuple[type[BaseModel], str]

# RFC 9421 fields as the SDK writes them under the ecosphere profile
# (services.ledger.core.httpsig): one signature, tagged "ecosphere", covering @method and
# @target-uri (and content-digest when there is a body), with created, keyid and nonce.
_SF_LABEL = r"[a-z*][a-z0-9_.*-]{0,63}"
_SIGNATURE_PARAMS = (r';created=[0-9]{1,15}(;expires=[0-9]{1,15})?;keyid="[0-9a-f]{32}"'
                     r';nonce="[A-Za-z0-9_-]{1,256}"(;alg="ed25519")?;tag="ecosphere"')
SIGNATURE = rf"^{_SF_LABEL}=:[A-Za-z0-9+/]{{86}}==:$"


def signature_input_pattern(*, with_body: bool) -> str:
    """The Signature-Input the SDK sends (a request with a body covers content-digest)."""
    digest = ' "content-digest"' if with_body else '( "content-digest")?'
    return (rf'^{_SF_LABEL}=\("@method" "@target-uri"( "@authority")?{digest}'
            rf'( "content-type")?( "gs1-capture-error-behaviour")?\){_SIGNATURE_PARAMS}$')


_SIGNATURE_INPUT_DOC = (
    "RFC 9421 Signature-Input, a structured-field dictionary with one member (its label "
    "names the member of Signature). The ecosphere profile: tag \"ecosphere\"; alg absent "
    "or \"ed25519\"; keyid = your registered key id; created (at most 300 s old, 30 s "
    "ahead), a nonce used once, expires optional; covering @method and @target-uri, and "
    "content-digest when there is a body. The pattern is the form the SDK writes; any "
    "serialisation meeting the profile is accepted. A malformed field is a 400 "
    "bad_signature_input; a well-formed one that does not verify, a 401.")
_SIGNATURE_DOC = ("RFC 9421 Signature: the member named by Signature-Input's label, the "
                  "Ed25519 signature (64 bytes) as a structured-field byte sequence")


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    #: per status: a model, several (a oneOf: e.g. one result or a batch), or no body
    responses: dict[int, type[BaseModel] | tuple[type[BaseModel], ...] | None]
    query: type[BaseModel] | None = None
    body: type[BaseModel] | tuple[type[BaseModel], ...] | None = None
    signed: bool = False
    #: a signature is optional: it lets the caller read what a domain restricts to its
    #: parties (``services.gateway.read_policy``)
    signed_optional: bool = False
    errors: tuple[int, ...] = (400, 422, 429, 503)
    path_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    content_type: str = "application/json"
    #: error statuses answered with a richer problem than ProblemDetails, or that need
    #: saying when they happen: status -> (model, description)
    problems: dict[int, ProblemDoc] = field(default_factory=dict)

    @property
    def openapi_path(self) -> str:
        return _PARAM.sub(lambda m: "{" + m.group(1) + "}", self.path)

    @property
    def operation_id(self) -> str:
        """Unique across domains: the handler's class and name (``EpcisApi_list_events``)."""
        return self.handler.__qualname__.replace(".", "_").strip("_")


def _models(endpoints: Sequence[Endpoint]) -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {"ProblemDetails": ProblemDetails}
    for e in endpoints:
        bodies = e.body if isinstance(e.body, tuple) else (e.body,) if e.body else ()
        answers = [m for r in e.responses.values() if r is not None
                   for m in (r if isinstance(r, tuple) else (r,))]
        problems = [model for model, _ in e.problems.values()]
        for m in (*bodies, *answers, *problems):
            seen.setdefault(m.__name__, m)
    return list(seen.values())


def openapi_document(endpoints: Sequence[Endpoint], *, title: str, version: str,
                     server_url: str | None = None) -> dict[str, Any]:
    models = _models(endpoints)
    _, defs = models_json_schema([(m, "serialization") for m in models],
                                 ref_template=REF)
    schemas = defs.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        op: dict[str, Any] = {
            "operationId": e.operation_id,
            "summary": e.summary,
            "tags": [e.tag],
            "parameters": _parameters(e),
            "responses": _responses(e),
        }
        if e.description:
            op["description"] = e.description
        if e.signed:
            op["security"] = [{"httpMessageSignature": []}]
        elif e.signed_optional:
            op["security"] = [{}, {"httpMessageSignature": []}]
        if e.body is not None:
            bodies = e.body if isinstance(e.body, tuple) else (e.body,)
            refs = [{"$ref": REF.format(model=b.__name__)} for b in bodies]
            op["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": refs[0] if len(refs) == 1 else {"oneOf": refs}}}}
        paths.setdefault(e.openapi_path, {})[e.method.lower()] = op
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "The ecosphere's integrated service platform. Writes are "
                                "transactions signed by the client; private reads are "
                                "signed with HTTP Message Signatures (RFC 9421); every "
                                "error is application/problem+json (RFC 9457)."},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"httpMessageSignature": {
                "type": "apiKey", "in": "header", "name": "Signature",
                "description": "RFC 9421 HTTP Message Signature with the caller's Ed25519 "
                               "key registered on the chain (alg ed25519, keyid = key id)"}},
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


def _parameters(e: Endpoint) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in _PARAM.findall(e.path):
        schema = e.path_params.get(name, {"type": "string"})
        out.append({"name": name, "in": "path", "required": True, "schema": schema})
    if e.query is not None:
        query_schema = e.query.model_json_schema(ref_template=REF)
        required = set(query_schema.get("required", []))
        for name, prop in query_schema.get("properties", {}).items():
            out.append({"name": name, "in": "query", "required": name in required,
                        "schema": _nullable_scalar(prop)})
    if e.signed:
        out += [
            {"name": "Signature-Input", "in": "header", "required": True,
             "schema": {"type": "string", "maxLength": 1024, "pattern":
                        signature_input_pattern(with_body=e.body is not None)},
             "description": _SIGNATURE_INPUT_DOC},
            {"name": "Signature", "in": "header", "required": True,
             "schema": {"type": "string", "maxLength": 160, "pattern": SIGNATURE},
             "description": _SIGNATURE_DOC},
        ]
    if e.method == "POST":
        out.append({
            "name": "Idempotency-Key", "in": "header", "required": False,
            "schema": {"type": "string", "minLength": 1, "maxLength": 128,
                       "pattern": IDEMPOTENCY_KEY},
            "description": "Repeat a POST safely: the same key (1..128 printable ASCII "
                           "characters) returns the first answer; with another body or "
                           "query it is a 422 idempotency_key_reused, while the first "
                           "runs a 409 idempotency_in_progress"})
    return out


def _responses(e: Endpoint) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, model in e.responses.items():
        response: dict[str, Any] = {"description": _DESCRIPTIONS.get(status, "OK")}
        if model is not None:
            refs = [{"$ref": REF.format(model=m.__name__)}
                    for m in (model if isinstance(model, tuple) else (model,))]
            response["content"] = {e.content_type: {
                "schema": refs[0] if len(refs) == 1 else {"oneOf": refs}}}
        out[str(status)] = response
    for status in sorted({*e.errors, *_policy_statuses(e), 500}):
        problem, description = e.problems.get(
            status, (ProblemDetails, _DESCRIPTIONS.get(status, "Problem")))
        out.setdefault(str(status), {
            "description": description,
            "content": {"application/problem+json": {
                "schema": {"$ref": REF.format(model=problem.__name__)}}}})
    return out


def _policy_statuses(e: Endpoint) -> set[int]:
    """Statuses the policies answer on every route of their kind (services.gateway.
    policies): rate limits everywhere; signatures where signed; bodies that are too
    large, or coded with an unknown or broken Content-Encoding, where there is a body."""
    statuses = {429}
    if e.signed:
        statuses |= {400, 401}
    if e.body is not None:
        statuses |= {400, 413, 415}
    return statuses


def _nullable_scalar(prop: dict[str, Any]) -> dict[str, Any]:
    """Query parameters are scalars: flatten pydantic's ``anyOf [T, null]`` (keeping
    what is said beside it: format, description, a default that is not null)."""
    if "anyOf" in prop:
        options = [p for p in prop["anyOf"] if p.get("type") != "null"]
        if len(options) == 1:
            merged = {**options[0]}
            for k, v in prop.items():
                if k != "anyOf" and v is not None:
                    merged[k] = v
            return merged
    return prop


_DESCRIPTIONS = {
    200: "OK", 202: "Accepted: not committed yet", 400: "Bad request", 401: "Unauthorised",
    403: "Forbidden", 404: "Not found", 409: "Conflict", 413: "Payload too large",
    415: "Unsupported media type (or Content-Encoding)", 422: "Unprocessable content",
    429: "Rate limited", 500: "Internal error", 503: "Unavailable",
}


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ecosphere API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem}
h1{font-size:1.6rem} .op{border:1px solid #ddd;border-radius:6px;margin:.6rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:4.5rem;font-weight:700} .GET{color:#06c} .POST{color:#080}
pre{background:#f6f6f6;padding:.6rem;overflow:auto;font-size:12px} summary{cursor:pointer}
.tag{color:#666;font-size:.85rem}
</style></head><body>
<h1>ecosphere API</h1>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).
Errors are <code>application/problem+json</code> with a stable <code>code</code>.</p>
<div id="ops">Loading…</div>
<script>
fetch('/openapi.json').then(r=>r.json()).then(doc=>{
  const el=document.getElementById('ops'); el.textContent='';
  for(const [path,ops] of Object.entries(doc.paths)){
    for(const [method,op] of Object.entries(ops)){
      const d=document.createElement('details'); d.className='op';
      const s=document.createElement('summary');
      const m=document.createElement('span'); m.className='m '+method.toUpperCase();
      m.textContent=method.toUpperCase(); s.appendChild(m);
      s.appendChild(document.createTextNode(' '+path+' — '+(op.summary||'')));
      const t=document.createElement('span'); t.className='tag';
      t.textContent=' ['+(op.tags||[]).join(', ')+(op.security?', signed':'')+']';
      s.appendChild(t); d.appendChild(s);
      const pre=document.createElement('pre'); pre.textContent=JSON.stringify(op,null,2);
      d.appendChild(pre); el.appendChild(d);
    }
  }
});
</script></body></html>
"""


def docs_routes(endpoints: Sequence[Endpoint], *, title: str, version: str,
                expect: Callable[[web.Request], Awaitable[web.StreamResponse | None]]
                | None = None) -> list[web.RouteDef]:
    cache: dict[str, bytes] = {}

    async def openapi_json(request: web.Request) -> web.Response:
        if "doc" not in cache:
            cache["doc"] = json.dumps(openapi_document(endpoints, title=title,
                                                       version=version)).encode()
        return web.Response(body=cache["doc"], content_type="application/json")

    async def docs(request: web.Request) -> web.Response:
        return web.Response(text=DOCS_PAGE, content_type="text/html")

    return [web.get("/openapi.json", openapi_json, expect_handler=expect),
            web.get("/docs", docs, expect_handler=expect)]
