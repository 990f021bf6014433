"""Checks for the infrastructure sections: database-issues, resource-exhaustion,
queue-backlog, ssl-certificate-renewal."""

from __future__ import annotations

import re

from exporter.diagnose.checks_app import _ns
from exporter.diagnose.model import Observation
from exporter.diagnose.read import (
    Findings,
    count,
    duration,
    is_number,
    percent,
    samples,
    value,
)
from probes.base import ProbeResult

_TERMINATE_IDLE = (
    "psql -U festivals -c \"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE state = 'idle' AND query_start < NOW() - INTERVAL '{minutes} minutes';\""
)
# With the pids the probe saw (its idle-sessions table), so the responder ends exactly
# those; `state = 'idle'` again, so a session that woke up since is left alone.
_TERMINATE_PIDS = (
    "psql -U festivals -c \"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE state = 'idle' AND pid IN ({pids});\""
)


# The postgres probe's table title (probes.postgres.sql.IDLE_SESSIONS_TITLE; not imported,
# which would load psycopg into every exporter; a test checks they agree).
IDLE_SESSIONS_TITLE = "Idle sessions past idle_threshold (oldest first)"


def _idle_pids(result: ProbeResult) -> list[str]:
    rows = dict(result.tables).get(IDLE_SESSIONS_TITLE, ())
    return [row[0] for row in rows[1:] if row and row[0].isdigit()]


_PG_DOWN = {
    "refused": ("PostgreSQL refuses connections: not running or not listening",
                "kubectl exec -it postgres-0 -n festivals -- pg_isready"),
    "timeout": ("PostgreSQL does not answer in time (frozen, overloaded or network)",
                "kubectl exec -it postgres-0 -n festivals -- pg_isready"),
    "too_many_clients": ("PostgreSQL refuses new clients: at max_connections", ""),
    "auth": ("PostgreSQL rejects the exporter's credentials",
             "kubectl exec -it postgres-0 -n festivals -- psql -U festivals -c 'SELECT 1'"),
}


def database(f: Findings, selected: list[Observation]) -> None:
    pg = [o for o in selected if o.spec.kind == "postgres"]
    if not pg:
        f.miss("PostgreSQL connections", "no postgres probe is configured")
    for obs in pg:
        _postgres(f, obs)
    for obs in (o for o in selected if o.spec.kind == "pgbouncer"):
        _pgbouncer(f, obs)


def _postgres(f: Findings, obs: Observation) -> None:
    name = obs.spec.name
    run = obs.last
    if run is None:
        f.miss("PostgreSQL connections", f"probe {name} has not run yet", name)
        return
    reason = run.result.reason
    if value(run.result, "pg_up") != 1.0:
        f.add(name, "pg_up", f"{name}: PostgreSQL does not answer ({reason or 'down'})",
              f.breach("DatabaseDown"), value=0, threshold=1, alert="DatabaseDown")
        why, step = _PG_DOWN.get(reason, (f"PostgreSQL is down ({reason})",
                                          "kubectl exec -it postgres-0 -n festivals -- "
                                          "pg_isready"))
        f.cause(why, step or _TERMINATE_IDLE.format(minutes=10), name)
        f.miss("PostgreSQL connections", f"probe {name} did not answer ({reason})", name)
        return
    alert = "DatabaseConnectionPoolExhausted"
    limit = f.section.threshold("database_connection_pool_exhausted.slots_ratio")
    used = value(run.result, "pg_connections_used") or 0
    usable = value(run.result, "pg_connections_available") or 0
    ratio = value(run.result, "pg_connections_used_ratio") or 0
    idle = value(run.result, "pg_stat_activity_idle_over_threshold")
    threshold_s = float(getattr(obs.spec.settings, "idle_threshold", 600.0))
    oldest_idle = value(run.result, "pg_stat_activity_oldest_idle_seconds")
    idle_text = (f", {count(idle)} idle for more than {duration(threshold_s)}"
                 if idle is not None else "")
    if idle and oldest_idle:
        idle_text += f", the oldest idle {duration(oldest_idle)}"
    level = f.breach(alert) if ratio > limit else "ok"
    f.add(name, "connections_used_ratio", f"connections {count(used)} of "
          f"{count(usable)} usable ({percent(ratio)}, threshold {percent(limit)}){idle_text}",
          level,
          value=ratio, threshold=limit, unit="ratio", alert=alert if level != "ok" else "")
    new_client = value(run.result, "pg_new_client_up")
    refused = reason == "too_many_clients" or new_client == 0
    if refused:
        f.add(name, "new_client", f"{name}: a new client is refused ({reason or 'down'})",
              f.breach(alert), value=0, threshold=1, alert=alert)
    if refused or level != "ok":
        minutes = max(1, round(threshold_s / 60))
        who = f"{count(idle)} idle session(s)" if idle else "idle sessions"
        pids = _idle_pids(run.result)
        step = (_TERMINATE_PIDS.format(pids=", ".join(pids)) + f"  # the {len(pids)} oldest"
                f" idle for more than {duration(threshold_s)}" if pids else
                _TERMINATE_IDLE.format(minutes=minutes) + f"  # would end {who} older "
                f"than {duration(threshold_s)}")
        f.cause("PostgreSQL refuses new clients: at max_connections" if refused else
                f"connection slots nearly exhausted; {who} hold slots", step, name)
    stuck = value(run.result, "pg_stat_activity_idle_in_transaction_over_threshold")
    if stuck:
        limit_s = float(getattr(obs.spec.settings, "idle_in_transaction_threshold", 60.0))
        oldest = value(run.result, "pg_stat_activity_oldest_transaction_seconds") or 0
        f.add(name, "idle_in_transaction", f"{count(stuck)} session(s) idle in transaction "
              f"for more than {duration(limit_s)}, the oldest transaction {duration(oldest)}",
              "degraded", value=stuck, threshold=0)
        f.cause(f"{count(stuck)} session(s) hold a transaction open without working: they "
                "hold locks and connection slots",
                "psql -U festivals -c \"SELECT pid, now() - xact_start AS age, query FROM "
                "pg_stat_activity WHERE state LIKE 'idle in transaction%' ORDER BY age "
                "DESC;\"", name)
    longest = value(run.result, "pg_stat_activity_max_query_duration_seconds")
    if longest:
        f.add(name, "longest_query", f"longest active query {duration(longest)}",
              value=longest, unit="seconds")


def _pgbouncer(f: Findings, obs: Observation) -> None:
    alert = "DatabaseConnectionPoolExhausted"
    name = obs.spec.name
    run = obs.last
    if run is None:
        f.miss("PgBouncer pools", f"probe {name} has not run yet", name)
        return
    if value(run.result, "pgbouncer_up") != 1.0:
        f.add(name, "pgbouncer_up", f"{name}: PgBouncer does not answer "
              f"({run.result.reason or 'down'})", "failing", value=0, threshold=1)
        f.cause(f"PgBouncer is down ({run.result.reason})",
                "kubectl get pods -n festivals -l app=pgbouncer", name)
        return
    limit = f.section.threshold("database_connection_pool_exhausted.pgbouncer_maxwait_seconds")
    waits: dict[str, float] = {}
    for lbl, v in samples(run.result, "pgbouncer_pools_client_maxwait_seconds"):
        db = lbl.get("database", "")
        waits[db] = max(waits.get(db, 0.0), v)
    for db, wait in sorted(waits.items()):
        waiting = sum(v for lbl, v in samples(
            run.result, "pgbouncer_pools_client_waiting_connections") if lbl.get("database") == db)
        level = f.breach(alert) if wait > limit else "ok"
        f.add(name, f"maxwait:{db}", f"pool {db}: {count(waiting)} client(s) waiting, oldest "
              f"{duration(wait)} (threshold {duration(limit)})", level, value=wait,
              threshold=limit, unit="seconds", alert=alert if level != "ok" else "")
        if level != "ok":
            f.cause(f"PgBouncer pool {db} has no free server connection",
                    "psql -p 6432 -U pgbouncer pgbouncer -c 'SHOW POOLS;'", name)


def resources(f: Findings, selected: list[Observation]) -> None:
    if not selected:
        f.miss("container resource use", "no kubernetes probe is configured")
    for obs in selected:
        if (run := f.answered(obs, "container resource use")) is None:
            continue
        name, ns, result = obs.spec.name, _ns(obs), run.result
        if value(result, "probe_kubernetes_metrics_api_available") == 0:
            f.miss("CPU and memory use", f"{name}: the metrics API (metrics.k8s.io) does "
                   "not answer", name)
        for metric, alert, key, what in (
            ("probe_kubernetes_container_cpu_limit_ratio", "HighCPUUsage", "cpu", "CPU"),
            ("probe_kubernetes_container_memory_limit_ratio", "HighMemoryUsage", "memory",
             "memory"),
        ):
            limit = f.section.threshold(f"high_{key}_usage.threshold")
            rows = sorted(samples(result, metric), key=lambda s: -s[1])
            for lbl, ratio in rows[:3]:
                pod = lbl.get("pod", "")
                level = f.breach(alert) if ratio > limit else "ok"
                if what == "memory" and ratio >= 1:
                    level = "failing"  # at its limit the kernel OOM-kills the container
                f.add(name, f"{key}:{pod}/{lbl.get('container', '')}",
                      f"{pod}: {what} {percent(ratio)} of its limit (threshold "
                      f"{percent(limit)})", level, value=ratio, threshold=limit, unit="ratio",
                      alert=alert if level != "ok" else "")
                if level == "ok":
                    continue
                deploy = pod.rsplit("-", 2)[0] if pod.count("-") >= 2 else pod
                if what == "CPU":
                    f.cause(f"{pod} is CPU-bound at its limit",
                            f"kubectl scale deployment/{deploy} --replicas=5 -n {ns}", name)
                else:
                    f.cause(f"{pod} is close to its memory limit (OOMKill next)",
                            f"kubectl top pods -n {ns}", name)
        for lbl, v in samples(result, "kube_pod_container_status_last_terminated_reason"):
            if v == 1 and lbl.get("reason") == "OOMKilled":
                pod = lbl.get("pod", "")
                f.add(name, f"oom:{pod}", f"{pod}: last terminated OOMKilled",
                      f.breach("HighMemoryUsage"), value=1, threshold=0,
                      alert="HighMemoryUsage")
                f.cause(f"{pod} was OOMKilled: its memory limit is too low or it leaks",
                        f"kubectl patch deployment festivals-api -n {ns} --patch "
                        "'{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"api\","
                        "\"resources\":{\"limits\":{\"memory\":\"1Gi\"}}}]}}}}'", name)
        for lbl, v in samples(result, "probe_kubernetes_hpa_at_max"):
            hpa = lbl.get("horizontalpodautoscaler", "")
            top = value(result, "kube_horizontalpodautoscaler_spec_max_replicas",
                        horizontalpodautoscaler=hpa)
            cur = value(result, "kube_horizontalpodautoscaler_status_current_replicas",
                        horizontalpodautoscaler=hpa)
            f.add(name, f"hpa:{hpa}", f"HPA {hpa}: {cur or 0:.0f} of at most {top or 0:.0f} "
                  "replicas" + (" (at its maximum)" if v == 1 else ""),
                  "degraded" if v == 1 else "ok", value=cur, threshold=top)
            if v == 1:
                f.cause(f"HPA {hpa} is at its maximum: it cannot scale out further",
                        f"kubectl get hpa -n {ns}", name)


def queues(f: Findings, selected: list[Observation]) -> None:
    alert = "QueueBacklog"
    failed_re = re.compile(f.section.patterns.get("failed_queues", "(?i).*failed.*"))
    max_age = f.section.threshold("queue_backlog.age_seconds")
    max_len = f.section.threshold("queue_backlog.length")
    redis = [o for o in selected if o.spec.kind == "redis"]
    if not redis:
        f.miss("queue lengths", "no redis probe is configured")
    for obs in redis:
        name = obs.spec.name
        run = obs.last
        if run is None:
            f.miss("queue lengths", f"probe {name} has not run yet", name)
            continue
        if value(run.result, "redis_up") != 1.0:
            reason = run.result.reason or "down"
            f.add(name, "redis_up", f"{name}: Redis does not answer ({reason})", "failing",
                  value=0, threshold=1)
            f.cause(f"Redis does not answer ({reason}): no job is queued or taken",
                    "kubectl exec -it redis-0 -n festivals -- redis-cli PING", name)
            f.miss("queue lengths", f"probe {name} did not answer ({reason})", name)
            continue
        ages = {lbl.get("queue", ""): v for lbl, v in samples(
            run.result, "redis_queue_oldest_job_age_seconds")}
        for lbl, length in samples(run.result, "redis_queue_length"):
            queue = lbl.get("queue", "")
            age = ages.get(queue)
            if failed_re.fullmatch(queue):
                if is_number(length) and length:
                    f.add(name, f"failed:{queue}", f"{queue}: {count(length)} failed job(s)",
                          value=length, unit="jobs")
                    f.cause(f"{count(length)} failed job(s) kept in {queue}",
                            f"kubectl exec -it redis-0 -n festivals -- redis-cli LRANGE "
                            f"{queue} 0 10", name)
                continue
            old = is_number(age) and age is not None and age > max_age
            long = is_number(length) and length > max_len
            level = f.breach(alert) if old or long else "ok"
            age_text = f", oldest {duration(age)}" if is_number(age) and age else ""
            f.add(name, f"length:{queue}", f"{queue}: {count(length) if is_number(length) else '?'}"
                  f" jobs{age_text} (thresholds {count(max_len)} jobs, {duration(max_age)})",
                  level, value=age if old else length, threshold=max_age if old else max_len,
                  unit="seconds" if old else "jobs", alert=alert if level != "ok" else "")
            if old:
                f.cause(f"workers are not taking jobs from {queue} (oldest {duration(age or 0)})",
                        "kubectl logs -n festivals -l app=festivals-worker --tail=100", name)
            elif long:
                f.cause(f"{queue} is long but moving: not enough workers",
                        "kubectl scale deployment/festivals-worker --replicas=10 -n festivals",
                        name)


def certificates(f: Findings, selected: list[Observation]) -> None:
    alert = "SSLCertificateExpiringSoon"
    days = f.section.threshold("ssl_certificate_expiring_soon.days")
    horizon = days * 86400
    seen = False
    for obs in selected:
        run = obs.last
        if run is None:
            if obs.spec.kind == "tls":
                f.miss("certificate expiry", f"probe {obs.spec.name} has not run yet",
                       obs.spec.name)
            continue
        name, result = obs.spec.name, run.result
        found: dict[str, float] = {}
        for metric in ("tls_earliest_cert_expiry_timestamp_seconds",
                       "probe_ssl_earliest_cert_expiry"):
            for lbl, at in samples(result, metric):
                found.setdefault(lbl.get("source") or obs.spec.target(), at)
        verified = {lbl.get("source", ""): v for lbl, v in samples(result, "tls_verify_success")}
        for source, at in sorted(found.items()):
            if at <= 0:
                continue
            seen = True
            left = at - f.now
            # verify: false says only the expiry matters (a self-signed internal endpoint).
            checked = bool(getattr(obs.spec.settings, "verify", True))
            chain = {1.0: ", chain valid", 0.0: ", chain NOT valid"}.get(
                verified.get(source, -1.0), "") if checked else ", chain not checked"
            level = ("failing" if left <= 0 or (checked and verified.get(source) == 0.0) else
                     f.breach(alert) if left < horizon else "ok")
            f.add(name, f"expiry:{source}", f"{source} certificate "
                  + (f"expired {duration(-left)} ago" if left <= 0 else
                     f"expires in {duration(left)}") + f"{chain} (threshold {days:.0f} days)",
                  level, value=left / 86400, threshold=days, unit="days",
                  alert=alert if left < horizon else "")
            if left < horizon:
                f.cause(f"{source} certificate expires in {duration(max(left, 0))}: renewal "
                        "has not happened", "kubectl get certificates -n festivals", name)
        if obs.spec.kind == "tls":
            for lbl, up in samples(result, "tls_source_up"):
                if up == 0:
                    f.miss(f"certificate of {lbl.get('source', '')}",
                           f"probe {name} could not read it ({result.reason})", name)
        if obs.spec.kind == "kubernetes":
            ns = _ns(obs)
            for lbl, v in samples(result, "certmanager_certificate_ready_status"):
                if v == 1 and lbl.get("condition") != "True":
                    cert = lbl.get("name", "")
                    seen = True
                    f.add(name, f"ready:{cert}", f"cert-manager Certificate {cert} is not "
                          f"ready ({lbl.get('condition')})", "degraded", value=0, threshold=1)
                    f.cause(f"cert-manager cannot issue {cert}",
                            f"kubectl describe certificate {cert} -n {ns}", name)
            for lbl, at in samples(result, "certmanager_certificate_expiration_timestamp_seconds"):
                cert = lbl.get("name", "")
                left = at - f.now
                seen = True
                level = "failing" if left <= 0 else f.breach(alert) if left < horizon else "ok"
                f.add(name, f"certmanager:{cert}", f"cert-manager Certificate {cert} expires "
                      f"in {duration(left)} (threshold {days:.0f} days)", level,
                      value=left / 86400, threshold=days, unit="days",
                      alert=alert if left < horizon else "")
                if left < horizon:
                    f.cause(f"cert-manager has not renewed {cert}",
                            f"kubectl delete certificate {cert} -n {ns}  # cert-manager "
                            "recreates it", name)
    if not any(o.spec.kind == "tls" for o in selected):
        f.miss("certificate expiry", "no tls probe is configured")
    elif not seen:
        f.miss("certificate expiry", "no probe reported a certificate")
