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

from services.gateway.models import ProblemDetails

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"\{([a-z_]+)(?::[^}]*)?\}")


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
    errors: tuple[int, ...] = (400, 422, 429, 503)
    path_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    content_type: str = "application/json"

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
        for m in (*bodies, *answers):
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
            "parameters": [],
            "responses": {},
        }
        if e.description:
            op["description"] = e.description
        for name in _PARAM.findall(e.path):
            schema = e.path_params.get(name, {"type": "string"})
            op["parameters"].append({"name": name, "in": "path", "required": True,
                                     "schema": schema})
        if e.query is not None:
            query_schema = e.query.model_json_schema(ref_template=REF)
            required = set(query_schema.get("required", []))
            for name, prop in query_schema.get("properties", {}).items():
                op["parameters"].append({"name": name, "in": "query",
                                         "required": name in required,
                                         "schema": _nullable_scalar(prop)})
        if e.signed:
            op["security"] = [{"httpMessageSignature": []}]
            op["parameters"] += [
                {"name": "Signature-Input", "in": "header", "required": True,
                 "schema": {"type": "string"},
                 "description": "RFC 9421 signature parameters (keyid = your key id)"},
                {"name": "Signature", "in": "header", "required": True,
                 "schema": {"type": "string"}},
            ]
        if e.method == "POST":
            op["parameters"].append({
                "name": "Idempotency-Key", "in": "header", "required": False,
                "schema": {"type": "string", "maxLength": 128},
                "description": "Repeat a POST safely: the same key returns the first answer"})
        if e.body is not None:
            bodies = e.body if isinstance(e.body, tuple) else (e.body,)
            refs = [{"$ref": REF.format(model=b.__name__)} for b in bodies]
            op["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": refs[0] if len(refs) == 1 else {"oneOf": refs}}}}
        for status, model in e.responses.items():
            content = None
            if model is not None:
                refs = [{"$ref": REF.format(model=m.__name__)}
                        for m in (model if isinstance(model, tuple) else (model,))]
                content = {e.content_type: {
                    "schema": refs[0] if len(refs) == 1 else {"oneOf": refs}}}
            response: dict[str, Any] = {"description": _DESCRIPTIONS.get(status, "OK")}
            if content:
                response["content"] = content
            op["responses"][str(status)] = response
        for status in sorted({*e.errors, *((401,) if e.signed else ()), 500}):
            op["responses"].setdefault(str(status), {
                "description": _DESCRIPTIONS.get(status, "Problem"),
                "content": {"application/problem+json": {
                    "schema": {"$ref": REF.format(model="ProblemDetails")}}}})
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


def _nullable_scalar(prop: dict[str, Any]) -> dict[str, Any]:
    """Query parameters are scalars: flatten pydantic's ``anyOf [T, null]``."""
    if "anyOf" in prop:
        options = [p for p in prop["anyOf"] if p.get("type") != "null"]
        if len(options) == 1:
            merged = {**options[0]}
            for k in ("default", "description", "title"):
                if k in prop and prop[k] is not None:
                    merged[k] = prop[k]
            return merged
    return prop


_DESCRIPTIONS = {
    200: "OK", 202: "Accepted: not committed yet", 400: "Bad request", 401: "Unauthorised",
    403: "Forbidden", 404: "Not found", 409: "Conflict", 413: "Payload too large",
    415: "Unsupported media type", 422: "Unprocessable content", 429: "Rate limited",
    500: "Internal error", 503: "Unavailable",
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


def docs_routes(endpoints: Sequence[Endpoint], *, title: str, version: str) -> list[web.RouteDef]:
    cache: dict[str, bytes] = {}

    async def openapi_json(request: web.Request) -> web.Response:
        if "doc" not in cache:
            cache["doc"] = json.dumps(openapi_document(endpoints, title=title,
                                                       version=version)).encode()
        return web.Response(body=cache["doc"], content_type="application/json")

    async def docs(request: web.Request) -> web.Response:
        return web.Response(text=DOCS_PAGE, content_type="text/html")

    return [web.get("/openapi.json", openapi_json), web.get("/docs", docs)]
