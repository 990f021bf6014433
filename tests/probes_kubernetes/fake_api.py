"""A small threaded HTTP server speaking the Kubernetes REST paths the probe uses.

It serves real-shaped objects (kind, apiVersion, metadata with resourceVersion and
creationTimestamp, quantities such as ``704595n``/``24716Ki``), honours ``labelSelector``,
``fieldSelector``, ``limit`` and ``continue``, checks the bearer token, and answers errors
with ``Status`` objects (401/403/404/410). The real ``kubernetes`` client reaches it
through a kubeconfig written by :meth:`FakeKube.write_kubeconfig`.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "fake-token-never-shown"
Obj = dict[str, Any]

_ROUTES: tuple[tuple[re.Pattern[str], str, str, str], ...] = tuple(
    (re.compile(pattern), resource, kind, api_version)
    for pattern, resource, kind, api_version in (
        (r"^/api/v1/namespaces/([^/]+)/pods$", "pods", "PodList", "v1"),
        (r"^/api/v1/namespaces/([^/]+)/services$", "services", "ServiceList", "v1"),
        (r"^/api/v1/namespaces/([^/]+)/events$", "events", "EventList", "v1"),
        (
            r"^/apis/apps/v1/namespaces/([^/]+)/deployments$",
            "deployments",
            "DeploymentList",
            "apps/v1",
        ),
        (
            r"^/apis/autoscaling/v2/namespaces/([^/]+)/horizontalpodautoscalers$",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscalerList",
            "autoscaling/v2",
        ),
        (
            r"^/apis/networking.k8s.io/v1/namespaces/([^/]+)/ingresses$",
            "ingresses",
            "IngressList",
            "networking.k8s.io/v1",
        ),
        (
            r"^/apis/metrics.k8s.io/v1beta1/namespaces/([^/]+)/pods$",
            "pods.metrics.k8s.io",
            "PodMetricsList",
            "metrics.k8s.io/v1beta1",
        ),
        (
            r"^/apis/cert-manager.io/v1/namespaces/([^/]+)/certificates$",
            "certificates.cert-manager.io",
            "CertificateList",
            "cert-manager.io/v1",
        ),
    )
)
_SECRET = re.compile(r"^/api/v1/namespaces/([^/]+)/secrets/([^/]+)$")
_GROUP = {
    "pods.metrics.k8s.io": "metrics.k8s.io",
    "certificates.cert-manager.io": "cert-manager.io",
    "deployments": "apps",
    "horizontalpodautoscalers": "autoscaling",
    "ingresses": "networking.k8s.io",
}


def status(code: int, reason: str, message: str, kind: str = "") -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {"kind": kind} if kind else {},
        "code": code,
    }


def _match_labels(selector: str, labels: dict[str, str]) -> bool:
    """Equality, inequality and set-based (``in``/``notin``) label selectors."""
    for term in re.findall(r"[^,(]+(?:\([^)]*\))?", selector):
        term = term.strip()
        if not term:
            continue
        if m := re.match(r"^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$", term):
            values = {v.strip() for v in m.group(3).split(",")}
            inside = labels.get(m.group(1)) in values
            if inside != (m.group(2) == "in"):
                return False
        elif m := re.match(r"^([\w./-]+)\s*!=\s*(.*)$", term):
            if labels.get(m.group(1)) == m.group(2).strip():
                return False
        elif m := re.match(r"^([\w./-]+)\s*==?\s*(.*)$", term):
            if labels.get(m.group(1)) != m.group(2).strip():
                return False
        elif labels.get(term) is None:
            return False
    return True


def _match_fields(selector: str, obj: Obj) -> bool:
    for term in selector.split(","):
        key, _, value = term.partition("=")
        current: Any = obj
        for part in key.strip().split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if str(current) != value.strip():
            return False
    return True


@dataclass
class FakeKube:
    """Objects by (namespace, resource), plus knobs for failure scenarios."""

    objects: dict[tuple[str, str], list[Obj]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], Obj] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)  # resource names answering 403
    absent: set[str] = field(default_factory=set)  # API groups/resources answering 404
    unavailable: set[str] = field(default_factory=set)  # ... answering 503 (APIService down)
    delay: float = 0.0
    expire_continue_once: bool = False
    requests: list[str] = field(default_factory=list)
    resource_version: int = 4242
    port: int = 0
    kubeconfig: Path = Path("/nonexistent")  # set by the fixture
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- data --------------------------------------------------------------------------

    def add(self, namespace: str, resource: str, *objs: Obj) -> None:
        with self._lock:
            self.objects.setdefault((namespace, resource), []).extend(objs)
            self.resource_version += 1

    def set(self, namespace: str, resource: str, objs: list[Obj]) -> None:
        with self._lock:
            self.objects[(namespace, resource)] = list(objs)
            self.resource_version += 1

    def paths(self, prefix: str = "") -> list[str]:
        with self._lock:
            return [p for p in self.requests if p.startswith(prefix)]

    # --- server ------------------------------------------------------------------------

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                code, body = fake._answer(self.path, self.headers.get("Authorization", ""))
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def write_kubeconfig(self, path: Path, token: str = TOKEN, port: int | None = None) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port or self.port}"}}
            ],
            "users": [{"name": "exporter", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "exporter", "namespace": "festivals"},
                }
            ],
            "current-context": "fake",
        }
        path.write_text(json.dumps(config), encoding="utf-8")
        return path

    # --- routing -----------------------------------------------------------------------

    def _answer(self, raw_path: str, auth: str) -> tuple[int, Obj]:
        url = urlsplit(raw_path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self._lock:
            self.requests.append(raw_path)
        if self.delay:
            self._stopping.wait(self.delay)
        if auth != f"Bearer {TOKEN}":
            return 401, status(401, "Unauthorized", "Unauthorized")
        if url.path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if url.path == "/apis":
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
        if m := _SECRET.match(url.path):
            return self._secret(m.group(1), m.group(2))
        for pattern, resource, kind, api_version in _ROUTES:
            if m := pattern.match(url.path):
                return self._list(m.group(1), resource, kind, api_version, query)
        return 404, status(404, "NotFound", "the server could not find the requested resource")

    def _denied(self, resource: str, namespace: str, verb: str) -> tuple[int, Obj]:
        group = _GROUP.get(resource, "")
        plain = resource.split(".")[0]
        return 403, status(
            403,
            "Forbidden",
            f'{plain} is forbidden: User "system:serviceaccount:festivals:exporter" cannot '
            f'{verb} resource "{plain}" in API group "{group}" in the namespace "{namespace}"',
            plain,
        )

    def _secret(self, namespace: str, name: str) -> tuple[int, Obj]:
        if "secrets" in self.forbidden:
            return self._denied("secrets", namespace, "get")
        with self._lock:
            obj = self.secrets.get((namespace, name))
        if obj is None:
            return 404, status(404, "NotFound", f'secrets "{name}" not found', "secrets")
        return 200, obj

    def _list(
        self, namespace: str, resource: str, kind: str, api_version: str, query: dict[str, str]
    ) -> tuple[int, Obj]:
        if resource in self.absent or _GROUP.get(resource) in self.absent:
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        if resource in self.unavailable or _GROUP.get(resource) in self.unavailable:
            return 503, status(
                503, "ServiceUnavailable", "the server is currently unable to handle the request"
            )
        if resource in self.forbidden:
            return self._denied(resource, namespace, "list")
        with self._lock:
            items = list(self.objects.get((namespace, resource), ()))
            version = str(self.resource_version)
        if sel := query.get("labelSelector"):
            items = [
                o for o in items if _match_labels(sel, o.get("metadata", {}).get("labels") or {})
            ]
        if sel := query.get("fieldSelector"):
            items = [o for o in items if _match_fields(sel, o)]
        start = 0
        if token := query.get("continue"):
            if self.expire_continue_once:
                self.expire_continue_once = False
                return 410, status(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a "
                    "consistent list result. You can start a new list without the continue "
                    "parameter.",
                )
            start = int(base64.b64decode(token).decode())
        limit = int(query.get("limit") or 0) or len(items) or 1
        page = items[start : start + limit]
        meta: Obj = {"resourceVersion": version}
        if start + limit < len(items):
            meta["continue"] = base64.b64encode(str(start + limit).encode()).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        return 200, {"kind": kind, "apiVersion": api_version, "metadata": meta, "items": page}
