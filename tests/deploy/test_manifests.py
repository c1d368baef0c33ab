"""The Kubernetes manifests render, and every resource validates offline: built-in kinds
against the Kubernetes schemas (kubernetes-validate, strict, pinned version), the
operators' custom resources against their CRD schemas vendored in deploy/crds/."""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]
import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

from services.ledger.core.encoding import decode
from services.ledger.core.genesis import Genesis
from tests.deploy.conftest import (
    CRDS,
    K8S,
    KUBERNETES_VERSION,
    OVERLAYS,
    by_kind,
    crd_documents,
    crd_schemas,
    find,
)
from tests.deploy.kustomize import KustomizeError, Resource, canonical, render

try:
    import kubernetes_validate  # type: ignore[import-untyped,unused-ignore]
except ImportError:  # pragma: no cover - the test extra installs it
    kubernetes_validate = None


# --- rendering ----------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_overlay_renders(rendered: dict[str, list[Resource]], overlay: str) -> None:
    resources = rendered[overlay]
    assert resources
    assert {r["metadata"].get("namespace") for r in resources
            if r["kind"] != "Namespace"} == {"ecosphere"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_renderer_agrees_with_kubectl_kustomize(rendered: dict[str, list[Resource]],
                                                overlay: str) -> None:
    out = subprocess.run(["kubectl", "kustomize", str(OVERLAYS[overlay])], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    theirs = [d for d in yaml.safe_load_all(out) if d]
    assert canonical(theirs) == canonical(copy.deepcopy(rendered[overlay]))


def test_renderer_refuses_unsupported_kustomize_features(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("commonLabels: {a: b}\nresources: []\n")
    with pytest.raises(KustomizeError, match="unsupported"):
        render(tmp_path)


def test_every_kustomization_is_reachable_from_an_overlay() -> None:
    used: set[Path] = set()

    def walk(directory: Path) -> None:
        used.add(directory.resolve())
        k = yaml.safe_load((directory / "kustomization.yaml").read_text())
        for entry in k.get("resources", []):
            path = (directory / entry).resolve()
            if path.is_dir():
                walk(path)

    for path in OVERLAYS.values():
        walk(path)
    base = K8S / "base"
    walk(base)
    every = {p.parent.resolve() for p in K8S.rglob("kustomization.yaml")}
    assert every <= used


# --- Kubernetes schemas -------------------------------------------------------------------

def _custom(resource: Resource) -> bool:
    return (resource["apiVersion"], resource["kind"]) in crd_schemas()


def test_kubernetes_validate_is_installed() -> None:
    assert kubernetes_validate is not None, (
        "kubernetes-validate is missing: add it to the test extra in pyproject.toml")


@pytest.mark.skipif(kubernetes_validate is None, reason="kubernetes-validate not installed")
@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_builtin_resources_validate_strictly(rendered: dict[str, list[Resource]],
                                             overlay: str) -> None:
    for resource in rendered[overlay]:
        if _custom(resource):
            continue
        version = kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        assert version == KUBERNETES_VERSION.rsplit(".", 1)[0]


@pytest.mark.skipif(kubernetes_validate is None, reason="kubernetes-validate not installed")
def test_strict_validation_catches_a_typo() -> None:
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"},
           "dataa": {"a": "b"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


@pytest.mark.skipif(kubernetes_validate is None, reason="kubernetes-validate not installed")
def test_bootstrap_objects_validate(bootstrap_objects: list[Resource]) -> None:
    for obj in bootstrap_objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


# --- custom resources against the vendored CRDs ----------------------------------------------

def structural(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD's OpenAPI v3 schema as JSON Schema, with the API server's strictness: an
    object with declared properties refuses unknown fields unless it preserves them."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {k: structural(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = structural(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [structural(v) for v in value]
        elif key == "nullable" or key.startswith("x-kubernetes-"):
            continue
        else:
            out[key] = value
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
OBJECT_META = {"type": "object", "additionalProperties": False, "required": ["name"],
               "properties": {"name": {"type": "string", "pattern": NAME_PATTERN,
                                       "maxLength": 253},
                              "namespace": {"type": "string"},
                              "labels": {"type": "object",
                                         "additionalProperties": {"type": "string"}},
                              "annotations": {"type": "object",
                                              "additionalProperties": {"type": "string"}}}}


@functools.cache
def custom_resource_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    schema = structural(crd_schemas()[(api_version, kind)])
    schema["properties"]["metadata"] = OBJECT_META
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_custom_resources_validate_against_their_crds(rendered: dict[str, list[Resource]],
                                                      overlay: str) -> None:
    for resource in rendered[overlay]:
        if _custom(resource):
            errors = list(custom_resource_validator(resource["apiVersion"], resource["kind"])
                          .iter_errors(resource))
            assert not errors, [f"{resource['kind']}/{resource['metadata']['name']}: "
                                f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_crd_validation_catches_a_typo() -> None:
    cluster: dict[str, Any] = {"apiVersion": "rabbitmq.com/v1beta1", "kind": "RabbitmqCluster",
               "metadata": {"name": "x"}, "spec": {"replicas": 3, "tls": {"secretNme": "t"}}}
    validator = custom_resource_validator("rabbitmq.com/v1beta1", "RabbitmqCluster")
    assert not validator.is_valid(cluster)
    cluster["spec"]["tls"] = {"secretName": "t"}
    cluster["spec"]["override"] = {"statefulSet": {}}
    assert not validator.is_valid(cluster), "spec.override is not vendored: it must fail"
    del cluster["spec"]["override"]
    assert validator.is_valid(cluster)


def test_every_resource_kind_is_validated(rendered: dict[str, list[Resource]]) -> None:
    """Nothing escapes validation: a kind is either built in (kubernetes-validate has
    a schema for it) or one of the vendored CRDs."""
    for resources in rendered.values():
        for r in resources:
            if _custom(r):
                continue
            group = r["apiVersion"].rpartition("/")[0]
            assert "." not in group or group.endswith("k8s.io"), (
                f"{r['apiVersion']} {r['kind']}: a custom resource without a vendored CRD")


def test_vendored_crds_are_documented() -> None:
    readme = (CRDS / "README.md").read_text()
    docs = crd_documents()
    assert {d["spec"]["names"]["kind"] for d in docs} == {
        "RabbitmqCluster", "User", "Permission", "Policy", "Vhost", "MongoDBCommunity",
        "ServiceMonitor"}
    for path in CRDS.glob("*.yaml"):
        assert path.name in readme, f"{path.name} is not described in deploy/crds/README.md"
    for licence in ("MPL-2.0", "Apache-2.0"):
        assert licence in readme
    for d in docs:
        for version in d["spec"]["versions"]:
            schema = structural(version["schema"]["openAPIV3Schema"])
            jsonschema.Draft7Validator.check_schema(schema)


# --- bootstrap output and the names the manifests reference ------------------------------------

def referenced(resources: list[Resource]) -> set[tuple[str, str]]:
    """(kind, name) of every Secret and ConfigMap the resources refer to."""
    refs: set[tuple[str, str]] = set()

    def walk(node: Any, parent: str = "") -> None:
        if isinstance(node, dict):
            if parent in ("secretKeyRef", "secretRef"):
                refs.add(("Secret", node["name"]))
            elif parent in ("configMapKeyRef", "configMapRef", "caConfigMapRef"):
                refs.add(("ConfigMap", node["name"]))
            if parent == "secret" and "secretName" in node:
                refs.add(("Secret", node["secretName"]))
            if parent == "configMap" and "name" in node:
                refs.add(("ConfigMap", node["name"]))
            for key, value in node.items():
                walk(value, key)
        elif isinstance(node, list):
            for item in node:
                walk(item, parent)

    for r in resources:
        walk(r)
        spec = r.get("spec", {})
        if r["kind"] == "RabbitmqCluster":
            refs.add(("Secret", spec["tls"]["secretName"]))
        if r["kind"] == "User":
            refs.add(("Secret", spec["importCredentialsSecret"]["name"]))
        if r["kind"] == "MongoDBCommunity":
            refs.add(("Secret", spec["security"]["tls"]["certificateKeySecretRef"]["name"]))
            refs.update(("Secret", u["passwordSecretRef"]["name"]) for u in spec["users"])
    return refs


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_referenced_secret_and_configmap_exists(
        rendered: dict[str, list[Resource]], bootstrap_objects: list[Resource],
        overlay: str) -> None:
    resources = rendered[overlay]
    available = {(r["kind"], r["metadata"]["name"]) for r in resources + bootstrap_objects}
    missing = referenced(resources) - available
    # The Ingress's certificate comes from the cluster's certificate manager.
    missing -= {("Secret", "ecosphere-gateway-ingress-tls")}
    assert not missing, f"referenced but neither rendered nor bootstrapped: {missing}"


def test_bootstrap_produces_only_what_is_referenced(
        rendered: dict[str, list[Resource]], bootstrap_objects: list[Resource]) -> None:
    refs = referenced(rendered["local-consortium"])
    produced = {(o["kind"], o["metadata"]["name"]) for o in bootstrap_objects}
    assert produced <= refs, f"bootstrapped but never used: {produced - refs}"
    rendered_ids = {(r["kind"], r["metadata"]["name"]) for r in rendered["local-consortium"]}
    assert not produced & rendered_ids


def test_bootstrap_genesis_matches_the_manifests(
        rendered: dict[str, list[Resource]], bootstrap_objects: list[Resource],
        bootstrap: ModuleType) -> None:
    resources = rendered["local-consortium"]
    genesis_cm = next(o for o in bootstrap_objects
                      if o["metadata"]["name"] == bootstrap.GENESIS_CONFIGMAP)
    genesis = Genesis.from_wire(decode(genesis_cm["data"]["genesis.json"].encode()))
    validators = [r for r in by_kind(resources, "StatefulSet")
                  if r["spec"]["template"]["metadata"]["labels"][
                      "app.kubernetes.io/component"] == "validator"]
    assert len(genesis.validators.validators) == len(validators) == 4
    node_keys = [k for k in genesis.keys if "node" in k.permissions]
    assert len(node_keys) == bootstrap.GATEWAY_KEY_POOL
    hpa = find(resources, "HorizontalPodAutoscaler", "ecosphere-gateway")
    assert hpa["spec"]["maxReplicas"] <= bootstrap.GATEWAY_KEY_POOL
    pool = next(o for o in bootstrap_objects
                if o["metadata"]["name"] == bootstrap.GATEWAY_KEYS_SECRET)
    assert sorted(pool["stringData"]) == sorted(
        [f"node-{i}.key" for i in range(bootstrap.GATEWAY_KEY_POOL)]
        + [f"relay-{i}.key" for i in range(bootstrap.GATEWAY_KEY_POOL)])
    # each gateway's relay key is an operator member key of the genesis
    relay_keys = [k for k in genesis.keys if k.permissions == ("member",)]
    assert len(relay_keys) == bootstrap.GATEWAY_KEY_POOL
    assert {k.org for k in relay_keys} == {genesis.organisations[0].id}


def test_bootstrap_refuses_to_write_into_the_repository(bootstrap: ModuleType) -> None:
    assert bootstrap.main(["local", "--out", str(K8S / "never")]) == 2
    assert not (K8S / "never").exists()


def test_bootstrap_assembles_a_genesis_from_public_keys(tmp_path: Path,
                                                        bootstrap: ModuleType) -> None:
    from services.ledger.node import keys

    orgs: list[dict[str, Any]] = []
    members = {"chain_id": "ecosphere-test", "genesis_time": 1_700_000_000_000,
               "organisations": orgs}
    for org in ("a", "b", "c", "d"):
        node, admin = keys.generate(), keys.generate()
        orgs.append({"id": org, "name": org.upper(), "roles": ["observer"],
                                         "validator": node.public.hex(),
                                         "admins": [admin.public.hex()]})
    (tmp_path / "members.json").write_text(json.dumps(members))
    assert bootstrap.main(["genesis", "--members", str(tmp_path / "members.json"),
                           "--out", str(tmp_path / "genesis.json")]) == 0
    genesis = Genesis.from_wire(decode((tmp_path / "genesis.json").read_bytes()))
    assert genesis.chain_id == "ecosphere-test"
    assert len(genesis.validators.validators) == 4


# --- the dashboard queries what the services export ----------------------------------------

def exported_metric_names() -> set[str]:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from services.gateway.views.projector import ProjectorCollector
    from services.ledger.core.regossip import Regossip
    from services.ledger.node.amqp import TransportStats
    from services.ledger.node.metrics import ReplicaMetrics

    mempool = type("Mempool", (list,), {"size_bytes": 0})()
    replica = SimpleNamespace(
        tip=SimpleNamespace(height=3), consensus=SimpleNamespace(round=0),
        mempool=mempool, peers_seen={"a"}, _peers_ahead={}, compact_misses=0,
        rejections={"bad_signature": 1}, misbehaviour={"equivocation": 1},
        regossip=Regossip())
    metrics = ReplicaMetrics(replica, "ledger")  # type: ignore[arg-type]
    metrics.transport = TransportStats()
    metrics.commit_latency.observe(0.1)
    text = metrics.render().decode()
    projector = SimpleNamespace(
        checkpoint=1, lag_blocks=0, lag_seconds=0.0, available=True,
        stats=SimpleNamespace(blocks_projected=1, writes=1, errors=0, connection_errors=0))
    registry = CollectorRegistry()
    registry.register(ProjectorCollector(projector))  # type: ignore[arg-type]
    text += generate_latest(registry).decode()
    return {sample.name for family in text_string_to_metric_families(text)
            for sample in family.samples}


def test_dashboard_queries_only_exported_metrics(rendered: dict[str, list[Resource]]) -> None:
    dashboard_cm = find(rendered["local-consortium"], "ConfigMap", "ecosphere-dashboard")
    assert dashboard_cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(dashboard_cm["data"]["ecosphere.json"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queried = {m for e in exprs for m in re.findall(r"\becosphere_[a-z_]+\b", e)}
    exported = exported_metric_names()
    assert queried <= exported, f"not exported by the services: {queried - exported}"
    wanted = {"ecosphere_height", "ecosphere_round", "ecosphere_commit_latency_seconds_bucket",
              "ecosphere_mempool_txs", "ecosphere_rejected_messages_total",
              "ecosphere_peers_seen", "ecosphere_catchup_behind_blocks",
              "ecosphere_amqp_published_total", "ecosphere_amqp_publish_failed_total",
              "ecosphere_amqp_reconnects_total", "ecosphere_amqp_connected",
              "ecosphere_views_lag_blocks", "ecosphere_views_available"}
    assert wanted <= queried
