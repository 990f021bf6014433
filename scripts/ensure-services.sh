#!/usr/bin/env bash
# Make sure every external program the tests use is installed and the shared services run.
# Idempotent: installs only what is missing, starts only what is not listening.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }

have redis-server || need+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
pkg_installed postgresql-contrib || ls /usr/share/postgresql/*/extension/pg_stat_statements.control >/dev/null 2>&1 || need+=(postgresql-contrib)
have pgbouncer || need+=(pgbouncer)
have promtool || need+=(prometheus)
have amtool || need+=(prometheus-alertmanager)
# the end-to-end alerting test (tests/e2e) runs a real Prometheus and Alertmanager
have prometheus || need+=(prometheus)
have prometheus-alertmanager || need+=(prometheus-alertmanager)
have chromium || need+=(chromium)
have prometheus-redis-exporter || need+=(prometheus-redis-exporter)
have openssl || need+=(openssl)  # tests/probes_tls make certificates as users do
have curl || need+=(curl)  # tests/web_security speak to the exporter with curl

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # Debian's service packages try to start their daemons; that is fine, we start ours below.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! listening 6379; then
  echo "starting redis on 127.0.0.1:6379"
  mkdir -p /tmp/festivals-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/festivals-redis --logfile /tmp/festivals-redis/redis.log
fi

if ! listening 5432; then
  echo "starting postgresql on 127.0.0.1:5432"
  if have pg_ctlcluster && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
fi

for port in 6379 5432; do
  for _ in $(seq 50); do listening "$port" && break; sleep 0.2; done
  listening "$port" || echo "warning: nothing listens on 127.0.0.1:$port; tests that need it start their own"
done
