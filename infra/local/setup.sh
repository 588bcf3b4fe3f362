#!/usr/bin/env bash
# Creates .venv and installs texpress with its test extras from the lock file. Re-running is cheap:
# nothing is installed while pyproject.toml and the lock are unchanged (docs/operations.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Everything comes from the lock (infra/lock/dev.txt, exact versions and hashes, made from uv.lock by
# infra/lock.sh); the project itself is installed without resolving anything more.
stamp=.venv/.texpress-installed
want=$(cat pyproject.toml infra/lock/dev.txt | sha256sum | cut -c1-64)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --require-hashes --no-deps -r infra/lock/dev.txt
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
# Headless Chromium (Debian's package) for the Prefect UI screenshot test (tests/flows). Best effort:
# skipped when it is already there, when apt-get is missing, or without root; never fails the setup.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } \
    >/dev/null 2>&1 || echo "setup.sh: chromium not installed (apt-get failed); the UI screenshot test will be skipped" >&2
fi
