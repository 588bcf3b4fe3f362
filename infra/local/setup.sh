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
