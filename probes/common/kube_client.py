"""A thin async edge over the synchronous official ``kubernetes`` client.

Everything that touches the network runs in a worker thread through
``anyio.to_thread.run_sync(..., abandon_on_cancel=True, limiter=...)`` so a hanging API
server never blocks the event loop and the scheduler's deadline always fires. Responses are
read raw (``_preload_content=False``) and parsed with :mod:`json` *in the worker thread*;
each page of a LIST is turned into compact records by a caller-supplied ``extract``
function before the next page is fetched, so memory stays flat with thousands of pods.

Errors are mapped at this edge into :class:`KubeError` with a short ``reason``
(``timeout``, ``refused``, ``dns``, ``unreachable``, ``tls``, ``auth``, ``forbidden``,
``not_found``, ``gone``, ``rate_limited``, ``http_status``, ``protocol``, ``config``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import anyio
import anyio.to_thread
import orjson
from pydantic import BaseModel, ConfigDict

from probes.base import reason_for_exception

T = TypeVar("T")

# Page size for LIST calls: one logical LIST per resource kind, fetched in bounded chunks.
PAGE_SIZE = 500
_SERVICE_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class KubeAccess(BaseModel):
    """How to reach the API server.

    With neither key set the client uses the in-cluster service account when running in a
    pod, else the default kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kubeconfig: Path | None = None
    context: str | None = None

    def describe(self) -> str:
        if self.kubeconfig is None and self.context is None and _in_cluster():
            return "in-cluster"
        where = str(self.kubeconfig) if self.kubeconfig else "default kubeconfig"
        return f"{where} (context {self.context})" if self.context else where


class KubeError(Exception):
    """A failed API call. ``reason`` is a short snake_case word, never a message."""

    def __init__(self, reason: str, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Listed(Generic[T]):
    """The records extracted from one (possibly paginated) LIST."""

    items: tuple[T, ...]
    resource_version: str
    pages: int


# --- resources ------------------------------------------------------------------------------

# Resource -> its namespaced REST collection path. The probe speaks these paths through the
# client's ApiClient instead of the generated API classes: those modules cost about 30 MiB
# and a second of CPU to import, and the probe reads raw JSON anyway.
_NS = "namespaces/{namespace}"
COLLECTION_PATHS: dict[str, str] = {
    "pods": f"/api/v1/{_NS}/pods",
    "services": f"/api/v1/{_NS}/services",
    "events": f"/api/v1/{_NS}/events",
    "secrets": f"/api/v1/{_NS}/secrets",
    "deployments": f"/apis/apps/v1/{_NS}/deployments",
    "horizontalpodautoscalers": f"/apis/autoscaling/v2/{_NS}/horizontalpodautoscalers",
    "ingresses": f"/apis/networking.k8s.io/v1/{_NS}/ingresses",
    "pods.metrics.k8s.io": f"/apis/metrics.k8s.io/v1beta1/{_NS}/pods",
    "certificates.cert-manager.io": f"/apis/cert-manager.io/v1/{_NS}/certificates",
}


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and _SERVICE_TOKEN.exists()


def _new_api_client(access: KubeAccess) -> Any:
    """Build an ``ApiClient`` (file I/O: call it in a worker thread)."""
    from kubernetes import client, config

    preload_api_modules()

    cfg = client.Configuration()
    try:
        if access.kubeconfig is None and access.context is None and _in_cluster():
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(access.kubeconfig) if access.kubeconfig else None,
                context=access.context,
                client_configuration=cfg,
                persist_config=False,
            )
    except config.ConfigException as exc:
        raise KubeError("config", f"cannot load kubernetes config: {_short(str(exc))}") from None
    except OSError as exc:
        raise KubeError("config", f"cannot read kubeconfig: {exc.strerror}") from None
    # No silent urllib3 retries: the probe has a deadline and reports what happened.
    cfg.retries = False
    return client.ApiClient(configuration=cfg)


def preload_api_modules() -> None:
    """Import the client's modules once, in one thread, before concurrent LISTs: threads
    importing them at once fight over import locks and the GIL."""
    import kubernetes.client.api_client  # noqa: F401
    import kubernetes.config  # noqa: F401
    import kubernetes.utils  # noqa: F401  (parse_quantity)
    import urllib3.exceptions  # noqa: F401


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def map_error(exc: BaseException) -> KubeError:
    """Map anything the client raises to a :class:`KubeError`."""
    import urllib3.exceptions as u3
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, KubeError):
        return exc
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        if status == 0:
            text = str(exc.reason or "")
            if text.startswith("SSLError"):
                return KubeError("tls", f"TLS error: {_short(text.split(chr(10))[-1])}")
            return KubeError("protocol", f"client error: {_short(text)}")
        message = _status_message(exc.body) or str(exc.reason or "")
        reason = {
            401: "auth",
            403: "forbidden",
            404: "not_found",
            410: "gone",
            429: "rate_limited",
        }.get(status, "http_status")
        return KubeError(reason, f"HTTP {status}: {_short(message)}", status)
    if isinstance(exc, u3.MaxRetryError) and exc.reason is not None:
        return map_error(exc.reason)
    if isinstance(exc, u3.NameResolutionError):
        return KubeError("dns", "API server name did not resolve")
    # NewConnectionError subclasses ConnectTimeoutError: look at its cause first.
    if isinstance(exc, u3.TimeoutError | TimeoutError) and not isinstance(
        exc, u3.NewConnectionError
    ):
        return KubeError("timeout", "API server did not answer in time")
    if isinstance(exc, u3.SSLError):
        return KubeError("tls", f"TLS error: {_short(str(exc))}")
    if isinstance(exc, u3.HTTPError | OSError):
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, OSError) and not isinstance(cause, u3.HTTPError):
                reason = str(reason_for_exception(cause))
                if reason != "internal":
                    return KubeError(reason, f"{reason}: {type(cause).__name__}")
            cause = cause.__cause__ or cause.__context__
        text = str(exc)
        if "refused" in text.lower():
            return KubeError("refused", "connection refused")
        if isinstance(exc, u3.ProtocolError):
            return KubeError("unreachable", f"connection broken: {type(exc).__name__}")
        return KubeError("protocol", f"{type(exc).__name__}: {_short(text)}")
    if isinstance(exc, ValueError | UnicodeDecodeError):
        return KubeError("protocol", f"unreadable response: {type(exc).__name__}")
    raise exc


def _status_message(body: object) -> str:
    """The ``message`` of a ``Status`` object body, if the body is one."""
    if not isinstance(body, str | bytes) or not body:
        return ""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if isinstance(data, dict) and data.get("kind") == "Status":
        return str(data.get("message") or data.get("reason") or "")
    return ""


def _get_json(
    api: Any, path: str, params: dict[str, str], query: list[tuple[str, Any]], timeout: float
) -> Any:
    """GET one API path and parse the JSON body (blocking: call it in a worker thread)."""
    from kubernetes.client.exceptions import ApiException

    request = api.param_serialize(
        method="GET",
        resource_path=path,
        path_params=params,
        query_params=query,
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*request, _request_timeout=timeout)
    try:
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        raw = response.response.data
    finally:
        response.response.release_conn()
    # orjson: a 2,000-pod LIST is megabytes of JSON parsed in a worker thread that holds
    # the GIL; the stdlib parser takes longer and starves the event loop.
    return orjson.loads(raw)


class KubeClient:
    """One ``ApiClient`` plus a thread limiter, kept in a probe's state."""

    def __init__(self, access: KubeAccess, max_threads: int = 4) -> None:
        self.access = access
        self.limiter = anyio.CapacityLimiter(max_threads)
        self._api: Any = None
        self._lock = anyio.Lock()

    async def _call(self, fn: Callable[[], T]) -> T:
        def guarded() -> T:
            try:
                return fn()
            except Exception as exc:  # mapped here, in the worker thread
                raise map_error(exc) from None

        return await anyio.to_thread.run_sync(guarded, abandon_on_cancel=True, limiter=self.limiter)

    async def api(self) -> Any:
        async with self._lock:
            if self._api is None:
                self._api = await self._call(lambda: _new_api_client(self.access))
            return self._api

    async def list(
        self,
        resource: str,
        namespace: str,
        extract: Callable[[Mapping[str, Any]], T | None],
        *,
        request_timeout: float,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Listed[T]:
        """LIST ``resource`` in ``namespace``, paginated, keeping only ``extract``'s records."""
        api = await self.api()
        path = COLLECTION_PATHS[resource]
        query: list[tuple[str, Any]] = [("limit", PAGE_SIZE)]
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        items: list[T] = []
        token: str | None = None
        version = ""
        pages = 0
        restarted = False

        def page() -> tuple[list[T], str | None, str]:
            paged = [*query, ("continue", token)] if token else query
            data = _get_json(api, path, {"namespace": namespace}, paged, request_timeout)
            if not isinstance(data, dict):
                raise KubeError("protocol", f"LIST {resource}: not a JSON object")
            out = []
            for raw in data.get("items") or ():
                record = extract(raw) if isinstance(raw, dict) else None
                if record is not None:
                    out.append(record)
            meta = data.get("metadata") or {}
            return out, meta.get("continue") or None, str(meta.get("resourceVersion") or "")

        while True:
            try:
                got, token, version = await self._call(page)
            except KubeError as exc:
                if exc.reason == "gone" and token and not restarted:
                    # The continue token expired mid-list: restart once, consistently.
                    items, token, pages, restarted = [], None, 0, True
                    continue
                raise
            items.extend(got)
            pages += 1
            if not token:
                return Listed(tuple(items), version, pages)

    async def get(self, resource: str, namespace: str, name: str, *, request_timeout: float) -> Any:
        """GET one object as parsed JSON. Only ``secrets`` is supported."""
        if resource != "secrets":
            raise ValueError(f"unsupported resource {resource}")
        api = await self.api()

        def fetch() -> Any:
            path = COLLECTION_PATHS[resource] + "/{name}"
            return _get_json(api, path, {"namespace": namespace, "name": name}, [], request_timeout)

        return await self._call(fetch)

    async def aclose(self) -> None:
        api, self._api = self._api, None
        if api is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(api.close, abandon_on_cancel=True)


def decode_secret_data(obj: Mapping[str, Any]) -> dict[str, bytes]:
    """Base64-decode a Secret's ``data``; raises :class:`KubeError` (protocol) if malformed."""
    data = obj.get("data") or {}
    if not isinstance(data, dict):
        raise KubeError("protocol", "secret data is not an object")
    out: dict[str, bytes] = {}
    for key, value in data.items():
        try:
            out[str(key)] = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise KubeError("protocol", f"secret key {key} is not valid base64") from None
    return out


async def read_tls_secret(
    access: KubeAccess,
    namespace: str,
    name: str,
    timeout: float,  # noqa: ASYNC109
) -> dict[str, bytes]:
    """Read one Secret and return its base64-decoded ``data`` (e.g. ``tls.crt``).

    Raises :class:`KubeError`; ``timeout`` bounds the whole call (client and deadline).
    """
    client = KubeClient(access, max_threads=1)
    try:
        with anyio.fail_after(timeout):
            obj = await client.get("secrets", namespace, name, request_timeout=timeout)
    except TimeoutError:
        raise KubeError("timeout", "API server did not answer in time") from None
    finally:
        await client.aclose()
    if not isinstance(obj, dict):
        raise KubeError("protocol", "secret is not a JSON object")
    return decode_secret_data(obj)
