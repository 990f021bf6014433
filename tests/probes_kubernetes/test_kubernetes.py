"""The kubernetes probe against a fake API server reached by the real client."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from pydantic import ValidationError

from probes.base import ProbeResult
from probes.common.kube_client import KubeAccess, KubeError, read_tls_secret
from probes.kubernetes import KIND, KubernetesConfig
from tests.probes_kubernetes import objects as o
from tests.probes_kubernetes.fake_api import FakeKube
from tests.promtool import assert_promtool_clean
from tests.runs import run_once

NS = o.NS


def cfg(fake: FakeKube, **kw: Any) -> KubernetesConfig:
    return KubernetesConfig(kubeconfig=fake.kubeconfig, **kw)


async def probe(config: KubernetesConfig, runs: int = 1) -> ProbeResult:
    return await run_once(KIND, config, runs)


def value(result: ProbeResult, metric_name: str, **labels: str) -> float | None:
    for metric in result.metrics:
        if metric.name != metric_name:
            continue
        for sample in metric.samples:
            have = dict(sample.labels)
            if all(have.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def healthy(fake: FakeKube) -> None:
    fake.set(
        NS,
        "pods",
        [
            o.pod("festivals-api-7d9f8c6b5-abcde"),
            o.pod("festivals-api-7d9f8c6b5-fghij"),
            o.pod("festivals-worker-5c4b3a2-kkkkk", "festivals-worker", container="worker"),
            o.pod("other-app-1", "other-app"),
        ],
    )
    fake.set(
        NS,
        "deployments",
        [
            o.deployment("festivals-api"),
            o.deployment("festivals-worker", replicas=1),
            o.deployment("other-app"),
        ],
    )
    fake.set(
        NS,
        "horizontalpodautoscalers",
        [
            o.hpa("festivals-api", "festivals-api"),
            o.hpa("other-app", "other-app", current=10),
        ],
    )
    fake.set(
        NS,
        "ingresses",
        [
            o.ingress(
                "festivals-ingress",
                [("api.festivals.app", "/", "festivals-api")],
                [("api.festivals.app", "festivals-tls")],
            )
        ],
    )
    fake.set(NS, "services", [o.service("festivals-api"), o.service("festivals-worker")])
    fake.set(
        NS,
        "pods.metrics.k8s.io",
        [
            o.pod_metrics("festivals-api-7d9f8c6b5-abcde"),
            o.pod_metrics("festivals-api-7d9f8c6b5-fghij", cpu="450m", memory="500Mi"),
        ],
    )
    fake.set(NS, "certificates.cert-manager.io", [o.certificate("festivals-tls")])


@pytest.mark.anyio
async def test_healthy_namespace(fake_kube: FakeKube) -> None:
    healthy(fake_kube)
    result = await probe(cfg(fake_kube))
    assert result.success, result.detail
    pod = "festivals-api-7d9f8c6b5-abcde"
    assert value(result, "kube_pod_status_phase", pod=pod, phase="Running") == 1
    assert value(result, "kube_pod_status_phase", pod=pod, phase="Pending") == 0
    assert value(result, "kube_pod_status_ready", pod=pod, condition="true") == 1
    assert value(result, "kube_pod_status_phase", pod="other-app-1") is None  # selector
    assert value(result, "kube_pod_container_status_restarts", pod=pod, container="api") == 0
    assert value(result, "kube_pod_container_resource_limits", pod=pod, resource="memory") == (
        512 * 2**20
    )
    # metrics.k8s.io quantities: 704595n cores and 24716Ki bytes
    cpu = value(result, "probe_kubernetes_container_cpu_usage_cores", pod=pod)
    assert cpu == pytest.approx(704595e-9)
    mem = value(result, "probe_kubernetes_container_memory_working_set_bytes", pod=pod)
    assert mem == 24716 * 1024
    ratio = value(
        result, "probe_kubernetes_container_memory_limit_ratio", pod="festivals-api-7d9f8c6b5-fghij"
    )
    assert ratio == pytest.approx(500 / 512)
    assert value(
        result, "probe_kubernetes_container_cpu_limit_ratio", pod="festivals-api-7d9f8c6b5-fghij"
    ) == pytest.approx(0.9)
    assert value(result, "probe_kubernetes_metrics_api_available", namespace=NS) == 1
    assert value(result, "kube_deployment_spec_replicas", deployment="festivals-api") == 2
    assert (
        value(result, "kube_deployment_status_replicas_available", deployment="festivals-worker")
        == 1
    )
    assert value(result, "probe_kubernetes_deployment_revision", deployment="festivals-api") == 3
    assert (
        value(result, "probe_kubernetes_deployment_rollout_in_progress", deployment="festivals-api")
        == 0
    )
    assert value(result, "kube_deployment_spec_replicas", deployment="other-app") is None
    assert (
        value(result, "probe_kubernetes_hpa_at_max", horizontalpodautoscaler="festivals-api") == 0
    )
    assert value(result, "probe_kubernetes_hpa_at_max", horizontalpodautoscaler="other-app") is None
    assert value(result, "probe_kubernetes_ingress_exists", ingress="festivals-ingress") == 1
    assert value(result, "probe_kubernetes_ingress_missing_backends") == 0
    assert value(result, "kube_ingress_tls", secret="festivals-tls") == 1
    assert (
        value(
            result, "certmanager_certificate_ready_status", name="festivals-tls", condition="True"
        )
        == 1
    )
    # cert-manager's label values, not kube-state-metrics' lower case
    assert {
        dict(sm.labels)["condition"]
        for m in result.metrics if m.name == "certmanager_certificate_ready_status"
        for sm in m.samples
    } == {"True", "False", "Unknown"}
    assert value(result, "certmanager_certificate_expiration_timestamp_seconds") == (1800864000.0)
    assert value(result, "probe_kubernetes_resource_forbidden", resource="pods") == 0
    assert value(result, "probe_kubernetes_warning_events", reason="BackOff") == 0
    assert value(result, "probe_kubernetes_objects", resource="pods") == 3
    # one LIST per resource kind, bounded by namespace and selector
    lists = [p for p in fake_kube.paths() if "/namespaces/" in p]
    assert len(lists) == 8, lists
    pods_path = fake_kube.paths("/api/v1/namespaces/festivals/pods")[0]
    assert "labelSelector=app%20in%20%28festivals-api%2Cfestivals-worker%29" in pods_path
    assert (
        "fieldSelector=type%3DWarning" in fake_kube.paths("/api/v1/namespaces/festivals/events")[0]
    )
    # no label carries an event message or the token
    text = repr(result)
    assert "must never become a label" not in text and "fake-token" not in text
    await assert_promtool_clean("kubernetes", [result])


@pytest.mark.anyio
async def test_crashloop_oomkilled_and_warning_event_counters(fake_kube: FakeKube) -> None:
    healthy(fake_kube)
    crash = o.pod(
        "festivals-api-7d9f8c6b5-crash",
        ready=False,
        waiting="CrashLoopBackOff",
        terminated=("OOMKilled", 137),
        restarts=7,
    )
    fake_kube.add(NS, "pods", crash)
    fake_kube.set(
        NS,
        "events",
        [
            o.event("BackOff", "Pod", "festivals-api-7d9f8c6b5-crash", count=3, uid="ev-1"),
            o.event("BackOff", "Pod", "other-app-1", count=50, uid="ev-2"),  # not watched
        ],
    )
    config = cfg(fake_kube)
    state = KIND.new_state(config)
    try:
        first = await KIND.run(config, state)
        pod = "festivals-api-7d9f8c6b5-crash"
        assert (
            value(
                first,
                "kube_pod_container_status_waiting_reason",
                pod=pod,
                reason="CrashLoopBackOff",
            )
            == 1
        )
        assert (
            value(
                first,
                "kube_pod_container_status_last_terminated_reason",
                pod=pod,
                reason="OOMKilled",
            )
            == 1
        )
        assert value(first, "kube_pod_container_status_last_terminated_exitcode", pod=pod) == 137
        assert value(first, "kube_pod_container_status_restarts", pod=pod) == 7
        assert value(first, "kube_pod_status_ready", pod=pod, condition="false") == 1
        assert (
            value(first, "probe_kubernetes_warning_events", reason="BackOff", object_kind="Pod")
            == 3
        )
        assert any("CrashLoopBackOff" in line and "OOMKilled" in line for line in first.detail)
        # the event's count grows, then it expires and a new one appears: still monotonic
        fake_kube.set(
            NS,
            "events",
            [o.event("BackOff", "Pod", "festivals-api-7d9f8c6b5-crash", count=5, uid="ev-1")],
        )
        second = await KIND.run(config, state)
        assert value(second, "probe_kubernetes_warning_events", reason="BackOff") == 5
        fake_kube.set(
            NS,
            "events",
            [o.event("BackOff", "Pod", "festivals-api-7d9f8c6b5-crash", count=1, uid="ev-3")],
        )
        third = await KIND.run(config, state)
        assert value(third, "probe_kubernetes_warning_events", reason="BackOff") == 6
        counter = next(m for m in third.metrics if m.name == "probe_kubernetes_warning_events")
        assert counter.type == "counter"
    finally:
        await state.aclose()


@pytest.mark.anyio
async def test_pending_unschedulable(fake_kube: FakeKube) -> None:
    healthy(fake_kube)
    fake_kube.add(
        NS,
        "pods",
        o.pod(
            "festivals-worker-5c4b3a2-pend",
            "festivals-worker",
            phase="Pending",
            ready=False,
            unschedulable=True,
        ),
    )
    fake_kube.set(
        NS, "events", [o.event("FailedScheduling", "Pod", "festivals-worker-5c4b3a2-pend", count=4)]
    )
    result = await probe(cfg(fake_kube))
    pod = "festivals-worker-5c4b3a2-pend"
    assert value(result, "kube_pod_status_phase", pod=pod, phase="Pending") == 1
    assert value(result, "kube_pod_status_unschedulable", pod=pod) == 1
    assert value(result, "kube_pod_status_unschedulable", pod="festivals-api-7d9f8c6b5-abcde") == 0
    assert value(result, "probe_kubernetes_warning_events", reason="FailedScheduling") == 4
    assert any("Unschedulable" in line for line in result.detail)


@pytest.mark.anyio
async def test_rollout_in_progress_and_hpa_at_max(fake_kube: FakeKube) -> None:
    healthy(fake_kube)
    fake_kube.set(
        NS,
        "deployments",
        [
            o.deployment(
                "festivals-api",
                replicas=4,
                updated=2,
                ready=3,
                available=3,
                revision=8,
                progressing=("True", "ReplicaSetUpdated"),
                rollout_time="2026-11-27T12:00:00Z",
            )
        ],
    )
    fake_kube.set(
        NS,
        "horizontalpodautoscalers",
        [o.hpa("festivals-api", "festivals-api", max_r=4, current=4, desired=6)],
    )
    fake_kube.set(
        NS,
        "certificates.cert-manager.io",
        [o.certificate("festivals-tls", ready="False", not_after=None, renewal=None, failed=2)],
    )
    result = await probe(cfg(fake_kube))
    # a certificate not issued yet: expiry absent (never a false 0), attempts counted
    cert = {"name": "festivals-tls"}
    assert value(result, "certmanager_certificate_expiration_timestamp_seconds", **cert) is None
    assert value(result, "certmanager_certificate_ready_status", condition="False", **cert) == 1
    assert value(result, "probe_kubernetes_certificate_failed_issuance_attempts", **cert) == 2
    dep = {"deployment": "festivals-api"}
    assert value(result, "probe_kubernetes_deployment_rollout_in_progress", **dep) == 1
    assert value(result, "probe_kubernetes_deployment_revision", **dep) == 8
    assert value(result, "kube_deployment_status_replicas_updated", **dep) == 2
    assert value(result, "kube_deployment_status_replicas_unavailable", **dep) == 1
    assert value(result, "probe_kubernetes_deployment_last_rollout_timestamp_seconds", **dep) == (
        1795780800.0
    )
    assert (
        value(
            result,
            "kube_deployment_status_condition",
            condition="Progressing",
            status="true",
            **dep,
        )
        == 1
    )
    hpa = {"horizontalpodautoscaler": "festivals-api"}
    assert value(result, "probe_kubernetes_hpa_at_max", **hpa) == 1
    assert value(result, "kube_horizontalpodautoscaler_spec_max_replicas", **hpa) == 4
    assert value(result, "kube_horizontalpodautoscaler_status_desired_replicas", **hpa) == 6


@pytest.mark.anyio
async def test_metrics_api_and_cert_manager_absent(fake_kube: FakeKube) -> None:
    healthy(fake_kube)
    fake_kube.absent |= {"metrics.k8s.io", "cert-manager.io"}
    result = await probe(cfg(fake_kube))
    assert result.success, result.detail
    assert value(result, "probe_kubernetes_metrics_api_available", namespace=NS) == 0
    assert value(result, "probe_kubernetes_cert_manager_available", namespace=NS) == 0
    assert value(result, "probe_kubernetes_container_cpu_usage_cores") is None
    assert (
        value(result, "kube_pod_status_phase", pod="festivals-api-7d9f8c6b5-abcde", phase="Running")
        == 1
    )
    assert any("pods.metrics.k8s.io" in line and "not installed" in line for line in result.detail)


@pytest.mark.anyio
async def test_metrics_api_registered_but_down(fake_kube: FakeKube) -> None:
    """metrics-server's APIService registered but its pods down: the aggregator answers 503.
    That is "metrics API not available", like a missing API: a metric, not a failed run."""
    healthy(fake_kube)
    fake_kube.unavailable.add("metrics.k8s.io")
    result = await probe(cfg(fake_kube))
    assert result.success, result.detail
    assert value(result, "probe_kubernetes_metrics_api_available", namespace=NS) == 0
    assert value(result, "probe_kubernetes_cert_manager_available", namespace=NS) == 1
    assert any("pods.metrics.k8s.io" in line and "unavailable" in line for line in result.detail)
    # a core resource answering 503 still fails the run
    fake_kube.unavailable = {"deployments"}
    broken = await probe(cfg(fake_kube))
    assert not broken.success and broken.reason == "http_status"


@pytest.mark.anyio
async def test_missing_ingress_and_backend(fake_kube: FakeKube) -> None:
    healthy(fake_kube)
    fake_kube.set(NS, "services", [o.service("festivals-worker")])
    result = await probe(cfg(fake_kube, ingresses=("festivals-ingress", "admin-ingress")))
    assert (
        value(result, "probe_kubernetes_ingress_missing_backends", ingress="festivals-ingress") == 1
    )
    assert value(result, "probe_kubernetes_ingress_exists", ingress="admin-ingress") == 0
    assert any("backend services missing: festivals-api" in line for line in result.detail)


@pytest.mark.anyio
async def test_forbidden_secrets_reported_once_rest_keeps_working(
    fake_kube: FakeKube, caplog: pytest.LogCaptureFixture
) -> None:
    healthy(fake_kube)
    fake_kube.forbidden.add("secrets")
    caplog.set_level(logging.WARNING, logger="probes.kubernetes")
    result = await probe(cfg(fake_kube, tls_secrets=("festivals-tls",)), runs=2)
    assert result.success, result.detail
    assert value(result, "probe_kubernetes_resource_forbidden", resource="secrets") == 1
    assert value(result, "probe_kubernetes_resource_forbidden", resource="pods") == 0
    assert value(result, "probe_kubernetes_tls_secret_readable", secret="festivals-tls") == 0
    assert (
        value(result, "kube_pod_status_phase", pod="festivals-api-7d9f8c6b5-abcde", phase="Running")
        == 1
    )
    assert any(line.startswith("RBAC: cannot list secrets") for line in result.detail)
    warnings = [r for r in caplog.records if "RBAC forbids secrets" in r.getMessage()]
    assert len(warnings) == 1  # a clear log line, once, not a stack trace per run
    assert warnings[0].exc_info is None


@pytest.mark.anyio
async def test_forbidden_pods_fails_with_forbidden(fake_kube: FakeKube) -> None:
    healthy(fake_kube)
    fake_kube.forbidden |= {"pods", "events"}
    result = await probe(cfg(fake_kube))
    assert not result.success
    assert result.reason == "forbidden"
    assert value(result, "probe_kubernetes_resource_forbidden", resource="events") == 1
    assert value(result, "kube_deployment_spec_replicas", deployment="festivals-api") == 2


@pytest.mark.anyio
async def test_tls_secret_parsed_with_certificate_code(fake_kube: FakeKube) -> None:
    healthy(fake_kube)
    ca = trustme.CA()
    leaf = ca.issue_cert("api.festivals.app")
    fake_kube.secrets[(NS, "festivals-tls")] = o.tls_secret(
        "festivals-tls", leaf.cert_chain_pems[0].bytes(), leaf.private_key_pem.bytes()
    )
    result = await probe(cfg(fake_kube, tls_secrets=("festivals-tls",)))
    assert result.success, result.detail
    assert value(result, "probe_kubernetes_tls_secret_readable", secret="festivals-tls") == 1
    expiry = value(result, "tls_cert_not_after_timestamp_seconds")
    assert expiry is not None and expiry > time.time()
    assert "BEGIN" not in repr(result)  # neither key nor certificate text leaks


@pytest.mark.anyio
async def test_read_tls_secret_decodes_and_maps_not_found(fake_kube: FakeKube) -> None:
    fake_kube.secrets[(NS, "festivals-tls")] = o.tls_secret("festivals-tls", b"CERT", b"KEY")
    access = KubeAccess(kubeconfig=fake_kube.kubeconfig)
    data = await read_tls_secret(access, NS, "festivals-tls", 5.0)
    assert data == {"tls.crt": b"CERT", "tls.key": b"KEY"}
    with pytest.raises(KubeError) as err:
        await read_tls_secret(access, NS, "absent", 5.0)
    assert err.value.reason == "not_found"


@pytest.mark.anyio
async def test_wrong_token_is_auth(fake_kube: FakeKube, tmp_path: Path) -> None:
    healthy(fake_kube)
    config = KubernetesConfig(kubeconfig=fake_kube.write_kubeconfig(tmp_path / "bad", "wrong"))
    result = await probe(config)
    assert not result.success and result.reason == "auth"


@pytest.mark.anyio
async def test_api_server_down_is_refused(fake_kube: FakeKube, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = KubernetesConfig(kubeconfig=fake_kube.write_kubeconfig(tmp_path / "k", port=port))
    started = time.monotonic()
    result = await probe(config)
    assert not result.success and result.reason == "refused", result.detail
    assert time.monotonic() - started < 3
    assert value(result, "probe_kubernetes_resource_forbidden", resource="pods") == 0


@pytest.mark.anyio
async def test_slow_api_client_timeout(fake_kube: FakeKube) -> None:
    healthy(fake_kube)
    fake_kube.delay = 3.0
    started = time.monotonic()
    result = await probe(cfg(fake_kube, client_timeout=0.4))
    assert time.monotonic() - started < 1.5
    assert not result.success and result.reason == "timeout"
    assert any("results are partial" in line for line in result.detail)


@pytest.mark.anyio
async def test_slow_api_scheduler_deadline_fires(fake_kube: FakeKube) -> None:
    healthy(fake_kube)
    fake_kube.delay = 5.0
    config = cfg(fake_kube, client_timeout=10.0)
    state = KIND.new_state(config)
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.5):
                await KIND.run(config, state)
        assert time.monotonic() - started < 1.5
    finally:
        await state.aclose()


@pytest.mark.anyio
async def test_5000_pods_paginated(fake_kube: FakeKube) -> None:
    pods = await anyio.to_thread.run_sync(o.many_pods, 5000)  # CPU work: off the loop
    fake_kube.set(NS, "pods", pods)
    fake_kube.expire_continue_once = True  # one 410 mid-list: the LIST restarts once
    result = await probe(cfg(fake_kube, client_timeout=30.0))
    assert result.success, result.detail
    assert value(result, "probe_kubernetes_objects", resource="pods") == 5000
    phase = next(m for m in result.metrics if m.name == "kube_pod_status_phase")
    assert len(phase.samples) == 5000 * 5
    pages = fake_kube.paths("/api/v1/namespaces/festivals/pods")
    assert len(pages) == 2 + 10  # 2 before the 410, then 10 pages of 500
    assert all("limit=500" in p for p in pages)


def test_config_validation_and_target(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not a valid namespace"):
        KubernetesConfig(namespaces=("Festivals_Prod",))
    with pytest.raises(ValidationError, match="at least one namespace"):
        KubernetesConfig(namespaces=())
    with pytest.raises(ValidationError, match="label selector"):
        KubernetesConfig(label_selector="app in (a")
    with pytest.raises(ValidationError):
        KubernetesConfig(unknown_key=1)  # type: ignore[call-arg]
    config = KubernetesConfig(kubeconfig=tmp_path / "kc", context="prod")
    assert KIND.target(config) == (
        f"{tmp_path / 'kc'} (context prod) namespaces=festivals"
        " selector=app in (festivals-api,festivals-worker)"
    )


@pytest.mark.anyio
async def test_unreadable_kubeconfig_is_config(tmp_path: Path) -> None:
    result = await probe(KubernetesConfig(kubeconfig=tmp_path / "missing"), runs=6)
    assert not result.success and result.reason == "config"
    # One unreadable kubeconfig is reported once, not once per resource.
    assert sum("cannot load kubernetes config" in line for line in result.detail) == 1
