"""Policy checks over the rendered manifests, the image definition and compose.yaml:
non-root containers with limits and probes, pinned images, no secret in a ConfigMap,
at most f validators disrupted, validators reaching only the broker."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

from services.runtime.datadir import VALIDATOR_SERVICES
from tests.deploy.conftest import (
    DEPLOY,
    OVERLAYS,
    ROOT,
    by_kind,
    containers,
    find,
    is_validator,
    pod_spec,
    workloads,
)
from tests.deploy.kustomize import Resource

N_VALIDATORS = len(VALIDATOR_SERVICES)
F = (N_VALIDATORS - 1) // 3
PINNED_IMAGE = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+:[A-Za-z0-9][A-Za-z0-9._-]*"
                          r"(@sha256:[0-9a-f]{64})?$")
OVERLAY_NAMES = sorted(OVERLAYS)


def image_is_pinned(image: str) -> bool:
    tag = image.rsplit("@", 1)[0].rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    return bool(PINNED_IMAGE.match(image)) and tag not in ("", "latest") and "latest" not in tag


def test_image_pin_check() -> None:
    assert image_is_pinned("ghcr.io/ecosphere/ecosphere:0.1.0")
    assert image_is_pinned("docker.io/library/rabbitmq:3.13.7-management")
    assert not image_is_pinned("ghcr.io/ecosphere/ecosphere")
    assert not image_is_pinned("ghcr.io/ecosphere/ecosphere:latest")
    assert not image_is_pinned("rabbitmq")


# --- containers ---------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_container_is_non_root_and_locked_down(rendered: dict[str, list[Resource]],
                                                     overlay: str) -> None:
    found = 0
    for workload in workloads(rendered[overlay]):
        spec = pod_spec(workload)
        pod_sc = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False
        # Service links would inject variables such as ECOSPHERE_GATEWAY_PORT=tcp://...
        # for a Service named ecosphere-gateway, into the settings' namespace.
        assert spec.get("enableServiceLinks") is False
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        for c in containers(workload):
            found += 1
            sc = {**pod_sc, **c.get("securityContext", {})}
            where = f"{workload['metadata']['name']}/{c['name']}"
            assert sc.get("runAsNonRoot") is True, where
            assert isinstance(sc.get("runAsUser"), int) and sc["runAsUser"] > 0, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), where
            assert not sc.get("privileged", False), where
    assert found


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_container_has_requests_and_limits(rendered: dict[str, list[Resource]],
                                                 overlay: str) -> None:
    for workload in workloads(rendered[overlay]):
        for c in containers(workload):
            resources = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), (
                    f"{workload['metadata']['name']}/{c['name']} lacks {kind}")
    for cluster in by_kind(rendered[overlay], "RabbitmqCluster"):
        assert {"requests", "limits"} <= set(cluster["spec"]["resources"])
    for mongo in by_kind(rendered[overlay], "MongoDBCommunity"):
        for c in mongo["spec"]["statefulSet"]["spec"]["template"]["spec"]["containers"]:
            assert {"requests", "limits"} <= set(c["resources"])


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_service_container_has_probes(rendered: dict[str, list[Resource]],
                                            overlay: str) -> None:
    for workload in workloads(rendered[overlay]):
        for c in containers(workload, init=False):
            where = f"{workload['metadata']['name']}/{c['name']}"
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            readiness, liveness = c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"]
            assert readiness["path"] == "/readyz", where
            assert liveness["path"] == "/healthz", where
            assert readiness["port"] in ports and liveness["port"] in ports, where
            assert c["startupProbe"]["httpGet"]["path"] == "/healthz", where


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_no_latest_and_every_image_pinned(rendered: dict[str, list[Resource]],
                                          overlay: str) -> None:
    images = [c["image"] for w in workloads(rendered[overlay]) for c in containers(w)]
    images += [r["spec"]["image"] for r in by_kind(rendered[overlay], "RabbitmqCluster")]
    for image in images:
        assert image_is_pinned(image), image
    for w in workloads(rendered[overlay]):
        for c in containers(w):
            assert c.get("imagePullPolicy") != "Always" or "@sha256:" in c["image"]
    for mongo in by_kind(rendered[overlay], "MongoDBCommunity"):
        assert re.fullmatch(r"\d+\.\d+\.\d+", mongo["spec"]["version"])


# --- secrets --------------------------------------------------------------------------------

SECRET_KEY_NAMES = re.compile(r"(password|passwd|secret|token|private|\.key$|credential)",
                              re.IGNORECASE)
SECRET_VALUES = re.compile(r"(PRIVATE KEY|://[^/$\s:@]+:[^/$\s@]+@)")


def secret_leaks(data: dict[str, str]) -> list[str]:
    return [k for k, v in data.items()
            if SECRET_KEY_NAMES.search(k) or SECRET_VALUES.search(str(v))]


def test_secret_leak_check() -> None:
    assert secret_leaks({"node.key": "x"}) == ["node.key"]
    assert secret_leaks({"URL": "amqps://user:hunter2@host/"}) == ["URL"]
    assert secret_leaks({"K": "-----BEGIN PRIVATE KEY-----"}) == ["K"]
    assert secret_leaks({"URL": "amqps://$(AMQP_USERNAME):$(AMQP_PASSWORD)@h/"}) == []
    assert secret_leaks({"ca.crt": "-----BEGIN CERTIFICATE-----"}) == []


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_secrets_never_in_configmaps_or_manifests(rendered: dict[str, list[Resource]],
                                                  overlay: str) -> None:
    resources = rendered[overlay]
    # Secrets are created out of band (offline bootstrap), never kept in the manifests.
    assert not by_kind(resources, "Secret")
    for cm in by_kind(resources, "ConfigMap"):
        assert not secret_leaks(cm.get("data", {})), cm["metadata"]["name"]
    for workload in workloads(resources):
        for c in containers(workload):
            literal = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
            assert not secret_leaks(literal), f"{workload['metadata']['name']}/{c['name']}"
    text = yaml.safe_dump_all(resources)
    assert "PRIVATE KEY" not in text


def test_bootstrap_puts_secrets_only_in_secrets(bootstrap_objects: list[Resource]) -> None:
    for obj in bootstrap_objects:
        if obj["kind"] == "ConfigMap":
            assert not secret_leaks(obj["data"]), obj["metadata"]["name"]
        else:
            assert obj["kind"] == "Secret"


# --- disruption, updates and the network ------------------------------------------------------

def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are used"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def allowed_disruptions(pdb: Resource, pods: int) -> int:
    spec = pdb["spec"]
    if "maxUnavailable" in spec:
        value = spec["maxUnavailable"]
        return int(value) if not isinstance(value, str) else -(-pods * int(value[:-1]) // 100)
    value = spec["minAvailable"]
    available = int(value) if not isinstance(value, str) else -(-pods * int(value[:-1]) // 100)
    return max(0, pods - available)


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_pdbs_allow_at_most_f_validators_down(rendered: dict[str, list[Resource]],
                                              overlay: str) -> None:
    assert F == 1
    resources = rendered[overlay]
    validators = [w for w in workloads(resources) if is_validator(w)]
    assert validators
    pods = [(w["spec"]["template"]["metadata"]["labels"], w["spec"]["replicas"])
            for w in validators]
    total_pods = sum(n for _, n in pods)
    covering = [p for p in by_kind(resources, "PodDisruptionBudget")
                if any(selects(p["spec"]["selector"], labels) for labels, _ in pods)]
    assert covering, "validators without a PodDisruptionBudget"
    for labels, _ in pods:
        assert any(selects(p["spec"]["selector"], labels) for p in covering)
    budget = sum(allowed_disruptions(p, total_pods) for p in covering)
    assert 1 <= budget <= F, f"PDBs allow {budget} validators down, f = {F}"


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_validators_never_roll_on_their_own(rendered: dict[str, list[Resource]],
                                            overlay: str) -> None:
    """A StatefulSet rolls its own pods one at a time, but four StatefulSets would roll
    at once: validators update only when an operator deletes a pod, f at a time."""
    for w in workloads(rendered[overlay]):
        if is_validator(w):
            assert w["kind"] == "StatefulSet"
            assert w["spec"]["updateStrategy"]["type"] == "OnDelete"
            assert w["spec"]["replicas"] == 1
            claims = {t["metadata"]["name"] for t in w["spec"]["volumeClaimTemplates"]}
            mounts = {m["name"] for c in containers(w) for m in c["volumeMounts"]}
            assert "data" in claims and "data" in mounts


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_validators_talk_only_to_the_broker(rendered: dict[str, list[Resource]],
                                            overlay: str) -> None:
    resources = rendered[overlay]
    for w in workloads(resources):
        if not is_validator(w):
            continue
        labels = w["spec"]["template"]["metadata"]["labels"]
        policies = [p for p in by_kind(resources, "NetworkPolicy")
                    if selects(p["spec"]["podSelector"], labels)]
        assert policies, f"{w['metadata']['name']} has no NetworkPolicy"
        for p in policies:
            assert set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            for rule in p["spec"]["egress"]:
                ports = {(x["protocol"], x["port"]) for x in rule["ports"]}
                dns = ports == {("UDP", 53), ("TCP", 53)}
                broker = ports == {("TCP", 5671)}
                assert dns or broker, rule
                for peer in rule["to"]:
                    if dns:
                        assert peer["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
                    elif "podSelector" in peer:
                        assert peer["podSelector"]["matchLabels"] == {
                            "app.kubernetes.io/name": "ecosphere-broker"}
                    else:
                        assert "/" in peer["ipBlock"]["cidr"]
            admin = {p["containerPort"] for c in containers(w, init=False)
                     for p in c["ports"]}
            for rule in p["spec"]["ingress"]:
                assert {x["port"] for x in rule["ports"]} <= admin
                for peer in rule["from"]:
                    assert peer["podSelector"]["matchLabels"] == {
                        "app.kubernetes.io/name": "prometheus"}


def test_gateway_scaling_fits_its_key_pool_and_views(rendered: dict[str, list[Resource]],
                                                     bootstrap: Any) -> None:
    resources = rendered["local-consortium"]
    hpa = find(resources, "HorizontalPodAutoscaler", "ecosphere-gateway")
    target = hpa["spec"]["scaleTargetRef"]
    gateway = find(resources, target["kind"], target["name"])
    assert gateway["kind"] == "StatefulSet"
    assert 1 <= hpa["spec"]["minReplicas"] <= gateway["spec"]["replicas"]
    assert hpa["spec"]["maxReplicas"] <= bootstrap.GATEWAY_KEY_POOL
    mongo = find(resources, "MongoDBCommunity", "ecosphere-views")
    dbs = {r["db"] for u in mongo["spec"]["users"] for r in u["roles"]
           if r["name"] == "readWrite"}
    assert {f"{gateway['metadata']['name']}-{i}"
            for i in range(hpa["spec"]["maxReplicas"])} <= dbs
    pdb = find(resources, "PodDisruptionBudget", "ecosphere-gateway")
    assert pdb["spec"]["minAvailable"] >= 1
    service = find(resources, "Service", "ecosphere-gateway")
    ingress = find(resources, "Ingress", "ecosphere-gateway")
    paths = {p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    assert not paths & {"/", "/metrics", "/healthz", "/readyz"}
    for rule in ingress["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            assert p["backend"]["service"]["name"] == service["metadata"]["name"]


def test_broker_is_a_tls_quorum_cluster(rendered: dict[str, list[Resource]]) -> None:
    base = [r for r in rendered["local-consortium"] if r["kind"] == "RabbitmqCluster"]
    assert len(base) == 1
    from tests.deploy.kustomize import render

    full = find(render(DEPLOY / "k8s" / "base"), "RabbitmqCluster", "ecosphere-broker")
    assert full["spec"]["replicas"] >= 3 and full["spec"]["replicas"] % 2 == 1
    assert full["spec"]["tls"]["disableNonTLSListeners"] is True
    vhost = find(rendered["local-consortium"], "Vhost", "ecosphere")
    assert vhost["spec"]["defaultQueueType"] == "quorum"
    users = by_kind(rendered["local-consortium"], "User")
    assert all("tags" not in u["spec"] for u in users), "no management tags for services"


# --- the image definition and compose.yaml ----------------------------------------------------

def containerfile() -> list[str]:
    text = (DEPLOY / "Containerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_containerfile_is_multi_stage_slim_and_pinned() -> None:
    lines = containerfile()
    args = {m.group(1): m.group(2) for line in lines
            if (m := re.match(r"ARG (\w+)=(\S+)", line))}
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage"
    assert any(" AS build" in line for line in lines if line.startswith("FROM "))
    for written in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], written)
        assert image_is_pinned(image), image
        assert "-slim" in image
        assert re.search(r":\d+\.\d+\.\d+-", image), "pinned to a full version"
    assert any(line.startswith("COPY --from=build") for line in lines)


def test_containerfile_runs_as_numeric_non_root_user_read_only() -> None:
    lines = containerfile()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users, "USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0
    assert "ECOSPHERE_DATA_DIR=/var/lib/ecosphere" in " ".join(lines)
    assert any(line.startswith("VOLUME") and "/var/lib/ecosphere" in line for line in lines)
    assert not any("[embedded]" in line or "SecantusDB" in line for line in lines
                   if line.startswith("RUN"))


def test_containerfile_healthcheck_and_service_argument() -> None:
    lines = containerfile()
    assert any(line.startswith("HEALTHCHECK") and "healthcheck.py" in line for line in lines)
    assert (DEPLOY / "healthcheck.py").exists()
    entrypoint = [line for line in lines if line.startswith("ENTRYPOINT")]
    cmd = [line for line in lines if line.startswith("CMD")]
    assert entrypoint[-1] == 'ENTRYPOINT ["ecosphere", "run"]'
    assert cmd[-1] == 'CMD ["gateway"]'
    ports = " ".join(line for line in lines if line.startswith("EXPOSE")).split()
    assert {"8080", "9100"} <= set(ports)


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for entry in (".git", ".venv", "tests", "data", "*.key"):
        assert entry in ignored


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def test_compose_runs_every_service_and_the_broker() -> None:
    services = compose()["services"]
    assert {"rabbitmq", "mongo", "genesis", "ledger", "trace", "customs", "credit",
            "gateway"} <= set(services)
    for name, service in services.items():
        assert image_is_pinned(service["image"]) or service["image"] == "ecosphere:0.1.0", name
        assert "latest" not in service["image"]
        assert "limits" in service["deploy"]["resources"], name
    for name in ("ledger", "trace", "customs", "credit", "gateway"):
        s = services[name]
        assert s["command"] == [name]
        assert s["user"] == "10001:10001" and s["read_only"] is True
        assert s["depends_on"]["genesis"]["condition"] == "service_completed_successfully"
        assert s["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert services["gateway"]["ports"] == ["127.0.0.1:8080:8080"]
