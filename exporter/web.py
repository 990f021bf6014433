"""The HTTP face: /metrics, health, reload, on-demand probes, the landing pages, demo targets.

Handlers only read the result store (and, for ``/probe``, run one *configured* probe):
no handler accepts a target from the request, so the exporter cannot be used for SSRF.
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from exporter import __version__
from exporter.config import Config
from exporter.demo import demo_routes
from exporter.diagnose.pages import diagnose_routes, landing_sections
from exporter.diagnose.sections import load_sections
from exporter.metrics import exposition, render_run
from exporter.results import ResultStore, RunRecord

# How slow the demo's "slow" endpoint is: above the demo probe's timeout, so it fails.
DEMO_SLOW_SECONDS = 3.0


class Controller(Protocol):
    """What the web layer needs from the daemon."""

    store: ResultStore
    config: Config

    async def reload(self) -> list[str]:
        """Reload the config file; returns the errors (empty on success)."""
        ...

    async def run_now(self, name: str) -> RunRecord | None: ...


_templates = Environment(
    loader=PackageLoader("exporter", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _age(started_at: float) -> str:
    seconds = max(0.0, time.time() - started_at)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _utc(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))


_templates.filters["age"] = _age
_templates.filters["utc"] = _utc
# Compile now, at import, not on the event loop at the first page view.
_INDEX = _templates.get_template("index.html")
_PROBE_PAGE = _templates.get_template("probe.html")
# Templates these include or import load at their first render, on the loop: now instead.
for _name in ("_status.html", "_landing_sections.html", "_diagnose.html", "_diagnose_style.html"):
    _templates.get_template(_name)


class _PartsResponse(Response):
    """A body sent as the cached parts it is made of, without joining them first."""

    def __init__(self, parts: list[bytes], headers: dict[str, str]) -> None:
        super().__init__(b"", headers=headers)
        self.parts = parts
        self.headers["content-length"] = str(sum(len(part) for part in parts))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code,
             "headers": self.raw_headers}
        )
        last = len(self.parts) - 1
        for index, part in enumerate(self.parts):
            await send({"type": "http.response.body", "body": part, "more_body": index < last})
        if last < 0:
            await send({"type": "http.response.body", "body": b""})


def create_app(controller: Controller) -> Starlette:
    cache = exposition(controller.store)
    # The diagnose pages read numbers from past runs of the probes their sections select.
    sections = load_sections()
    controller.store.keep_metrics = lambda spec: any(s.selects(spec) for s in sections)

    async def metrics(request: Request) -> Response:
        # Joins cached pieces only: never waits for a probe, never renders one.
        parts, headers = cache.scrape(
            request.headers.get("accept", ""), request.headers.get("accept-encoding", "")
        )
        return _PartsResponse(parts, headers)

    async def healthy(request: Request) -> Response:
        return PlainTextResponse("Healthy\n")

    async def ready(request: Request) -> Response:
        store = controller.store
        if store.ready():
            return PlainTextResponse("Ready\n")
        waiting = sorted(n for n, r in store.probes.items() if r.last is None)
        return PlainTextResponse(
            f"Not ready: waiting for the first run of {len(waiting)} probe(s): "
            + ", ".join(waiting) + "\n",
            status_code=503,
        )

    async def reload(request: Request) -> Response:
        errors = await controller.reload()
        if errors:
            return PlainTextResponse(
                "config reload failed, the previous config keeps running:\n"
                + "\n".join(errors) + "\n",
                status_code=400,
            )
        return PlainTextResponse("config reloaded\n")

    async def probe(request: Request) -> Response:
        params = request.query_params
        if "target" in params or "module" in params:
            return PlainTextResponse(
                "arbitrary targets are not accepted; use name=<configured probe>\n",
                status_code=400,
            )
        name = params.get("name", "")
        if not name:
            return PlainTextResponse("missing parameter: name\n", status_code=400)
        record = controller.store.probes.get(name)
        run = await controller.run_now(name) if record is not None else None
        if record is None or run is None:
            return PlainTextResponse("unknown probe\n", status_code=404)
        # This run's own series only: on-demand runs do not move the counters.
        body, headers = render_run(
            record.spec, run,
            request.headers.get("accept", ""), request.headers.get("accept-encoding", ""),
        )
        return Response(body, headers=headers)

    async def index(request: Request) -> Response:
        store = controller.store
        page = _INDEX.render(
            version=__version__,
            records=sorted(store.probes.values(), key=lambda r: r.spec.name),
            recent=store.recent(50),
            store=store,
            sections=landing_sections(store),
        )
        return HTMLResponse(page)

    async def probe_page(request: Request) -> Response:
        record = controller.store.probes.get(request.path_params["name"])
        if record is None:
            return PlainTextResponse("unknown probe\n", status_code=404)
        page = _PROBE_PAGE.render(version=__version__, record=record)
        return HTMLResponse(page)

    routes = [
        Route("/", index),
        Route("/metrics", metrics),
        Route("/-/healthy", healthy, methods=["GET", "HEAD"]),
        Route("/-/ready", ready, methods=["GET", "HEAD"]),
        Route("/-/reload", reload, methods=["POST", "PUT"]),
        Route("/probe", probe),
        Route("/probes/{name}", probe_page),
        *diagnose_routes(controller),
    ]
    if controller.config.global_.demo:
        routes += _demo_routes() + demo_routes()
    return Starlette(routes=routes)


def _demo_routes() -> list[Route]:
    """Targets the exporter serves for itself in demo mode, so ``make run`` needs nothing."""

    async def demo_healthy(request: Request) -> Response:
        return JSONResponse({"status": "ok", "database": "ok", "redis": "ok"})

    async def demo_failing(request: Request) -> Response:
        return JSONResponse({"status": "degraded", "database": "down"}, status_code=503)

    async def demo_slow(request: Request) -> Response:
        await anyio.sleep(DEMO_SLOW_SECONDS)
        return JSONResponse({"status": "ok"})

    async def demo_webhook(request: Request) -> Response:
        # Like Stripe's webhook endpoint: an unsigned POST is rejected with 400.
        return JSONResponse({"error": "missing Stripe-Signature header"}, status_code=400)

    return [
        Route("/demo/healthy", demo_healthy),
        Route("/demo/failing", demo_failing),
        Route("/demo/slow", demo_slow),
        Route("/demo/webhook", demo_webhook, methods=["POST"]),
    ]
