#!/usr/bin/env bash
# The local stack of real services on 127.0.0.1 (S3 server, MLflow, Prefect server + worker, Ray head).
#   bash infra/local/stack.sh up|down|status
# State: $TEXPRESS_STACK_DIR (default ./.stack). Ports: TEXPRESS_STACK_{S3,MLFLOW,PREFECT,RAY,RAY_CLIENT}_PORT,
# or TEXPRESS_STACK_FREE_PORTS=1 for free ones. After `up`: source "$TEXPRESS_STACK_DIR/stack.env".
# Details: docs/deploy.md and infra/local/stack.py.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then py="$repo/.venv/bin/python"; else py="$(command -v python3)"; fi
fi
export PREFECT_SERVER_ANALYTICS_ENABLED=false RAY_AUTH_MODE=disabled DVC_NO_ANALYTICS=1
exec "$py" "$here/stack.py" "$@"
