#!/usr/bin/env bash
# Creates .venv and installs texpress with its test extras. Re-running is cheap: pip only installs
# what is missing. torch comes through the normal resolution (see docs/operations.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.texpress-installed
want=$(sha256sum pyproject.toml | cut -c1-64)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
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
