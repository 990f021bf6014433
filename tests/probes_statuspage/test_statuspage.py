from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import anyio
import pytest

from probes import statuspage as sp
from probes.base import ProbeResult
from tests.probes_statuspage.conftest import Route, StatusServer, fixture
from tests.promtool import assert_promtool_clean

pytestmark = pytest.mark.anyio

SUMMARY = "/api/v2/summary.json"
STATUS = "/api/v2/status.json"


def values(result: ProbeResult, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = [m for m in result.metrics if m.name == name]
    assert len(found) == 1, f"{name} appears {len(found)} times"
    return {s.labels: s.value for s in found[0].samples}


def one(result: ProbeResult, name: str, **labels: str) -> float:
    hits = [v for lbl, v in values(result, name).items()
            if all(dict(lbl).get(k) == want for k, want in labels.items())]
    assert len(hits) == 1, (name, labels, values(result, name))
    return hits[0]


def labels_of(result: ProbeResult, name: str) -> list[dict[str, str]]:
    return [dict(k) for k in values(result, name)]


def make(**config: Any) -> tuple[sp.StatuspageConfig, sp.StatuspageState]:
    cfg = sp.StatuspageConfig.model_validate({"client_timeout": 2.0, **config})
    return cfg, sp.new_state(cfg)


async def test_statuspage_v2_operational_then_outage(status_server: StatusServer) -> None:
    status_server.routes[SUMMARY] = Route(body=fixture("summary_operational.json"))
    cfg, state = make(url=status_server.url, components=["API", "web.*"])
    try:
        ok = await sp.run(cfg, state)
        assert ok.success, ok.detail
        assert one(ok, "statuspage_overall_status") == 0
        assert labels_of(ok, "statuspage_format") == [
            {"format": "statuspage_v2", "document": "summary"}]
        assert values(ok, "statuspage_component_status") == {
            (("component", "API"),): 0, (("component", "Webhooks"),): 0}
        assert sum(values(ok, "statuspage_incidents_unresolved").values()) == 0
        assert one(ok, "statuspage_up") == 1
        assert one(ok, "statuspage_http_status_code") == 200
        seen = status_server.seen[-1]
        assert seen.headers["user-agent"].startswith("festivals-exporter/")

        status_server.routes[SUMMARY] = Route(body=fixture("summary_outage.json"))
        bad = await sp.run(cfg, state)
        assert bad.success  # the page answered: an outage of the vendor is not a probe failure
        assert one(bad, "statuspage_overall_status") == 3  # major
        assert labels_of(bad, "statuspage_overall")[0]["description"] == "Partial System Outage"
        assert one(bad, "statuspage_component_status", component="API") == 3
        assert one(bad, "statuspage_component_status", component="Webhooks") == 4
        assert {"component": "Webhooks", "status": "major_outage"} in labels_of(
            bad, "statuspage_component")
        assert one(bad, "statuspage_incidents_unresolved", impact="major") == 1
        assert one(bad, "statuspage_incidents_unresolved", impact="minor") == 1
        assert one(bad, "statuspage_scheduled_maintenances", status="in_progress") == 1
        assert one(bad, "statuspage_scheduled_maintenances", status="scheduled") == 1
        assert one(bad, "statuspage_page_updated_timestamp_seconds") == pytest.approx(
            datetime.fromisoformat("2026-11-27T12:41:09.801+00:00").timestamp())
        await assert_promtool_clean("statuspage", [ok, bad])
    finally:
        await state.aclose()


async def test_all_components_and_status_json_fallback(status_server: StatusServer) -> None:
    status_server.routes[STATUS] = Route(body=fixture("status_minor.json"))
    cfg, state = make(url=status_server.url, format="statuspage_v2")
    try:
        result = await sp.run(cfg, state)
        assert result.success, result.detail
        assert [s.path for s in status_server.seen] == [SUMMARY, STATUS]
        assert one(result, "statuspage_overall_status") == 2  # minor
        assert labels_of(result, "statuspage_format")[0]["document"] == "status"
        assert values(result, "statuspage_component_status") == {}
        await sp.run(cfg, state)
        assert status_server.seen[-1].path == STATUS  # the answering URL is remembered
    finally:
        await state.aclose()


async def test_stripe_current_auto_detected(status_server: StatusServer) -> None:
    status_server.routes["/current"] = Route(body=fixture("stripe_current_up.json"))
    cfg, state = make(url=status_server.url, components=["API", "Webhooks"])
    try:
        up = await sp.run(cfg, state)
        assert up.success, up.detail
        assert labels_of(up, "statuspage_format") == [{"format": "stripe", "document": "current"}]
        assert values(up, "statuspage_component_status") == {
            (("component", "api"),): 0, (("component", "webhooks"),): 0}
        status_server.routes["/current"] = Route(body=fixture("stripe_current_degraded.json"))
        degraded = await sp.run(cfg, state)
        assert one(degraded, "statuspage_overall_status") == 2
        assert one(degraded, "statuspage_component_status", component="webhooks") == 2
        assert {"component": "webhooks", "status": "degraded"} in labels_of(
            degraded, "statuspage_component")
        assert not any(m.name == "statuspage_incidents_unresolved" for m in degraded.metrics)
    finally:
        await state.aclose()


async def test_format_mismatch(status_server: StatusServer) -> None:
    status_server.routes["/current"] = Route(body=fixture("summary_operational.json"))
    cfg, state = make(url=status_server.url + "/current", format="stripe")
    try:
        result = await sp.run(cfg, state)
        assert result.reason == "unexpected_format"
    finally:
        await state.aclose()


async def test_conditional_requests_and_kept_answer(status_server: StatusServer) -> None:
    status_server.routes[SUMMARY] = Route(body=fixture("summary_outage.json"), etag='"v1"')
    cfg, state = make(url=status_server.url + SUMMARY)
    try:
        first = await sp.run(cfg, state)
        assert first.success and "if-none-match" not in status_server.seen[-1].headers
        second = await sp.run(cfg, state)
        assert second.success, second.detail
        assert status_server.seen[-1].headers["if-none-match"] == '"v1"'
        assert any("304" in line for line in second.detail)
        assert one(second, "statuspage_overall_status") == 3  # kept answer
        # the page breaks: the last good answer stays, up drops, the age grows
        status_server.routes[SUMMARY] = Route(500, b"oops", {"Content-Type": "text/plain"})
        state.confirmed_at -= 30
        failed = await sp.run(cfg, state)
        assert failed.reason == "http_status"
        assert one(failed, "statuspage_up") == 0
        assert one(failed, "statuspage_overall_status") == 3
        assert one(failed, "statuspage_http_status_code") == 500
        assert 29 < one(failed, "statuspage_answer_age_seconds") < 40
    finally:
        await state.aclose()


@pytest.mark.parametrize(
    "route, reason",
    [
        (Route(body=b'{"status": {"indicator": "none",'), "malformed_json"),
        (Route(body=b'["not", "a", "page"]'), "unexpected_format"),
        (Route(body=b"<!DOCTYPE html><html><body>Sorry</body></html>",
               headers={"Content-Type": "text/html"}), "html_page"),
        (Route(502, b"<html><body>502 Bad Gateway</body></html>",
               {"Content-Type": "text/html"}), "html_page"),
        (Route(503, b'{"error": "unavailable"}'), "http_status"),
        (Route(body=b" " * (10 * 1024 * 1024)), "too_large"),
        (Route(body=b" " * (10 * 1024 * 1024), send_length=False), "too_large"),
        (Route(body=b"{}", delay=1.5), "timeout"),
        (Route(302, b"", {"Location": SUMMARY}), "http_status"),
        (Route(301, b"", {"Location": "ftp://status.vendor.invalid/"}), "protocol"),
    ],
    ids=["malformed", "not_object", "html200", "html502", "503", "10mb", "10mb_chunked",
         "slow", "redirect_loop", "redirect_ftp"],
)
async def test_malformed_answers(status_server: StatusServer, route: Route, reason: str) -> None:
    status_server.routes[SUMMARY] = route
    cfg, state = make(url=status_server.url + SUMMARY, client_timeout=0.5)
    try:
        started = time.monotonic()
        with anyio.fail_after(5):
            result = await sp.run(cfg, state)
        assert time.monotonic() - started < 1.5
        assert not result.success
        assert result.reason == reason, result.detail
        assert one(result, "statuspage_up") == 0
        assert one(result, "statuspage_answer_age_seconds") == -1
        assert reason in sp.KIND.reasons
    finally:
        await state.aclose()


async def test_rate_limited_respects_retry_after(status_server: StatusServer) -> None:
    status_server.routes[SUMMARY] = Route(429, b'{"error": "slow down"}', {"Retry-After": "120"})
    cfg, state = make(url=status_server.url + SUMMARY)
    try:
        first = await sp.run(cfg, state)
        assert first.reason == "rate_limited"
        assert 118 < one(first, "statuspage_retry_after_seconds") <= 120
        count = len(status_server.seen)
        status_server.routes[SUMMARY] = Route(body=fixture("summary_operational.json"))
        second = await sp.run(cfg, state)
        assert second.reason == "rate_limited"
        assert len(status_server.seen) == count  # no request while Retry-After runs
        state.retry_until = time.time() - 1
        third = await sp.run(cfg, state)
        assert third.success and one(third, "statuspage_retry_after_seconds") == 0
    finally:
        await state.aclose()


def test_retry_after_http_date() -> None:
    now = 1_800_000_000.0
    # 1_800_000_000 is 2027-01-15 08:00:00 UTC: the date is 30 s later
    assert sp._retry_after("Fri, 15 Jan 2027 08:00:30 GMT", 60, now) == 30
    assert sp._retry_after("Fri, 15 Jan 2027 07:00:00 GMT", 60, now) == 0  # in the past
    assert sp._retry_after("30", 60, now) == 30
    assert sp._retry_after(None, 60, now) == 60
    assert sp._retry_after("garbage", 60, now) == 60
    assert sp._retry_after("999999", 60, now) == 3600


async def test_proxy_url_is_used(status_server: StatusServer) -> None:
    status_server.routes[SUMMARY] = Route(body=fixture("summary_operational.json"))
    # the test server doubles as the proxy: it receives the absolute-form request
    cfg, state = make(url="http://status.vendor.invalid", proxy_url=status_server.url)
    try:
        result = await sp.run(cfg, state)
        assert result.success, result.detail
        assert status_server.seen[0].raw_path == "http://status.vendor.invalid" + SUMMARY
    finally:
        await state.aclose()


async def test_refused_and_not_found(status_server: StatusServer) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg, state = make(url=f"http://127.0.0.1:{port}")
    try:
        result = await sp.run(cfg, state)
        assert result.reason == "refused", result.detail
    finally:
        await state.aclose()
    cfg, state = make(url=status_server.url)
    try:
        result = await sp.run(cfg, state)
        assert result.reason == "not_found"
        assert [s.path for s in status_server.seen] == [SUMMARY, STATUS, "/current"]
    finally:
        await state.aclose()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="http"):
        sp.StatuspageConfig.model_validate({"url": "status.stripe.com"})
    with pytest.raises(ValueError, match="regular expression"):
        sp.StatuspageConfig.model_validate({"url": "https://x.example", "components": ["("]})
    cfg = sp.StatuspageConfig.model_validate({"url": "https://status.stripe.com/"})
    assert cfg.candidates()[-1] == ("https://status.stripe.com/current", "stripe")
    assert sp.target(cfg) == "https://status.stripe.com (auto)"


async def test_scheduler_deadline_cancels_cleanly(status_server: StatusServer) -> None:
    status_server.routes[SUMMARY] = Route(body=fixture("summary_operational.json"), delay=1.0)
    cfg, state = make(url=status_server.url + SUMMARY, client_timeout=5.0)
    try:
        with pytest.raises(TimeoutError), anyio.fail_after(0.3):
            await sp.run(cfg, state)
        status_server.routes[SUMMARY] = Route(body=fixture("summary_operational.json"))
        again = await sp.run(cfg, state)  # the client is still usable after a cancel
        assert again.success, again.detail
    finally:
        await state.aclose()
    assert state.client is None
