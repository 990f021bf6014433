"""Build metric families from the records of one kubernetes probe run.

Names follow kube-state-metrics where the meaning is the same (so existing queries keep
working); what kube-state-metrics lacks is named ``probe_kubernetes_*``. Every family is
returned even when it has no samples, and per-object gauges are emitted at 0 too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from probes.base import LabelPairs, Metric, Sample
from probes.kubernetes.extract import (
    CertificateRec,
    DeploymentRec,
    HpaRec,
    IngressRec,
    PodRec,
    PodUsageRec,
)

POD_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
Labels = dict[str, str]


@dataclass
class Families:
    """Samples grouped by metric name, in insertion order."""

    meta: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (type, help)
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    # Label pairs are shared between samples: 100,000 samples for 5,000 pods repeat a few
    # thousand distinct pairs, so memory follows the number of samples, not of labels.
    _pairs: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def declare(self, name: str, type_: str, help_: str) -> None:
        if name not in self.meta:
            self.meta[name] = (type_, help_)
            self.samples[name] = []

    def add(self, name: str, labels: Mapping[str, str], value: float) -> None:
        pairs = self._pairs
        labelled = tuple(pairs.setdefault(pair, pair) for pair in labels.items())
        self.samples[name].append(Sample(float(value), labelled))

    def pair(self, key: str, value: str) -> tuple[str, str]:
        """One shared ``(key, value)`` label pair."""
        pair = (key, value)
        return self._pairs.setdefault(pair, pair)

    def add_pairs(self, name: str, labelled: LabelPairs, value: float) -> None:
        """Like :meth:`add` for label pairs built from :meth:`pair` and constant pairs: the
        per-pod families are most of a large run, and dicts per sample cost twice as much."""
        self.samples[name].append(Sample(float(value), labelled))

    def metrics(self) -> tuple[Metric, ...]:
        out = []
        for name, (type_, help_) in self.meta.items():
            out.append(Metric(name, help_, type_, tuple(self.samples[name])))  # type: ignore[arg-type]
        return tuple(out)


G, C = "gauge", "counter"

DECLARATIONS: tuple[tuple[str, str, str], ...] = (
    # pods (kube-state-metrics names)
    ("kube_pod_status_phase", G, "The pod's current phase (1 for the current phase)."),
    ("kube_pod_status_ready", G, "Whether the pod's Ready condition is true/false/unknown."),
    ("kube_pod_status_unschedulable", G, "1 when the scheduler cannot place the pod."),
    ("kube_pod_container_status_ready", G, "Whether the container passes its readiness."),
    ("kube_pod_container_status_waiting", G, "1 when the container is waiting."),
    ("kube_pod_container_status_waiting_reason", G, "Why the container is waiting (value 1)."),
    (
        "kube_pod_container_status_last_terminated_reason",
        G,
        "Why the container last terminated (value 1).",
    ),
    (
        "kube_pod_container_status_last_terminated_exitcode",
        G,
        "Exit code of the container's last termination.",
    ),
    ("kube_pod_container_status_restarts", C, "Container restarts."),
    ("kube_pod_container_resource_requests", G, "Requested resources (cores or bytes)."),
    ("kube_pod_container_resource_limits", G, "Resource limits (cores or bytes)."),
    # resource use (metrics.k8s.io)
    ("probe_kubernetes_metrics_api_available", G, "1 when metrics.k8s.io answers."),
    ("probe_kubernetes_container_cpu_usage_cores", G, "CPU use in cores (metrics.k8s.io)."),
    (
        "probe_kubernetes_container_memory_working_set_bytes",
        G,
        "Memory working set in bytes (metrics.k8s.io).",
    ),
    (
        "probe_kubernetes_container_cpu_limit_ratio",
        G,
        "CPU use divided by the container's CPU limit.",
    ),
    (
        "probe_kubernetes_container_memory_limit_ratio",
        G,
        "Memory working set divided by the container's memory limit.",
    ),
    # deployments
    ("kube_deployment_spec_replicas", G, "Desired replicas."),
    ("kube_deployment_status_replicas", G, "Replicas (pods) of the deployment."),
    ("kube_deployment_status_replicas_updated", G, "Replicas running the current template."),
    ("kube_deployment_status_replicas_ready", G, "Ready replicas."),
    ("kube_deployment_status_replicas_available", G, "Available replicas."),
    ("kube_deployment_status_replicas_unavailable", G, "Unavailable replicas."),
    ("kube_deployment_status_condition", G, "Deployment condition status (value 1)."),
    ("probe_kubernetes_deployment_revision", G, "Current rollout revision number."),
    (
        "probe_kubernetes_deployment_last_rollout_timestamp_seconds",
        G,
        "When the last rollout last progressed or completed (Progressing lastUpdateTime).",
    ),
    ("probe_kubernetes_deployment_rollout_in_progress", G, "1 while a rollout is not done."),
    # HPA
    ("kube_horizontalpodautoscaler_spec_min_replicas", G, "HPA minimum replicas."),
    ("kube_horizontalpodautoscaler_spec_max_replicas", G, "HPA maximum replicas."),
    ("kube_horizontalpodautoscaler_status_current_replicas", G, "HPA current replicas."),
    ("kube_horizontalpodautoscaler_status_desired_replicas", G, "HPA desired replicas."),
    ("probe_kubernetes_hpa_at_max", G, "1 when current or desired replicas reach max."),
    # ingress
    ("probe_kubernetes_ingress_exists", G, "1 when the configured ingress exists."),
    ("kube_ingress_path", G, "Ingress host/path to service backend (value 1)."),
    ("kube_ingress_tls", G, "Ingress TLS host and secret name (value 1)."),
    (
        "probe_kubernetes_ingress_missing_backends",
        G,
        "Ingress backends pointing at services that do not exist.",
    ),
    # cert-manager
    ("probe_kubernetes_cert_manager_available", G, "1 when the cert-manager API answers."),
    ("certmanager_certificate_ready_status", G, "Certificate Ready condition (value 1)."),
    (
        "certmanager_certificate_expiration_timestamp_seconds",
        G,
        "Certificate notAfter (absent, not 0, while not issued).",
    ),
    (
        "certmanager_certificate_renewal_timestamp_seconds",
        G,
        "When cert-manager will renew the certificate.",
    ),
    (
        "probe_kubernetes_certificate_failed_issuance_attempts",
        G,
        "Consecutive failed issuance attempts.",
    ),
    # TLS secrets
    ("probe_kubernetes_tls_secret_readable", G, "1 when the TLS secret was read and parsed."),
    # events and RBAC
    ("probe_kubernetes_warning_events", C, "Warning events for watched objects, by reason."),
    ("probe_kubernetes_resource_forbidden", G, "1 when RBAC forbids listing the resource."),
    ("probe_kubernetes_objects", G, "Objects listed per resource (after selectors)."),
)


def new_families() -> Families:
    fam = Families()
    for name, type_, help_ in DECLARATIONS:
        fam.declare(name, type_, help_)
    return fam


# Constant label pairs of the per-pod families, built once.
_PHASE_PAIRS = tuple((phase, (("phase", phase),)) for phase in POD_PHASES)
_READY_PAIRS = tuple((cond, (("condition", cond),)) for cond in ("true", "false", "unknown"))
_CPU_PAIRS: LabelPairs = (("resource", "cpu"), ("unit", "core"))
_MEMORY_PAIRS: LabelPairs = (("resource", "memory"), ("unit", "byte"))


def add_pods(fam: Families, ns: str, pods: Iterable[PodRec]) -> None:
    add = fam.add_pairs
    ns_pair = fam.pair("namespace", ns)
    for p in pods:
        base = (ns_pair, fam.pair("pod", p.name))
        for phase, extra in _PHASE_PAIRS:
            add("kube_pod_status_phase", base + extra, p.phase == phase)
        for cond, extra in _READY_PAIRS:
            add("kube_pod_status_ready", base + extra, p.ready == cond)
        add("kube_pod_status_unschedulable", base, p.unschedulable)
        for c in p.containers:
            cl = (*base, fam.pair("container", c.name))
            add("kube_pod_container_status_ready", cl, c.ready)
            add("kube_pod_container_status_waiting", cl, bool(c.waiting_reason))
            if c.waiting_reason:
                add(
                    "kube_pod_container_status_waiting_reason",
                    (*cl, fam.pair("reason", c.waiting_reason)),
                    1,
                )
            if c.last_terminated_reason:
                add(
                    "kube_pod_container_status_last_terminated_reason",
                    (*cl, fam.pair("reason", c.last_terminated_reason)),
                    1,
                )
            if c.last_terminated_exit_code is not None:
                add(
                    "kube_pod_container_status_last_terminated_exitcode",
                    cl,
                    c.last_terminated_exit_code,
                )
            add("kube_pod_container_status_restarts", cl, c.restarts)
            for family, cpu, mem in (
                ("kube_pod_container_resource_requests", c.requests_cpu, c.requests_memory),
                ("kube_pod_container_resource_limits", c.limits_cpu, c.limits_memory),
            ):
                if cpu is not None:
                    add(family, cl + _CPU_PAIRS, cpu)
                if mem is not None:
                    add(family, cl + _MEMORY_PAIRS, mem)


def add_usage(fam: Families, ns: str, usage: Iterable[PodUsageRec], pods: Sequence[PodRec]) -> None:
    limits = {(p.name, c.name): (c.limits_cpu, c.limits_memory) for p in pods for c in p.containers}
    add = fam.add_pairs
    ns_pair = fam.pair("namespace", ns)
    for u in usage:
        pod_pair = fam.pair("pod", u.pod)
        for cname, cpu, mem in u.containers:
            cl = (ns_pair, pod_pair, fam.pair("container", cname))
            lim_cpu, lim_mem = limits.get((u.pod, cname), (None, None))
            if cpu is not None:
                add("probe_kubernetes_container_cpu_usage_cores", cl, cpu)
                if lim_cpu:
                    add("probe_kubernetes_container_cpu_limit_ratio", cl, cpu / lim_cpu)
            if mem is not None:
                add("probe_kubernetes_container_memory_working_set_bytes", cl, mem)
                if lim_mem:
                    add("probe_kubernetes_container_memory_limit_ratio", cl, mem / lim_mem)


def add_deployments(fam: Families, ns: str, deps: Iterable[DeploymentRec]) -> None:
    for d in deps:
        dl = {"namespace": ns, "deployment": d.name}
        fam.add("kube_deployment_spec_replicas", dl, d.spec_replicas)
        fam.add("kube_deployment_status_replicas", dl, d.replicas)
        fam.add("kube_deployment_status_replicas_updated", dl, d.updated)
        fam.add("kube_deployment_status_replicas_ready", dl, d.ready)
        fam.add("kube_deployment_status_replicas_available", dl, d.available)
        fam.add("kube_deployment_status_replicas_unavailable", dl, d.unavailable)
        for cond, value in (
            ("Progressing", d.progressing_status),
            ("Available", d.available_status),
        ):
            for status in ("true", "false", "unknown"):
                fam.add(
                    "kube_deployment_status_condition",
                    {**dl, "condition": cond, "status": status},
                    value == status,
                )
        if d.revision is not None:
            fam.add("probe_kubernetes_deployment_revision", dl, d.revision)
        if d.last_rollout is not None:
            fam.add(
                "probe_kubernetes_deployment_last_rollout_timestamp_seconds", dl, d.last_rollout
            )
        fam.add("probe_kubernetes_deployment_rollout_in_progress", dl, d.rollout_in_progress)


def add_hpas(fam: Families, ns: str, hpas: Iterable[HpaRec]) -> None:
    for h in hpas:
        hl = {"namespace": ns, "horizontalpodautoscaler": h.name}
        fam.add("kube_horizontalpodautoscaler_spec_min_replicas", hl, h.min_replicas)
        fam.add("kube_horizontalpodautoscaler_spec_max_replicas", hl, h.max_replicas)
        fam.add("kube_horizontalpodautoscaler_status_current_replicas", hl, h.current)
        fam.add("kube_horizontalpodautoscaler_status_desired_replicas", hl, h.desired)
        at_max = h.max_replicas > 0 and max(h.current, h.desired) >= h.max_replicas
        fam.add("probe_kubernetes_hpa_at_max", hl, at_max)


def add_ingresses(
    fam: Families,
    ns: str,
    ingresses: Sequence[IngressRec],
    expected: Iterable[str],
    services: frozenset[str] | None,
) -> list[str]:
    """Adds ingress families; returns detail lines about missing backends."""
    lines = []
    present = {i.name for i in ingresses}
    for name in expected:
        fam.add(
            "probe_kubernetes_ingress_exists", {"namespace": ns, "ingress": name}, name in present
        )
    for i in ingresses:
        il = {"namespace": ns, "ingress": i.name}
        for p in i.paths:
            fam.add(
                "kube_ingress_path",
                {
                    **il,
                    "host": p.host,
                    "path": p.path,
                    "service_name": p.service,
                    "service_port": p.port,
                },
                1,
            )
        for host, secret in i.tls:
            fam.add("kube_ingress_tls", {**il, "tls_host": host, "secret": secret}, 1)
        if services is not None:
            missing = sorted({p.service for p in i.paths} - services)
            fam.add("probe_kubernetes_ingress_missing_backends", il, len(missing))
            if missing:
                lines.append(
                    f"ingress {ns}/{i.name}: backend services missing: {', '.join(missing)}"
                )
    return lines


def add_certificates(fam: Families, ns: str, certs: Iterable[CertificateRec]) -> None:
    for c in certs:
        cl = {"namespace": ns, "name": c.name}
        # cert-manager's own exporter writes the condition as the API does ("True",
        # "False", "Unknown"), unlike kube-state-metrics' lower case: users' existing
        # queries ({condition="False"}) must keep matching.
        for status in ("true", "false", "unknown"):
            fam.add(
                "certmanager_certificate_ready_status",
                {**cl, "condition": status.capitalize()},
                c.ready == status,
            )
        if c.not_after is not None:
            fam.add("certmanager_certificate_expiration_timestamp_seconds", cl, c.not_after)
        if c.renewal is not None:
            fam.add("certmanager_certificate_renewal_timestamp_seconds", cl, c.renewal)
        fam.add("probe_kubernetes_certificate_failed_issuance_attempts", cl, c.failed_attempts)


def add_labelled(fam: Families, name: str, rows: Iterable[tuple[Labels, float]]) -> None:
    for labels, value in rows:
        fam.add(name, labels, value)
