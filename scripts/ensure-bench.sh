#!/usr/bin/env bash
# What `make bench` compares against: Debian's peer exporters and nginx as a target.
# Idempotent: installs only what is missing. Never part of `make test`.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ] || [ -x "/usr/sbin/$1" ]; }
have prometheus-blackbox-exporter || need+=(prometheus-blackbox-exporter)
have prometheus-postgres-exporter || need+=(prometheus-postgres-exporter)
have prometheus-redis-exporter || need+=(prometheus-redis-exporter)
have nginx || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing for the benchmarks: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # The packages start their own daemons on default ports; the benchmarks start theirs on
  # free ports and leave those alone.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
