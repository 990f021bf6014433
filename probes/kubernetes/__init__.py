"""The ``kubernetes`` probe: pods, rollouts, HPA, ingress, resource use, cert-manager, TLS secrets.

One run does one LIST per resource kind and namespace (paginated, bounded by the label
selector where the objects carry it), concurrently in worker threads, under a client-side
deadline of ``client_timeout``. A 403 on a LIST is reported as
``probe_kubernetes_resource_forbidden`` and a detail/log line; everything else keeps
working. See ``docs/probes/kubernetes.md``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from pydantic import field_validator

from probes.base import (
    KindConfig,
    Metric,
    ProbeKind,
    ProbeResult,
    Reason,
    merge_families,
)
from probes.common.kube_client import (
    KubeAccess,
    KubeClient,
    KubeError,
    Listed,
    decode_secret_data,
    preload_api_modules,
)
from probes.kubernetes import extract as ex
from probes.kubernetes import families as km

log = logging.getLogger(__name__)

# Import the client when the daemon loads this kind, not in worker threads during a run,
# where the imports would hold the GIL and eat the first run's deadline.
preload_api_modules()

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_SELECTOR_RE = re.compile(r"^[A-Za-z0-9_./!=,()\s-]*$")
# Warning reasons pre-created at 0 for pods, so rate() works from the first event.
_COMMON_WARNINGS = ("BackOff", "FailedScheduling", "Unhealthy")


class KubernetesConfig(KindConfig):
    kubeconfig: Path | None = None
    context: str | None = None
    namespaces: tuple[str, ...] = ("festivals",)
    label_selector: str = "app in (festivals-api,festivals-worker)"
    ingresses: tuple[str, ...] = ("festivals-ingress",)
    tls_secrets: tuple[str, ...] = ()
    resource_usage: bool = True
    certificates: bool = True
    events: bool = True

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("needs at least one namespace")
        for ns in value:
            if not _NAME_RE.match(ns) or len(ns) > 63:
                raise ValueError(f"{ns!r} is not a valid namespace name")
        return tuple(dict.fromkeys(value))

    @field_validator("ingresses", "tls_secrets")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _SUBDOMAIN_RE.match(name) or len(name) > 253:
                raise ValueError(f"{name!r} is not a valid object name")
        return tuple(dict.fromkeys(value))

    @field_validator("label_selector")
    @classmethod
    def _selector(cls, value: str) -> str:
        value = value.strip()
        if not _SELECTOR_RE.match(value) or value.count("(") != value.count(")"):
            raise ValueError("is not a valid label selector (e.g. app in (a,b),tier=web)")
        return value

    @property
    def access(self) -> KubeAccess:
        return KubeAccess(kubeconfig=self.kubeconfig, context=self.context)


class KubeState:
    """Per-probe memory: the API client, RBAC findings and warning-event counters."""

    def __init__(self, config: KubernetesConfig) -> None:
        self.client = KubeClient(config.access)
        # _assemble runs in a worker thread the run may abandon at its deadline: a late one
        # must not update the counters at the same time as the next run's.
        self.assembling = threading.Lock()
        self.forbidden: set[tuple[str, str]] = set()
        self.event_seen: dict[str, int] = {}
        self.event_totals: dict[tuple[str, str, str], float] = {}

    async def aclose(self) -> None:
        await self.client.aclose()


@dataclass(frozen=True, slots=True)
class _Plan:
    resource: str
    extract: Callable[[Mapping[str, Any]], Any]
    label_selector: str | None = None
    field_selector: str | None = None
    optional_api: bool = False  # a 404 means "API not installed", not a failure


def _plans(config: KubernetesConfig) -> list[_Plan]:
    sel = config.label_selector or None
    plans = [
        _Plan("pods", ex.pod, sel),
        _Plan("deployments", ex.deployment, sel),
        _Plan("horizontalpodautoscalers", ex.hpa),
        _Plan("ingresses", ex.ingress),
        _Plan("services", ex.name_only),
    ]
    if config.events:
        plans.append(_Plan("events", ex.event, field_selector="type=Warning"))
    if config.resource_usage:
        plans.append(_Plan("pods.metrics.k8s.io", ex.pod_usage, sel, optional_api=True))
    if config.certificates:
        plans.append(_Plan("certificates.cert-manager.io", ex.certificate, optional_api=True))
    return plans


def target(config: KubernetesConfig) -> str:
    return (
        f"{config.access.describe()} namespaces={','.join(config.namespaces)}"
        f" selector={config.label_selector or '(all)'}"
    )


_Outcome = Listed[Any] | KubeError


async def run(config: KubernetesConfig, state: KubeState) -> ProbeResult:
    plans = _plans(config)
    lists: dict[tuple[str, str], _Outcome] = {}
    secrets: dict[tuple[str, str], _Secret | KubeError] = {}
    timeout = config.client_timeout
    started = time.monotonic()
    try:
        with anyio.fail_after(timeout):
            await state.client.api()
    except (KubeError, TimeoutError) as exc:
        # An unreadable kubeconfig is one problem, not one per resource and namespace.
        problem = exc if isinstance(exc, KubeError) else KubeError("timeout", "client setup")
        return ProbeResult.fail(
            problem.reason,
            km.new_families().metrics(),
            (f"API: {target(config)}", f"client: {problem.reason} ({problem.message})"),
        )

    async def fetch(ns: str, plan: _Plan) -> None:
        try:
            lists[(ns, plan.resource)] = await state.client.list(
                plan.resource,
                ns,
                plan.extract,
                request_timeout=timeout,
                label_selector=plan.label_selector,
                field_selector=plan.field_selector,
            )
        except KubeError as exc:
            lists[(ns, plan.resource)] = exc

    async def fetch_secret(ns: str, name: str) -> None:
        try:
            obj = await state.client.get("secrets", ns, name, request_timeout=timeout)
            data = decode_secret_data(obj if isinstance(obj, dict) else {})
            secrets[(ns, name)] = await anyio.to_thread.run_sync(
                _parse_tls_secret,
                ns,
                name,
                data,
                abandon_on_cancel=True,
                limiter=state.client.limiter,
            )
        except KubeError as exc:
            secrets[(ns, name)] = exc

    with anyio.move_on_after(timeout) as deadline:
        async with anyio.create_task_group() as tg:
            for ns in config.namespaces:
                for plan in plans:
                    tg.start_soon(fetch, ns, plan)
                for name in config.tls_secrets:
                    tg.start_soon(fetch_secret, ns, name)
    late = KubeError("timeout", f"no answer within {timeout:g}s")
    for ns in config.namespaces:
        for plan in plans:
            lists.setdefault((ns, plan.resource), late)
        for name in config.tls_secrets:
            secrets.setdefault((ns, name), late)

    def assemble() -> ProbeResult:
        with state.assembling:
            return _assemble(
                config, state, plans, lists, secrets, deadline.cancelled_caught, started
            )

    # Building tens of thousands of samples is CPU work: keep it off the event loop.
    return await anyio.to_thread.run_sync(
        assemble, abandon_on_cancel=True, limiter=state.client.limiter
    )


def _assemble(
    config: KubernetesConfig,
    state: KubeState,
    plans: list[_Plan],
    lists: dict[tuple[str, str], _Outcome],
    secrets: dict[tuple[str, str], _Secret | KubeError],
    partial: bool,
    started: float,
) -> ProbeResult:
    timeout = config.client_timeout
    fam = km.new_families()
    detail = [f"API: {target(config)}"]
    for ns in config.namespaces:
        detail += _namespace(config, state, fam, ns, plans, lists)
    extra = _tls_secrets(fam, secrets, detail)
    detail += _rbac(config, state, fam, plans, lists, secrets)
    detail.append(f"took {time.monotonic() - started:.3f}s")
    if partial:
        detail.append(f"client deadline of {timeout:g}s reached; results are partial")

    metrics = merge_families(fam.metrics(), extra)
    reason = _failure(config, plans, lists)
    if reason:
        return ProbeResult.fail(reason, metrics, detail)
    return ProbeResult.ok(metrics, detail)


def _ok(outcome: _Outcome | None) -> tuple[Any, ...] | None:
    return outcome.items if isinstance(outcome, Listed) else None


def _namespace(
    config: KubernetesConfig,
    state: KubeState,
    fam: km.Families,
    ns: str,
    plans: list[_Plan],
    lists: dict[tuple[str, str], _Outcome],
) -> list[str]:
    lines = []
    for plan in plans:
        outcome = lists[(ns, plan.resource)]
        what = f"LIST {plan.resource} -n {ns}"
        if plan.label_selector:
            what += f" -l {plan.label_selector!r}"
        if isinstance(outcome, Listed):
            lines.append(
                f"{what}: {len(outcome.items)} objects, {outcome.pages} page(s),"
                f" resourceVersion {outcome.resource_version or '-'}"
            )
        elif _api_missing(plan, outcome):
            state_text = "not installed" if outcome.status == 404 else "unavailable"
            lines.append(f"{what}: API {state_text} ({outcome.message})")
        else:
            lines.append(f"{what}: {outcome.reason} ({outcome.message})")

    pods: tuple[ex.PodRec, ...] = _ok(lists[(ns, "pods")]) or ()
    deps: tuple[ex.DeploymentRec, ...] | None = _ok(lists[(ns, "deployments")])
    hpas: tuple[ex.HpaRec, ...] = _ok(lists[(ns, "horizontalpodautoscalers")]) or ()
    if deps is not None:
        watched = {d.name for d in deps}
        hpas = tuple(h for h in hpas if h.target_name in watched)
    ingresses: tuple[ex.IngressRec, ...] = _ok(lists[(ns, "ingresses")]) or ()
    services = _ok(lists[(ns, "services")])
    km.add_pods(fam, ns, pods)
    km.add_deployments(fam, ns, deps or ())
    km.add_hpas(fam, ns, hpas)
    if isinstance(lists[(ns, "ingresses")], Listed):
        lines += km.add_ingresses(
            fam,
            ns,
            ingresses,
            config.ingresses,
            frozenset(services) if services is not None else None,
        )
    for kind, count in (
        ("pods", len(pods)),
        ("deployments", len(deps or ())),
        ("horizontalpodautoscalers", len(hpas)),
        ("ingresses", len(ingresses)),
    ):
        fam.add("probe_kubernetes_objects", {"namespace": ns, "resource": kind}, count)

    for api_name, family in (
        ("pods.metrics.k8s.io", "probe_kubernetes_metrics_api_available"),
        ("certificates.cert-manager.io", "probe_kubernetes_cert_manager_available"),
    ):
        if (ns, api_name) in lists:
            outcome = lists[(ns, api_name)]
            fam.add(family, {"namespace": ns}, isinstance(outcome, Listed))
    usage = _ok(lists.get((ns, "pods.metrics.k8s.io")))
    if usage is not None:
        km.add_usage(fam, ns, usage, pods)
    certs = _ok(lists.get((ns, "certificates.cert-manager.io")))
    if certs is not None:
        km.add_certificates(fam, ns, certs)
    if config.events:
        events = _ok(lists[(ns, "events")])
        if events is not None:
            _count_events(state, ns, events, pods, deps or (), hpas, ingresses, certs or ())
        for reason in _COMMON_WARNINGS:
            state.event_totals.setdefault((ns, "Pod", reason), 0.0)
        km.add_labelled(
            fam,
            "probe_kubernetes_warning_events",
            (
                ({"namespace": n, "object_kind": k, "reason": r}, v)
                for (n, k, r), v in sorted(state.event_totals.items())
                if n == ns
            ),
        )
    for p in pods:
        for c in p.containers:
            if c.waiting_reason in ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull") or (
                c.last_terminated_reason == "OOMKilled"
            ):
                lines.append(
                    f"pod {ns}/{p.name} container {c.name}: waiting={c.waiting_reason or '-'}"
                    f" last_terminated={c.last_terminated_reason or '-'} restarts={c.restarts}"
                )
        if p.unschedulable:
            lines.append(f"pod {ns}/{p.name}: Pending, Unschedulable")
    return lines


def _count_events(
    state: KubeState,
    ns: str,
    events: tuple[ex.EventRec, ...],
    pods: tuple[ex.PodRec, ...],
    deps: tuple[ex.DeploymentRec, ...],
    hpas: tuple[ex.HpaRec, ...],
    ingresses: tuple[ex.IngressRec, ...],
    certs: tuple[ex.CertificateRec, ...],
) -> None:
    """Turn event ``count`` fields into monotonic counters (events expire; counters don't)."""
    names = {
        "Pod": {p.name for p in pods},
        "Deployment": {d.name for d in deps},
        "HorizontalPodAutoscaler": {h.name for h in hpas},
        "Ingress": {i.name for i in ingresses},
        "Certificate": {c.name for c in certs},
    }
    prefixes = tuple(f"{d.name}-" for d in deps)
    for e in events:
        watched = e.object_name in names.get(e.object_kind, ()) or (
            e.object_kind == "ReplicaSet" and e.object_name.startswith(prefixes)
        )
        if not watched:
            continue
        key = f"{ns}/{e.uid}"
        delta = max(e.count - state.event_seen.get(key, 0), 0)
        state.event_seen[key] = max(e.count, state.event_seen.get(key, 0))
        total_key = (ns, e.object_kind, e.reason)
        state.event_totals[total_key] = state.event_totals.get(total_key, 0.0) + delta
    current = {f"{ns}/{e.uid}" for e in events}
    for key in [k for k in state.event_seen if k.startswith(f"{ns}/") and k not in current]:
        del state.event_seen[key]


@dataclass(frozen=True, slots=True)
class _Secret:
    keys: tuple[str, ...]
    certificates: int
    metrics: tuple[Metric, ...]
    problem: str


def _parse_tls_secret(ns: str, name: str, data: dict[str, bytes]) -> _Secret:
    """Parse ``tls.crt`` with the TLS probe's certificate code (worker thread: reads roots)."""
    keys = tuple(sorted(data))
    try:
        from probes.common import certs as certs_mod
    except ImportError:  # pragma: no cover - certs.py ships with the tls probe
        return _Secret(keys, 0, (), "certificate parsing is not available")
    if not data.get("tls.crt"):
        return _Secret(keys, 0, (), "no tls.crt in the secret")
    try:
        chain = certs_mod.load_certificates(data["tls.crt"])
        extra = certs_mod.load_certificates(data["ca.crt"]) if data.get("ca.crt") else []
        roots = (*certs_mod.load_roots(), *extra)
    except ValueError as exc:
        return _Secret(keys, 0, (), f"cannot parse: {exc}")
    source = f"secret/{ns}/{name}"
    metrics = certs_mod.certificate_metrics(source, chain, None, time.time(), roots=roots)
    return _Secret(keys, len(chain), tuple(metrics), "" if chain else "no certificate")


def _tls_secrets(
    fam: km.Families,
    secrets: dict[tuple[str, str], _Secret | KubeError],
    detail: list[str],
) -> list[Metric]:
    extra: list[Metric] = []
    for (ns, name), outcome in sorted(secrets.items(), key=lambda kv: kv[0]):
        labels = {"namespace": ns, "secret": name}
        what = f"GET secret {ns}/{name}"
        if isinstance(outcome, KubeError):
            fam.add("probe_kubernetes_tls_secret_readable", labels, 0)
            detail.append(f"{what}: {outcome.reason} ({outcome.message})")
            continue
        fam.add("probe_kubernetes_tls_secret_readable", labels, not outcome.problem)
        detail.append(
            f"{what}: keys {','.join(outcome.keys) or '-'}; "
            f"{outcome.certificates} certificate(s) in tls.crt"
            + (f"; {outcome.problem}" if outcome.problem else "")
        )
        extra += outcome.metrics
    return extra


def _rbac(
    config: KubernetesConfig,
    state: KubeState,
    fam: km.Families,
    plans: list[_Plan],
    lists: dict[tuple[str, str], _Outcome],
    secrets: dict[tuple[str, str], _Secret | KubeError],
) -> list[str]:
    """Report 403s per resource as a metric, a detail line and (on change) one log line."""
    outcomes: dict[tuple[str, str], bool | None] = {}
    for (ns, resource), outcome in lists.items():
        outcomes[(ns, resource)] = _forbidden(outcome)
    per_ns: dict[str, list[bool | None]] = {}
    for (ns, _name), s in secrets.items():
        per_ns.setdefault(ns, []).append(_forbidden(s))
    for ns, found in per_ns.items():
        outcomes[(ns, "secrets")] = True if True in found else (None if None in found else False)
    lines = []
    for (ns, resource), forbidden in sorted(outcomes.items()):
        if forbidden is None:  # unknown (timeout...): keep the last finding
            forbidden = (ns, resource) in state.forbidden
        labels = {"namespace": ns, "resource": resource}
        fam.add("probe_kubernetes_resource_forbidden", labels, forbidden)
        was = (ns, resource) in state.forbidden
        if forbidden:
            lines.append(
                f"RBAC: cannot list {resource} in namespace {ns} (403 forbidden);"
                " the related metrics are missing, the rest keeps working"
            )
            if not was:
                log.warning(
                    "kubernetes probe: RBAC forbids %s in namespace %s; see the shipped Role",
                    resource,
                    ns,
                )
                state.forbidden.add((ns, resource))
        elif was:
            log.info("kubernetes probe: %s in namespace %s is allowed again", resource, ns)
            state.forbidden.discard((ns, resource))
    return lines


def _forbidden(outcome: object) -> bool | None:
    if isinstance(outcome, KubeError):
        if outcome.reason == "forbidden":
            return True
        return None if outcome.reason in _TRANSPORT else False
    return False


def _api_missing(plan: _Plan, outcome: KubeError) -> bool:
    """An optional API (metrics.k8s.io, cert-manager) that is not installed (404) or whose
    aggregated server is down (503, what ``kubectl top`` calls "Metrics API not
    available"): reported by its ``*_available`` metric, not a failure of the run."""
    return plan.optional_api and outcome.status in (404, 503)


_TRANSPORT = frozenset({"timeout", "refused", "dns", "unreachable", "tls", "auth", "config"})


def _failure(
    config: KubernetesConfig, plans: list[_Plan], lists: dict[tuple[str, str], _Outcome]
) -> str:
    """The run's failure reason: the API is unusable, or pods cannot be listed."""
    errors: list[KubeError] = []
    for ns in config.namespaces:
        for plan in plans:
            outcome = lists[(ns, plan.resource)]
            if not isinstance(outcome, KubeError) or outcome.reason == "forbidden":
                continue
            if _api_missing(plan, outcome):
                continue
            errors.append(outcome)
    for err in errors:
        if err.reason in _TRANSPORT:
            return err.reason
    if errors:
        return "protocol" if errors[0].reason == "gone" else errors[0].reason
    if any(_forbidden(lists[(ns, "pods")]) for ns in config.namespaces):
        return Reason.FORBIDDEN
    return ""


KIND: ProbeKind[KubernetesConfig, KubeState] = ProbeKind(
    name="kubernetes",
    config_model=KubernetesConfig,
    run=run,
    new_state=KubeState,
    target=target,
    reasons=frozenset(
        {
            Reason.TIMEOUT,
            Reason.REFUSED,
            Reason.DNS,
            Reason.UNREACHABLE,
            Reason.TLS,
            Reason.AUTH,
            Reason.FORBIDDEN,
            Reason.NOT_FOUND,
            Reason.PROTOCOL,
            Reason.HTTP_STATUS,
            Reason.RATE_LIMITED,
            Reason.CONFIG,
            Reason.INTERNAL,
        }
    ),
    sample_labels=frozenset({
        "condition", "container", "deployment", "horizontalpodautoscaler", "host", "ingress",
        "name", "namespace", "object_kind", "path", "phase", "pod", "reason", "resource",
        "secret", "service_name", "service_port", "source", "status", "tls_host", "unit"
    }),
)
