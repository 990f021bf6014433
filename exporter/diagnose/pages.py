"""``/diagnose`` and ``/diagnose/<section>``: the diagnosis from the latest kept results,
a status strip per section, the evidence table and sparkline-sized history of each number
(inline SVG: nothing is fetched from anywhere). The landing page's section summary too.

Pages only read the result store. The "run now" button (POST) exists only when on-demand
runs are enabled (``--web.enable-lifecycle``), and runs only the section's configured
probes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, Protocol

import anyio
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from exporter import __version__
from exporter.diagnose.engine import HISTORY_POINTS, diagnose
from exporter.diagnose.model import SectionDiagnosis, worst
from exporter.diagnose.runner import observe_store
from exporter.diagnose.sections import SectionDef, load_sections
from exporter.results import ResultStore

COLOURS = {"healthy": "#1a7f37", "ok": "#1a7f37", "degraded": "#b7791f",
           "failing": "#c62828", "unknown": "#8a8f98"}


class _Controller(Protocol):
    store: ResultStore

    async def run_now(self, name: str) -> Any: ...


def on_demand_enabled(controller: object) -> bool:
    """Whether on-demand runs are allowed (``--web.enable-lifecycle``, as for ``/probe``)."""
    return bool(getattr(getattr(controller, "web", None), "enable_lifecycle", False))


def sparkline(values: Sequence[float], threshold: float | None = None,
              width: int = 96, height: int = 20) -> Markup:
    """A polyline of ``values`` (oldest first) with the threshold as a dashed line."""
    points = [v for v in values if not math.isnan(v)]
    if len(points) < 2:
        return Markup("")
    scale = points + ([threshold] if threshold is not None else [])
    low, high = min(scale), max(scale)
    span = (high - low) or 1.0

    def y(v: float) -> float:
        return round(height - 2 - (v - low) / span * (height - 4), 1)

    step = (width - 4) / (len(points) - 1)
    line = " ".join(f"{2 + i * step:.1f},{y(v)}" for i, v in enumerate(points))
    rule = ""
    if threshold is not None:
        rule = (f'<line x1="0" x2="{width}" y1="{y(threshold)}" y2="{y(threshold)}" '
                'stroke="#c62828" stroke-dasharray="3,2" stroke-width="1"/>')
    return Markup(
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="history">{rule}<polyline fill="none" stroke="#3b5b92" '
        f'stroke-width="1.5" points="{line}"/></svg>'
    )


_templates = Environment(
    loader=PackageLoader("exporter", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.globals.update(colours=COLOURS, sparkline=sparkline)
_DIAGNOSE = _templates.get_template("diagnose.html")
# Read the mixin values now, at import, not on the event loop at the first page view
# (validating them takes a few hundred milliseconds).
load_sections()


async def current(store: ResultStore, sections: Sequence[SectionDef]) -> list[SectionDiagnosis]:
    """The diagnosis with history. The snapshot is taken on the loop (kept results are
    immutable); the checks over every kept run go to a worker thread, since thousands of
    pods times the kept runs would hold the loop."""
    observations = observe_store(store)
    return await anyio.to_thread.run_sync(
        diagnose, sections, observations, time.time(), HISTORY_POINTS)


def landing_sections(store: ResultStore) -> list[SectionDiagnosis]:
    """For the landing page: each section's verdict and probes (latest runs only)."""
    return diagnose(load_sections(), observe_store(store), time.time())


def diagnose_routes(controller: _Controller) -> list[Route]:
    sections = load_sections()
    by_id = {s.id: s for s in sections}

    def render(diagnoses: list[SectionDiagnosis], single: bool) -> Response:
        return HTMLResponse(_DIAGNOSE.render(
            version=__version__, diagnoses=diagnoses, single=single,
            overall=worst([d.verdict for d in diagnoses]),
            on_demand=on_demand_enabled(controller),
            generated=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        ))

    async def all_sections(request: Request) -> Response:
        return render(await current(controller.store, sections), single=False)

    async def one_section(request: Request) -> Response:
        section = by_id.get(request.path_params["section"])
        if section is None:
            return PlainTextResponse("unknown section\n", status_code=404)
        return render(await current(controller.store, [section]), single=True)

    async def run_section(request: Request) -> Response:
        sid = request.path_params["section"]
        section = by_id.get(sid)
        if section is None:
            return PlainTextResponse("unknown section\n", status_code=404)
        if not on_demand_enabled(controller):
            return PlainTextResponse("on-demand runs are disabled (--web.enable-lifecycle)\n",
                                     status_code=403)
        names = [r.spec.name for r in controller.store.probes.values()
                 if section.selects(r.spec)]
        async with anyio.create_task_group() as tg:
            for name in names:
                tg.start_soon(controller.run_now, name)
        return RedirectResponse(f"/diagnose/{sid}", status_code=303)

    return [
        Route("/diagnose", all_sections),
        Route("/diagnose/{section}", one_section),
        Route("/diagnose/{section}/run", run_section, methods=["POST"]),
    ]
