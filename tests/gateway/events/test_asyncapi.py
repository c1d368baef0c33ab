"""docs/asyncapi.yaml: generated from the pydantic models, valid AsyncAPI 3.0.0, complete,
and describing the messages the gateway really publishes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]
from jsonschema import Draft7Validator  # type: ignore[import-untyped,unused-ignore]
from referencing import Registry
from referencing.jsonschema import DRAFT7

from services.composition import event_catalogue
from services.gateway import asyncapi
from services.gateway import events as ev
from services.gateway.event_schemas import PLATFORM_EVENTS

from .test_cloudevents import governance_chain

CATALOGUE = event_catalogue()
DOC_URI = "urn:ecosphere:test:asyncapi"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi.load_document()


# The platform contracts' events; the trace domain registers its own (tests/trace).
PLATFORM_TYPES = set(PLATFORM_EVENTS.types())

def test_committed_document_is_what_the_generator_produces():
    committed = asyncapi.DOCUMENT_PATH.read_text()
    assert committed == asyncapi.render(asyncapi.build_document(CATALOGUE)), (
        "docs/asyncapi.yaml is stale: run ecosphere asyncapi")


def test_generation_is_deterministic():
    assert asyncapi.render(asyncapi.build_document(CATALOGUE)) == asyncapi.render(
        asyncapi.build_document(CATALOGUE))


def test_document_is_valid_asyncapi_3(document):
    assert document["asyncapi"] == "3.0.0"
    assert asyncapi.validation_errors(document) == []


def test_validation_needs_no_network(document, monkeypatch):
    import socket

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("validation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert asyncapi.validation_errors(document) == []


def test_vendored_schema_is_the_official_one():
    spec = json.loads(asyncapi.SPEC_SCHEMA_PATH.read_text())
    assert spec["$id"] == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
    assert spec["$schema"] == "http://json-schema.org/draft-07/schema"
    assert "http://asyncapi.com/bindings/amqp/0.3.0/channel.json" in spec["definitions"]
    readme = (asyncapi.SPEC_SCHEMA_PATH.parent / "README.md").read_text()
    assert "Apache-2.0" in readme and "@asyncapi/specs" in readme


def broken(document: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(document)
    node = out
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


DELETE = object()
BREAKAGES = {
    "no info.version": (["info", "version"], DELETE),
    "asyncapi 2 operation verb": (["operations", "publish.notary.document.anchored", "action"],
                                  "publish"),
    "unknown exchange type": (["channels", "events", "bindings", "amqp", "exchange", "type"],
                              "fanfare"),
    "delivery mode 3": (["operations", "publish.notary.document.anchored", "bindings", "amqp",
                         "deliveryMode"], 3),
    "payload not a schema": (["components", "messages", "notary.document.anchored", "payload"],
                             {"type": 12}),
    "unknown top-level field": (["publish"], {}),
    "no channel address type": (["channels", "events", "address"], 42),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_document_fails_validation(document, breakage):
    path, value = BREAKAGES[breakage]
    assert asyncapi.validation_errors(broken(document, path, value)) != []


def test_every_published_event_type_has_a_message(document):
    types = CATALOGUE.published_types()
    messages = document["components"]["messages"]
    channel = document["channels"]["events"]
    assert sorted(messages) == types
    assert sorted(channel["messages"]) == types
    assert channel["parameters"]["routingKey"]["enum"] == types
    for event_type in types:
        message = messages[event_type]
        assert message["name"] == event_type
        assert message["contentType"] == "application/cloudevents+json"
        assert message["bindings"]["amqp"]["messageType"] == event_type
        operation = document["operations"][f"publish.{event_type}"]
        assert operation["action"] == "send"
        assert operation["channel"] == {"$ref": "#/channels/events"}
        assert operation["messages"] == [{"$ref": f"#/channels/events/messages/{event_type}"}]
        amqp = operation["bindings"]["amqp"]
        assert amqp["cc"] == [event_type]
        assert (amqp["deliveryMode"], amqp["mandatory"]) == (2, False)
    assert len(document["operations"]) == len(types)


def test_restricted_event_types_are_not_advertised(document):
    """What a domain's read policy restricts to its parties is never published: the
    document has no message, operation or routing key for it, and names it as withheld."""
    withheld = CATALOGUE.withheld
    assert {"privacy.access.granted", "privacy.access.refused", "privacy.record.created",
            "privacy.grant.created", "privacy.erasure.requested"} <= withheld
    assert not withheld & {"privacy.key.registered", "privacy.key.revoked"}  # public keys
    assert not withheld & PLATFORM_TYPES
    channel = document["channels"]["events"]
    for event_type in withheld:
        assert event_type not in document["components"]["messages"]
        assert event_type not in channel["messages"]
        assert f"publish.{event_type}" not in document["operations"]
        assert event_type not in channel["parameters"]["routingKey"]["enum"]
        assert f"`{event_type}`" in document["info"]["description"]
    assert sorted([*withheld, *CATALOGUE.published_types()]) == CATALOGUE.types()


def test_channel_is_the_topic_exchange(document):
    channel = document["channels"]["events"]
    exchange = channel["bindings"]["amqp"]["exchange"]
    assert channel["bindings"]["amqp"]["is"] == "routingKey"
    assert (exchange["name"], exchange["type"], exchange["durable"]) == (
        "ecosphere.events", "topic", True)
    server = document["servers"]["rabbitmq"]
    assert (server["protocol"], server["protocolVersion"]) == ("amqp", "0.9.1")


def test_every_ref_resolves_inside_the_document(document):
    refs: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                refs.append(ref)
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        assert isinstance(node, dict)


def payload_validator(document: dict[str, Any], event_type: str) -> Draft7Validator:
    """A validator for ``event_type``'s payload, resolving its $refs inside the document."""
    registry: Registry[Any] = Registry().with_resource(
        DOC_URI, DRAFT7.create_resource(document))
    ref = document["components"]["messages"][event_type]["payload"]["$ref"]
    return Draft7Validator({"$ref": DOC_URI + ref}, registry=registry)


def test_published_events_match_the_documented_payloads(document):
    """Real events of every type, as published, validate against the document."""
    chain = governance_chain()
    validators = {t: payload_validator(document, t) for t in PLATFORM_TYPES}
    seen = set()
    for event, block in chain.events:
        ce = ev.to_cloudevent(event, block=block, chain_id=block.header.chain_id,
                              catalogue=CATALOGUE)
        payload = json.loads(ev.to_amqp(ce).body)
        errors = [e.message for e in validators[event.type].iter_errors(payload)]
        assert errors == [], (event.type, errors)
        seen.add(event.type)
    assert seen == PLATFORM_TYPES  # the trace domain's are checked in tests/trace


def test_documented_payloads_reject_wrong_events(document):
    chain = governance_chain()
    event, block = next((e, b) for e, b in chain.events if e.type == "notary.document.anchored")
    good = ev.to_structured(ev.to_cloudevent(event, block=block, chain_id="ecosphere-sim",
                                             catalogue=CATALOGUE))
    validator = payload_validator(document, "notary.document.anchored")
    assert list(validator.iter_errors(good)) == []
    wrong_type = {**good, "type": "consortium.key.added"}
    wrong_data = {**good, "data": {**good["data"], "digest": "xyz"}}
    extra_attribute = {**good, "blockhash": "00"}
    string_height = {**good, "height": "12"}
    for bad in (wrong_type, wrong_data, extra_attribute, string_height):
        assert list(validator.iter_errors(bad)) != []


def test_main_writes_and_checks(tmp_path: Path, capsys):
    out = tmp_path / "asyncapi.yaml"
    assert asyncapi.write(CATALOGUE, out, check=True) == 1  # missing
    assert asyncapi.write(CATALOGUE, out) == 0
    assert out.read_text() == asyncapi.DOCUMENT_PATH.read_text()
    assert asyncapi.write(CATALOGUE, out, check=True) == 0
    out.write_text(out.read_text().replace("1.0.0", "0.9.0"))
    assert asyncapi.write(CATALOGUE, out, check=True) == 1
    assert "stale" in capsys.readouterr().err


def test_yaml_is_plain_yaml(document):
    text = asyncapi.DOCUMENT_PATH.read_text()
    assert yaml.safe_load(text) == document
    assert text.startswith("# Generated by `ecosphere asyncapi`")
