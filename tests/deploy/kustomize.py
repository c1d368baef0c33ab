"""A small kustomize renderer for exactly the features deploy/k8s uses.

Supported: ``resources`` (files of one or more YAML documents, or directories holding
a kustomization.yaml), ``namespace``, and ``patches`` whose file is a JSON 6902 patch
(a list of add / remove / replace operations) with a ``target`` selecting by group,
version, kind and name. Anything else in a kustomization.yaml is refused, so that
the manifests cannot start using a feature this renderer would silently ignore.
When kubectl is installed, tests/deploy/test_manifests.py renders every overlay with
``kubectl kustomize`` too and requires the same resources.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]

Resource = dict[str, Any]

SUPPORTED_FIELDS = frozenset({"apiVersion", "kind", "resources", "namespace", "patches"})
SUPPORTED_TARGET_FIELDS = frozenset({"group", "version", "kind", "name"})
# Kinds that have no namespace (of those a kustomization here could contain).
CLUSTER_SCOPED = frozenset({
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
})


class KustomizeError(Exception):
    pass


def load_documents(path: Path) -> list[Resource]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise KustomizeError(f"{path}: every document must be a Kubernetes object")
    return docs


def resource_id(r: Resource) -> tuple[str, str, str, str]:
    meta = r.get("metadata", {})
    return (r["apiVersion"], r["kind"], meta.get("namespace", ""), meta["name"])


def render(directory: Path) -> list[Resource]:
    kustomization_path = directory / "kustomization.yaml"
    if not kustomization_path.exists():
        raise KustomizeError(f"{directory} has no kustomization.yaml")
    k = yaml.safe_load(kustomization_path.read_text()) or {}
    unknown = set(k) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{kustomization_path}: unsupported fields {sorted(unknown)}")
    resources: list[Resource] = []
    for entry in k.get("resources", []):
        path = (directory / entry).resolve()
        resources.extend(render(path) if path.is_dir() else load_documents(path))
    for patch in k.get("patches", []):
        apply_patch(resources, directory, patch)
    namespace = k.get("namespace")
    if namespace:
        for r in resources:
            if r["kind"] not in CLUSTER_SCOPED:
                r.setdefault("metadata", {})["namespace"] = namespace
    seen: set[tuple[str, str, str, str]] = set()
    for r in resources:
        rid = resource_id(r)
        if rid in seen:
            raise KustomizeError(f"{directory}: duplicate resource {rid}")
        seen.add(rid)
    return resources


def _matches(r: Resource, target: dict[str, str]) -> bool:
    group, _, version = r["apiVersion"].rpartition("/")
    return bool(target.get("kind", r["kind"]) == r["kind"]
            and target.get("name", r["metadata"]["name"]) == r["metadata"]["name"]
            and target.get("group", group) == group
            and target.get("version", version) == version)


def apply_patch(resources: list[Resource], directory: Path, patch: dict[str, Any]) -> None:
    if set(patch) != {"path", "target"}:
        raise KustomizeError(f"{directory}: only patches with path and target are supported")
    target = patch["target"]
    if set(target) - SUPPORTED_TARGET_FIELDS:
        raise KustomizeError(f"{directory}: unsupported patch target {target}")
    operations = yaml.safe_load((directory / patch["path"]).read_text())
    if not isinstance(operations, list):
        raise KustomizeError(f"{directory / patch['path']}: only JSON 6902 patches are supported")
    matched = [r for r in resources if _matches(r, target)]
    if not matched:
        raise KustomizeError(f"{directory}: patch target {target} matches no resource")
    for r in matched:
        for op in operations:
            json_patch(r, op)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"bad JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc: Resource, op: dict[str, Any]) -> None:
    """RFC 6902 add, remove and replace."""
    kind = op["op"]
    *parents, last = _pointer(op["path"])
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if kind == "add":
        value = copy.deepcopy(op["value"])
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), value)
        else:
            node[last] = value
    elif kind == "replace":
        if isinstance(node, list):
            node[int(last)] = copy.deepcopy(op["value"])
        else:
            if last not in node:
                raise KustomizeError(f"replace: {op['path']} does not exist")
            node[last] = copy.deepcopy(op["value"])
    elif kind == "remove":
        if isinstance(node, list):
            del node[int(last)]
        else:
            if last not in node:
                raise KustomizeError(f"remove: {op['path']} does not exist")
            del node[last]
    else:
        raise KustomizeError(f"unsupported JSON patch operation {kind!r}")


def canonical(resources: list[Resource]) -> list[Resource]:
    """Resources in a stable order (kustomize sorts by kind; this sorts by id)."""
    return sorted(resources, key=resource_id)
