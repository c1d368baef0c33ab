"""Shared fixtures for the deployment tests: the rendered overlays, the vendored CRDs,
the bootstrap output, and helpers over pod templates."""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

from tests.deploy.kustomize import Resource, render

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
CRDS = DEPLOY / "crds"
OVERLAYS = {"local-consortium": K8S / "overlays" / "local-consortium",
            "member": K8S / "overlays" / "member"}
# The Kubernetes version the manifests are validated against (kubernetes-validate
# ships its schemas; strict mode refuses unknown fields).
KUBERNETES_VERSION = "1.33.0"
WORKLOAD_KINDS = ("StatefulSet", "Deployment", "DaemonSet", "Job", "CronJob")


def load_bootstrap() -> ModuleType:
    """deploy/k8s/bootstrap.py, imported by path (deploy/ is not a package)."""
    name = "ecosphere_deploy_bootstrap"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, K8S / "bootstrap.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def bootstrap() -> ModuleType:
    return load_bootstrap()


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Resource]]:
    return {name: render(path) for name, path in OVERLAYS.items()}


@pytest.fixture(scope="session")
def bootstrap_objects(tmp_path_factory: pytest.TempPathFactory,
                      bootstrap: ModuleType) -> list[Resource]:
    """What `bootstrap.py local` writes, generated into a temporary directory."""
    out = tmp_path_factory.mktemp("bootstrap")
    assert bootstrap.main(["local", "--out", str(out)]) == 0
    objects = [d for d in yaml.safe_load_all((out / "bootstrap.yaml").read_text()) if d]
    return objects


@functools.cache
def crd_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(CRDS.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the CRD version's openAPIV3Schema."""
    schemas = {}
    for crd in crd_documents():
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = (
                version["schema"]["openAPIV3Schema"])
    return schemas


def by_kind(resources: list[Resource], kind: str) -> list[Resource]:
    return [r for r in resources if r["kind"] == kind]


def find(resources: list[Resource], kind: str, name: str) -> Resource:
    for r in resources:
        if r["kind"] == kind and r["metadata"]["name"] == name:
            return r
    raise KeyError(f"{kind}/{name}")


def workloads(resources: list[Resource]) -> Iterator[Resource]:
    yield from (r for r in resources if r["kind"] in WORKLOAD_KINDS)


def pod_spec(workload: Resource) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Resource, *, init: bool = True) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    found: list[dict[str, Any]] = list(spec.get("containers", []))
    if init:
        found += spec.get("initContainers", [])
    return found


def is_validator(workload: Resource) -> bool:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return bool(labels.get("app.kubernetes.io/component") == "validator")
