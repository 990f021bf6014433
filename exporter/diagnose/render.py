"""The diagnosis as text (coloured on a terminal, plain when piped) and as JSON.

The JSON shape is ``schema.json`` beside this module (draft 2020-12); ``to_json`` is
validated against it by the tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

from exporter.diagnose.model import SectionDiagnosis, exit_code, worst

SCHEMA_VERSION = 1
_COLOURS = {"healthy": "32", "ok": "32", "degraded": "33", "failing": "31", "unknown": "90"}
_MARKS = {"ok": "ok  ", "degraded": "WARN", "failing": "FAIL"}


def schema() -> dict[str, Any]:
    text = resources.files("exporter.diagnose").joinpath("schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def to_json(diagnoses: Sequence[SectionDiagnosis], now: float | None = None) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now or time.time())),
        "verdict": worst([d.verdict for d in diagnoses]),
        "exit_code": exit_code(diagnoses),
        "sections": [
            {
                "id": d.section.id,
                "title": d.section.title,
                "verdict": d.verdict,
                "summary": d.summary,
                "runbook_url": d.section.runbook_url,
                "diagnose_url": d.section.diagnose_url,
                "alerts": [a.name for a in d.section.alerts],
                "firing": list(d.firing),
                "probes": list(d.probes),
                "evidence": [
                    {"probe": e.probe, "key": e.key, "text": e.text, "level": e.level,
                     "value": _num(e.value), "threshold": _num(e.threshold), "unit": e.unit,
                     "alert": e.alert or None}
                    for e in d.evidence
                ],
                "causes": [{"text": c.text, "next_step": c.next_step, "probe": c.probe or None}
                           for c in d.causes],
                "missing": [{"what": m.what, "why": m.why, "probe": m.probe or None}
                            for m in d.missing],
            }
            for d in diagnoses
        ],
    }


def _num(v: float | None) -> float | None:
    # JSON has no NaN or infinity: an unreadable number is null.
    if v is None or v != v or v in (float("inf"), float("-inf")):
        return None
    return v


def to_text(diagnoses: Sequence[SectionDiagnosis], colour: bool) -> str:
    def paint(text: str, what: str, bold: bool = False) -> str:
        if not colour:
            return text
        return f"\033[{'1;' if bold else ''}{_COLOURS.get(what, '0')}m{text}\033[0m"

    width = max((len(d.section.id) for d in diagnoses), default=8)
    lines = [f"{'SECTION'.ljust(width)}  VERDICT   SUMMARY"]
    for d in diagnoses:
        lines.append(f"{d.section.id.ljust(width)}  "
                     f"{paint(d.verdict.upper().ljust(8), d.verdict, bold=True)}  {d.summary}")
    for d in diagnoses:
        lines += ["", paint(f"== {d.section.title} ({d.section.id}): {d.verdict.upper()}",
                            d.verdict, bold=True), f"   runbook: {d.section.runbook_url}"]
        if d.firing:
            lines.append("   alerts whose conditions hold: " + ", ".join(d.firing))
        for e in d.evidence:
            lines.append(f"   {paint(_MARKS[e.level], e.level)}  {e.probe}: {e.text}")
        for c in d.causes:
            lines.append(f"   cause: {c.text}")
            if c.next_step:
                lines.append(f"     next step (run it yourself): {c.next_step}")
        for m in d.missing:
            lines.append(f"   {paint('missing', 'unknown')}: {m.what}: {m.why}")
    return "\n".join(lines) + "\n"
