"""The shipped Role covers exactly what the probe reads, read-only, secrets by name only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from probes.common.kube_client import BUILTIN_RESOURCES, CUSTOM_RESOURCES

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes-rbac.yaml"
GROUPS = {
    "pods": "",
    "services": "",
    "events": "",
    "deployments": "apps",
    "horizontalpodautoscalers": "autoscaling",
    "ingresses": "networking.k8s.io",
}


def test_role_matches_what_the_probe_lists() -> None:
    docs: list[dict[str, Any]] = list(yaml.safe_load_all(RBAC.read_text(encoding="utf-8")))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"ServiceAccount", "Role", "RoleBinding"}
    granted: set[tuple[str, str]] = set()
    for rule in kinds["Role"]["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                if resource == "secrets":
                    assert rule["verbs"] == ["get"] and rule["resourceNames"]
                else:
                    assert "resourceNames" not in rule
                    assert "list" in rule["verbs"]
                granted.add((group, resource))
    wanted = {(GROUPS[r], r) for r in BUILTIN_RESOURCES}
    wanted |= {(group, plural) for group, _version, plural in CUSTOM_RESOURCES.values()}
    wanted.add(("", "secrets"))
    assert granted == wanted
    binding = kinds["RoleBinding"]
    assert binding["roleRef"]["name"] == kinds["Role"]["metadata"]["name"]
    assert binding["subjects"][0]["name"] == kinds["ServiceAccount"]["metadata"]["name"]
