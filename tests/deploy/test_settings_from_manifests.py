"""The manifests' configuration, loaded by the services' own settings code.

Each service container's environment is built from the rendered manifests the way the
kubelet builds it (envFrom ConfigMaps first, then env in order with $(VAR) expansion;
Secrets replaced by placeholders, the downward API by the pod's name), then handed to
services.ledger.node.settings.NodeSettings: it must load, and give the service, ports,
data directory, prefix and URLs the manifests intend. The same for the image's
defaults and compose.yaml. So manifests and code cannot drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]
from cryptography import x509
from pydantic import BaseModel
from pymongo.uri_parser import parse_uri
from yarl import URL

from services.ledger.node.amqp import Topology
from services.runtime.settings import NodeSettings
from tests.deploy.conftest import (
    DEPLOY,
    OVERLAYS,
    by_kind,
    containers,
    find,
    is_validator,
    pod_spec,
    workloads,
)
from tests.deploy.kustomize import Resource, render

REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def placeholder(secret: str, key: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", f"secret-{secret}-{key}".lower())


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables only, others left as written."""
    return REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), value)


def pod_name(workload: Resource) -> str:
    return f"{workload['metadata']['name']}-0"


def container_env(workload: Resource, container: dict[str, Any],
                  resources: list[Resource]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, "envFrom only from ConfigMaps"
        env.update(find(resources, "ConfigMap", source["configMapRef"]["name"])["data"])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
            continue
        ref = var["valueFrom"]
        if "secretKeyRef" in ref:
            env[var["name"]] = placeholder(ref["secretKeyRef"]["name"],
                                           ref["secretKeyRef"]["key"])
        elif "configMapKeyRef" in ref:
            cm = find(resources, "ConfigMap", ref["configMapKeyRef"]["name"])
            env[var["name"]] = cm["data"][ref["configMapKeyRef"]["key"]]
        else:
            path = ref["fieldRef"]["fieldPath"]
            env[var["name"]] = {"metadata.name": pod_name(workload),
                                "metadata.namespace": workload["metadata"]["namespace"]}[path]
    return env


def load_settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                  service: str | None = None) -> NodeSettings:
    import os

    for name in list(os.environ):
        if name.startswith("ECOSPHERE_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return NodeSettings() if service is None else NodeSettings(service=service)


def service_containers(resources: list[Resource]) -> list[tuple[Resource, dict[str, Any]]]:
    return [(w, c) for w in workloads(resources) for c in containers(w, init=False)]


def mounted_file(workload: Resource, container: dict[str, Any], path: str) -> tuple[str, str]:
    """(ConfigMap name, key) of the file ``path`` inside the container."""
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    for mount in container["volumeMounts"]:
        directory = PurePosixPath(mount["mountPath"])
        if PurePosixPath(path).parent == directory:
            source = volumes[mount["name"]]["configMap"]
            item = next(i for i in source["items"] if i["path"] == PurePosixPath(path).name)
            return source["name"], item["key"]
    raise AssertionError(f"{path} is not mounted")


def settings_field(key: str) -> bool:
    """Whether ECOSPHERE_<key> names a NodeSettings field (nested with __)."""
    model: type[BaseModel] = NodeSettings
    parts = key.lower().split("__")
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if i < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


# --- the manifests ------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_configmap_setting_is_a_settings_field(rendered: dict[str, list[Resource]],
                                                     overlay: str) -> None:
    """pydantic-settings ignores an ECOSPHERE_ variable it does not know: a typo would
    silently fall back to a default. Every one in the manifests must be a field."""
    for cm in by_kind(rendered[overlay], "ConfigMap"):
        for key in cm.get("data", {}):
            if key.startswith("ECOSPHERE_"):
                assert settings_field(key[len("ECOSPHERE_"):]), f"{key} is no setting"
    for _workload, c in service_containers(rendered[overlay]):
        for var in c.get("env", []):
            if var["name"].startswith("ECOSPHERE_"):
                assert settings_field(var["name"][len("ECOSPHERE_"):]), var["name"]


def test_settings_field_check() -> None:
    assert settings_field("AMQP__PREFIX")
    assert settings_field("ADMIN_PORT")
    assert not settings_field("AMQP__PREFX")
    assert not settings_field("ADMIN_PORT__X")


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_each_service_loads_its_settings_from_the_manifests(
        rendered: dict[str, list[Resource]], overlay: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    resources = rendered[overlay]
    checked = 0
    for workload, container in service_containers(resources):
        env = container_env(workload, container, resources)
        unresolved = {k: v for k, v in env.items() if REFERENCE.search(v)}
        assert not unresolved, f"undefined $(VAR) references: {unresolved}"
        settings = load_settings(monkeypatch, env)
        service = container["args"][0]
        assert load_settings(monkeypatch, env, service) == settings  # as `ecosphere run` does
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert settings.service == service == labels["app.kubernetes.io/instance"]
        assert settings.is_validator == is_validator(workload)

        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        claims = {t["metadata"]["name"] for t in workload["spec"]["volumeClaimTemplates"]}
        assert settings.data_dir == Path(mounts["data"]) and "data" in claims
        assert mounts["tmp"] == "/tmp"

        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        if settings.is_validator:
            assert settings.admin_host == "0.0.0.0"
            served = settings.admin_port
            assert ports == {"admin": served}
        else:
            assert settings.gateway.host == "0.0.0.0"
            served = settings.gateway.port
            assert ports == {"http": served}
            assert settings.views.db_name == pod_name(workload)
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert ports[container[probe]["httpGet"]["port"]] == served

        assert settings.amqp.prefix == "ecosphere"
        assert settings.amqp.queue_type == "quorum"
        url = URL(settings.amqp_url or "")
        assert url.scheme == "amqps" and url.port == 5671
        assert url.host == env["BROKER_HOST"]
        assert url.user == placeholder(f"ecosphere-{service}-amqp", "username")
        assert url.password == placeholder(f"ecosphere-{service}-amqp", "password")
        assert mounted_file(workload, container, url.query["cafile"]) == (
            "ecosphere-broker-ca", "ca.crt")
        checked += 1
    assert checked == len(list(workloads(resources)))


def broker_of(resources: list[Resource]) -> list[Resource]:
    """The broker's resources: this overlay's, else (a member's cluster) the base's."""
    if by_kind(resources, "RabbitmqCluster"):
        return resources
    return render(DEPLOY / "k8s" / "base")


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_broker_topology_matches_the_settings(rendered: dict[str, list[Resource]],
                                              overlay: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    resources = rendered[overlay]
    broker = broker_of(resources)
    cluster = by_kind(broker, "RabbitmqCluster")[0]
    vhost = by_kind(broker, "Vhost")[0]["spec"]["name"]
    for workload, container in service_containers(resources):
        env = container_env(workload, container, resources)
        settings = load_settings(monkeypatch, env)
        t = Topology(settings.amqp.prefix)
        assert URL(settings.amqp_url or "").path == f"/{vhost}"
        # The service's broker user imports exactly the credentials the pod uses.
        user = find(broker, "User", f"ecosphere-{settings.service}")
        credentials = user["spec"]["importCredentialsSecret"]["name"]
        assert credentials == f"ecosphere-{settings.service}-amqp"
        permission = find(broker, "Permission", f"ecosphere-{settings.service}")
        assert permission["spec"]["vhost"] == vhost
        assert permission["spec"]["userReference"]["name"] == user["metadata"]["name"]
        names = [t.consensus, t.txs, t.direct, t.events, t.dead, f"{t.prefix}.dead-letters",
                 t.queue("k3y1d", "consensus"), t.queue("k3y1d", "txs")]
        for right in ("configure", "write", "read"):
            regex = re.compile(permission["spec"]["permissions"][right])
            assert all(regex.search(n) for n in names), right
            assert not regex.search("amq.default") and not regex.search("other.consensus")
        policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(broker, "Policy")}
        node = policies["ecosphere-node-queues"]
        assert node["vhost"] == vhost
        assert re.search(node["pattern"], t.queue("k3y1d", "consensus"))
        assert re.search(node["pattern"], t.queue("k3y1d", "txs"))
        assert not re.search(node["pattern"], t.consensus)
        assert node["definition"]["dead-letter-exchange"] == t.dead
        assert node["definition"]["overflow"] == "drop-head"
        assert node["definition"]["max-length"] == settings.amqp.queue_length_max
        dead = policies["ecosphere-dead-letters"]
        assert re.search(dead["pattern"], f"{t.prefix}.dead-letters")
        config = dict(line.split(" = ", 1) for line in
                      cluster["spec"]["rabbitmq"]["additionalConfig"].splitlines() if line)
        assert int(config["max_message_size"]) >= settings.limits.message_bytes_max
    if by_kind(resources, "RabbitmqCluster"):
        ns = cluster["metadata"]["namespace"]
        config_map = find(resources, "ConfigMap", "ecosphere-config")["data"]
        assert config_map["BROKER_HOST"] == f"{cluster['metadata']['name']}.{ns}.svc"


def test_gateway_views_uri_matches_the_replica_set(rendered: dict[str, list[Resource]],
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    resources = rendered["local-consortium"]
    mongo = find(resources, "MongoDBCommunity", "ecosphere-views")
    gateway = find(resources, "StatefulSet", "ecosphere-gateway")
    container = containers(gateway, init=False)[0]
    env = container_env(gateway, container, resources)
    settings = load_settings(monkeypatch, env)
    assert settings.mongo_uri is not None
    parsed = parse_mongo(settings.mongo_uri, tmp_path)
    name, ns = mongo["metadata"]["name"], mongo["metadata"]["namespace"]
    assert parsed["nodelist"] == [(f"{name}-{i}.{name}-svc.{ns}.svc", 27017)
                                  for i in range(mongo["spec"]["members"])]
    options = parsed["options"]
    assert options["replicaSet"] == name
    assert options["authSource"] == "admin"
    assert options["tls"] is True
    user = mongo["spec"]["users"][0]
    assert parsed["username"] == user["name"]
    assert parsed["password"] == placeholder(user["passwordSecretRef"]["name"],
                                             user["passwordSecretRef"]["key"])
    assert mounted_file(gateway, container, options["tlsCAFile"]) == (
        mongo["spec"]["security"]["tls"]["caConfigMapRef"]["name"], "ca.crt")
    assert settings.views.db_name in {r["db"] for r in user["roles"]}


def parse_mongo(uri: str, tmp_path: Path) -> dict[str, Any]:
    """pymongo's own parsing and validation of the URI. pymongo opens tlsCAFile while
    validating, so that one option is validated against a stand-in file; the parsed
    result keeps the manifest's path."""
    raw = parse_uri(uri, validate=False)
    ca = raw["options"]["tlsCAFile"]
    stand_in = tmp_path / "ca.crt"
    stand_in.write_text("")
    validated: dict[str, Any] = parse_uri(uri.replace(ca, str(stand_in)))
    validated["options"]["tlsCAFile"] = ca
    return validated


def _san_covers(names: list[str], host: str) -> bool:
    for name in names:
        if name == host:
            return True
        if name.startswith("*.") and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def test_bootstrap_certificates_name_the_hosts_the_services_dial(
        rendered: dict[str, list[Resource]], bootstrap_objects: list[Resource],
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    resources = rendered["local-consortium"]
    certs = {o["metadata"]["name"]: x509.load_pem_x509_certificate(
        o["stringData"]["tls.crt"].encode()) for o in bootstrap_objects
        if o["kind"] == "Secret" and "tls.crt" in o["stringData"]}

    def sans(secret: str) -> list[str]:
        ext = certs[secret].extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return ext.value.get_values_for_type(x509.DNSName)

    gateway = find(resources, "StatefulSet", "ecosphere-gateway")
    settings = load_settings(monkeypatch, container_env(
        gateway, containers(gateway, init=False)[0], resources))
    assert _san_covers(sans("ecosphere-broker-tls"), URL(settings.amqp_url or "").host or "")
    for host, _ in parse_mongo(settings.mongo_uri or "", tmp_path)["nodelist"]:
        assert _san_covers(sans("ecosphere-views-tls"), host)
    cluster = find(resources, "RabbitmqCluster", "ecosphere-broker")
    mongo = find(resources, "MongoDBCommunity", "ecosphere-views")
    assert cluster["spec"]["tls"]["secretName"] == "ecosphere-broker-tls"
    assert mongo["spec"]["security"]["tls"]["certificateKeySecretRef"]["name"] == (
        "ecosphere-views-tls")


# --- the image's defaults and compose.yaml --------------------------------------------------

def image_env() -> dict[str, str]:
    text = (DEPLOY / "Containerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for name, value in re.findall(r"(\w+)=(\S+)", line):
                env[name] = value
    return env


def test_image_defaults_load_and_match_the_manifests(rendered: dict[str, list[Resource]],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in image_env().items() if k.startswith("ECOSPHERE_")}
    config = find(rendered["local-consortium"], "ConfigMap", "ecosphere-config")["data"]
    for name, value in env.items():
        assert config[name] == value, name
    for service in ("ledger", "gateway"):
        settings = load_settings(monkeypatch, env, service)
        assert settings.data_dir == Path("/var/lib/ecosphere")
        assert settings.admin_port == 9100 and settings.gateway.port == 8080


def test_compose_environment_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    rabbit = services["rabbitmq"]["environment"]
    for name in ("ledger", "trace", "customs", "credit", "gateway"):
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        settings = load_settings(monkeypatch, env, services[name]["command"][0])
        assert settings.service == name
        assert settings.data_dir == Path(services[name]["volumes"][0].split(":")[1])
        url = URL(settings.amqp_url or "")
        assert url.host in services and url.port == 5672
        assert url.path == f"/{rabbit['RABBITMQ_DEFAULT_VHOST']}"
        assert (url.user, url.password) == (rabbit["RABBITMQ_DEFAULT_USER"],
                                            rabbit["RABBITMQ_DEFAULT_PASS"])
        if name == "gateway":
            assert settings.mongo_uri is not None
            assert parse_uri(settings.mongo_uri)["nodelist"][0][0] in services
            published = services[name]["ports"][0].rsplit(":", 1)[1]
            assert int(published) == settings.gateway.port
        else:
            assert settings.admin_port == 9100
