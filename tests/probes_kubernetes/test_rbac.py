"""The shipped Role covers exactly what the probe reads, read-only, secrets by name only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from probes.common.kube_client import COLLECTION_PATHS

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "base" / "rbac.yaml"


def _group_and_plural(path: str) -> tuple[str, str]:
    """``/api/v1/namespaces/{namespace}/pods`` -> ("", "pods");
    ``/apis/apps/v1/namespaces/{namespace}/deployments`` -> ("apps", "deployments")."""
    parts = path.strip("/").split("/")
    return ("" if parts[0] == "api" else parts[1]), parts[-1]


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
    wanted = {_group_and_plural(path) for path in COLLECTION_PATHS.values()}
    assert granted == wanted
    binding = kinds["RoleBinding"]
    assert binding["roleRef"]["name"] == kinds["Role"]["metadata"]["name"]
    assert binding["subjects"][0]["name"] == kinds["ServiceAccount"]["metadata"]["name"]
