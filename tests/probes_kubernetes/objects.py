"""Builders for real-shaped Kubernetes API objects (as ``kubectl get -o json`` shows them)."""

from __future__ import annotations

import base64
import itertools
from typing import Any

Obj = dict[str, Any]
NS = "festivals"
CREATED = "2026-11-20T08:00:00Z"
_uid = itertools.count(1)


def _meta(name: str, labels: dict[str, str] | None = None, **extra: Any) -> Obj:
    n = next(_uid)
    return {
        "name": name,
        "namespace": NS,
        "uid": f"0000000{n:05d}-aaaa-bbbb-cccc-000000000000",
        "resourceVersion": str(1000 + n),
        "creationTimestamp": CREATED,
        "labels": labels or {},
        **extra,
    }


def pod(
    name: str,
    app: str = "festivals-api",
    *,
    phase: str = "Running",
    ready: bool = True,
    waiting: str | None = None,
    terminated: tuple[str, int] | None = None,
    restarts: int = 0,
    unschedulable: bool = False,
    container: str = "api",
    limits: tuple[str, str] | None = ("500m", "512Mi"),
    requests: tuple[str, str] = ("250m", "256Mi"),
) -> Obj:
    resources: Obj = {"requests": {"cpu": requests[0], "memory": requests[1]}}
    if limits:
        resources["limits"] = {"cpu": limits[0], "memory": limits[1]}
    conditions: list[Obj] = [
        {
            "type": "Ready",
            "status": "True" if ready else "False",
            "lastProbeTime": None,
            "lastTransitionTime": CREATED,
        },
    ]
    if unschedulable:
        conditions = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient memory.",
                "lastProbeTime": None,
                "lastTransitionTime": CREATED,
            }
        ]
    state: Obj = {"running": {"startedAt": CREATED}}
    if waiting:
        state = {"waiting": {"reason": waiting, "message": "back-off 5m0s restarting failed"}}
    last: Obj = {}
    if terminated:
        last = {
            "terminated": {
                "reason": terminated[0],
                "exitCode": terminated[1],
                "startedAt": CREATED,
                "finishedAt": CREATED,
            }
        }
    status: Obj = {"phase": phase, "conditions": conditions, "qosClass": "Burstable"}
    if not unschedulable:
        status["containerStatuses"] = [
            {
                "name": container,
                "ready": ready,
                "restartCount": restarts,
                "state": state,
                "lastState": last,
                "image": "ghcr.io/festivals/api:1.4.2",
                "imageID": "ghcr.io/festivals/api@sha256:" + "ab" * 32,
                "containerID": "" if waiting else "containerd://" + "cd" * 32,
                "started": ready,
            }
        ]
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": _meta(name, {"app": app, "pod-template-hash": "7d9f8c6b5"}),
        "spec": {
            "containers": [
                {"name": container, "image": "ghcr.io/festivals/api:1.4.2", "resources": resources}
            ],
            "nodeName": "" if unschedulable else "node-1",
        },
        "status": status,
    }


def many_pods(count: int) -> list[Obj]:
    return [pod(f"festivals-api-7d9f8c6b5-{i:05d}") for i in range(count)]


def deployment(
    name: str,
    *,
    replicas: int = 2,
    updated: int | None = None,
    ready: int | None = None,
    available: int | None = None,
    revision: int = 3,
    progressing: tuple[str, str] = ("True", "NewReplicaSetAvailable"),
    rollout_time: str = "2026-11-26T10:15:00Z",
    generation: int = 5,
) -> Obj:
    updated = replicas if updated is None else updated
    ready = replicas if ready is None else ready
    available = ready if available is None else available
    return {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": _meta(
            name,
            {"app": name},
            generation=generation,
            annotations={"deployment.kubernetes.io/revision": str(revision)},
        ),
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
        "status": {
            "observedGeneration": generation,
            "replicas": max(replicas, updated),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            **({"unavailableReplicas": replicas - available} if available < replicas else {}),
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if available >= replicas else "False",
                    "reason": "MinimumReplicasAvailable",
                    "lastUpdateTime": CREATED,
                    "lastTransitionTime": CREATED,
                },
                {
                    "type": "Progressing",
                    "status": progressing[0],
                    "reason": progressing[1],
                    "lastUpdateTime": rollout_time,
                    "lastTransitionTime": CREATED,
                },
            ],
        },
    }


def hpa(
    name: str,
    target: str,
    *,
    min_r: int = 2,
    max_r: int = 10,
    current: int = 2,
    desired: int | None = None,
) -> Obj:
    return {
        "kind": "HorizontalPodAutoscaler",
        "apiVersion": "autoscaling/v2",
        "metadata": _meta(name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": min_r,
            "maxReplicas": max_r,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
        "status": {
            "currentReplicas": current,
            "desiredReplicas": current if desired is None else desired,
        },
    }


def ingress(name: str, backends: list[tuple[str, str, str]], tls: list[tuple[str, str]]) -> Obj:
    """``backends``: (host, path, service); ``tls``: (host, secretName)."""
    rules: dict[str, list[Obj]] = {}
    for host, path, svc in backends:
        rules.setdefault(host, []).append(
            {
                "path": path,
                "pathType": "Prefix",
                "backend": {"service": {"name": svc, "port": {"number": 80}}},
            }
        )
    return {
        "kind": "Ingress",
        "apiVersion": "networking.k8s.io/v1",
        "metadata": _meta(name),
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": [h], "secretName": s} for h, s in tls],
            "rules": [{"host": h, "http": {"paths": p}} for h, p in rules.items()],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}},
    }


def service(name: str) -> Obj:
    return {
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": _meta(name, {"app": name}),
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.0.0.12",
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }


def event(reason: str, kind: str, obj_name: str, count: int = 1, uid: str = "") -> Obj:
    meta = _meta(f"{obj_name}.17f{reason.lower()}")
    if uid:
        meta["uid"] = uid
    return {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": meta,
        "involvedObject": {"kind": kind, "name": obj_name, "namespace": NS},
        "reason": reason,
        "message": f"message for {reason} that must never become a label",
        "type": "Warning",
        "count": count,
        "firstTimestamp": CREATED,
        "lastTimestamp": CREATED,
        "source": {"component": "kubelet"},
    }


def pod_metrics(
    name: str, cpu: str = "704595n", memory: str = "24716Ki", container: str = "api"
) -> Obj:
    return {
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {
            "name": name,
            "namespace": NS,
            "creationTimestamp": CREATED,
            "labels": {"app": "festivals-api"},
        },
        "timestamp": CREATED,
        "window": "15s",
        "containers": [{"name": container, "usage": {"cpu": cpu, "memory": memory}}],
    }


def certificate(
    name: str,
    *,
    ready: str = "True",
    not_after: str | None = "2027-01-25T08:00:00Z",
    renewal: str | None = "2026-12-26T08:00:00Z",
    failed: int = 0,
) -> Obj:
    status: Obj = {
        "conditions": [
            {
                "type": "Ready",
                "status": ready,
                "reason": "Ready" if ready == "True" else "Issuing",
                "message": "",
                "lastTransitionTime": CREATED,
            }
        ]
    }
    if not_after:
        status["notAfter"] = not_after
    if renewal:
        status["renewalTime"] = renewal
    if failed:
        status["failedIssuanceAttempts"] = failed
    return {
        "kind": "Certificate",
        "apiVersion": "cert-manager.io/v1",
        "metadata": _meta(name),
        "spec": {
            "secretName": name,
            "dnsNames": ["api.festivals.app"],
            "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"},
        },
        "status": status,
    }


def tls_secret(name: str, cert_pem: bytes, key_pem: bytes) -> Obj:
    return {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": _meta(name),
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(cert_pem).decode(),
            "tls.key": base64.b64encode(key_pem).decode(),
        },
    }
