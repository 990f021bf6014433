"""Turn raw Kubernetes API objects (parsed JSON) into small immutable records.

These functions run in the worker thread, page by page, so the raw JSON of a page is
dropped as soon as its records are built. They never raise on odd shapes: a missing or
mistyped field becomes ``None``/``0``/``""``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from probes.base import parse_timestamp


@dataclass(frozen=True, slots=True)
class ContainerRec:
    name: str
    ready: bool
    waiting_reason: str
    last_terminated_reason: str
    last_terminated_exit_code: int | None
    restarts: int
    requests_cpu: float | None
    requests_memory: float | None
    limits_cpu: float | None
    limits_memory: float | None


@dataclass(frozen=True, slots=True)
class PodRec:
    name: str
    phase: str
    ready: str  # "true" / "false" / "unknown"
    unschedulable: bool
    containers: tuple[ContainerRec, ...]


@dataclass(frozen=True, slots=True)
class DeploymentRec:
    name: str
    spec_replicas: int
    replicas: int
    updated: int
    ready: int
    available: int
    unavailable: int
    revision: int | None
    progressing_status: str  # "true" / "false" / "unknown"
    progressing_reason: str
    available_status: str
    last_rollout: float | None
    generation: int
    observed_generation: int

    @property
    def rollout_in_progress(self) -> bool:
        return (
            self.observed_generation < self.generation
            or self.updated < self.spec_replicas
            or self.replicas > self.updated
            or self.available < self.updated
        )


@dataclass(frozen=True, slots=True)
class HpaRec:
    name: str
    target_kind: str
    target_name: str
    min_replicas: int
    max_replicas: int
    current: int
    desired: int


@dataclass(frozen=True, slots=True)
class IngressPath:
    host: str
    path: str
    service: str
    port: str


@dataclass(frozen=True, slots=True)
class IngressRec:
    name: str
    paths: tuple[IngressPath, ...]
    tls: tuple[tuple[str, str], ...]  # (host, secret name)


@dataclass(frozen=True, slots=True)
class EventRec:
    uid: str
    reason: str
    object_kind: str
    object_name: str
    count: int


@dataclass(frozen=True, slots=True)
class PodUsageRec:
    pod: str
    containers: tuple[tuple[str, float | None, float | None], ...]  # name, cpu cores, bytes


@dataclass(frozen=True, slots=True)
class CertificateRec:
    name: str
    ready: str
    not_after: float | None
    renewal: float | None
    failed_attempts: int
    secret: str


# --- helpers --------------------------------------------------------------------------------


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _status(value: Any) -> str:
    text = str(value or "").lower()
    return text if text in ("true", "false") else "unknown"


def quantity(value: Any) -> float | None:
    """A resource quantity (``704595n``, ``24716Ki``, ``250m``, ``1Gi``) as a float."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        return None
    return _parse_quantity(value)


@lru_cache(maxsize=4096)
def _parse_quantity(text: str) -> float | None:
    """``kubernetes.utils.parse_quantity`` (Decimal based, slow), cached: limits and
    requests repeat across thousands of pods."""
    from kubernetes.utils import parse_quantity

    try:
        result: Decimal = parse_quantity(text)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, InvalidOperation):
        return None
    return float(result)


def _condition(conditions: Any, kind: str) -> Mapping[str, Any]:
    for cond in _list(conditions):
        if _map(cond).get("type") == kind:
            return _map(cond)
    return {}


# --- extractors -----------------------------------------------------------------------------


def pod(raw: Mapping[str, Any]) -> PodRec | None:
    meta, spec, status = _map(raw.get("metadata")), _map(raw.get("spec")), _map(raw.get("status"))
    name = meta.get("name")
    if not isinstance(name, str):
        return None
    resources: dict[str, Mapping[str, Any]] = {}
    for c in _list(spec.get("containers")):
        resources[str(_map(c).get("name", ""))] = _map(_map(c).get("resources"))
    statuses = {
        str(_map(s).get("name", "")): _map(s) for s in _list(status.get("containerStatuses"))
    }
    containers = []
    for cname in resources.keys() | statuses.keys():
        st = statuses.get(cname, {})
        res = resources.get(cname, {})
        req, lim = _map(res.get("requests")), _map(res.get("limits"))
        waiting = _map(_map(st.get("state")).get("waiting"))
        terminated = _map(_map(st.get("lastState")).get("terminated"))
        containers.append(
            ContainerRec(
                name=cname,
                ready=bool(st.get("ready")),
                waiting_reason=str(waiting.get("reason") or ("" if not waiting else "Unknown")),
                last_terminated_reason=str(terminated.get("reason") or ""),
                last_terminated_exit_code=(
                    _int(terminated.get("exitCode")) if terminated else None
                ),
                restarts=_int(st.get("restartCount")),
                requests_cpu=quantity(req.get("cpu")),
                requests_memory=quantity(req.get("memory")),
                limits_cpu=quantity(lim.get("cpu")),
                limits_memory=quantity(lim.get("memory")),
            )
        )
    scheduled = _condition(status.get("conditions"), "PodScheduled")
    return PodRec(
        name=name,
        phase=str(status.get("phase") or "Unknown"),
        ready=_status(_condition(status.get("conditions"), "Ready").get("status")),
        unschedulable=(
            _status(scheduled.get("status")) == "false"
            and scheduled.get("reason") == "Unschedulable"
        ),
        containers=tuple(sorted(containers, key=lambda c: c.name)),
    )


def deployment(raw: Mapping[str, Any]) -> DeploymentRec | None:
    meta, spec, status = _map(raw.get("metadata")), _map(raw.get("spec")), _map(raw.get("status"))
    name = meta.get("name")
    if not isinstance(name, str):
        return None
    revision = _map(meta.get("annotations")).get("deployment.kubernetes.io/revision")
    progressing = _condition(status.get("conditions"), "Progressing")
    available = _condition(status.get("conditions"), "Available")
    return DeploymentRec(
        name=name,
        spec_replicas=_int(spec.get("replicas", 1)),
        replicas=_int(status.get("replicas")),
        updated=_int(status.get("updatedReplicas")),
        ready=_int(status.get("readyReplicas")),
        available=_int(status.get("availableReplicas")),
        unavailable=_int(status.get("unavailableReplicas")),
        revision=_int(revision) if revision is not None else None,
        progressing_status=_status(progressing.get("status")),
        progressing_reason=str(progressing.get("reason") or ""),
        available_status=_status(available.get("status")),
        last_rollout=parse_timestamp(progressing.get("lastUpdateTime")),
        generation=_int(meta.get("generation")),
        observed_generation=_int(status.get("observedGeneration")),
    )


def hpa(raw: Mapping[str, Any]) -> HpaRec | None:
    meta, spec, status = _map(raw.get("metadata")), _map(raw.get("spec")), _map(raw.get("status"))
    name = meta.get("name")
    if not isinstance(name, str):
        return None
    target = _map(spec.get("scaleTargetRef"))
    return HpaRec(
        name=name,
        target_kind=str(target.get("kind") or ""),
        target_name=str(target.get("name") or ""),
        min_replicas=_int(spec.get("minReplicas", 1)),
        max_replicas=_int(spec.get("maxReplicas")),
        current=_int(status.get("currentReplicas")),
        desired=_int(status.get("desiredReplicas")),
    )


def ingress(raw: Mapping[str, Any]) -> IngressRec | None:
    meta, spec = _map(raw.get("metadata")), _map(raw.get("spec"))
    name = meta.get("name")
    if not isinstance(name, str):
        return None

    def backend(host: str, path: str, value: Any) -> IngressPath | None:
        svc = _map(_map(value).get("service"))
        if not svc.get("name"):
            return None
        port = _map(svc.get("port"))
        return IngressPath(
            host, path, str(svc["name"]), str(port.get("number") or port.get("name") or "")
        )

    paths: list[IngressPath] = []
    default = backend("", "", spec.get("defaultBackend"))
    if default:
        paths.append(default)
    for rule in _list(spec.get("rules")):
        host = str(_map(rule).get("host") or "")
        for p in _list(_map(_map(rule).get("http")).get("paths")):
            found = backend(host, str(_map(p).get("path") or "/"), _map(p).get("backend"))
            if found:
                paths.append(found)
    tls = [
        (str(host), str(_map(t).get("secretName") or ""))
        for t in _list(spec.get("tls"))
        for host in (_list(_map(t).get("hosts")) or [""])
    ]
    return IngressRec(name, tuple(paths), tuple(tls))


def name_only(raw: Mapping[str, Any]) -> str | None:
    name = _map(raw.get("metadata")).get("name")
    return name if isinstance(name, str) else None


def event(raw: Mapping[str, Any]) -> EventRec | None:
    meta = _map(raw.get("metadata"))
    involved = _map(raw.get("involvedObject"))
    uid = meta.get("uid") or meta.get("name")
    if not uid or raw.get("type") not in (None, "Warning"):
        return None
    count = max(_int(raw.get("count")), _int(_map(raw.get("series")).get("count")), 1)
    return EventRec(
        uid=str(uid),
        reason=str(raw.get("reason") or "Unknown"),
        object_kind=str(involved.get("kind") or ""),
        object_name=str(involved.get("name") or ""),
        count=count,
    )


def pod_usage(raw: Mapping[str, Any]) -> PodUsageRec | None:
    name = _map(raw.get("metadata")).get("name")
    if not isinstance(name, str):
        return None
    containers = []
    for c in _list(raw.get("containers")):
        usage = _map(_map(c).get("usage"))
        containers.append(
            (
                str(_map(c).get("name", "")),
                quantity(usage.get("cpu")),
                quantity(usage.get("memory")),
            )
        )
    return PodUsageRec(name, tuple(containers))


def certificate(raw: Mapping[str, Any]) -> CertificateRec | None:
    meta, spec, status = _map(raw.get("metadata")), _map(raw.get("spec")), _map(raw.get("status"))
    name = meta.get("name")
    if not isinstance(name, str):
        return None
    return CertificateRec(
        name=name,
        ready=_status(_condition(status.get("conditions"), "Ready").get("status")),
        not_after=parse_timestamp(status.get("notAfter")),
        renewal=parse_timestamp(status.get("renewalTime")),
        failed_attempts=_int(status.get("failedIssuanceAttempts")),
        secret=str(spec.get("secretName") or ""),
    )
