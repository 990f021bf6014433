"""Targets the exporter serves for itself in demo mode, so ``make run`` shows every kind
that can run without an external service.

- ``/demo/statuspage``: a Statuspage v2 page, all operational;
- ``/demo/stripe/current``: Stripe's status document with one degraded component;
- ``/demo/kube``: a tiny Kubernetes API serving a ``festivals`` namespace in trouble: one
  API pod crash-looping after a rollout 14 minutes ago, the HPA at its maximum, a
  cert-manager Certificate that is not ready;
- a TLS listener on the port after the web port whose certificate, generated at start,
  expires in five days.

Times are relative to the request, so the demo stays "recent" however long it runs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.tls import TLSListener
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("festivals_exporter.demo")
Obj = dict[str, Any]
NS = "festivals"
ROLLOUT_AGE_SECONDS = 14 * 60
CERT_DAYS_LEFT = 5


def _iso(unix: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))


# --------------------------------------------------------------------- status pages

def _statuspage(now: float) -> Obj:
    components = [
        {"id": f"c{i}", "name": name, "status": "operational", "position": i, "group": False,
         "group_id": None, "only_show_if_degraded": False, "updated_at": _iso(now - 3600)}
        for i, name in enumerate(("Login", "Management API", "User Directory"), 1)
    ]
    return {
        "page": {"id": "demo", "name": "Identity vendor (demo)", "url": "http://127.0.0.1/",
                 "time_zone": "Etc/UTC", "updated_at": _iso(now - 600)},
        "components": components, "incidents": [], "scheduled_maintenances": [],
        "status": {"indicator": "none", "description": "All Systems Operational"},
    }


def _stripe(now: float) -> Obj:
    return {
        "largestatus": "degraded",
        "message": "Receipt emails are delayed. Stripe's API and webhooks are unaffected.",
        "time": _iso(now - 120),
        "statuses": {"api": "up", "dashboard": "up", "stripejs": "up", "checkoutjs": "up",
                     "webhooks": "up", "emails": "degraded"},
    }


# --------------------------------------------------------------------- kubernetes

def _meta(name: str, now: float, labels: dict[str, str] | None = None, **extra: Any) -> Obj:
    return {"name": name, "namespace": NS, "uid": f"demo-{name}", "resourceVersion": "42",
            "creationTimestamp": _iso(now - 86400), "labels": labels or {}, **extra}


def _pod(name: str, app: str, now: float, crashing: bool = False) -> Obj:
    started = _iso(now - ROLLOUT_AGE_SECONDS)
    state: Obj = {"running": {"startedAt": started}}
    last: Obj = {}
    if crashing:
        state = {"waiting": {"reason": "CrashLoopBackOff",
                             "message": "back-off 5m0s restarting failed container"}}
        last = {"terminated": {"reason": "Error", "exitCode": 1, "startedAt": started,
                               "finishedAt": started}}
    container = "api" if app == "festivals-api" else "worker"
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": _meta(name, now, {"app": app}),
        "spec": {"nodeName": "node-1", "containers": [{
            "name": container, "image": f"ghcr.io/festivals/{app}:1.5.0",
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                          "limits": {"cpu": "500m", "memory": "512Mi"}}}]},
        "status": {
            "phase": "Running", "qosClass": "Burstable",
            "conditions": [{"type": "Ready", "status": "False" if crashing else "True",
                            "lastTransitionTime": started}],
            "containerStatuses": [{
                "name": container, "ready": not crashing, "restartCount": 7 if crashing else 0,
                "state": state, "lastState": last, "image": f"ghcr.io/festivals/{app}:1.5.0",
                "imageID": "", "started": not crashing}],
        },
    }


def _deployment(name: str, now: float, replicas: int, available: int, revision: int) -> Obj:
    return {
        "kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": _meta(name, now, {"app": name}, generation=revision,
                          annotations={"deployment.kubernetes.io/revision": str(revision)}),
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
        "status": {
            "observedGeneration": revision, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": available, "availableReplicas": available,
            **({"unavailableReplicas": replicas - available} if available < replicas else {}),
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                 "lastUpdateTime": _iso(now - 86400), "lastTransitionTime": _iso(now - 86400)},
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                 "lastUpdateTime": _iso(now - ROLLOUT_AGE_SECONDS),
                 "lastTransitionTime": _iso(now - ROLLOUT_AGE_SECONDS)},
            ],
        },
    }


def _objects(resource: str, now: float) -> list[Obj]:
    api = [f"festivals-api-6f8d7c9b4-{s}" for s in ("x2kqp", "m7wzt", "c4rvn")]
    workers = ["festivals-worker-5b9c8d7f6-h3jdk", "festivals-worker-5b9c8d7f6-p9slq"]
    if resource == "pods":
        return ([_pod(n, "festivals-api", now, crashing=i == 2) for i, n in enumerate(api)]
                + [_pod(n, "festivals-worker", now) for n in workers])
    if resource == "deployments":
        return [_deployment("festivals-api", now, 3, 2, 42),
                _deployment("festivals-worker", now, 2, 2, 17)]
    if resource == "horizontalpodautoscalers":
        return [{
            "kind": "HorizontalPodAutoscaler", "apiVersion": "autoscaling/v2",
            "metadata": _meta("festivals-api", now),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": "festivals-api"},
                     "minReplicas": 2, "maxReplicas": 3},
            "status": {"currentReplicas": 3, "desiredReplicas": 3},
        }]
    if resource == "services":
        return [{"kind": "Service", "apiVersion": "v1",
                 "metadata": _meta("festivals-api", now, {"app": "festivals-api"}),
                 "spec": {"type": "ClusterIP", "ports": [{"port": 80, "targetPort": 8080}]}}]
    if resource == "ingresses":
        return [{
            "kind": "Ingress", "apiVersion": "networking.k8s.io/v1",
            "metadata": _meta("festivals-ingress", now),
            "spec": {"tls": [{"hosts": ["api.festivals.app"], "secretName": "festivals-tls"}],
                     "rules": [{"host": "api.festivals.app", "http": {"paths": [{
                         "path": "/", "pathType": "Prefix", "backend": {"service": {
                             "name": "festivals-api", "port": {"number": 80}}}}]}}]},
        }]
    if resource == "events":
        return [{
            "kind": "Event", "apiVersion": "v1", "metadata": _meta(f"{api[2]}.backoff", now),
            "involvedObject": {"kind": "Pod", "name": api[2], "namespace": NS},
            "reason": "BackOff", "message": "Back-off restarting failed container",
            "type": "Warning", "count": 7, "firstTimestamp": _iso(now - ROLLOUT_AGE_SECONDS),
            "lastTimestamp": _iso(now - 30),
        }]
    if resource == "podmetrics":
        usage = [(n, "210m", "300Mi") for n in api[:2]] + [(n, "120m", "200Mi") for n in workers]
        return [{
            "kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {"name": n, "namespace": NS, "creationTimestamp": _iso(now)},
            "timestamp": _iso(now), "window": "15s",
            "containers": [{"name": "api" if "api" in n else "worker",
                            "usage": {"cpu": cpu, "memory": mem}}],
        } for n, cpu, mem in usage]
    if resource == "certificates":
        return [{
            "kind": "Certificate", "apiVersion": "cert-manager.io/v1",
            "metadata": _meta("festivals-tls", now),
            "spec": {"secretName": "festivals-tls", "dnsNames": ["api.festivals.app"],
                     "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}},
            "status": {
                "conditions": [{"type": "Ready", "status": "False", "reason": "Issuing",
                                "message": "Issuing certificate as Secret was previously "
                                           "issued by a different issuer",
                                "lastTransitionTime": _iso(now - 3600)}],
                "notAfter": _iso(now + 40 * 86400), "renewalTime": _iso(now - 3600),
                "failedIssuanceAttempts": 3,
            },
        }]
    return []


_KUBE_LISTS = {
    r"/api/v1/namespaces/[^/]+/pods": ("pods", "PodList", "v1"),
    r"/api/v1/namespaces/[^/]+/services": ("services", "ServiceList", "v1"),
    r"/api/v1/namespaces/[^/]+/events": ("events", "EventList", "v1"),
    r"/apis/apps/v1/namespaces/[^/]+/deployments": ("deployments", "DeploymentList", "apps/v1"),
    r"/apis/autoscaling/v2/namespaces/[^/]+/horizontalpodautoscalers": (
        "horizontalpodautoscalers", "HorizontalPodAutoscalerList", "autoscaling/v2"),
    r"/apis/networking.k8s.io/v1/namespaces/[^/]+/ingresses": (
        "ingresses", "IngressList", "networking.k8s.io/v1"),
    r"/apis/metrics.k8s.io/v1beta1/namespaces/[^/]+/pods": (
        "podmetrics", "PodMetricsList", "metrics.k8s.io/v1beta1"),
    r"/apis/cert-manager.io/v1/namespaces/[^/]+/certificates": (
        "certificates", "CertificateList", "cert-manager.io/v1"),
}


def kube_answer(path: str, now: float) -> tuple[int, Obj]:
    """The demo API's answer to a GET of ``path`` (below ``/demo/kube``)."""
    namespace = m.group(1) if (m := re.search(r"/namespaces/([^/]+)/", path)) else NS
    for pattern, (resource, kind, version) in _KUBE_LISTS.items():
        if re.fullmatch(pattern, path):
            items = _objects(resource, now) if namespace == NS else []
            return 200, {"kind": kind, "apiVersion": version,
                         "metadata": {"resourceVersion": "42"}, "items": items}
    return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                 "reason": "NotFound", "message": "the server could not find the requested "
                 "resource"}


# --------------------------------------------------------------------- routes

def demo_routes() -> list[Route]:
    async def statuspage(request: Request) -> Response:
        return JSONResponse(_statuspage(time.time()))

    async def stripe(request: Request) -> Response:
        return JSONResponse(_stripe(time.time()))

    async def kube(request: Request) -> Response:
        code, body = kube_answer("/" + request.path_params["path"], time.time())
        return Response(json.dumps(body), status_code=code, media_type="application/json")

    return [
        Route("/demo/statuspage/api/v2/summary.json", statuspage),
        Route("/demo/stripe/current", stripe),
        Route("/demo/kube/{path:path}", kube),
    ]


# --------------------------------------------------------------------- TLS listener

def _certificate(days_left: float) -> tuple[bytes, bytes]:
    """A self-signed certificate for api.festivals.app expiring in ``days_left`` days."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.festivals.app")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=85))
        .not_valid_after(now + dt.timedelta(days=days_left))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("api.festivals.app")]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _server_context(days_left: float) -> ssl.SSLContext:
    cert, key = _certificate(days_left)
    with tempfile.TemporaryDirectory(prefix="festivals-demo-tls-") as tmp:
        cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_file.write_bytes(cert)
        key_file.write_bytes(key)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
    return context


async def serve_tls(host: str, port: int, *,
                    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
    """Accept TLS handshakes on ``host:port`` until cancelled (the demo's TLS target)."""
    context = await anyio.to_thread.run_sync(_server_context, CERT_DAYS_LEFT)
    try:
        tcp = await anyio.create_tcp_listener(local_host=host, local_port=port)
    except OSError as exc:
        # The demo's TLS target is a nicety: a taken port must not stop the exporter.
        log.warning("demo TLS listener not started",
                    extra={"port": port, "error": exc.strerror or type(exc).__name__})
        task_status.started()
        return
    listener = TLSListener(tcp, context, standard_compatible=False, handshake_timeout=5)

    async def handle(stream: anyio.abc.ByteStream) -> None:
        await stream.aclose()

    task_status.started()
    await listener.serve(handle)
