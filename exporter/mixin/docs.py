"""Markdown tables of docs/alerts.md built from the values, so docs and rules agree.

A generated table sits between ``<!-- mixin:NAME -->`` and ``<!-- /mixin:NAME -->`` in a
Markdown file; :func:`render_blocks` rewrites every such block and keeps the prose around it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from exporter.mixin.rules import rule_groups
from exporter.mixin.values import MixinValues, inputs, sections

_BLOCK = re.compile(r"(<!-- mixin:([a-z-]+) -->\n)(.*?)(<!-- /mixin:\2 -->)", re.S)


# Meanings of keys that many alerts share, so the reference table says them once each.
_COMMON = {
    "severity": "`severity` label: `critical` pages, `warning` opens a ticket",
    "window": "rate window of the condition",
    "fast_for": "`for` of the fast-burn alert",
    "slow_for": "`for` of the slow-burn alert",
    "fast_severity": "severity of the fast-burn alert (14.4x/1h+5m or 6x/6h+30m)",
    "slow_severity": "severity of the slow-burn alert (3x/1d+2h or 1x/3d+6h)",
    "min_request_rate": "requests per second below which the alert stays silent",
    "long_window": "long rate window (the condition holds over both)",
    "short_window": "short rate window (clears the alert quickly after recovery)",
    "refused_window": "window of the too-many-clients share",
    "pgbouncer_for": "`for` of the PgBouncer wait signal",
    "stripe_for": "`for` of the Stripe status signal",
    "length_for": "`for` of the queue length signal",
    "exporter_down_for": "`for` of FestivalsExporterDown (every replica down)",
    "replica_down_for": "`for` of FestivalsExporterReplicaDown (some replicas down)",
    "reload_failed_for": "`for` of FestivalsExporterConfigReloadFailed",
    "probe_stale_for": "`for` of FestivalsProbeStale",
    "input_down_for": "`for` of FestivalsInputDown",
    "input_absent_for": "`for` of FestivalsInputAbsent",
    "statuspage_stale_after": "a status page with no usable answer for this long is stale",
    "statuspage_stale_for": "`for` of FestivalsStatusPageStale",
    "critical_group_wait": "group_wait of the pager route",
}


def _cell(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    if value == "":
        return '`""`'
    return "`" + str(value).replace("|", "\\|") + "`"


def _leaves(model: BaseModel, prefix: str) -> Iterator[tuple[str, Any, str]]:
    for name, field in type(model).model_fields.items():
        key = field.alias or name
        value = getattr(model, name)
        path = f"{prefix}{key}"
        if isinstance(value, BaseModel):
            yield from _leaves(value, path + ".")
        elif isinstance(value, Mapping):
            continue  # inputs and sections have tables of their own
        else:
            meaning = field.description or _COMMON.get(key, "")
            if not meaning and prefix == "dashboards.":
                meaning = f"uid of the {key} dashboard"
            yield path, value, meaning


def values_reference(values: MixinValues) -> str:
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for path, value, meaning in _leaves(values, ""):
        rows.append(f"| `{path}` | {_cell(value)} | {meaning} |")
    return "\n".join(rows) + "\n"


def inputs_reference(values: MixinValues) -> str:
    rows = ["| input | what | selector | `required` | blind without it |",
            "| --- | --- | --- | --- | --- |"]
    for item in inputs(values).values():
        rows.append(
            f"| `inputs.{item.name}` | {item.title} | `{item.metric}{{{item.selector}}}` "
            f"| `{str(item.required).lower()}` | {', '.join(item.blind_alerts)} |"
        )
    return "\n".join(rows) + "\n"


def sections_reference(values: MixinValues) -> str:
    rows = ["| section | alerts | probe kinds | thresholds |", "| --- | --- | --- | --- |"]
    for sec in sections(values).values():
        thresholds = ", ".join(f"`{k}` = {v}" for k, v in sec.thresholds.items())
        rows.append(
            f"| [{sec.title}]({sec.runbook_url}) (`{sec.anchor}`) | {', '.join(sec.alerts)} "
            f"| {', '.join(sec.kinds) or '–'} | {thresholds} |"
        )
    return "\n".join(rows) + "\n"


def alerts_reference(values: MixinValues) -> str:
    rows = ["| alert | `signal` | severity | `for` | summary |",
            "| --- | --- | --- | --- | --- |"]
    seen: set[tuple[str, str, str]] = set()
    for group in rule_groups(values):
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            labels = rule["labels"]
            signal = labels.get("signal") or labels.get("input") or ""
            key = (rule["alert"], signal, rule["annotations"]["summary"])
            if key in seen:
                continue
            seen.add(key)
            shown = f"`{signal}`" if signal else "–"
            summary = rule["annotations"]["summary"].replace("|", "\\|")
            rows.append(
                f"| {rule['alert']} | {shown} | `{labels['severity']}` | "
                f"{rule.get('for', '–')} | {summary} |"
            )
    return "\n".join(rows) + "\n"


_LEVELS = {
    "instance_probe": "per prober (keeps `instance`)",
    "probe": "fleet: the prober that sees the least (`min without (instance)`)",
    "job": "per job (the API's own metrics, or the exporter's replicas)",
    "path": "per job and path",
}


def recording_reference(values: MixinValues) -> str:
    rows = ["| rule | level |", "| --- | --- |"]
    for group in rule_groups(values):
        for rule in group["rules"]:
            if "record" in rule:
                level = rule["record"].split(":", 1)[0]
                rows.append(f"| `{rule['record']}` | {_LEVELS[level]} |")
    return "\n".join(rows) + "\n"


Renderer = Callable[[MixinValues], str]
RENDERERS: dict[str, Renderer] = {
    "values": values_reference,
    "inputs": inputs_reference,
    "sections": sections_reference,
    "alerts": alerts_reference,
    "recording": recording_reference,
}


def render_blocks(text: str, values: MixinValues, renderers: Mapping[str, Renderer]) -> str:
    """``text`` with every known ``<!-- mixin:NAME -->`` block regenerated."""

    def replace(match: re.Match[str]) -> str:
        render = renderers.get(match.group(2))
        if render is None:
            return match.group(0)
        return match.group(1) + render(values) + match.group(4)

    return _BLOCK.sub(replace, text)
