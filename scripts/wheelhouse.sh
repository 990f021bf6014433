#!/usr/bin/env bash
# Download the wheels of the project's dependencies and build backend into $1, for the
# image test (tests/deploy/test_dockerfile.py), which replays the Dockerfile's pip steps
# offline from them: the test suite itself never reaches a package index.
# The test installs with the system's python3.11 where there is one (an unprivileged uid
# can run it, unlike a pyenv build under /root), whose markers can ask for other wheels
# (redis wants async-timeout below 3.11.3): so download with that interpreter too.
set -euo pipefail
out=$1
venv_python=$2
want=(. 'setuptools>=77' wheel)
"$venv_python" -m pip download -q --only-binary=:all: -d "$out" "${want[@]}"
base=$(PATH=/usr/local/bin:/usr/bin command -v python3.11 || true)
if [ -n "$base" ] && [ "$("$base" -c 'import sys; print(sys.version)')" != "$("$venv_python" -c 'import sys; print(sys.version)')" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$base" -m venv "$tmp/venv"
  "$tmp/venv/bin/python" -m pip download -q --only-binary=:all: -d "$out" "${want[@]}"
fi
