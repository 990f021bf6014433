"""Checks for the API-facing sections: api-down, high-error-rate, high-latency,
payment-failures. Each reads only the observations it is given."""

from __future__ import annotations

import re
from collections import Counter

from exporter.diagnose.model import Observation
from exporter.diagnose.read import Findings, duration, p99, percent, samples, value
from probes.base import ProbeResult

_REASON_CAUSE = {
    "refused": "nothing accepts connections on the API's port (pods down or no endpoints)",
    "timeout": "the API does not answer within the timeout",
    "http_status": "the API answers with an error status",
    "validation": "the API answers but its health body reports a problem",
    "dns": "the API's host name does not resolve",
    "tls": "the TLS handshake with the API fails",
    "unreachable": "the API's address is unreachable or resets connections",
}


def _ns(obs: Observation) -> str:
    namespaces = getattr(obs.spec.settings, "namespaces", ("festivals",))
    return str(namespaces[0]) if namespaces else "festivals"


def _http_status(result: ProbeResult) -> str:
    code = value(result, "probe_http_status_code")
    return f" (HTTP {code:.0f})" if code else ""


def api_down(f: Findings, selected: list[Observation]) -> None:
    alert = "APIServiceDown"
    api = [o for o in selected if o.spec.kind == "http"]
    if not api:
        f.miss("API health check", "no http probe with service="
               f"{_service(f)} is configured")
    failing: dict[str, list[str]] = {}
    for obs in api:
        run = f.answered(obs, "API health check")
        if run is None:
            continue
        name = obs.spec.name
        if run.result.success:
            f.add(name, "api_up", f"{name} answered{_http_status(run.result)} in "
                  f"{duration(run.duration)}", value=1, threshold=1)
        else:
            reason = run.result.reason
            f.add(name, "api_up", f"{name} fails: {reason}{_http_status(run.result)}",
                  f.breach(alert), value=0, threshold=1, alert=alert)
            failing.setdefault(reason, []).append(name)
    for reason, names in failing.items():
        f.cause(f"{_REASON_CAUSE.get(reason, reason)} ({', '.join(names)}: {reason})",
                "kubectl get pods -n festivals -l app=festivals-api", names[0])
    kube = [o for o in selected if o.spec.kind == "kubernetes"]
    if not kube:
        f.miss("API pods and rollouts", "no kubernetes probe is configured")
    for obs in kube:
        if (run := f.answered(obs, "API pods and rollouts")) is not None:
            _deployment(f, obs, run.result,
                        f.section.patterns.get("api_deployment", "festivals-api"), alert)


def _service(f: Findings) -> str:
    return f.section.patterns.get("api_service", "festivals-api")


def _deployment(f: Findings, obs: Observation, result: ProbeResult, deploy: str,
                alert: str) -> None:
    name, ns = obs.spec.name, _ns(obs)
    desired = value(result, "kube_deployment_spec_replicas", deployment=deploy)
    available = value(result, "kube_deployment_status_replicas_available", deployment=deploy)
    if desired is None or available is None:
        f.miss(f"deployment {deploy}", f"{name} sees no deployment {deploy} in {ns}", name)
        return
    level = ("ok" if available >= desired else
             f.breach(alert) if available == 0 and desired > 0 else "degraded")
    f.add(name, f"available:{deploy}", f"deployment {deploy}: {available:.0f} of "
          f"{desired:.0f} replicas available", level, value=available, threshold=desired,
          alert=alert if available == 0 and desired > 0 else "")
    crashing = sorted({lbl["pod"] for lbl, v in samples(
        result, "kube_pod_container_status_waiting_reason")
        if v == 1 and lbl.get("reason") == "CrashLoopBackOff" and lbl.get("pod", "").startswith(
            deploy + "-")})
    pending = sorted({lbl["pod"] for lbl, v in samples(result, "kube_pod_status_phase")
                      if v == 1 and lbl.get("phase") == "Pending"
                      and lbl.get("pod", "").startswith(deploy + "-")})
    if crashing:
        f.add(name, f"crashloop:{deploy}", f"{len(crashing)} pod(s) in CrashLoopBackOff: "
              + ", ".join(crashing), "degraded" if level == "ok" else level,
              value=len(crashing), threshold=0)
        rollout = value(result, "probe_kubernetes_deployment_last_rollout_timestamp_seconds",
                        deployment=deploy)
        revision = value(result, "probe_kubernetes_deployment_revision", deployment=deploy)
        age = f.now - rollout if rollout else None
        if age is not None and age < 6 * 3600:
            rev = f", revision {revision:.0f}" if revision else ""
            f.cause(f"{deploy} pods crash-looping since the rollout {duration(age)} ago{rev}",
                    f"kubectl rollout undo deployment/{deploy} -n {ns}", name)
        else:
            f.cause(f"{deploy} pods crash-looping: check their startup errors",
                    f"kubectl logs -n {ns} {crashing[0]} --previous --tail=100", name)
    if pending:
        f.add(name, f"pending:{deploy}", f"{len(pending)} pod(s) Pending: " + ", ".join(pending),
              "degraded" if level == "ok" else level, value=len(pending), threshold=0)
        f.cause(f"{deploy} pods cannot be scheduled: check resource availability",
                f"kubectl describe pod {pending[0]} -n {ns}", name)


def error_rate(f: Findings, selected: list[Observation]) -> None:
    alert = "SyntheticHighErrorRate"
    limit = f.section.threshold("synthetic_high_error_rate.threshold")
    api = [o for o in selected if o.spec.kind == "http"]
    if not api:
        f.miss("API error ratio", f"no http probe with service={_service(f)} is configured")
    reasons: Counter[str] = Counter()
    for obs in api:
        if f.answered(obs, "API error ratio") is None:
            continue
        name = obs.spec.name
        failed = [r for r in obs.runs if not r.result.success]
        ratio = len(failed) / len(obs.runs)
        # Every run failing is an outage, whatever the alert's severity for a share of them.
        level = "failing" if ratio == 1 else f.breach(alert) if ratio > limit else "ok"
        f.add(name, "error_ratio", f"{name} failed {len(failed)} of {len(obs.runs)} runs "
              f"({percent(ratio)}, threshold {percent(limit)})", level, value=ratio,
              threshold=limit, unit="ratio", alert=alert if level != "ok" else "")
        if level != "ok":
            reasons.update(r.result.reason for r in failed)
    if reasons:
        top = reasons.most_common(1)[0][0]
        f.cause(f"API checks fail mostly with {top}: {_REASON_CAUSE.get(top, top)}",
                "kubectl logs -n festivals -l app=festivals-api --tail=500 "
                "| grep -i error | head -50")
    for obs in (o for o in selected if o.spec.kind == "statuspage"):
        _vendor(f, obs, "degraded", "")


def _vendor(f: Findings, obs: Observation, level_when_bad: str, alert: str) -> None:
    """A vendor's status page: overall status, and components as the alert matches them."""
    name = obs.spec.name
    run = f.answered(obs, f"status page of {name}", "statuspage_up")
    if run is None:
        return
    overall = value(run.result, "statuspage_overall_status") or 0
    text = next((lbl.get("description") or lbl.get("indicator", "") for lbl, _ in samples(
        run.result, "statuspage_overall_info")), "")
    f.add(name, "overall", f"{name}: overall {text or 'status'} (severity {overall:.0f})",
          "ok" if overall < 2 else "degraded", value=overall, threshold=2)
    pattern = re.compile(f.section.patterns.get("payment_components", "(?i)api|webhooks"))
    floor = f.section.thresholds.get("high_payment_failure_rate.stripe_status_min", 2.0)
    for lbl, sev in samples(run.result, "statuspage_component_status"):
        comp = lbl.get("component", "")
        critical = bool(alert) and bool(pattern.fullmatch(comp))
        if sev < floor:
            continue
        level = f.breach(alert) if critical else "degraded"
        f.add(name, f"component:{comp}", f"{name}: component {comp} at severity {sev:.0f} "
              f"(threshold {floor:.0f})", level,
              value=sev, threshold=floor, alert=alert if critical else "")
        f.cause(f"{name} reports {comp} degraded or down: a vendor incident",
                "curl -s https://status.stripe.com/api/v2/status.json | jq .", name)
    if level_when_bad and overall >= 2 and not alert:
        f.cause(f"{name} reports an incident: an external dependency is degraded",
                "curl -s https://status.stripe.com/api/v2/status.json | jq .status", name)


def payments(f: Findings, selected: list[Observation]) -> None:
    alert = "HighPaymentFailureRate"
    pages = [o for o in selected if o.spec.kind == "statuspage"]
    hooks = [o for o in selected if o.spec.kind == "http"]
    if not pages:
        f.miss("Stripe status", "no statuspage probe with service=payments is configured")
    if not hooks:
        f.miss("webhook endpoint", "no http probe with service=payments is configured")
    for obs in pages:
        _vendor(f, obs, "", alert)
    alert = "SyntheticPaymentCheckFailing"
    for obs in hooks:
        run = f.answered(obs, "webhook endpoint")
        if run is None:
            continue
        name = obs.spec.name
        if run.result.success:
            f.add(name, "webhook_up", f"{name} answered{_http_status(run.result)} as expected",
                  value=1, threshold=1)
        else:
            f.add(name, "webhook_up", f"{name} fails: {run.result.reason}"
                  f"{_http_status(run.result)}", f.breach(alert), value=0, threshold=1,
                  alert=alert)
            f.cause(f"the Stripe webhook endpoint fails its check ({run.result.reason})",
                    f"curl -X POST {obs.spec.target()} -H 'Content-Type: application/json' "
                    "-d '{\"type\": \"test\"}'", name)


def latency(f: Findings, selected: list[Observation]) -> None:
    alert = "SyntheticHighLatencyP99"
    limit = f.section.threshold("synthetic_high_latency_p99.threshold_seconds")
    api = [o for o in selected if o.spec.kind == "http"]
    if not api:
        f.miss("API latency", f"no http probe with service={_service(f)} is configured")
    slow = False
    for obs in api:
        if (run := f.answered(obs, "API latency")) is None:
            continue
        name = obs.spec.name
        worst = p99([r.duration for r in obs.runs])
        level = f.breach(alert) if worst > limit else "ok"
        if all(r.result.reason == "timeout" for r in obs.runs):
            level = "failing"  # no answer at all within the timeout: not slow, stuck
        f.add(name, "p99", f"{name} p99 {duration(worst)} over {len(obs.runs)} runs "
              f"(threshold {duration(limit)})", level, value=worst, threshold=limit,
              unit="seconds", alert=alert if level != "ok" else "")
        if level == "ok":
            continue
        slow = True
        phases = {lbl.get("phase", ""): v for lbl, v in samples(
            run.result, "probe_http_duration_seconds")}
        if run.result.reason == "timeout":
            f.cause(f"{name} times out: the API does not answer within "
                    f"{duration(obs.spec.timeout)}", "kubectl top pods -n festivals", name)
        elif phases:
            phase = max(phases, key=lambda p: phases[p])
            f.cause(f"{name} spends most time in {phase} ({duration(phases[phase])})",
                    "kubectl top pods -n festivals", name)
    for obs in (o for o in selected if o.spec.kind == "postgres"):
        if (run := f.answered(obs, "slowest statements", "pg_up")) is None:
            continue
        means = [v for _, v in samples(run.result, "pg_stat_statements_top_mean_seconds")]
        if means:
            top = max(means)
            f.add(obs.spec.name, "statement_mean", f"slowest statement mean {duration(top)}",
                  value=top, unit="seconds")
            if slow and top > limit:
                f.cause(f"slow database statements (mean up to {duration(top)})",
                        "psql -c 'SELECT query, calls, mean_exec_time FROM pg_stat_statements "
                        "ORDER BY mean_exec_time DESC LIMIT 10;'", obs.spec.name)
    for obs in (o for o in selected if o.spec.kind == "redis"):
        if (run := f.answered(obs, "Redis latency", "redis_up")) is None:
            continue
        ping = value(run.result, "redis_ping_latency_seconds")
        if ping is not None:
            f.add(obs.spec.name, "redis_ping", f"Redis PING {duration(ping)}", value=ping,
                  unit="seconds")
            if slow and ping > limit / 10:
                f.cause(f"Redis answers slowly (PING {duration(ping)})",
                        "kubectl exec -it redis-0 -n festivals -- redis-cli --latency",
                        obs.spec.name)
