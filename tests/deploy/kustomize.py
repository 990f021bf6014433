"""Rendering deploy/kubernetes with ``kubectl kustomize``, or without kubectl.

The fallback implements only what the manifests use: resources (files and directories),
components,
``namespace``, ``labels`` (metadata only), ``configMapGenerator`` (files, create/replace,
kustomize's content-hash suffix and the references to it), ``images``, and ``patches``
with a kind/name target (strategic merge, or JSON 6902 add/replace/remove). A test
checks that it agrees with kubectl where both run, so the invariant tests mean the same
on a machine without kubectl.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE_DIR = ROOT / "deploy" / "kubernetes"
# Kinds the namespace transformer leaves alone.
_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
_GENERATED = "x-test/generated-name"


def kubectl() -> str | None:
    return shutil.which("kubectl")


def kubectl_render(path: Path) -> list[Obj]:
    exe = kubectl()
    assert exe is not None
    out = subprocess.run([exe, "kustomize", str(path)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def python_render(path: Path) -> list[Obj]:
    objects = _build(path)
    renames: dict[str, str] = {}
    for obj in objects:
        original = obj["metadata"].get("annotations", {}).pop(_GENERATED, None)
        if original is not None:
            if not obj["metadata"]["annotations"]:
                del obj["metadata"]["annotations"]
            obj["metadata"]["name"] = f"{original}-{config_map_hash(obj)}"
            renames[original] = obj["metadata"]["name"]
    for obj in objects:
        for pod in _pod_specs(obj):
            _rename_config_maps(pod, renames)
    return objects


def render(path: Path) -> tuple[list[Obj], str]:
    """The objects, and which renderer made them."""
    if kubectl() is not None:
        return kubectl_render(path), "kubectl kustomize"
    return python_render(path), "python fallback (kubectl not installed)"


def config_map_hash(obj: Obj) -> str:
    """kustomize's name suffix: sha256 of Go's JSON of kind, name and data, 10 characters
    with some digits swapped for letters. kustomize looks the name up by a path that
    matches nothing, so it always hashes an empty name (checked against kubectl)."""
    encoded = {"kind": "ConfigMap", "name": "", "data": obj.get("data", {})}
    text = json.dumps(encoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _build(path: Path, objects: list[Obj] | None = None) -> list[Obj]:
    """One kustomization, or a component applied to ``objects``."""
    spec: Obj = yaml.safe_load((path / "kustomization.yaml").read_text())
    objects = [] if objects is None else objects
    for entry in spec.get("resources", []):
        target = path / entry
        if target.is_dir():
            objects += _build(target)
        else:
            objects += [d for d in yaml.safe_load_all(target.read_text()) if d]
    for component in spec.get("components", []):
        _build(path / component, objects)
    for gen in spec.get("configMapGenerator", []):
        _generate(path, gen, objects)
    for patch in spec.get("patches", []):
        body: Any = yaml.safe_load(
            (path / patch["path"]).read_text() if "path" in patch else patch["patch"]
        )
        target = patch.get("target") or {"kind": body["kind"], "name": body["metadata"]["name"]}
        for obj in objects:
            if (obj["kind"], obj["metadata"]["name"]) == (target["kind"], target["name"]):
                patched = _json_patch(obj, body) if isinstance(body, list) else _merge(obj, body)
                obj.clear()
                obj.update(patched)
    if "namespace" in spec:
        accounts = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}
        for obj in objects:
            if obj["kind"] not in _CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = spec["namespace"]
            for subject in obj.get("subjects", []):
                if subject.get("kind") == "ServiceAccount" and subject["name"] in accounts:
                    subject["namespace"] = spec["namespace"]
    for group in spec.get("labels", []):
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(group["pairs"])
    for image in spec.get("images", []):
        for obj in objects:
            for pod in _pod_specs(obj):
                for container in pod.get("containers", []) + pod.get("initContainers", []):
                    name, _, _tag = container["image"].partition(":")
                    if name == image["name"]:
                        new = image.get("newName", name)
                        container["image"] = f"{new}:{image['newTag']}" if "newTag" in image \
                            else new
    return objects


def _generate(path: Path, gen: Obj, objects: list[Obj]) -> None:
    data: dict[str, str] = {}
    for entry in gen.get("files", []):
        key, _, file = entry.rpartition("=")
        data[key or Path(file).name] = (path / file).read_text()
    for literal in gen.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    name = gen["name"]
    existing = [
        o for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"].get("annotations", {}).get(_GENERATED)
        == name
    ]
    behavior = gen.get("behavior", "create")
    if behavior == "create":
        assert not existing, f"configMapGenerator {name} exists already"
        objects.append({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "annotations": {_GENERATED: name}},
                        "data": data})
    else:
        assert existing, f"configMapGenerator {name}: nothing to {behavior}"
        target = existing[0]
        target["data"] = data if behavior == "replace" else {**target["data"], **data}


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge as far as the patches need it: maps merge, lists of named maps
    merge by name, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if (isinstance(base, list) and isinstance(patch, list) and patch
            and all(isinstance(i, dict) and "name" in i for i in base + patch)):
        merged = [copy.deepcopy(i) for i in base]
        for item in patch:
            match = next((i for i, b in enumerate(merged) if b["name"] == item["name"]), None)
            if match is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[match] = _merge(merged[match], item)
        return merged
    return copy.deepcopy(patch)


def _json_patch(obj: Obj, ops: list[Obj]) -> Obj:
    """RFC 6902 add/replace/remove, the operations the components use."""
    out = copy.deepcopy(obj)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~")
                          for p in op["path"].split("/")[1:]]
        node: Any = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if op["op"] == "remove":
            del node[int(last) if isinstance(node, list) else last]
        elif isinstance(node, list):
            if last == "-":
                node.append(copy.deepcopy(op["value"]))
            elif op["op"] == "add":
                node.insert(int(last), copy.deepcopy(op["value"]))
            else:
                node[int(last)] = copy.deepcopy(op["value"])
        else:
            assert op["op"] == "add" or last in node, f"replace of missing {op['path']}"
            node[last] = copy.deepcopy(op["value"])
    return out


def _pod_specs(obj: Obj) -> list[Obj]:
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return [obj["spec"]["template"]["spec"]]
    return []


def _rename_config_maps(pod: Obj, renames: dict[str, str]) -> None:
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            volume["configMap"]["name"] = renames.get(volume["configMap"]["name"],
                                                      volume["configMap"]["name"])
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                ref = source["configMapRef"]
                ref["name"] = renames.get(ref["name"], ref["name"])
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("configMapKeyRef")
            if ref is not None:
                ref["name"] = renames.get(ref["name"], ref["name"])
