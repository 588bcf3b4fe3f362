"""What every flow shares: the repository it runs in, DVC stages run with their output in the
Prefect run's log, params.yaml overrides, and the markdown artifact that closes a run.

The flows are thin: the work is done by `dvc repro STAGE` (so a run from the UI and a `dvc repro`
on the same params give the same outputs and the same dvc.lock) or by the texpress library.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Annotated, Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.tasks import exponential_backoff
from pydantic import StringConstraints

REPO_ENV = "TEXPRESS_REPO"  # the checkout the flows run in; default: the working directory
TRANSIENT_RETRIES = dict(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_jitter_factor=0.5)


class StageFailed(RuntimeError):
    """A DVC stage or command exited non-zero; the message is its one-line reason."""


# Field types shared by the flows' parameter models: a bad value is refused before anything runs.
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]  # a name or a path: never empty
EndpointUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+\S*$")]  # http(s)://HOST[:PORT][/...]


def check_local_path(path: str, base: Path, what: str) -> None:
    """Refuse a local path that does not exist (relative paths are inside the checkout), before anything
    is written; s3:// and other URLs are checked by their own retried tasks."""
    from texpress.data import storage

    if not storage.is_local(path):
        return
    full = base / storage.local_path(path)  # an absolute path stays itself
    if not full.exists():
        raise StageFailed(f"{what} {path}: no such file or folder in {base}")


def repo_root() -> Path:
    """The texpress checkout: $TEXPRESS_REPO, else the working directory the deployment set."""
    root = Path(os.environ.get(REPO_ENV) or os.getcwd()).resolve()
    if not (root / "dvc.yaml").is_file():
        raise StageFailed(f"{root}: not a texpress checkout (no dvc.yaml); set {REPO_ENV} or deploy from the "
                          "repository root")
    return root


def _reason(lines: list[str]) -> str:
    """The line that says why: the stage's own `error:` line, else DVC's `ERROR:` line, else the last."""
    for prefix in ("error:", "ERROR:"):
        found = [line for line in lines if line.startswith(prefix)]
        if found:
            return found[0].split(":", 1)[1].strip()
    return lines[-1] if lines else "no output"


def run_command(args: list[str], cwd: Path, env: dict[str, str] | None = None, label: str | None = None) -> list[str]:
    """Run a command, each output line to the run's log; StageFailed with the reason on failure."""
    logger = get_run_logger()
    bindir = str(Path(sys.executable).parent)  # the stages' `python` and `texpress` are this environment's
    full_env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    logger.info("$ %s", " ".join(args))
    tail: deque[str] = deque(maxlen=200)
    with subprocess.Popen(args, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                logger.info(line)
                tail.append(line)
    if proc.returncode:
        raise StageFailed(f"{label or args[0]} failed: {_reason(list(tail))}")
    return list(tail)


def dvc(*args: str, cwd: Path, env: dict[str, str] | None = None) -> list[str]:
    return run_command([sys.executable, "-m", "dvc", *args], cwd, env, label=f"dvc {' '.join(args)}")


@task(name="set-params")
def set_params(repo: Path, changes: dict[str, Any]) -> dict[str, Any]:
    """Write the run's overrides into params.yaml, as `dvc exp run --set-param` would, so that the
    stages, dvc.lock and a later `dvc repro` all see them."""
    from texpress.params import set_params as write

    if not changes:
        return {}
    old = write(repo / "params.yaml", changes)
    for key, value in old.items():
        get_run_logger().info("params.yaml %s: %s -> %s", key, json.dumps(value), json.dumps(changes[key]))
    return {key: changes[key] for key in old}


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def mlflow_links(run_id: str | None = None, model: str | None = None,
                 version: str | int | None = None) -> dict[str, str]:
    """Links to the MLflow run and model version: clickable when the store is a server, else the ids."""
    uri = tracking_uri(repo_root())
    server = uri.startswith(("http://", "https://"))
    links: dict[str, str] = {}
    if run_id:
        if server:
            from mlflow.tracking import MlflowClient

            exp = MlflowClient(uri).get_run(run_id).info.experiment_id
            links["MLflow run"] = f"[{run_id}]({uri.rstrip('/')}/#/experiments/{exp}/runs/{run_id})"
        else:
            links["MLflow run"] = f"`{run_id}` in `{uri}`"
    if model and version is not None:
        ref = f"models:/{model}/{version}"
        links["registered version"] = (f"[{ref}]({uri.rstrip('/')}/#/models/{model}/versions/{version})"
                                       if server else f"`{ref}` in `{uri}`")
    return links


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value).replace("|", "\\|")


def report(key: str, title: str, metrics: dict[str, Any], links: dict[str, str] | None = None) -> str:
    """The markdown artifact that ends a run: a metrics table and the links that exist."""
    lines = [f"# {title}", "", "| metric | value |", "|---|---:|"]
    lines += [f"| {name} | {_cell(value)} |" for name, value in metrics.items()]
    if links:
        lines += [""] + [f"- {name}: {target}" for name, target in links.items()]
    markdown = "\n".join(lines) + "\n"
    create_markdown_artifact(markdown=markdown, key=key, description=title)
    return markdown


def tracking_uri(repo: Path) -> str:
    """The MLflow store the stages log to: $MLFLOW_TRACKING_URI, else the checkout's mlflow.db."""
    from texpress.mlstore import resolve_tracking

    return resolve_tracking(repo)[0]


def registry_config(repo: Path):
    """The `registry:` section of params.yaml (texpress.registry.config.RegistryConfig)."""
    from texpress.params import load_params
    from texpress.registry.config import RegistryConfig

    return RegistryConfig.from_dict(load_params(repo / "params.yaml", "registry"))


def model_name(repo: Path, name: str | None = None) -> str:
    """The registered model name: `name`, else registry.name, else texpress-<train.preset>."""
    from texpress.params import load_params

    if name:
        return name
    return registry_config(repo).name or f"texpress-{load_params(repo / 'params.yaml', 'train').get('preset', 'lite')}"
